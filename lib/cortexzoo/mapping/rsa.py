"""Representational similarity analysis (SCIENCE.md section 4) and linear CKA."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["rdm", "compare_rdms", "score_rdms", "rdm_ceiling", "cka", "upper_triangle",
           "rdm_pearson", "RDMFactor", "RSAInputError"]


class RSAInputError(ValueError):
    """Bad input to an RSA function."""


def rdm(X: Any) -> np.ndarray:
    """Correlation-distance RDM: ``1 - Pearson r`` between the response vectors of every
    pair of stimuli. X is [n_stimuli, n_features]; returns [n_stimuli, n_stimuli].

    A stimulus whose response vector is constant has undefined correlations (NaN).
    """
    f = RDMFactor(X)
    D = 1.0 - f.Z @ f.Z.T
    D[~f.valid, :] = np.nan
    D[:, ~f.valid] = np.nan
    np.fill_diagonal(D, 0.0)
    return D


def upper_triangle(m: Any) -> np.ndarray:
    """Entries above the diagonal (k=1) of a square matrix, row-major."""
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise RSAInputError(f"an RDM must be square, got shape {m.shape}")
    return m[np.triu_indices(m.shape[0], k=1)]


def _corr(a: np.ndarray, b: np.ndarray, method: str) -> float:
    if method == "spearman":
        from scipy.stats import rankdata

        a, b = rankdata(a), rankdata(b)
    elif method != "pearson":
        raise RSAInputError(f"method must be 'pearson' or 'spearman', got {method!r}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    den = np.sqrt((a ** 2).sum() * (b ** 2).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def compare_rdms(a: Any, b: Any, method: str = "pearson") -> float:
    """Correlation (Pearson or Spearman) between the upper triangles (k=1) of two RDMs."""
    ua, ub = upper_triangle(a), upper_triangle(b)
    if ua.shape != ub.shape:
        raise RSAInputError(f"RDMs differ in size: {np.shape(a)} vs {np.shape(b)}")
    if method == "spearman" and not (np.isfinite(ua).all() and np.isfinite(ub).all()):
        ok = np.isfinite(ua) & np.isfinite(ub)
        ua, ub = ua[ok], ub[ok]
    return _corr(ua, ub, method)


def score_rdms(model_rdm: Any, rdms: Any, method: str = "pearson") -> np.ndarray:
    """Similarity of a model RDM to each of several (e.g. per-subject, published) RDMs.

    ``rdms`` is [n_rdms, n, n] (or one [n, n]); returns [n_rdms] correlations.
    The usual summary is their mean; ceil it with :func:`rdm_ceiling`.
    """
    rdms = np.asarray(rdms, dtype=np.float64)
    if rdms.ndim == 2:
        rdms = rdms[None]
    m = np.asarray(model_rdm)
    if rdms.ndim != 3 or rdms.shape[1:] != m.shape:
        raise RSAInputError(f"rdms must be [n_rdms, n, n] matching the model RDM {m.shape}, "
                            f"got {rdms.shape}")
    return np.array([compare_rdms(m, r, method) for r in rdms])


def rdm_ceiling(rdms: Any, method: str = "pearson",
                return_per_subject: bool = False) -> float | tuple[float, np.ndarray]:
    """Leave-one-subject-out ceiling of several subjects' RDMs of one region.

    For each subject s, correlate its RDM with the mean RDM of the other subjects;
    the ceiling is the mean over subjects of these correlations (a lower bound of the
    noise ceiling in the sense of Nili et al. 2014). It is on the same scale as
    :func:`score_rdms` of a model, so ``mean(score_rdms(...)) / rdm_ceiling(...)`` is a
    ceiled RSA score (kind="ratio" in :func:`cortexzoo.mapping.ceilings.ceiled`).
    """
    rdms = np.asarray(rdms, dtype=np.float64)
    if rdms.ndim != 3 or rdms.shape[0] < 2 or rdms.shape[1] != rdms.shape[2]:
        raise RSAInputError(f"rdms must be [n_subjects >= 2, n, n], got shape {rdms.shape}")
    total = rdms.sum(0)
    k = rdms.shape[0]
    per = np.array([compare_rdms(rdms[s], (total - rdms[s]) / (k - 1), method)
                    for s in range(k)])
    ceiling = float(np.nanmean(per))
    return (ceiling, per) if return_per_subject else ceiling


def cka(X: Any, Y: Any) -> float:
    """Linear centered kernel alignment (Kornblith et al. 2019) between two
    representations of the same stimuli, X [n, p] and Y [n, q]."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise RSAInputError(f"X and Y must be 2-D with the same number of stimuli, got "
                            f"{X.shape} and {Y.shape}")
    Xc = X - X.mean(0)
    Yc = Y - Y.mean(0)
    # Frobenius norms of cross-covariances; avoids n x n Gram matrices when p, q < n
    xy = np.linalg.norm(Yc.T @ Xc) ** 2
    xx = np.linalg.norm(Xc.T @ Xc)
    yy = np.linalg.norm(Yc.T @ Yc)
    den = xx * yy
    return float(xy / den) if den > 0 else float("nan")


class RDMFactor:
    """The correlation-distance RDM of ``X`` [n, p] kept as its factor: the rows of ``X``
    centered and scaled to unit norm (``Z``), so that ``RDM = 1 - Z Z^T``, plus the sums
    the Pearson comparison of two RDMs needs. O(n p) memory where the RDM is O(n^2):
    10,000 stimuli make an 800 MB RDM and a 80 MB factor at p = 1000.

    Rows with no variance (their correlations are undefined, NaN in :func:`rdm`) are
    marked in ``valid``; comparisons drop every pair that involves one, as
    :func:`compare_rdms` drops NaN entries."""

    def __init__(self, X: Any):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 2:
            raise RSAInputError(f"X must be [n_stimuli >= 2, n_features >= 2], got shape {X.shape}")
        if not np.isfinite(X).all():
            rows = np.where(~np.isfinite(X).all(1))[0]
            raise RSAInputError(f"X has NaN/inf in stimuli (rows) {rows[:10].tolist()}")
        Xc = X - X.mean(1, keepdims=True)
        norms = np.sqrt((Xc ** 2).sum(1))
        self.valid = norms > 0
        self.Z = np.zeros_like(Xc)
        self.Z[self.valid] = Xc[self.valid] / norms[self.valid, None]
        self.n = X.shape[0]

    def restricted(self, keep: np.ndarray) -> np.ndarray:
        return self.Z[keep]


def _gram_sq(Z: np.ndarray) -> float:
    """||Z Z^T||_F^2 through the smaller of the two Gram matrices."""
    G = Z.T @ Z if Z.shape[1] <= Z.shape[0] else Z @ Z.T
    return float((G * G).sum())


def rdm_pearson(a: "RDMFactor | Any", b: "RDMFactor | Any") -> float:
    """Pearson r between the upper triangles of the correlation-distance RDMs of ``a``
    and ``b`` (arrays [n, p] and [n, q], or :class:`RDMFactor`), without forming either
    RDM: with A = Z_a Z_a^T (so RDM = 1 - A) and over the N = n(n-1)/2 pairs i < j,
    sum A_ij = (|sum_i z_i|^2 - n) / 2, sum A_ij^2 = (|Z_a^T Z_a|_F^2 - n) / 2 and
    sum A_ij B_ij = (|Z_a^T Z_b|_F^2 - n) / 2 (the diagonals are 1), which give the
    correlation exactly. Equal to ``compare_rdms(rdm(a), rdm(b), "pearson")`` (tested);
    O(n p q) time and O(n (p + q)) memory instead of O(n^2)."""
    fa = a if isinstance(a, RDMFactor) else RDMFactor(a)
    fb = b if isinstance(b, RDMFactor) else RDMFactor(b)
    if fa.n != fb.n:
        raise RSAInputError(f"the RDMs differ in size: {fa.n} vs {fb.n} stimuli")
    keep = fa.valid & fb.valid
    Za, Zb = fa.restricted(keep), fb.restricted(keep)
    n = Za.shape[0]
    if n < 3:
        return float("nan")
    N = n * (n - 1) / 2.0
    sa, sb = Za.sum(0), Zb.sum(0)
    SA, SB = (sa @ sa - n) / 2.0, (sb @ sb - n) / 2.0
    SAA, SBB = (_gram_sq(Za) - n) / 2.0, (_gram_sq(Zb) - n) / 2.0
    C = Za.T @ Zb
    SAB = (float((C * C).sum()) - n) / 2.0
    va, vb = SAA - SA * SA / N, SBB - SB * SB / N
    den = np.sqrt(va * vb) if va > 0 and vb > 0 else 0.0
    return float((SAB - SA * SB / N) / den) if den > 0 else float("nan")
