"""Scans on data as labs hold it: one repetition, NaN padding, published reliabilities,
RDM-only folders, ceilings at or below zero, per-neuroid scores, the held-out layer
choice and the inter-animal ceiling, each checked against an independent computation."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr
from sklearn.linear_model import RidgeCV

from cortexzoo.data import load_dataset, write_dataset
from cortexzoo.features.reduce import ReductionConfig
from cortexzoo.mapping import default_alphas
from cortexzoo.report import heldout_layers, leaderboard
from cortexzoo.report.neuroids import trained_vs_random_neuroids
from cortexzoo.scan import ScanConfig, run_scan
from cortexzoo.scan.planted import make_planted_dataset
from cortexzoo.scan.scoring import ScoringConfig, stimulus_halves
from cortexzoo.store import ResultStore

PIX = "baseline:pixels@none"
FAST = dict(engine="local", progress=False, plot=False, input_size=32, batch_size=32,
            reduction=ReductionConfig(n_components=128))


def _scoring(**kw):
    return ScoringConfig(reliability_splits=10, inter_animal_boot=200, **kw)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("lab") / "ds")
    make_planted_dataset(uri, model="pixels", n_stimuli=60, image_size=32, n_neuroids=8,
                         n_reps=4, seed=5)
    return uri


def _copy(ds, uri, **changes):
    parts = dict(meta=ds.meta, stimuli=ds.stimuli, neuroids=ds.neuroids, responses=ds.responses,
                 images={os.path.basename(p): open(os.path.join(ds.uri, p), "rb").read()
                         for p in ds.stimuli["image"]})
    parts["stimuli"] = ds.stimuli.assign(image=[os.path.basename(p) for p in ds.stimuli["image"]])
    parts.update(changes)
    return write_dataset(uri, **parts)


def _scan(data, out, models=("pixels",), **kw):
    return run_scan(ScanConfig(data=data, models=list(models), out=out,
                               scoring=kw.pop("scoring", _scoring()), **FAST, **kw))


def test_one_repetition_scans_with_nan_ceilings_and_the_same_raw_numbers(planted, tmp_path):
    ds = load_dataset(planted)
    avg = _copy(ds, str(tmp_path / "avg"),
                responses=np.nanmean(ds.responses, axis=1, keepdims=True).astype(np.float32))
    full = _scan(planted, str(tmp_path / "r1")).scores
    one = _scan(avg, str(tmp_path / "r2")).scores
    key = ["model", "layer", "region", "method", "metric", "split"]
    a = full[full.model == PIX].sort_values(key).reset_index(drop=True)
    b = one[one.model == PIX].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[key], b[key])
    # the mapping target is the mean over repetitions: every raw number is unchanged
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-9, atol=1e-12)
    assert a["ceiled_value"].notna().any()
    assert b["ceiling"].isna().all() and b["ceiled_value"].isna().all()
    assert set(b["ceiling_source"]) == {"none"}
    man = ResultStore(str(tmp_path / "r2")).read_manifests()[0]
    assert "one repetition" in man["ceilings"]["planted"]["ceiling_reason"]
    board = leaderboard(one)
    assert set(board["ridge_scale"]) == {"raw"}  # ranked on raw values, and says so


def test_nan_padded_repetitions_and_published_reliability(planted, tmp_path):
    from cortexzoo.mapping import rdm_split_half_reliability

    ds = load_dataset(planted)
    R = ds.responses.copy()
    R[:20, 1:, :] = np.nan  # the first 20 stimuli were shown once
    padded = _copy(ds, str(tmp_path / "pad"), responses=R)
    res = _scan(padded, str(tmp_path / "r"), scoring=_scoring(rsa_compare="pearson"))
    s = res.scores
    rsa = s[(s.method == "rsa") & (s.split == "loo")].iloc[0]
    want = rdm_split_half_reliability(R[20:], n_splits=10, seed=0)  # stimuli with 2+ reps
    assert rsa["ceiling"] == pytest.approx(np.sqrt(want), rel=1e-9)

    rel = np.linspace(0.2, 0.9, ds.n_neuroids)
    pub = _copy(ds, str(tmp_path / "pub"), neuroids=ds.neuroids.assign(reliability=rel))
    s = _scan(pub, str(tmp_path / "r2")).scores
    row = s[(s.method == "ridge_gcv") & (s.metric == "pearson_r") & (s.split == "loo")].iloc[0]
    assert row["ceiling"] == pytest.approx(np.mean(np.sqrt(rel)), rel=1e-12)
    assert row["ceiling_source"] == "dataset"
    assert row["ceiled_value"] == pytest.approx(row["value"] / np.mean(np.sqrt(rel)))


def test_ceilings_at_or_below_zero_give_nan(planted, tmp_path):
    ds = load_dataset(planted)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=ds.responses.shape).astype(np.float32)  # no stimulus signal
    s = _scan(_copy(ds, str(tmp_path / "noise"), responses=noise), str(tmp_path / "r")).scores
    ridge = s[s.method == "ridge_gcv"]
    assert (ridge["ceiling"].isna() | (ridge["ceiling"] > 0)).all()
    bad = s[~(s["ceiling"] > 0)]
    assert len(bad) and bad["ceiled_value"].isna().all()


def test_rdm_only_folder_loads_validates_and_scans(tmp_path):
    from cortexzoo.data.synthetic import make_images

    imgs = make_images(16, size=24, seed=1)
    folder = tmp_path / "rdms"
    os.makedirs(folder / "images")
    from PIL import Image

    for i, im in enumerate(imgs):
        Image.fromarray(im).save(folder / "images" / f"{i}.png")
    rng = np.random.default_rng(2)
    X = rng.normal(size=(16, 5))
    rdms = np.stack([1 - np.corrcoef(X + rng.normal(0, 0.3, X.shape)) for _ in range(2)])
    pd.DataFrame({"stimulus_id": [str(i) for i in range(16)],
                  "image": [f"images/{i}.png" for i in range(16)]}).to_parquet(folder / "stimuli.parquet")
    pd.DataFrame({"rdm_id": ["a", "b"], "subject": ["a", "b"], "region": "IT",
                  "measure": "1-pearson"}).to_parquet(folder / "rdms.parquet")
    np.save(folder / "rdms.npy", rdms)
    json.dump({"name": "rdm-only"}, open(folder / "dataset.json", "w"))
    # no neuroids.parquet, no responses.npy: FORMAT.md says this is a dataset
    ok = subprocess.run([sys.executable, "-m", "cortexzoo.cli", "data", "validate", str(folder)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    out = str(tmp_path / "r")
    res = _scan(str(folder), out, models=["timm:test_byobnet@random"])
    from cortexzoo.scan.model import cached_features

    cfg = ScanConfig(data=str(folder), models=["timm:test_byobnet@random"], out=out, **FAST)
    ds = load_dataset(str(folder))
    iu = np.triu_indices(16, 1)
    loo = res.scores[(res.scores.split == "loo") & (res.scores.metric == "rdms_pearson")]
    assert len(loo) == len(res.scores[res.scores.split == "loo"]) // 2  # pearson and spearman
    for _, row in loo.iterrows():  # every layer against scipy
        X = cached_features(ResultStore(out), ds, "timm:test_byobnet@random", row["layer"], cfg)
        model_rdm = pdist(X.astype(np.float64), "correlation")
        want = np.mean([pearsonr(model_rdm, r[iu])[0] for r in rdms])
        assert row["value"] == pytest.approx(want, abs=1e-9)
        ceil = np.mean([pearsonr(rdms[i][iu], rdms[1 - i][iu])[0] for i in range(2)])
        assert row["ceiling"] == pytest.approx(ceil, abs=1e-9)


def test_validate_and_scan_agree_on_regions_without_complete_neuroids(planted, tmp_path):
    from cortexzoo.data import DatasetError

    ds = load_dataset(planted)
    R = ds.responses.copy()
    R[0, :, :] = np.nan  # stimulus 0 has no response in any neuroid: rejected by both
    R[0, :, 0] = 1.0
    R[1, :, 0] = np.nan  # ...and the one neuroid with stimulus 0 lacks stimulus 1
    with pytest.raises(DatasetError, match="no neuroid with a response to every stimulus"):
        _copy(ds, str(tmp_path / "bad"), responses=R)


def test_per_neuroid_scores_and_the_fraction_question(planted, tmp_path):
    out = str(tmp_path / "r")
    models = ["pixels", "timm:test_byobnet@random", "timm:test_byobnet@random#1"]
    _scan(planted, out, models=models)
    store = ResultStore(out)
    nr = store.read_neuroid_scores()
    ds = load_dataset(planted)
    assert set(nr["metric"]) == {"pearson_r", "explained_variance", "alpha"}
    # every (model, layer, neuroid, metric) once
    assert not nr.duplicated(["model", "layer", "neuroid_id", "metric"]).any()
    # pixels' per-neuroid r equals scikit-learn's RidgeCV leave-one-out r
    from cortexzoo.scan.model import cached_features

    cfg = ScanConfig(data=planted, models=models, out=out, **FAST)
    X = cached_features(store, ds, "pixels", "pixels", cfg).astype(np.float64)
    Y = ds.mean_responses()
    ref = RidgeCV(alphas=default_alphas(), alpha_per_target=True, store_cv_results=True,
                  scoring="neg_mean_squared_error").fit(X, Y)
    chosen = np.searchsorted(default_alphas(), ref.alpha_)
    loo = ref.cv_results_[:, np.arange(Y.shape[1]), chosen]
    r = np.array([pearsonr(loo[:, j], Y[:, j])[0] for j in range(Y.shape[1])])
    got = nr[(nr.model == PIX) & (nr.metric == "pearson_r")].set_index("neuroid_id")["value"]
    np.testing.assert_allclose(got.loc[ds.neuroids["neuroid_id"]].to_numpy(), r, atol=1e-5)
    # the CLI queries it
    cli = subprocess.run([sys.executable, "-m", "cortexzoo.cli", "results", out, "--per-neuroid",
                          "--model", "baseline:pixels*", "--metric", "alpha", "--format", "csv"],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert len(pd.read_csv(__import__("io").StringIO(cli.stdout))) == ds.n_neuroids


def test_fraction_of_neuroids_trained_beats_random_by_hand():
    from scipy.stats import ttest_rel

    rng = np.random.default_rng(3)
    rows, neuroids = [], []
    r_tr, r_rd = rng.uniform(0, 1, 30), rng.uniform(0, 1, 30)
    r_rd[:3] = r_tr[:3]  # ties count one half
    for model, weights, best, per in (("t:a@trained", "trained", "l1", r_tr),
                                      ("t:a@random", "random", "l0", r_rd)):
        for layer in ("l0", "l1"):
            v = 0.5 if layer == best else 0.1
            rows.append(dict(run_id="r", dataset="d", scan_key="k", region="IT", model=model,
                             source="t", weights=weights, layer=layer, relative_depth=0.0,
                             method="ridge_gcv", metric="pearson_r", split="loo", value=v,
                             ceiling=np.nan, ceiled_value=np.nan))
            vals = per if layer == best else rng.uniform(-1, 0, 30)  # never the best layer's
            neuroids.append(pd.DataFrame({"dataset": "d", "scan_key": "k", "region": "IT",
                                          "model": model, "layer": layer, "metric": "pearson_r",
                                          "neuroid_id": [f"n{i}" for i in range(30)],
                                          "value": vals}))
    comp = trained_vs_random_neuroids(pd.DataFrame(rows), pd.concat(neuroids))
    row = comp.iloc[0]
    assert (row["trained_layer"], row["random_layer"]) == ("l1", "l0")
    assert row["fraction_trained_better"] == pytest.approx(
        np.mean((r_tr > r_rd) + 0.5 * (r_tr == r_rd)))
    assert row["t"] == pytest.approx(ttest_rel(r_tr, r_rd).statistic)
    assert row["n_neuroids"] == 30


def test_held_out_selection_equals_a_hand_computation():
    rows = []
    vals = {"half_a": [0.1, 0.5, 0.3], "half_b": [0.4, 0.2, 0.35], "loo": [0.3, 0.4, 0.33]}
    for split, v in vals.items():
        for i, x in enumerate(v):
            rows.append(dict(run_id="r", dataset="d", scan_key="k", region="V4", model="m",
                             source="s", weights="trained", layer=f"l{i}", relative_depth=i / 2,
                             method="ridge_gcv", metric="pearson_r", split=split, value=x,
                             ceiling=0.5, ceiled_value=x / 0.5))
    df = pd.DataFrame(rows)
    h = heldout_layers(df, "ridge_gcv").iloc[0]
    # chosen on A: l1, scored on B: 0.2; chosen on B: l0, scored on A: 0.1
    assert (h["layer_a"], h["layer_b"]) == ("l1", "l0")
    assert h["value"] == pytest.approx((0.2 / 0.5 + 0.1 / 0.5) / 2)
    board = leaderboard(df).iloc[0]
    assert board["ridge"] == pytest.approx(0.3) and board["ridge_insample"] == pytest.approx(0.8)
    assert board["selection"] == "held-out"


def test_held_out_is_at_most_the_in_sample_max_on_many_layers(tmp_path):
    uri = str(tmp_path / "ds")
    make_planted_dataset(uri, model="timm:test_byobnet@random", n_stimuli=48, image_size=32,
                         n_neuroids=6, n_reps=3, seed=1, input_size=32)
    res = _scan(uri, str(tmp_path / "r"), models=["timm:test_byobnet@random"])
    board = res.leaderboard.iloc[0]
    assert board["selection"] == "held-out"
    assert board["ridge"] <= board["ridge_insample"] + 1e-12
    man = ResultStore(str(tmp_path / "r")).read_manifests()[0]
    halves = stimulus_halves(load_dataset(uri).stimuli["stimulus_id"], 0)
    ids = load_dataset(uri).stimuli["stimulus_id"].to_numpy()
    assert man["layer_split"]["half_a"] == ids[halves["half_a"]].tolist()


def test_inter_animal_ceiling_equals_ridgecv_by_hand(planted, tmp_path):
    res = _scan(planted, str(tmp_path / "r"))
    row = res.scores[res.scores.method == "inter_animal"].iloc[0]
    ds = load_dataset(planted)
    Y = ds.mean_responses()
    subs = ds.neuroids["subject"].to_numpy()
    r = np.empty(Y.shape[1])
    alphas = default_alphas()
    for s in np.unique(subs):
        ref = RidgeCV(alphas=alphas, alpha_per_target=True, store_cv_results=True,
                      scoring="neg_mean_squared_error").fit(Y[:, subs != s], Y[:, subs == s])
        chosen = np.searchsorted(alphas, np.atleast_1d(ref.alpha_))
        cv = ref.cv_results_.reshape(len(Y), (subs == s).sum(), len(alphas))
        loo = cv[:, np.arange(cv.shape[1]), chosen]
        r[subs == s] = [pearsonr(loo[:, j], Y[:, subs == s][:, j])[0] for j in range(loo.shape[1])]
    assert row["value"] == pytest.approx(r.mean(), abs=1e-6)
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    assert row["k_units"] == 2  # subjects
