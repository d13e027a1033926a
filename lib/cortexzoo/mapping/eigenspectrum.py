"""Eigenspectra of population activity and their power-law exponent (paper 004 A.4).

* :func:`eigenspectrum`: standardize each feature dimension across samples (constant
  dimensions carry no variance and are dropped), PCA, and keep the eigenvalues of the
  first ``min(n_components, d, n - 1)`` components, largest first. The eigenvalues are
  those of the correlation matrix, so they sum to at most ``d``.
* :func:`powerlaw_fit` / :func:`powerlaw_alpha`: least squares of ``log lambda_n`` on
  ``log n`` over the 1-based ranks ``n`` in ``[ranks[0], ranks[1]]`` (inclusive, as far
  as the spectrum reaches; non-positive eigenvalues are left out); ``alpha`` is minus
  the slope, so ``lambda_n ~ n^-alpha`` (mouse V1 responses to natural images: about 1,
  Stringer et al. 2019).
* :func:`cvpca`: cross-validated PCA of two repeats of the same stimuli (Stringer et
  al. 2019): the principal axes of one repeat, the covariance between the two repeats'
  projections on them. Noise independent between repeats averages out, so the result
  estimates the stimulus-related variance per dimension without the noise floor a
  single repeat's PCA has. The repeats are swapped for a random half of the stimuli
  ``n_shuffles`` times and the estimates averaged, as in their code.

numpy only; nothing here knows models, torch or Ray.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["eigenspectrum", "powerlaw_fit", "powerlaw_alpha", "PowerLawFit", "cvpca",
           "EigenspectrumInputError"]


class EigenspectrumInputError(ValueError):
    """Bad input to an eigenspectrum function (the message says which argument)."""


def _matrix(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] < 1:
        raise EigenspectrumInputError(f"{name} must be [samples >= 2, dims >= 1], got "
                                      f"shape {list(a.shape)}")
    if not np.isfinite(a).all():
        raise EigenspectrumInputError(f"{name} holds NaN or infinite values")
    return a


def eigenspectrum(features: Any, n_components: int = 256) -> np.ndarray:
    """Eigenvalues (descending) of the PCA of standardized ``features`` [n, d].

    At most ``min(n_components, d', n - 1)`` values, where ``d'`` counts the
    dimensions that vary across samples (the others are dropped before
    standardizing). Empty when nothing varies.
    """
    X = _matrix(features, "features")
    if n_components < 1:
        raise EigenspectrumInputError(f"n_components must be >= 1, got {n_components}")
    n = X.shape[0]
    sd = X.std(axis=0, ddof=1)
    keep = sd > 1e-12 * max(1.0, float(np.abs(X).max()))
    if not keep.any():
        return np.zeros(0)
    Z = (X[:, keep] - X[:, keep].mean(axis=0)) / sd[keep]
    k = min(int(n_components), Z.shape[1], n - 1)
    if Z.shape[1] <= n:
        lam = np.linalg.eigvalsh(Z.T @ Z / (n - 1))[::-1]
    else:
        lam = np.linalg.svd(Z, compute_uv=False) ** 2 / (n - 1)
    return np.clip(lam[:k], 0.0, None)


@dataclass(frozen=True)
class PowerLawFit:
    """``log lambda_n = -alpha log n + intercept`` over ``n_used`` ranks ``[lo, hi]``."""

    alpha: float
    intercept: float
    lo: int
    hi: int
    n_used: int

    def line(self, ranks: Any) -> np.ndarray:
        """The fitted eigenvalues at ``ranks`` (for plotting)."""
        r = np.asarray(ranks, dtype=np.float64)
        return np.exp(self.intercept) * r ** (-self.alpha)


def powerlaw_fit(eigenvalues: Any, ranks: tuple[int, int] = (20, 200)) -> PowerLawFit:
    """The least-squares power law over the 1-based ``ranks`` window (inclusive).

    NaN ``alpha`` when fewer than 2 positive eigenvalues fall in the window (e.g. a
    spectrum shorter than ``ranks[0]``).
    """
    lam = np.asarray(eigenvalues, dtype=np.float64).ravel()
    lo, hi = int(ranks[0]), int(ranks[1])
    if lo < 1 or hi < lo:
        raise EigenspectrumInputError(f"ranks must satisfy 1 <= lo <= hi, got {ranks}")
    r = np.arange(1, lam.size + 1, dtype=np.float64)
    sel = (r >= lo) & (r <= hi) & np.isfinite(lam) & (lam > 0)
    n_used = int(sel.sum())
    if n_used < 2:
        return PowerLawFit(float("nan"), float("nan"), lo, hi, n_used)
    slope, intercept = np.polyfit(np.log(r[sel]), np.log(lam[sel]), 1)
    return PowerLawFit(float(-slope), float(intercept), lo, hi, n_used)


def powerlaw_alpha(eigenvalues: Any, ranks: tuple[int, int] = (20, 200)) -> float:
    """``alpha`` of :func:`powerlaw_fit` (minus the log-log slope over ``ranks``)."""
    return powerlaw_fit(eigenvalues, ranks).alpha


def _cv_once(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    # principal axes of repeat a (right singular vectors, neuron space)
    _, _, vt = np.linalg.svd(a, full_matrices=False)
    v = vt[:k].T
    return ((a @ v) * (b @ v)).sum(axis=0) / (a.shape[0] - 1)


def cvpca(rep1: Any, rep2: Any, n_components: int | None = None, n_shuffles: int = 5,
          seed: int = 0) -> np.ndarray:
    """Cross-validated PCA spectrum of two repeats ``[stimuli, neurons]`` of the same
    stimuli (Stringer et al. 2019): the stimulus-related variance along each of the
    first ``min(n_components, stimuli - 1, neurons)`` principal axes of one repeat.

    Each repeat is centred over stimuli. With ``n_shuffles`` > 0 the repeats are
    swapped for a random half of the stimuli in each shuffle and the estimates
    averaged; with 0, repeat 1 gives the axes. Estimates can be negative where a
    dimension holds no reliable variance.
    """
    a, b = _matrix(rep1, "rep1"), _matrix(rep2, "rep2")
    if a.shape != b.shape:
        raise EigenspectrumInputError(f"rep1 {list(a.shape)} and rep2 {list(b.shape)} differ")
    k = min(n_components or a.shape[1], a.shape[0] - 1, a.shape[1])
    if n_shuffles <= 0:
        return _cv_once(a, b, k)
    rng = np.random.default_rng(seed)
    out = np.zeros(k)
    for _ in range(n_shuffles):
        flip = rng.random(a.shape[0]) > 0.5
        a2, b2 = a.copy(), b.copy()
        a2[flip], b2[flip] = b[flip], a[flip]
        out += _cv_once(a2, b2, k)
    return out / n_shuffles
