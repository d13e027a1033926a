"""Real macaque V4 recordings (Cowley et al. 2023, session 210325), as labs hold them:
with repetitions, averaged over repetitions (one value per stimulus and neuron, as most
public sets ship), and as RDMs only. One results store: the three scans share the
features extracted once (same stimuli).

Skipped when ../shared/data/cowley_v4_210325 is absent.
"""
import os

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr

from cortexzoo.data import load_dataset, write_dataset
from cortexzoo.data.cowley import convert_cowley_v4
from cortexzoo.report import heldout_layers
from cortexzoo.report.neuroids import trained_vs_random_neuroids
from cortexzoo.scan import ScanConfig, run_scan
from cortexzoo.scan.model import cached_features
from cortexzoo.scan.scoring import ScoringConfig
from cortexzoo.store import ResultStore

COWLEY_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                                          "cowley_v4_210325"))

pytestmark = pytest.mark.skipif(not os.path.isdir(COWLEY_DIR), reason="Cowley V4 data absent")

TRAINED, RANDOM, PIXELS = ("timm:tf_efficientnet_lite0@trained", "timm:tf_efficientnet_lite0@random",
                           "baseline:pixels@none")


def _rewrite(ds, uri, **changes):
    parts = dict(meta=dict(ds.meta, name=ds.name + "-" + os.path.basename(uri)),
                 stimuli=ds.stimuli.assign(image=[ds.uri + "/" + p for p in ds.stimuli["image"]]),
                 neuroids=ds.neuroids, responses=ds.responses)
    parts.update(changes)
    return write_dataset(uri, **parts)


@pytest.fixture(scope="module")
def cowley(tmp_path_factory):
    root = tmp_path_factory.mktemp("cowley")
    data = convert_cowley_v4(COWLEY_DIR, str(root / "cowley"))
    out = str(root / "r")

    def scan(uri, models=(TRAINED, RANDOM, "pixels")):
        # The images are 112 px; scoring them at their own size keeps the test quick.
        return run_scan(ScanConfig(data=uri, models=list(models), out=out, engine="local",
                                   input_size=112, batch_size=64, progress=False, plot=False,
                                   scoring=ScoringConfig(reliability_splits=20,
                                                         inter_animal=False)))

    return data, out, scan


def test_trained_efficientnet_beats_random_twin_and_pixels_on_v4(cowley):
    data, out, scan = cowley
    res = scan(data)
    board = res.leaderboard.set_index("model")
    assert set(board.index) == {TRAINED, RANDOM, PIXELS}
    assert board.loc[TRAINED, "ridge"] > board.loc[RANDOM, "ridge"] + 0.05
    assert board.loc[TRAINED, "ridge"] > board.loc[PIXELS, "ridge"] + 0.05
    assert board.loc[TRAINED, "rsa"] > board.loc[RANDOM, "rsa"]
    assert set(board["selection"]) == {"held-out"}
    assert (board["ridge"] <= board["ridge_insample"] + 1e-12).all()
    # The data README reports median r ~0.56 for mid-level features of this network.
    s = res.scores
    med = s[(s.model == TRAINED) & (s.metric == "pearson_r_median") & (s.split == "loo")]["value"].max()
    assert 0.4 < med < 0.8


def test_repeat_averaged_v4_scans_and_answers_the_fraction_question(cowley, tmp_path):
    data, out, scan = cowley
    ds = load_dataset(data)
    avg = _rewrite(ds, str(tmp_path / "avg"),
                   responses=np.nanmean(ds.responses, axis=1, keepdims=True).astype(np.float32))
    res = scan(avg)
    s = res.scores
    assert s["ceiled_value"].isna().all() and set(s["ceiling_source"]) == {"none"}
    # the median neuron, layer chosen on one half and scored on the other
    med = heldout_layers(s, "ridge_gcv", "pearson_r_median").set_index("model")["value"]
    assert med[TRAINED] > med[RANDOM] > med[PIXELS], med
    nr = ResultStore(out).read_neuroid_scores(filters=[("scan_key", "==", s["scan_key"].iloc[0])])
    comp = trained_vs_random_neuroids(s, nr).iloc[0]
    assert comp["architecture"] == "timm:tf_efficientnet_lite0"
    assert comp["n_neuroids"] == ds.n_neuroids
    assert comp["fraction_trained_better"] > 0.7 and comp["p"] < 0.01


def test_rdm_only_folder_from_the_sessions_own_rdms(cowley, tmp_path):
    """Two pseudo-subjects' RDMs (half the neurons each) and nothing else: each layer's
    score equals scipy's correlation of its feature RDM with each published RDM."""
    data, out, scan = cowley
    ds = load_dataset(data)
    Y = ds.mean_responses()
    order = np.random.default_rng(0).permutation(ds.n_neuroids)
    groups = [order[: ds.n_neuroids // 2], order[ds.n_neuroids // 2:]]
    rdms = np.stack([1.0 - np.corrcoef(Y[:, g]) for g in groups])
    np.fill_diagonal(rdms[0], 0.0)
    np.fill_diagonal(rdms[1], 0.0)
    uri = _rewrite(ds, str(tmp_path / "rdms"), neuroids=None, responses=None, rdms=rdms,
                   rdm_table=pd.DataFrame({"rdm_id": ["a", "b"], "subject": ["a", "b"],
                                           "region": "V4", "measure": "1-pearson"}))
    res = scan(uri, models=["pixels", TRAINED])
    rows = res.scores[(res.scores.split == "loo") & (res.scores.metric == "rdms_pearson")]
    assert set(rows.model) == {PIXELS, TRAINED}
    iu = np.triu_indices(ds.n_stimuli, 1)
    cfg = ScanConfig(data=uri, out=out, input_size=112)
    rds = load_dataset(uri)
    for _, row in rows[rows.layer.isin(["pixels", "blocks.4.0", "classifier"])].iterrows():
        X = cached_features(ResultStore(out), rds, row["model"], row["layer"], cfg)
        feat = pdist(X.astype(np.float64), "correlation")
        want = np.mean([pearsonr(feat, r[iu])[0] for r in rdms])
        assert row["value"] == pytest.approx(want, abs=1e-9)
    ceil = pearsonr(rdms[0][iu], rdms[1][iu])[0]
    assert rows["ceiling"].iloc[0] == pytest.approx(ceil, abs=1e-9)
