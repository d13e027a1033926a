"""Out-of-domain decoding math (paper 001, SCIENCE.md section 6). numpy only.

* :func:`two_afc` - per-image two-alternative forced-choice accuracy from decision values.
* :func:`fit_ridge_classifier` / :class:`RidgeClassifierFit` - a ridge classifier with
  features standardized on the training images and alpha chosen by exact leave-one-out,
  batched over many problems of one shape (the splits and unit draws of one unit count).
* :func:`matched_units` - where an accuracy-vs-units curve first reaches a reference
  accuracy, interpolated on log k.
* :func:`log_fit` / :func:`log_law` - ``acc = a * log(n) + b`` (natural log), used to
  extrapolate a recorded population to more sites.

The classifier is scikit-learn's ``StandardScaler`` followed by ``RidgeClassifierCV``
(``fit_intercept=True``, ``alpha_per_target=False``, leave-one-out by the closed form),
computed differently: targets are the one-vs-all {-1, +1} codes of every class (for two
classes the two columns are each other's negatives, which gives scikit-learn's single
column's alpha and decisions), and one decomposition of each problem's standardized
training matrix serves every alpha:

* primal (``k < n - 1`` units for ``n`` training images): thin SVD ``Z = U S V^T``;
* dual (otherwise): eigendecomposition of the Gram matrix ``Z Z^T`` restricted to the
  complement of the constant vector (an orthonormal basis ``Q`` of it, from a Householder
  reflection), so that the eigenvectors span exactly the space centered targets live in.

With an unpenalized intercept the hat matrix is ``H = 11^T/n + U diag(f) U^T``,
``f = s^2 / (s^2 + alpha)``. Every alpha's leave-one-out residuals follow from the same
``U`` and ``U^T Y``: ``e = (y - y_hat) / (1 - h)`` with ``y - y_hat = (I - UU^T) y +
U diag(alpha / (s^2 + alpha)) U^T y`` and ``1 - h = (1 - 1/n - ||U_i||^2) +
sum_j U_ij^2 alpha / (s_j^2 + alpha)`` (both forms free of the cancellation in
``1 - h`` at small alpha). The alpha with the least mean squared LOO error over all
images and classes wins (the first in the grid's order on a tie, as scikit-learn).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .solvers import default_alphas

__all__ = ["two_afc", "fit_ridge_classifier", "RidgeClassifierFit", "matched_units",
           "log_fit", "log_law", "one_vs_all_codes", "DecodeInputError"]


class DecodeInputError(ValueError):
    """Bad input to a decoding function."""


# ------------------------------------------------------------------------- 2AFC
def two_afc(scores: Any, labels: Any) -> np.ndarray:
    """Per-image 2AFC accuracy.

    Parameters
    ----------
    scores : [..., n_images, n_classes]
        Decision values (any monotone score of each class, e.g. a ridge classifier's
        ``decision_function``); leading dimensions are batches.
    labels : [..., n_images]
        The true class index of each image, in ``range(n_classes)``.

    Returns
    -------
    [..., n_images]: for image i of true class c, the fraction of distractor classes
    d != c with ``scores[i, c] > scores[i, d]``, a tie counting one half. A split's
    accuracy is the mean over its images.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim < 2:
        raise DecodeInputError(f"scores must be [..., n_images, n_classes], got shape {s.shape}")
    if y.shape != s.shape[:-1]:
        raise DecodeInputError(f"labels have shape {y.shape}, expected {s.shape[:-1]} "
                               f"for scores of shape {s.shape}")
    n_classes = s.shape[-1]
    if n_classes < 2:
        raise DecodeInputError(f"2AFC needs at least 2 classes, got {n_classes}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DecodeInputError(f"labels must be integer class indices, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        bad = y[(y < 0) | (y >= n_classes)]
        raise DecodeInputError(f"labels out of range [0, {n_classes}): {np.unique(bad)[:10].tolist()}")
    if not np.all(np.isfinite(s)):
        raise DecodeInputError("scores contain NaN or inf")
    true = np.take_along_axis(s, y[..., None].astype(np.intp), axis=-1)
    wins = (true > s).sum(-1)
    ties = (true == s).sum(-1) - 1  # the true class ties with itself
    return (wins + 0.5 * ties) / (n_classes - 1)


# --------------------------------------------------------------- ridge classifier
def one_vs_all_codes(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """{-1, +1} codes ``[..., n, n_classes]`` of class indices (scikit-learn's LabelBinarizer
    with ``neg_label=-1``, keeping both columns for two classes)."""
    y = np.asarray(labels)
    Y = np.full(y.shape + (int(n_classes),), -1.0)
    np.put_along_axis(Y, y[..., None].astype(np.intp), 1.0, axis=-1)
    return Y


def _householder_complement(n: int) -> np.ndarray:
    """``Q`` [n, n-1]: an orthonormal basis of the vectors orthogonal to the constant one."""
    v = -np.full(n, 1.0 / np.sqrt(n))
    v[0] += 1.0  # v = e1 - 1/sqrt(n); the reflection maps e1 to 1/sqrt(n)
    vv = float(v @ v)
    if vv < 1e-30:  # n == 1
        return np.zeros((n, 0))
    H = np.eye(n) - (2.0 / vv) * np.outer(v, v)
    return H[:, 1:]


_Q_CACHE: dict[int, np.ndarray] = {}


def _complement(n: int) -> np.ndarray:
    q = _Q_CACHE.get(n)
    if q is None:
        q = _Q_CACHE[n] = _householder_complement(n)
    return q


def _standardize(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Z, mean, scale)`` as scikit-learn's StandardScaler (population SD; a constant
    feature keeps scale 1)."""
    mu = X.mean(axis=-2)
    Xc = X - mu[..., None, :]
    var = np.einsum("...nk,...nk->...k", Xc, Xc) / X.shape[-2]
    # StandardScaler's rule: a variance within rounding error of zero is a constant feature
    n, eps = X.shape[-2], np.finfo(np.float64).eps
    bound = n * eps * var + (n * mu * eps) ** 2
    sd = np.where(var <= bound, 1.0, np.sqrt(var))
    return Xc / sd[..., None, :], mu, sd


@dataclass
class RidgeClassifierFit:
    """Fitted classifiers of a batch of problems (leading dimension ``B``).

    ``coef`` [B, k, C] and ``intercept`` [B, C] act on *raw* (unstandardized) features:
    ``decision = X @ coef + intercept``; ``alpha`` [B] the chosen alpha of each problem;
    ``loo_mse`` [B, A] the mean squared LOO error at every alpha of ``alphas``;
    ``mode`` "primal" or "dual".
    """

    coef: np.ndarray
    intercept: np.ndarray
    alpha: np.ndarray
    alphas: np.ndarray
    loo_mse: np.ndarray
    mode: str

    def decision_function(self, X: Any) -> np.ndarray:
        """Decision values ``[B, m, C]`` for test features ``X`` [B, m, k] (or [m, k] with B = 1)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 2:
            X = X[None]
        return X @ self.coef + self.intercept[:, None, :]


def fit_ridge_classifier(X: Any, labels: Any, n_classes: int, alphas: Any = None,
                         standardize: bool = True, batch_bytes: int = 64 << 20) -> RidgeClassifierFit:
    """Fit ridge classifiers with alpha (and intercept) by exact leave-one-out.

    Parameters
    ----------
    X : [B, n, k] or [n, k]
        Training features of ``B`` problems of one shape (``n`` images, ``k`` units).
    labels : [B, n] or [n]
        Class indices in ``range(n_classes)``.
    alphas : 1-D grid (default: SCIENCE.md section 4's ``logspace(-2, 6, 17)`` plus 1).
    standardize : scale each unit to zero mean and unit SD on the training images
        (scikit-learn's StandardScaler) before the ridge; the returned coefficients act
        on raw features either way.
    batch_bytes : working memory per chunk of problems.

    One decomposition per problem serves every alpha (module docstring).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(labels)
    if X.ndim == 2:
        X, y = X[None], y[None]
    if X.ndim != 3:
        raise DecodeInputError(f"X must be [B, n, k] or [n, k], got shape {X.shape}")
    B, n, k = X.shape
    if y.shape != (B, n):
        raise DecodeInputError(f"labels have shape {y.shape}, expected {(B, n)}")
    if n < 3:
        raise DecodeInputError(f"need at least 3 training images, got {n}")
    if k < 1:
        raise DecodeInputError("need at least one unit")
    if not np.all(np.isfinite(X)):
        raise DecodeInputError("training features contain NaN or inf")
    alphas = np.atleast_1d(np.asarray(default_alphas() if alphas is None else alphas, dtype=np.float64))
    if alphas.ndim != 1 or alphas.size == 0 or np.any(~np.isfinite(alphas)) or np.any(alphas <= 0):
        raise DecodeInputError(f"alphas must be a non-empty 1-D grid of finite values > 0, got {alphas}")
    mode = "primal" if k < n - 1 else "dual"
    # working set per problem: Z, U, the [A, n, C] residuals and a few [n, n] / [k, r] blocks
    r = min(k, n - 1)
    per = 8 * (2 * n * k + n * r + k * r + 3 * alphas.size * n * n_classes + 2 * n * n)
    step = max(1, int(batch_bytes // max(1, per)))
    parts = [_fit_chunk(X[b0:b0 + step], y[b0:b0 + step], int(n_classes), alphas, standardize, mode)
             for b0 in range(0, B, step)]
    cat = [np.concatenate([p[i] for p in parts]) for i in range(4)]
    return RidgeClassifierFit(cat[0], cat[1], cat[2], alphas, cat[3], mode)


def _fit_chunk(X: np.ndarray, y: np.ndarray, C: int, alphas: np.ndarray, standardize: bool,
               mode: str) -> tuple[np.ndarray, ...]:
    B, n, k = X.shape
    if standardize:
        Z, mu, sd = _standardize(X)
    else:
        mu = X.mean(axis=-2)
        Z, sd = X - mu[:, None, :], np.ones((B, k))
    Y = one_vs_all_codes(y, C)
    ybar = Y.mean(axis=1)
    Yc = Y - ybar[:, None, :]
    if mode == "primal":
        U, s, Vt = np.linalg.svd(Z, full_matrices=False)  # U [B, n, k], s [B, k]
        s2 = s * s
        Zy = np.swapaxes(U, 1, 2) @ Yc                      # [B, k, C]
        r_perp = Yc - U @ Zy                                # out-of-span residual, no alpha
        lev_perp = 1.0 - 1.0 / n - np.einsum("bnr,bnr->bn", U, U)
    else:
        Q = _complement(n)
        K = Z @ np.swapaxes(Z, 1, 2)                        # [B, n, n]
        s2, W = np.linalg.eigh(Q.T @ K @ Q)                 # [B, n-1], [B, n-1, n-1]
        s2 = np.clip(s2, 0.0, None)
        U = Q @ W                                           # spans exactly 1-perp
        Zy = np.swapaxes(U, 1, 2) @ Yc
        r_perp, lev_perp = None, None
    shrink = alphas[None, :, None] / (s2[:, None, :] + alphas[None, :, None])  # [B, A, r]
    resid = U[:, None] @ (shrink[..., None] * Zy[:, None])  # [B, A, n, C]
    denom = np.swapaxes((U * U) @ np.swapaxes(shrink, 1, 2), 1, 2)  # [B, A, n]
    if r_perp is not None:
        resid += r_perp[:, None]
        denom += lev_perp[:, None, :]
    denom = np.maximum(denom, 1e-300)
    mse = ((resid / denom[..., None]) ** 2).mean(axis=(2, 3))  # [B, A]
    best = np.argmin(mse, axis=1)
    a = alphas[best]
    if mode == "primal":
        gain = s / (s2 + a[:, None])                        # [B, r]
        coef = np.swapaxes(Vt, 1, 2) @ (gain[:, :, None] * Zy)
    else:
        dual = U @ (Zy / (s2 + a[:, None])[:, :, None])     # [B, n, C]
        coef = np.swapaxes(Z, 1, 2) @ dual                  # [B, k, C]
    coef = coef / sd[:, :, None]
    intercept = ybar - np.einsum("bk,bkc->bc", mu, coef)
    return coef, intercept, a, mse


# ----------------------------------------------------------- matched units, log law
def matched_units(k: Any, accuracy: Any, reference: float) -> float:
    """The unit count at which ``accuracy`` (measured at unit counts ``k``, ascending)
    first reaches ``reference``, interpolated linearly on log k between the last grid
    point below and the first at or above it.

    Returns ``k[0]`` when the smallest count already reaches it (the curve does not say
    how far below), NaN when no count does.
    """
    k = np.asarray(k, dtype=np.float64).ravel()
    acc = np.asarray(accuracy, dtype=np.float64).ravel()
    if k.shape != acc.shape or k.size == 0:
        raise DecodeInputError(f"k and accuracy must be non-empty and of one length, got "
                               f"{k.size} and {acc.size}")
    if np.any(k <= 0) or np.any(np.diff(k) <= 0):
        raise DecodeInputError(f"unit counts must be positive and strictly ascending, got {k.tolist()}")
    hit = np.flatnonzero(acc >= reference)
    if hit.size == 0:
        return float("nan")
    j = int(hit[0])
    if j == 0:
        return float(k[0])
    lo, hi = np.log(k[j - 1]), np.log(k[j])
    t = (reference - acc[j - 1]) / (acc[j] - acc[j - 1])
    return float(np.exp(lo + t * (hi - lo)))


def log_fit(n: Any, accuracy: Any) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of ``accuracy = a * log(n) + b`` (natural log)."""
    n = np.asarray(n, dtype=np.float64).ravel()
    acc = np.asarray(accuracy, dtype=np.float64).ravel()
    ok = np.isfinite(n) & np.isfinite(acc) & (n > 0)
    if n.shape != acc.shape:
        raise DecodeInputError(f"n and accuracy differ in length: {n.size} vs {acc.size}")
    if np.unique(n[ok]).size < 2:
        raise DecodeInputError(f"the log fit needs at least 2 distinct counts, got {n[ok].tolist()}")
    A = np.stack([np.log(n[ok]), np.ones(int(ok.sum()))], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, acc[ok], rcond=None)
    return float(a), float(b)


def log_law(n: Any, a: float, b: float) -> np.ndarray:
    """``a * log(n) + b``."""
    return a * np.log(np.asarray(n, dtype=np.float64)) + b
