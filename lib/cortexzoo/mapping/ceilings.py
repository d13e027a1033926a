"""Reliability and ceilings (SCIENCE.md section 2).

* :func:`split_half_reliability` - per-neuroid Spearman-Brown corrected split-half r.
* :func:`rdm_split_half_reliability` - the same for the population RDM.
* :func:`inter_animal_ceiling` - predict each animal's neuroids from the other animals'
  neuroids of the same region with the model regression; per-region mean and 95%
  bootstrap interval over neuroids.
* :func:`ceiled` - raw score / ceiling (r / sqrt(reliability), EV / reliability).

Splitting ragged repetitions: every split draws one random order of the repetition
indices, shared by all stimuli and neuroids (as Brain-Score splits its repetition
dimension; with exchangeable repetitions this is a random split, and population
quantities such as RDMs use the same split). For each stimulus and neuroid, its
available (non-NaN) repetitions are taken in that order: the first ``k // 2`` form
half A and the other ``k - k // 2`` half B (``k`` = number available; the odd one goes
to B). With two repetitions the split is therefore deterministic up to swapping the
halves. Stimuli with fewer than two available repetitions for a neuroid are left out
of that neuroid's correlation.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .metrics import masked_pearson
from .rsa import compare_rdms, rdm, rdm_pearson
from .stats import bootstrap_ci

__all__ = ["split_half_reliability", "rdm_split_half_reliability", "inter_animal_ceiling",
           "ceiled", "population_ceilings", "spearman_brown", "CeilingInputError"]


class CeilingInputError(ValueError):
    """Bad input to a ceiling function."""


def spearman_brown(r: Any) -> Any:
    """``2 r / (1 + r)``; NaN where r = -1."""
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 2.0 * r / (1.0 + r)
    return np.where(np.isfinite(out), out, np.nan)


def _check_responses(responses: Any) -> np.ndarray:
    R = np.asarray(responses, dtype=np.float64)
    if R.ndim != 3:
        raise CeilingInputError(f"responses must be [n_stimuli, n_reps, n_neuroids], got {R.shape}")
    if R.shape[1] < 2:
        raise CeilingInputError(f"need at least 2 repetitions to split, got {R.shape[1]}")
    allnan = np.isnan(R).all(axis=(0, 1))
    if allnan.any():
        raise CeilingInputError(f"all-NaN neuroids (indices): {np.where(allnan)[0][:10].tolist()}")
    return R


def _halves(R: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means of the two halves [S, N] for one split given random keys [reps]."""
    S, K, N = R.shape
    keys = np.broadcast_to(np.asarray(keys)[None, :], (S, K))
    nan = np.isnan(R)
    if not nan.any():
        order = np.argsort(keys, axis=1)
        h = K // 2
        rows = np.arange(S)[:, None]
        a = R[rows, order[:, :h]].mean(1)
        b = R[rows, order[:, h:]].mean(1)
        return a, b
    k = (~nan).sum(1)                                             # [S, N]
    kk = np.where(nan, np.inf, keys[:, :, None])                  # missing reps sort last
    rank = np.argsort(np.argsort(kk, axis=1, kind="stable"), axis=1, kind="stable")
    h = (k // 2)[:, None, :]
    in_a = rank < h
    in_b = (rank >= h) & (rank < k[:, None, :])
    Rz = np.where(nan, 0.0, R)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (Rz * in_a).sum(1) / in_a.sum(1)
        b = (Rz * in_b).sum(1) / in_b.sum(1)
    bad = k < 2
    a[bad] = np.nan
    b[bad] = np.nan
    return a, b


def split_half_reliability(responses: Any, n_splits: int = 100, seed: int = 0,
                           return_splits: bool = False,
                           neuroid_chunk: int = 512) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Per-neuroid split-half reliability, Spearman-Brown corrected, mean over random splits.

    Parameters
    ----------
    responses : [n_stimuli, n_reps, n_neuroids], NaN for missing repetitions (ragged allowed).
    n_splits : number of random splits (SCIENCE.md default 100).
    seed : seed of the splits.
    return_splits : also return the per-split corrected values [n_splits, n_neuroids].

    Returns
    -------
    [n_neuroids] mean over splits of ``2r / (1 + r)``, r = Pearson across stimuli between
    the two half-means (NaN-skipping over splits).
    """
    R = _check_responses(responses)
    S, K, N = R.shape
    rng = np.random.default_rng(seed)
    keys = rng.random((int(n_splits), K))
    per = np.empty((int(n_splits), N))
    for j0 in range(0, N, neuroid_chunk):
        Rc = R[:, :, j0:j0 + neuroid_chunk]
        for s in range(int(n_splits)):
            a, b = _halves(Rc, keys[s])
            per[s, j0:j0 + Rc.shape[2]] = spearman_brown(masked_pearson(a, b, min_count=3))
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(per, axis=0)
    return (mean, per) if return_splits else mean


def rdm_split_half_reliability(responses: Any, n_splits: int = 100, seed: int = 0,
                               method: str = "pearson",
                               return_splits: bool = False) -> float | tuple[float, np.ndarray]:
    """Split-half reliability of the population RDM, Spearman-Brown corrected.

    For each split, an RDM (:func:`cortexzoo.mapping.rsa.rdm`) is computed from each
    half's mean responses [n_stimuli, n_neuroids] and the two upper triangles are
    correlated (``method``); neuroids with a missing half-mean for some stimulus in
    that split are left out of both RDMs. Mean over splits of ``2r / (1 + r)``.
    """
    R = _check_responses(responses)
    rng = np.random.default_rng(seed)
    keys = rng.random((int(n_splits), R.shape[1]))
    vals = np.empty(int(n_splits))
    for s in range(int(n_splits)):
        a, b = _halves(R, keys[s])
        ok = np.isfinite(a).all(0) & np.isfinite(b).all(0)
        if ok.sum() < 2:
            raise CeilingInputError("fewer than 2 neuroids have both halves for every stimulus")
        if method == "pearson":  # exact, without forming the two n x n RDMs
            vals[s] = spearman_brown(rdm_pearson(a[:, ok], b[:, ok]))
        else:
            vals[s] = spearman_brown(compare_rdms(rdm(a[:, ok]), rdm(b[:, ok]), method))
    mean = float(np.nanmean(vals))
    return (mean, vals) if return_splits else mean


def ceiled(score: Any, ceiling: Any, kind: str = "r") -> Any:
    """Ceiled score (SCIENCE.md section 2), NaN where the ceiling is <= 0 or not finite.

    kind="r": ``r / sqrt(reliability)`` (a correlation against a split-half reliability);
    kind="ev": ``EV / reliability``; kind="ratio": ``score / ceiling`` (e.g. against an
    inter-animal score or an RDM ceiling on the score's own scale).
    """
    s = np.asarray(score, dtype=np.float64)
    c = np.asarray(ceiling, dtype=np.float64)
    good = np.isfinite(c) & (c > 0)
    safe = np.where(good, c, 1.0)
    if kind == "r":
        out = s / np.sqrt(safe)
    elif kind in ("ev", "ratio"):
        out = s / safe
    else:
        raise CeilingInputError(f"kind must be 'r', 'ev' or 'ratio', got {kind!r}")
    out = np.where(good, out, np.nan)
    return float(out) if out.ndim == 0 else out


def population_ceilings(reliability: Any) -> dict[str, float]:
    """The ceilings of a population's aggregated scores from its neuroids' split-half
    reliabilities (SCIENCE.md section 2): ``r`` = mean of sqrt(reliability) (for the
    mean Pearson r), ``ev`` = mean reliability (for the mean EV), ``r_median`` =
    sqrt(median reliability), ``ev_median`` = median reliability.

    Negative reliabilities (no reliable signal) count as 0 and NaN ones are skipped;
    every ceiling is NaN when no reliability is finite. A ceiling of 0 gives NaN ceiled
    values through :func:`ceiled`."""
    rel = np.asarray(reliability, dtype=np.float64).ravel()
    rel = np.clip(rel[np.isfinite(rel)], 0.0, None)
    if rel.size == 0:
        return {"r": float("nan"), "ev": float("nan"), "r_median": float("nan"),
                "ev_median": float("nan")}
    med = float(np.median(rel))
    return {"r": float(np.mean(np.sqrt(rel))), "ev": float(np.mean(rel)),
            "r_median": float(np.sqrt(med)), "ev_median": med}


def _loo_scores(X: np.ndarray, T: np.ndarray, regression: Any, metric: str, alphas: Any,
                seed: int) -> np.ndarray:
    from .metrics import explained_variance, pearson_r

    if isinstance(regression, str):
        if regression != "gcv":
            raise CeilingInputError(f"regression must be 'gcv', an estimator or a callable, "
                                    f"got {regression!r}")
        from .estimators import GCVSolver

        res = GCVSolver(X, alphas=alphas).loo(T, return_predictions=False)
        return res.pearson if metric == "pearson" else res.ev
    if hasattr(regression, "fit") and hasattr(regression, "predict"):
        from sklearn.base import clone
        from sklearn.model_selection import KFold, cross_val_predict

        pred = cross_val_predict(clone(regression), X, T,
                                 cv=KFold(5, shuffle=True, random_state=seed))
    elif callable(regression):
        pred = np.asarray(regression(X, T))
    else:
        raise CeilingInputError(f"regression must be 'gcv', an estimator or a callable, "
                                f"got {type(regression).__name__}")
    pred = pred.reshape(T.shape)
    return pearson_r(T, pred) if metric == "pearson" else explained_variance(T, pred)


def inter_animal_ceiling(Y: Any, subjects: Any, regions: Any, regression: Any = "gcv",
                         metric: str = "pearson", alphas: Any = None,
                         transform: Callable[[np.ndarray], np.ndarray] | None = None,
                         n_boot: int = 1000, ci: float = 0.95, seed: int = 0):
    """Inter-animal ("intermouse") ceiling: each animal's neuroids predicted from the
    neuroids of the same region in all other animals, with the model regression.

    Parameters
    ----------
    Y : [n_stimuli, n_neuroids] mean responses.
    subjects, regions : [n_neuroids] labels.
    regression : "gcv" (exact LOO ridge over ``alphas``, the default model regression),
        a scikit-learn estimator (5-fold ``cross_val_predict``, seeded), or a callable
        ``f(X, T) -> out-of-sample predictions of T``.
    metric : "pearson" or "ev".
    transform : optional reduction applied to the predictor neuroids (e.g. the same
        sparse random projection as for models).

    Returns
    -------
    (summary, per_neuroid) pandas DataFrames: summary per region with ``mean``,
    ``median``, ``ci_low``, ``ci_high`` (percentile bootstrap over neuroids),
    ``n_neuroids``, ``n_subjects``; per_neuroid with ``neuroid``, ``subject``,
    ``region``, ``score``. Regions recorded in a single subject get NaN.
    """
    import pandas as pd

    Y = np.asarray(Y, dtype=np.float64)
    subjects = np.asarray(subjects)
    regions = np.asarray(regions)
    if Y.ndim != 2:
        raise CeilingInputError(f"Y must be [n_stimuli, n_neuroids], got {Y.shape}")
    if subjects.shape != (Y.shape[1],) or regions.shape != (Y.shape[1],):
        raise CeilingInputError(f"subjects {subjects.shape} and regions {regions.shape} must "
                                f"both have one entry per neuroid ({Y.shape[1]})")
    if metric not in ("pearson", "ev"):
        raise CeilingInputError(f"metric must be 'pearson' or 'ev', got {metric!r}")
    bad = np.where(~np.isfinite(Y).all(0))[0]
    if bad.size:
        raise CeilingInputError(f"Y has NaN/inf in neuroids {bad[:10].tolist()}")
    scores = np.full(Y.shape[1], np.nan)
    rows = []
    for reg in np.unique(regions):
        in_reg = regions == reg
        subs = np.unique(subjects[in_reg])
        if subs.size >= 2:
            for s in subs:
                tgt = in_reg & (subjects == s)
                src = in_reg & (subjects != s)
                X = Y[:, src]
                if transform is not None:
                    X = np.asarray(transform(X))
                scores[tgt] = _loo_scores(X, Y[:, tgt], regression, metric, alphas, seed)
        v = scores[in_reg]
        lo, hi = bootstrap_ci(v, n_boot=n_boot, ci=ci, seed=seed)
        fin = v[np.isfinite(v)]
        rows.append({"region": reg, "mean": fin.mean() if fin.size else np.nan,
                     "median": np.median(fin) if fin.size else np.nan,
                     "ci_low": lo, "ci_high": hi, "n_neuroids": int(in_reg.sum()),
                     "n_subjects": int(subs.size)})
    summary = pd.DataFrame(rows).set_index("region")
    per = pd.DataFrame({"neuroid": np.arange(Y.shape[1]), "subject": subjects,
                        "region": regions, "score": scores})
    return summary, per
