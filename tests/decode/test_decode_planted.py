"""Decoding a planted recording (tests/decode_planted.py) in one process: the decoder
orders populations by their share of domain-invariant units, the matched-count search
finds the planted count, the scaling table, the tests and the log law equal what is
computed here from the score files alone, and a run resumes unit by unit."""
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import RidgeClassifierCV
from sklearn.preprocessing import StandardScaler

from cortexzoo.decode import DecodeConfig, SplitConfig, decode_population, draw_splits, run_decode
from cortexzoo.mapping import matched_units, two_afc
from cortexzoo.store import ResultStore
from decode_planted import planted_recording

SPLITS = dict(n_splits=30, n_train=60, n_test_id=20, n_test_ood=30)
GRID = [5, 10, 20, 30, 40, 50, 60, 80, 120, 160, 240]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return planted_recording(tmp_path_factory.mktemp("planted") / "ds")


def _scores(out):
    return pd.read_parquet(os.path.join(out, "scores"))


def test_out_of_domain_accuracy_follows_the_share_of_invariant_units(recording, tmp_path):
    cfg = DecodeConfig(data=recording, out=str(tmp_path / "r"), train_domain="hvm", engine="local",
                       regions=["inv80", "inv50", "inv20"], reference="inv80", draws=2,
                       k_grid=[10, 50], splits=SPLITS, progress=False, plot=False)
    res = run_decode(cfg)
    full = _scores(cfg.out)
    full = full[full["k_units"] == full["population_size"]]
    ind = full[full["domain_role"] == "in_domain"].set_index("population")["value"]
    ood = full[full["domain_role"] == "out_of_domain"].groupby("population")["value"].mean()
    assert (ind > 0.95).all()                       # every population decodes its own domain
    assert ood["inv80"] > ood["inv50"] + 0.05 > ood["inv20"] + 0.1
    assert ood["inv20"] < 0.85 < ood["inv80"]
    # every row says what it is
    rows = _scores(cfg.out)
    assert set(rows["method"]) == {"decode_2afc"} and set(rows["metric"]) == {"acc_2afc"}
    assert set(rows["domain"]) == {"hvm", "d1", "d2", "d3", "d4"}
    assert (rows["split_count"] == 30).all() and set(rows["k_units"]) == {10, 50, 100}
    assert set(rows.loc[rows["k_units"] < 100, "n_draws"]) == {2}
    assert (rows.loc[rows["domain"] == "hvm", "n_stimuli"] == 20).all()
    assert (rows.loc[rows["domain"] != "hvm", "n_stimuli"] == 30).all()
    assert len(res.tests) == 4


def test_matched_count_scaling_tests_and_log_law(recording, tmp_path):
    out = str(tmp_path / "r")
    cfg = DecodeConfig(data=recording, out=out, train_domain="hvm", engine="local",
                       regions=["IT", "same", "weaker"], min_reliability=0.5, reliability_splits=10,
                       draws=4, k_grid=GRID, splits=SPLITS, progress=False)
    res = run_decode(cfg)
    rows = _scores(out)
    # the reliability filter keeps IT's 40 coding sites, not its 10 junk neuroids
    assert res.reference == "IT" and res.summary["populations"]["IT"] == 40
    ind = rows[rows["domain_role"] == "in_domain"]
    ref_acc = float(ind[(ind["population"] == "IT") & (ind["k_units"] == 40)]["value"].iloc[0])
    assert res.reference_accuracy == ref_acc
    sc = res.scaling.set_index("population")
    for pop in ("same", "weaker"):  # the search, redone here from the score files alone
        c = ind[ind["population"] == pop].sort_values("k_units")
        c = c[c["k_units"].isin(GRID + [600])]
        assert sc.loc[pop, "matched_k"] == pytest.approx(matched_units(c["k_units"], c["value"], ref_acc))
        assert sc.loc[pop, "units_per_site"] == pytest.approx(sc.loc[pop, "matched_k"] / 40)
    # units of the reference's own kind: about as many as its sites; half the signal power
    # per unit: more than twice as many
    assert 28 <= sc.loc["same", "matched_k"] <= 56
    assert sc.loc["weaker", "matched_k"] > 2 * sc.loc["same", "matched_k"]
    # the matched counts were decoded (on the same splits) and make the matched table
    m = res.matched
    for pop in ("same", "weaker"):
        k = int(sc.loc[pop, "k_used"])
        assert k == max(1, round(sc.loc[pop, "matched_k"]))
        assert set(m.loc[m["population"] == pop, "k_units"]) == {k}
        got = m[(m["population"] == pop) & (m["domain_role"] == "in_domain")]["value"].iloc[0]
        assert abs(got - ref_acc) < 0.05
    # t-tests and Friedman tests equal scipy's on the per-domain accuracies of the score files
    ood = rows[rows["domain_role"] == "out_of_domain"]

    def per_domain(pop, k):
        return ood[(ood["population"] == pop) & (ood["k_units"] == k)].set_index("domain")["value"].sort_index()

    it = per_domain("IT", 40)
    t = res.tests.set_index(["test", "population"])
    mats = {}
    for pop in ("same", "weaker"):
        mats[pop] = per_domain(pop, int(sc.loc[pop, "k_used"]))
        want = stats.ttest_ind(mats[pop].to_numpy(), it.to_numpy())
        assert t.loc[("ttest_two_sample", pop), "statistic"] == pytest.approx(want.statistic, rel=1e-10)
        assert t.loc[("ttest_two_sample", pop), "p"] == pytest.approx(want.pvalue, rel=1e-10)
    assert len(it) == 4
    # Fig. 3D of paper 001: domains are the treatments, the models' differences the blocks
    want_dom = stats.friedmanchisquare(*np.stack([mats["same"] - it, mats["weaker"] - it]).T)
    assert t.loc[("friedman_domains", "same,weaker"), "statistic"] == pytest.approx(want_dom.statistic)
    assert t.loc[("friedman_domains", "same,weaker"), "p"] == pytest.approx(want_dom.pvalue)
    want_pop = stats.friedmanchisquare(it, mats["same"], mats["weaker"])  # blocks: domains
    assert t.loc[("friedman_populations", "IT,same,weaker"), "statistic"] == pytest.approx(want_pop.statistic)
    assert t.loc[("friedman_populations", "IT,same,weaker"), "p"] == pytest.approx(want_pop.pvalue)
    # the log law of IT's mean out-of-domain accuracy over its own site counts
    it_curve = ood[ood["population"] == "IT"].groupby("k_units")["value"].mean()
    a, b = np.polyfit(np.log(it_curve.index.to_numpy(float)), it_curve.to_numpy(), 1)
    f = res.log_fits.set_index(["population", "accuracy"]).loc[("IT", "ood_mean")]
    assert f["a"] == pytest.approx(a, rel=1e-9) and f["b"] == pytest.approx(b, rel=1e-9)
    ex = res.extrapolation.set_index("population").loc["weaker"]
    assert ex["site_equivalents"] == pytest.approx(600 / sc.loc["weaker", "units_per_site"])
    assert ex["reference_ood_extrapolated"] == pytest.approx(a * np.log(ex["site_equivalents"]) + b)
    # tables and plots are in the store
    base = res.summary["tables"]
    assert base.startswith(os.path.join(out, "decode", res.decode_key))
    for name in ("curves", "scaling", "matched", "tests", "logfit", "extrapolation"):
        assert os.path.getsize(os.path.join(base, f"{name}.csv")) > 0
    for name in ("domains", "units"):
        with open(os.path.join(out, "plots", f"decode-{name}.png"), "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"

    # resumable: a rerun decodes nothing; a lost unit is decoded again, to the same numbers
    again = run_decode(cfg)
    assert again.written_units == 0 and again.skipped_units == res.written_units
    store = ResultStore(out)
    # the run compacted its units into part files; forgetting one unit rewrites its part
    assert all(f.startswith("part-") for f in os.listdir(os.path.join(out, "scores")))
    every = store.read_scores()
    lost = sorted(every["unit_key"].unique())[3]
    before = every[every["unit_key"] == lost].reset_index(drop=True)
    assert store.forget_units([lost]) == 1 and lost not in store.completed_units()
    assert len(store.read_scores()) == len(every) - len(before)
    third = run_decode(cfg)
    assert third.written_units == 1
    now = store.read_scores()
    after = now[now["unit_key"] == lost].reset_index(drop=True)
    np.testing.assert_array_equal(before["value"].to_numpy(), after["value"].to_numpy())
    assert len(now) == len(every)


def test_every_split_and_draw_equals_scikit_learn_on_the_same_splits(recording):
    """The batched decoder against a plain loop: StandardScaler + RidgeClassifierCV on the
    very units and images of every (split, draw), 2AFC per image, mean per domain."""
    from cortexzoo.data import load_dataset

    ds = load_dataset(recording)
    splits = draw_splits(ds.stimuli, SplitConfig(n_splits=6, n_train=60, n_test_id=20, n_test_ood=30),
                         "hvm", ["d1", "d2", "d3", "d4"])
    X = ds.mean_responses()[:, ds.region_index("same")]
    alphas = np.unique(np.r_[np.logspace(-2, 6, 17), 1.0])
    for k in (3, 58, 59, 150):  # primal and dual forms
        res = decode_population(X, splits, k, draws=2, seed=1, population_key="p", return_units=True)
        for s in range(6):
            for d in range(2):
                cols = res["units"][s, d]
                tr, te = splits.train[s], splits.test[s]
                sc = StandardScaler().fit(X[np.ix_(tr, cols)])
                clf = RidgeClassifierCV(alphas=alphas).fit(sc.transform(X[np.ix_(tr, cols)]),
                                                           splits.labels[tr])
                assert res["alpha"][s, d] == clf.alpha_
                dec = clf.decision_function(sc.transform(X[np.ix_(te, cols)]))
                acc = two_afc(dec, splits.labels[te])
                for j in range(len(splits.domains)):
                    want = acc[splits.test_domain == j].mean()
                    assert res["acc"][s, d, j] == pytest.approx(want, abs=1e-12)
