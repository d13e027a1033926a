"""End-to-end scans (local engine) on a recording planted in one layer of one model."""
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr
from sklearn.linear_model import RidgeCV

from cortexzoo.data import load_dataset
from cortexzoo.features.reduce import ReductionConfig
from cortexzoo.scan import ScanConfig, run_scan
from cortexzoo.scan.planted import make_planted_dataset
from cortexzoo.scan.scoring import ScoringConfig
from cortexzoo.store import ResultStore

MODEL = "torchvision:resnet18@random"
PLANTED = "layer2.0"
NEIGHBOURS = {"layer1.1", "layer2.0", "layer2.1"}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("planted") / "ds")
    make_planted_dataset(uri, model=MODEL, layer=PLANTED, n_stimuli=150, image_size=64,
                         n_neuroids=24, n_reps=6, seed=1, input_size=64)
    return uri


@pytest.fixture(scope="module")
def scanned(planted, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("results"))
    cfg = ScanConfig(data=planted, models=[MODEL, "pixels"], out=out, engine="local",
                     input_size=64, reduction=ReductionConfig(n_components=1024),
                     scoring=ScoringConfig(reliability_splits=20), progress=False)
    return cfg, run_scan(cfg)


def test_planted_layer_ranks_best_with_ceiled_score_near_one(planted, scanned):
    _, res = scanned
    truth = load_dataset(planted).meta["ground_truth"]
    assert truth["model"] == MODEL and truth["layer"] == PLANTED
    s = res.scores
    ridge = s[(s.model == MODEL) & (s.method == "ridge_gcv") & (s.metric == "pearson_r")]
    best = ridge.loc[ridge["ceiled_value"].idxmax()]
    assert best["layer"] in NEIGHBOURS, ridge.sort_values("ceiled_value")[["layer", "ceiled_value"]]
    planted_row = ridge[ridge.layer == PLANTED].iloc[0]
    assert planted_row["ceiled_value"] > 0.8
    # The leaderboard puts the planted model above the pixel baseline.
    board = res.leaderboard
    assert board.iloc[0]["model"] == MODEL
    assert board.set_index("model").loc[MODEL, "ridge_layer"] in NEIGHBOURS


def test_every_layer_scored_once_with_schema(scanned):
    cfg, res = scanned
    s = pd.read_parquet(cfg.out + "/scores/")
    from cortexzoo.zoo import load_model

    layers = load_model(MODEL).layers
    got = set(s[s.model == MODEL].layer)
    assert got == set(layers)
    key = ["model", "layer", "region", "method", "metric", "split"]
    assert not s.duplicated(key).any()
    for col in ("run_id", "dataset", "region", "model", "source", "weights", "layer",
                "relative_depth", "reduction", "method", "metric", "value", "ceiling",
                "ceiled_value", "n_neuroids", "n_stimuli", "split", "seed", "code_version",
                "created_at"):
        assert col in s.columns
    depth = s[s.model == MODEL].drop_duplicates("layer").set_index("layer")["relative_depth"]
    assert depth[layers[0]] == 0.0 and depth[layers[-1]] == 1.0
    assert res.plot_path and open(res.plot_path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert ResultStore(cfg.out).read_manifests()[0]["dataset_fingerprint"]


def test_ridge_and_rsa_values_match_sklearn_and_scipy(planted, scanned):
    """Recompute one layer's scores from the cached features with independent code."""
    cfg, res = scanned
    ds = load_dataset(planted)
    store = ResultStore(cfg.out)
    from cortexzoo.scan.model import cached_features

    X = cached_features(store, ds, MODEL, PLANTED, cfg).astype(np.float64)
    Y = np.nanmean(ds.responses, axis=1).astype(np.float64)
    alphas = np.unique(np.r_[np.logspace(-2, 6, 17), 1.0])
    ref = RidgeCV(alphas=alphas, alpha_per_target=True, store_cv_results=True,
                  scoring="neg_mean_squared_error").fit(X, Y)
    cv = ref.cv_results_  # [n, t, n_alphas] LOO predictions
    chosen = np.searchsorted(alphas, ref.alpha_)
    loo = cv[:, np.arange(Y.shape[1]), chosen]
    r = np.array([pearsonr(loo[:, j], Y[:, j])[0] for j in range(Y.shape[1])])
    row = res.scores.query("model == @MODEL and layer == @PLANTED and metric == 'pearson_r'")
    assert row["value"].iloc[0] == pytest.approx(r.mean(), abs=1e-6)
    rsa = pearsonr(pdist(X, "correlation"), pdist(Y, "correlation"))[0]
    row = res.scores.query("model == @MODEL and layer == @PLANTED and method == 'rsa'")
    assert row["value"].iloc[0] == pytest.approx(rsa, abs=1e-6)


def test_rerun_skips_everything(scanned):
    cfg, first = scanned
    again = run_scan(cfg)
    assert again.written_units == 0 and again.skipped_units == first.written_units
    assert len(again.scores) == len(first.scores)


def test_published_rdms_scored_per_subject_with_loso_ceiling(tmp_path):
    """An RDM-only dataset: each layer's RDM against every subject's RDM (scipy reference)."""
    from scipy.stats import spearmanr

    from cortexzoo.data import write_dataset
    from cortexzoo.data.synthetic import make_images
    from cortexzoo.features import FeatureExtractor

    imgs = make_images(30, size=32, seed=5)
    names = [f"i{i}.png" for i in range(30)]
    rng = np.random.default_rng(0)
    # subjects' RDMs: the pixel RDM plus independent symmetric noise
    from cortexzoo.zoo import load_model

    pix = load_model("pixels")
    from PIL import Image

    from cortexzoo.data.images import resize_center_crop

    pre = pix.preprocess
    crops = np.stack([resize_center_crop(Image.fromarray(np.asarray(im)), pre.resize_size,
                                         pre.input_size, pre.interpolation) for im in imgs])
    f = FeatureExtractor(pix, ["pixels"], ReductionConfig(method="flatten"))(
        pre.normalize_uint8(crops))["pixels"]
    base = 1 - np.corrcoef(f)
    rdms = []
    for _ in range(3):
        e = rng.normal(0, 0.05, base.shape)
        r = base + (e + e.T) / 2
        np.fill_diagonal(r, 0)
        rdms.append(r)
    rdms = np.array(rdms)
    uri = write_dataset(str(tmp_path / "rdm"), meta={"name": "rdm-only", "description": "t",
                                                     "source": "t", "license": "CC0",
                                                     "response_unit": "none"},
                        stimuli=pd.DataFrame({"stimulus_id": [n[:-4] for n in names], "image": names}),
                        neuroids=pd.DataFrame({"neuroid_id": pd.Series([], dtype=str),
                                               "subject": pd.Series([], dtype=str),
                                               "region": pd.Series([], dtype=str)}),
                        responses=None, images=dict(zip(names, imgs)), rdms=rdms,
                        rdm_table=pd.DataFrame({"rdm_id": ["a", "b", "c"], "subject": ["a", "b", "c"],
                                                "region": "IT", "measure": "1-pearson"}))
    res = run_scan(ScanConfig(data=uri, models=["pixels"], out=str(tmp_path / "r"), engine="local",
                              reduction=ReductionConfig(method="flatten"), progress=False,
                              plot=False))
    s = res.scores[res.scores["split"] == "loo"].set_index("metric")
    iu = np.triu_indices(30, 1)
    want = np.mean([spearmanr(base[iu], r[iu])[0] for r in rdms])
    assert s.loc["rdms_spearman", "value"] == pytest.approx(want, abs=1e-9)
    loso = np.mean([spearmanr(rdms[i][iu], ((rdms.sum(0) - rdms[i]) / 2)[iu])[0] for i in range(3)])
    assert s.loc["rdms_spearman", "ceiling"] == pytest.approx(loso, abs=1e-9)
    assert res.leaderboard.iloc[0]["rsa_insample"] == pytest.approx(want / loso, abs=1e-9)
    # held out: a single layer is its own choice on each half; the halves' ceiled mean
    from cortexzoo.scan.scoring import stimulus_halves

    ceiled = []
    for idx in stimulus_halves([n[:-4] for n in names], 0).values():
        sub, b = rdms[:, idx][:, :, idx], base[np.ix_(idx, idx)]
        ju = np.triu_indices(len(idx), 1)
        v = np.mean([spearmanr(b[ju], r[ju])[0] for r in sub])
        c = np.mean([spearmanr(sub[i][ju], ((sub.sum(0) - sub[i]) / 2)[ju])[0] for i in range(3)])
        ceiled.append(v / c)
    assert res.leaderboard.iloc[0]["rsa"] == pytest.approx(np.mean(ceiled), abs=1e-9)
