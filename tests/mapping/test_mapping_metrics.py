"""Metrics, RSA, ceilings and statistics against scipy / sklearn / hand computations."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist, squareform
from sklearn.metrics import explained_variance_score

from cortexzoo.mapping import (aggregate, bootstrap_ci, ceiled, cka, compare_rdms,
                               explained_variance, friedman_test, inter_animal_ceiling,
                               paired_ttest, pearson_r, rdm, rdm_ceiling,
                               rdm_split_half_reliability, score_rdms, spearman_agreement,
                               split_half_reliability, two_sample_ttest)


def test_pearson_and_ev_match_scipy_sklearn():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(30, 4))
    yh = y + rng.normal(size=(30, 4))
    r = pearson_r(y, yh)
    for j in range(4):
        assert abs(r[j] - stats.pearsonr(y[:, j], yh[:, j]).statistic) < 1e-12
    np.testing.assert_allclose(explained_variance(y, yh),
                               explained_variance_score(y, yh, multioutput="raw_values"))
    assert isinstance(pearson_r(y[:, 0], yh[:, 0]), float)
    with pytest.raises(ValueError, match="shape"):
        pearson_r(y, yh[:, :2])


def test_aggregate_mean_median_per_region():
    vals = np.array([1.0, 2.0, 6.0, np.nan, 4.0])
    regions = np.array(["V1", "V1", "V1", "LM", "LM"])
    df = aggregate(vals, regions)
    assert df.loc["V1", "mean"] == 3.0 and df.loc["V1", "median"] == 2.0
    assert df.loc["LM", "mean"] == 4.0 and df.loc["LM", "n"] == 1 and df.loc["LM", "n_nan"] == 1


def test_rdm_and_compare_match_scipy():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 20))
    Yf = X @ rng.normal(size=(20, 15)) + rng.normal(size=(12, 15))
    D = rdm(X)
    np.testing.assert_allclose(D, squareform(pdist(X, metric="correlation")), atol=1e-12)
    d1, d2 = pdist(X, "correlation"), pdist(Yf, "correlation")
    assert abs(compare_rdms(D, rdm(Yf)) - stats.pearsonr(d1, d2).statistic) < 1e-12
    assert abs(compare_rdms(D, rdm(Yf), "spearman") - stats.spearmanr(d1, d2).statistic) < 1e-12
    many = np.stack([rdm(Yf), rdm(X)])
    np.testing.assert_allclose(score_rdms(D, many), [stats.pearsonr(d1, d2).statistic, 1.0])


def test_rdm_ceiling_leave_one_subject_out():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(10, 30))
    rdms = np.stack([rdm(base + rng.normal(size=base.shape) * 2) for _ in range(4)])
    c, per = rdm_ceiling(rdms, return_per_subject=True)
    for s in range(4):
        others = np.delete(rdms, s, axis=0).mean(0)
        iu = np.triu_indices(10, 1)
        assert abs(per[s] - np.corrcoef(rdms[s][iu], others[iu])[0, 1]) < 1e-12
    assert abs(c - per.mean()) < 1e-12


def test_cka_properties_and_formula():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(25, 6))
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert abs(cka(X, 3 * X @ Q + 1) - 1.0) < 1e-10   # invariant to rotation, scale, shift
    Y = rng.normal(size=(25, 4))
    H = np.eye(25) - 1 / 25
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    ref = np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L))   # HSIC form
    assert abs(cka(X, Y) - ref) < 1e-12


def test_split_half_two_reps_is_deterministic():
    rng = np.random.default_rng(4)
    R = rng.normal(size=(20, 2, 3))
    R[:, 1] += R[:, 0]
    rel = split_half_reliability(R, n_splits=5)
    for j in range(3):
        r = np.corrcoef(R[:, 0, j], R[:, 1, j])[0, 1]
        assert abs(rel[j] - 2 * r / (1 + r)) < 1e-12


def test_split_half_ragged_nan_hand_computation():
    # neuroid 0: stimulus 0 has 3 reps (one NaN) -> split is the 2 available ones;
    # stimulus 3 has only one rep -> left out of the correlation.
    rng = np.random.default_rng(5)
    R = rng.normal(size=(6, 3, 2))
    R[:, 2, :] = np.nan           # third rep missing everywhere...
    R[0, 2, 0] = 0.5              # ...except stimulus 0 of neuroid 0 (3 reps: odd, ragged)
    R[3, 1, 0] = np.nan           # stimulus 3 of neuroid 0: one rep left
    per_split = split_half_reliability(R, n_splits=40, seed=1, return_splits=True)[1]
    # neuroid 1: always the 2 reps -> deterministic
    r1 = np.corrcoef(R[:, 0, 1], R[:, 1, 1])[0, 1]
    np.testing.assert_allclose(per_split[:, 1], 2 * r1 / (1 + r1), atol=1e-12)
    # neuroid 0: a split is an order of the repetition indices; each stimulus's available
    # reps are taken in that order, the first k // 2 go to half A, the rest to half B.
    import itertools
    cands = []
    for perm in itertools.permutations(range(3)):
        a, b = [], []
        for s in range(6):
            avail = [i for i in perm if np.isfinite(R[s, i, 0])]
            if len(avail) < 2:
                continue
            h = len(avail) // 2
            a.append(np.mean([R[s, i, 0] for i in avail[:h]]))
            b.append(np.mean([R[s, i, 0] for i in avail[h:]]))
        r = np.corrcoef(a, b)[0, 1]
        cands.append(2 * r / (1 + r))
    for v in per_split[:, 0]:
        assert np.min(np.abs(np.array(cands) - v)) < 1e-12
    assert len({round(v, 10) for v in per_split[:, 0]}) > 1    # the split is random


def test_split_half_recovers_planted_reliability_and_errors():
    rng = np.random.default_rng(6)
    signal = rng.normal(size=(200, 1, 50))
    R = signal + rng.normal(size=(200, 10, 50))   # 10 reps, noise var 1: reliability of the
    rel = split_half_reliability(R, n_splits=20)   # mean is 1/(1 + 1/10) = 0.909
    assert abs(rel.mean() - 1 / 1.1) < 0.03
    bad = R.copy()
    bad[:, :, 7] = np.nan
    with pytest.raises(ValueError, match=r"\[7\]"):
        split_half_reliability(bad)
    with pytest.raises(ValueError, match="repetitions"):
        split_half_reliability(R[:, :1])


def test_rdm_split_half_two_reps():
    rng = np.random.default_rng(7)
    R = rng.normal(size=(8, 2, 30))
    R[:, 1] += R[:, 0]
    v = rdm_split_half_reliability(R, n_splits=3)
    r = np.corrcoef(pdist(R[:, 0], "correlation"), pdist(R[:, 1], "correlation"))[0, 1]
    assert abs(v - 2 * r / (1 + r)) < 1e-12


def test_ceiled():
    np.testing.assert_allclose(ceiled([0.4, 0.3, 0.2], [0.64, 0.0, -0.1], kind="r"),
                               [0.5, np.nan, np.nan])
    assert ceiled(0.3, 0.6, kind="ev") == pytest.approx(0.5)
    assert np.isnan(ceiled(0.3, np.nan, kind="ratio"))
    with pytest.raises(ValueError, match="kind"):
        ceiled(0.3, 0.5, kind="sqrt")


def test_inter_animal_ceiling_matches_manual_gcv():
    from sklearn.linear_model import LinearRegression, RidgeCV

    rng = np.random.default_rng(8)
    latent = rng.normal(size=(40, 3))
    Y = latent @ rng.normal(size=(3, 12)) + 0.5 * rng.normal(size=(40, 12))
    subjects = np.repeat(["m1", "m2", "m3"], 4)
    regions = np.tile(["V1", "V1", "LM", "LM"], 3)
    alphas = np.logspace(-1, 3, 5)
    summary, per = inter_animal_ceiling(Y, subjects, regions, alphas=alphas, n_boot=200)
    # neuroid 0 (m1, V1) from V1 neuroids of m2, m3, by sklearn's LOO ridge
    src = (regions == "V1") & (subjects != "m1")
    sk = RidgeCV(alphas=alphas, alpha_per_target=True, store_cv_results=True,
                 scoring="neg_mean_squared_error").fit(Y[:, src], Y[:, [0, 1]])
    loo = sk.cv_results_[:, 0, np.searchsorted(alphas, sk.alpha_[0])]
    assert abs(per.score[0] - np.corrcoef(Y[:, 0], loo)[0, 1]) < 1e-8
    assert summary.loc["V1", "n_subjects"] == 3 and summary.loc["V1", "n_neuroids"] == 6
    v1 = per.score[per.region == "V1"]
    assert abs(summary.loc["V1", "mean"] - v1.mean()) < 1e-12
    assert summary.loc["V1", "ci_low"] <= v1.mean() <= summary.loc["V1", "ci_high"]
    s2, _ = inter_animal_ceiling(Y, subjects, regions, regression=LinearRegression(),
                                 metric="ev", n_boot=50)
    assert np.isfinite(s2["mean"]).all()


def test_paired_ttest_and_hedges_g():
    rng = np.random.default_rng(9)
    a = rng.normal(0.3, 0.1, size=15)
    b = a - 0.05 + rng.normal(0, 0.05, size=15)
    res = paired_ttest(a, b)
    ref = stats.ttest_rel(a, b)
    assert res.t == pytest.approx(ref.statistic) and res.p == pytest.approx(ref.pvalue)
    d = a - b
    assert res.d_z == pytest.approx(d.mean() / d.std(ddof=1))
    # g_av by hand: mean diff / sqrt(mean of the two variances), times 1 - 3/(4*(2n) - 9)
    g = d.mean() / np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2) * (1 - 3 / (4 * 30 - 9))
    assert res.hedges_g == pytest.approx(g)
    assert res.t == pytest.approx(res.d_z * np.sqrt(15))
    t2 = two_sample_ttest(a, b + 0.1)
    assert t2.t == pytest.approx(stats.ttest_ind(a, b + 0.1).statistic)


def test_spearman_bootstrap_friedman():
    rng = np.random.default_rng(10)
    x = rng.normal(size=20)
    y = x + rng.normal(size=20)
    rho, p = spearman_agreement(x, y)
    ref = stats.spearmanr(x, y)
    assert rho == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    lo, hi = bootstrap_ci(x, n_boot=2000, seed=3)
    assert lo < x.mean() < hi
    assert (lo, hi) == bootstrap_ci(x, n_boot=2000, seed=3)           # seeded
    se = x.std(ddof=1) / np.sqrt(20)
    assert abs((hi - lo) - 2 * 1.96 * se) < 0.35 * (2 * 1.96 * se)      # ~normal interval
    lo_m, hi_m = bootstrap_ci(x, statistic=np.median, n_boot=300)
    assert lo_m <= np.median(x) <= hi_m
    data = rng.normal(size=(13, 4)) + np.arange(4)
    chi, pf = friedman_test(data)
    ref = stats.friedmanchisquare(*data.T)
    assert chi == pytest.approx(ref.statistic) and pf == pytest.approx(ref.pvalue)


@pytest.mark.parametrize("n, p, q", [(40, 30, 12), (120, 3, 200), (25, 100, 2)])
def test_rdm_pearson_from_factors_equals_the_dense_rdm_comparison(n, p, q):
    """The factor formula (no n x n matrix) equals scipy's correlation of the two RDMs'
    upper triangles, constant rows (NaN correlations) left out as the dense path does."""
    from scipy.spatial.distance import pdist
    from scipy.stats import pearsonr

    from cortexzoo.mapping import RDMFactor, rdm_pearson

    rng = np.random.default_rng(n + p + q)
    X = rng.normal(size=(n, p))
    Y = X[:, :1] * rng.normal(size=(1, q)) + rng.normal(size=(n, q))
    X[3] = 2.5  # a constant stimulus: its pairs are undefined
    keep = np.ones(n, bool)
    keep[3] = False
    want = pearsonr(pdist(X[keep], "correlation"), pdist(Y[keep], "correlation"))[0]
    assert rdm_pearson(X, Y) == pytest.approx(want, abs=1e-12)
    assert rdm_pearson(RDMFactor(X), RDMFactor(Y)) == pytest.approx(want, abs=1e-12)
