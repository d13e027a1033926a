"""Statistics across models (SCIENCE.md sections 4 and 6).

Effect size of the paired test: ``hedges_g`` is Hedges' g_av (Lakens 2013; as
pingouin's ``compute_effsize(paired=True, eftype="hedges")``): the mean paired
difference over the average SD ``sqrt((var_a + var_b) / 2)``, times the small-sample
correction ``1 - 3 / (4 (n_a + n_b) - 9)``. Cohen's d_z (mean difference over SD of the
differences, which maps directly onto the paired t: ``t = d_z sqrt(n)``) is returned too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["paired_ttest", "two_sample_ttest", "spearman_agreement", "bootstrap_ci",
           "friedman_test", "hedges_correction", "PairedTTest", "TwoSampleTTest", "StatsInputError"]


class StatsInputError(ValueError):
    """Bad input to a statistics function."""


def hedges_correction(n_a: int, n_b: int) -> float:
    """Small-sample bias correction J of Hedges' g: ``1 - 3 / (4 (n_a + n_b) - 9)``."""
    return 1.0 - 3.0 / (4.0 * (n_a + n_b) - 9.0)


@dataclass
class PairedTTest:
    t: float
    p: float
    df: int
    n: int
    mean_diff: float
    hedges_g: float     # g_av: mean diff / sqrt((var_a + var_b)/2), bias-corrected
    d_z: float          # mean diff / SD(diff)


@dataclass
class TwoSampleTTest:
    t: float
    p: float
    df: float
    mean_diff: float
    hedges_g: float     # pooled-SD standardized difference, bias-corrected


def _vec(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        raise StatsInputError(f"{name} is empty")
    return x


def paired_ttest(a: Any, b: Any, alternative: str = "two-sided") -> PairedTTest:
    """Paired t-test of a vs b (e.g. trained vs random scores of the same architectures).

    Pairs with a NaN on either side are dropped. Uses ``scipy.stats.ttest_rel``.
    """
    from scipy import stats

    a, b = _vec(a, "a"), _vec(b, "b")
    if a.shape != b.shape:
        raise StatsInputError(f"paired samples differ in length: {a.size} vs {b.size}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = a.size
    if n < 2:
        raise StatsInputError(f"need at least 2 complete pairs, got {n}")
    res = stats.ttest_rel(a, b, alternative=alternative)
    d = a - b
    sd_av = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2.0)
    g = d.mean() / sd_av * hedges_correction(n, n) if sd_av > 0 else float("nan")
    sd_d = d.std(ddof=1)
    d_z = d.mean() / sd_d if sd_d > 0 else float("nan")
    return PairedTTest(float(res.statistic), float(res.pvalue), n - 1, n, float(d.mean()),
                       float(g), float(d_z))


def two_sample_ttest(a: Any, b: Any, equal_var: bool = True,
                     alternative: str = "two-sided") -> TwoSampleTTest:
    """Independent two-sample t-test (Student, or Welch with equal_var=False) with Hedges' g
    (pooled SD, bias-corrected). NaNs are dropped."""
    from scipy import stats

    a, b = _vec(a, "a"), _vec(b, "b")
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        raise StatsInputError(f"need at least 2 values per sample, got {a.size} and {b.size}")
    res = stats.ttest_ind(a, b, equal_var=equal_var, alternative=alternative)
    na, nb = a.size, b.size
    sp = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    g = (a.mean() - b.mean()) / sp * hedges_correction(na, nb) if sp > 0 else float("nan")
    return TwoSampleTTest(float(res.statistic), float(res.pvalue), float(res.df),
                          float(a.mean() - b.mean()), float(g))


def spearman_agreement(x: Any, y: Any) -> tuple[float, float]:
    """Spearman rank correlation (rho, p) between two metrics over the same models
    (e.g. SRP-Ridge Max vs RSA Max); pairs with a NaN are dropped."""
    from scipy import stats

    x, y = _vec(x, "x"), _vec(y, "y")
    if x.shape != y.shape:
        raise StatsInputError(f"x and y differ in length: {x.size} vs {y.size}")
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        raise StatsInputError(f"need at least 3 complete pairs, got {int(ok.sum())}")
    res = stats.spearmanr(x[ok], y[ok])
    return float(res.statistic), float(res.pvalue)


def bootstrap_ci(values: Any, statistic: Callable[[np.ndarray], float] = np.mean,
                 n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over resampled values (seeded).

    NaNs are dropped first. Returns (low, high).
    """
    v = _vec(values, "values")
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if not 0 < ci < 1:
        raise StatsInputError(f"ci must be in (0, 1), got {ci}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(int(n_boot), v.size))
    if statistic is np.mean:
        boots = v[idx].mean(1)   # vectorized common case
    else:
        boots = np.array([statistic(v[i]) for i in idx])
    lo, hi = np.percentile(boots, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    return float(lo), float(hi)


def friedman_test(data: Any) -> tuple[float, float]:
    """Friedman test over treatments (columns) with blocks as rows, e.g. accuracy of
    several models (columns) across domains (rows). Returns (chi-square, p)."""
    from scipy import stats

    d = np.asarray(data, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] < 3 or d.shape[0] < 2:
        raise StatsInputError(f"data must be [n_blocks >= 2, n_treatments >= 3], got {d.shape}")
    res = stats.friedmanchisquare(*d.T)
    return float(res.statistic), float(res.pvalue)
