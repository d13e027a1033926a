"""Pure solver functions for ridge regression with exact leave-one-out (GCV).

Everything here works on arrays of a :mod:`cortexzoo.mapping.backend` backend and
holds no state; the estimators in :mod:`cortexzoo.mapping.estimators` wrap them.

Method (SCIENCE.md section 4). With an intercept, X and Y are centered on the
training set. Ridge with an unpenalized intercept has hat matrix
``H = 11^T/n + U diag(f) U^T`` with ``U diag(s) V^T`` the thin SVD of centered X and
``f = s^2 / (s^2 + alpha)``. The exact leave-one-out residual of every sample is
``(y - y_hat) / (1 - h)``; it is the same quantity scikit-learn's ``RidgeCV``
(gcv_mode svd or eigen, fit_intercept=True) computes.

Two decompositions of the same hat matrix, chosen by shape:

* primal (n > p): thin SVD of centered X (n x p);
* dual (p >= n): eigendecomposition of the centered Gram matrix ``Xc Xc^T`` (n x n),
  built chunk by chunk over features (no centered copy of X), with the constant
  direction removed exactly by a Householder reflection so that the remaining
  eigenvectors span exactly the space where centered targets live.

For numerical accuracy (float32 in particular) the residual and ``1 - h`` are
computed from the shrinkage ``alpha / (s^2 + alpha)`` directly, never as
``y - y_hat`` or ``1 - h`` (which cancel catastrophically at small alpha).
One decomposition serves every alpha and every neuroid; targets are processed in
batches of neuroids to bound memory (working memory of about a quarter of X plus Y).

float32 mode computes everything in float32 except where float32 cannot tell alphas
apart: targets whose LOO errors at several alphas agree to ``REFINE_TOL`` are compared
again in float64 arithmetic on the same decomposition (see :func:`loo_scan`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import Backend, get_backend, row_dot, row_sqnorm

__all__ = ["Decomposition", "decompose", "loo_complement", "loo_scan", "fit_coef",
           "dual_to_coef", "dual_predict",
           "project_validation", "default_alphas", "check_alphas"]


class SolverInputError(ValueError):
    """Invalid input to a ridge solver."""


def default_alphas() -> np.ndarray:
    """The default alpha grid of SCIENCE.md section 4: logspace(-2, 6, 17) plus 1.0."""
    return np.unique(np.r_[np.logspace(-2, 6, 17), 1.0])


def check_alphas(alphas: Any) -> np.ndarray:
    """Validate an alpha grid (1-D, finite, > 0); None gives the default grid."""
    if alphas is None:
        return default_alphas()
    a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if a.ndim != 1 or a.size == 0:
        raise SolverInputError(f"alphas must be a non-empty 1-D sequence, got shape {a.shape}")
    bad = a[~np.isfinite(a) | (a <= 0)]
    if bad.size:
        raise SolverInputError(f"alphas must be finite and > 0; offending values: {bad.tolist()}")
    return a


@dataclass
class Decomposition:
    """One factorization of the (centered) design matrix, reusable for any targets.

    ``U`` [n, r] orthonormal columns, ``s2`` [r] squared singular values (or Gram
    eigenvalues), ``lev_perp`` [n] (primal only) the part of ``1 - h`` that no alpha
    changes: ``1 - 1/n - ||U_i||^2``; ``complete`` is True when centered targets lie
    in span(U) exactly (dual form), so the out-of-span residual is zero.
    """

    mode: str
    U: Any
    s2: Any
    n_samples: int
    n_features: int
    fit_intercept: bool
    x_mean: Any | None
    Vt: Any | None = None       # primal: right singular vectors [r, p]
    s: Any | None = None        # primal: singular values [r]
    X: Any | None = None        # dual: reference to the (uncentered) X for coefficients
    lev_perp: Any | None = None
    complete: bool = False
    # precision of U's orthonormality (the eps of the dtype it was computed in)
    u_eps: float | None = None


def _choose_mode(n: int, p: int, mode: str) -> str:
    if mode not in ("auto", "primal", "dual"):
        raise SolverInputError(f"mode must be 'auto', 'primal' or 'dual', got {mode!r}")
    if mode == "auto":
        return "primal" if n > p else "dual"
    return mode


def _householder_to_ones(backend: Backend, n: int) -> tuple[Any, float]:
    """v and 2/(v^T v) of the reflection H with H e_1 = 1/sqrt(n)."""
    v = backend.full((n,), 1.0 / np.sqrt(n))
    v = -v
    v[0] = v[0] + 1.0  # v = e1 - u
    vv = float(backend.to_numpy(row_dot(backend, v[None, :], v[None, :]))[0])
    return v, 2.0 / vv


def _itemsize(backend: Backend) -> int:
    return 8 if backend.dtype == "float64" else 4


def _spans(total: int, size: int):
    """(start, stop) of consecutive blocks of ``size`` covering range(total)."""
    size = max(1, int(size))
    for j0 in range(0, total, size):
        yield j0, min(total, j0 + size)


def _block(n: int, itemsize: int, budget: int = 8 << 20, minimum: int = 64) -> int:
    """Columns (or rows) of length n in a temporary of about ``budget`` bytes."""
    return max(minimum, budget // max(1, n * itemsize))


def _column_mean(X: Any, backend: Backend) -> Any:
    """Column means of X as a backend array (accumulated in float64 for numpy input)."""
    if isinstance(X, np.ndarray):
        return backend.asarray(X.mean(axis=0, dtype=np.float64))
    return backend.mean(backend.asarray(X), 0)


def _rank2_update_(backend: Backend, K: Any, v: Any, w: Any) -> None:
    """K -= v w^T + w v^T in place, a block of rows at a time (no n x n temporary)."""
    n = int(K.shape[0])
    for i0, i1 in _spans(n, _block(n, _itemsize(backend), budget=1 << 20, minimum=16)):
        K[i0:i1] -= v[i0:i1, None] * w[None, :] + w[i0:i1, None] * v[None, :]


def _centered_gram(X: Any, x_mean: Any | None, backend: Backend,
                   feature_chunk: int | None) -> Any:
    """Xc Xc^T with Xc the centered X, accumulated over blocks of features.

    Only one block of centered (and converted) features exists at a time, so neither a
    centered copy of X nor, in float32 mode, a float32 copy of X is ever made.
    """
    n, p = int(X.shape[0]), int(X.shape[1])
    item = _itemsize(backend)
    # blocks of at most 8 MB and an eighth of X (at least 64 features)
    chunk = feature_chunk or _block(n, item, budget=min(8 << 20, max(1 << 20, n * p * item // 8)))
    K = backend.zeros((n, n))
    tmp = backend.zeros((n, n)) if (p > chunk and backend.name == "numpy") else None
    for j0, j1 in _spans(p, chunk):
        xb = backend.asarray(X[:, j0:j1])
        if x_mean is not None:
            xb = xb - x_mean[None, j0:j1]
        backend.add_gram_(K, xb, tmp)
        del xb
    return backend.finish_gram_(K)


def decompose(X: Any, backend: Backend, fit_intercept: bool = True, mode: str = "auto",
              feature_chunk: int | None = None) -> Decomposition:
    """Factorize X once (SVD in primal form, Gram eigendecomposition in dual form).

    Parameters
    ----------
    X : array [n_samples, n_features]: a numpy array (any float dtype; in dual form it is
        converted block by block, never copied whole) or an array of ``backend``.
    backend : the array backend.
    fit_intercept : center X (and later Y) and leave the intercept unpenalized.
    mode : "auto" (primal when n > p, else dual), "primal" or "dual".
    feature_chunk : columns of X centered at a time while building the Gram matrix
        (default: blocks of about 8 MB).

    Memory: about five n x n arrays beyond X at the peak in dual form (Gram matrix,
    LAPACK's copy and workspace, eigenvectors); a centered copy of X plus the SVD's
    factors in primal form.
    """
    n, p = int(X.shape[0]), int(X.shape[1])
    if n < 2:
        raise SolverInputError(f"need at least 2 samples for leave-one-out, got {n}")
    mode = _choose_mode(n, p, mode)
    x_mean = _column_mean(X, backend) if fit_intercept else None

    if mode == "primal":
        Xb = backend.asarray(X)
        if backend.shares_memory(Xb, X):   # never modify the caller's array
            Xc = Xb - x_mean[None, :] if fit_intercept else backend.copy(Xb)
        else:                              # a converted copy: center it in place
            Xc = Xb
            if fit_intercept:
                Xc -= x_mean[None, :]
        del Xb
        U, s, Vt = backend.svd_thin(Xc)
        del Xc
        # Drop null directions (rank deficiency; with an intercept and n <= p the
        # constant vector is one): they carry no fit, and keeping the constant one
        # would count it twice in 1 - h.
        eps = 1e-7 if backend.dtype == "float32" else 1e-15
        s_np = backend.to_numpy(s)
        keep = int((s_np > s_np.max(initial=0.0) * max(n, p) * eps).sum())
        U, s, Vt = U[:, :keep], s[:keep], Vt[:keep]
        s2 = s * s
        # 1 - 1/n - ||U_i||^2: the leverage no alpha can change (zero when p >= n - 1)
        lev = row_sqnorm(backend, U)
        lev_perp = 1.0 - lev - (1.0 / n if fit_intercept else 0.0)
        lev_perp = backend.clip_min(lev_perp, 0.0)
        return Decomposition("primal", U, s2, n, p, fit_intercept, x_mean, Vt=Vt, s=s,
                             lev_perp=lev_perp, complete=False)

    # dual: Gram of centered X, built over feature blocks
    K = _centered_gram(X, x_mean, backend, feature_chunk)
    if fit_intercept:
        # Reflect the constant direction onto e_1 and drop it: eigenvectors of the
        # (n-1)x(n-1) block span exactly the complement of 1, where centered y lives.
        # H K H = K - v w^T - w v^T with w = beta K v - beta^2 (v^T K v) / 2 v, in place.
        v, beta = _householder_to_ones(backend, n)
        Kv = K @ v
        vKv = float(backend.to_numpy(row_dot(backend, v[None, :], Kv[None, :]))[0])
        w = beta * Kv - (0.5 * beta * beta * vKv) * v
        _rank2_update_(backend, K, v, w)
        del Kv, w
        w, Q = backend.eigh(K[1:, 1:])   # LAPACK copies the block into its own buffer
        del K
        # lift: U = H [0; Q] = [0; Q] - beta v (v^T [0; Q])
        U = backend.zeros((n, int(Q.shape[1])))
        U[1:, :] = Q
        del Q
        vu = (v[None, :] @ U)[0] * beta
        _rank2_update_rows_(backend, U, v, vu)
    else:
        w, U = backend.eigh(K)
        del K
    s2 = backend.clip_min(w, 0.0)
    return Decomposition("dual", U, s2, n, p, fit_intercept, x_mean, X=X, complete=True)


def _rank2_update_rows_(backend: Backend, U: Any, v: Any, u: Any) -> None:
    """U -= v u^T in place, a block of rows at a time."""
    n = int(U.shape[0])
    for i0, i1 in _spans(n, _block(int(U.shape[1]), _itemsize(backend), budget=1 << 20,
                                   minimum=16)):
        U[i0:i1] -= v[i0:i1, None] * u[None, :]


def loo_complement(dec: Decomposition, alphas: Any, backend: Backend) -> Any:
    """``1 - h`` (diagonal of I - hat matrix) for every sample and alpha: [n, n_alphas]."""
    al = backend.asarray(np.asarray(alphas, dtype=np.float64))
    shrink = al[None, :] / (dec.s2[:, None] + al[None, :])      # [r, A] = 1 - f
    G = (dec.U * dec.U) @ shrink
    if dec.lev_perp is not None:
        G = G + dec.lev_perp[:, None]
    return G


# float32 mode: alphas whose float32 LOO errors are this close (relative) to the best are
# compared again in float64 (measured float32 errors of the LOO MSE: up to 6e-5 relative;
# no-signal neuroids at large alphas have LOO errors flat to 1e-8 across alphas)
REFINE_TOL = 2e-4
_MAX_BATCH_BYTES = 64 << 20


def _batch_size(n: int, r: int, t: int, itemsize: int, batch: int | None,
                budget_bytes: int = _MAX_BATCH_BYTES) -> int:
    if batch is not None:
        if int(batch) < 1:
            raise SolverInputError(f"neuroid_batch_size must be >= 1, got {batch}")
        return int(batch)
    # about twelve [n, batch] buffers live at once (selection and the final metrics)
    return int(max(1, min(t, max(16, budget_bytes // (12 * max(n, r) * itemsize)))))


def _budget(dec: Decomposition, Y: Any) -> int:
    """Working memory for a batch of neuroids: a quarter of X plus Y, 4 to 64 MB."""
    xy = dec.n_samples * (dec.n_features + int(Y.shape[1])) * 8
    return int(min(_MAX_BATCH_BYTES, max(4 << 20, xy // 4)))


@dataclass
class _Tables:
    """Per-alpha quantities shared by every batch of targets, one row per alpha.

    Targets are handled targets-major ([targets, samples] arrays, one row per target),
    so that picking the alpha or the target of each (alpha, target) pair is a copy of
    contiguous rows, never a strided column gather.
    """

    al: Any          # [A]
    G: Any           # [A, n] 1 - h
    shrink: Any      # [A, r] alpha / (s2 + alpha)
    fit_frac: Any    # [A, r] s2 / (s2 + alpha)
    hat: Any         # [A, n] h (with the intercept's 1/n)
    wmin: np.ndarray  # [A] min over samples of (1 - h)^-2
    wmax: np.ndarray  # [A] max over samples of (1 - h)^-2
    wmean: np.ndarray  # [A] mean over samples of (1 - h)^-2


def _tables(dec: Decomposition, alphas: np.ndarray, backend: Backend) -> _Tables:
    al = backend.asarray(alphas)
    denom = al[:, None] + dec.s2[None, :]
    shrink = al[:, None] / denom
    fit_frac = dec.s2[None, :] / denom
    del denom
    U2 = dec.U * dec.U
    G = shrink @ U2.T
    if dec.lev_perp is not None:
        G = G + dec.lev_perp[None, :]
    hat = fit_frac @ U2.T
    del U2
    if dec.fit_intercept:
        hat = hat + 1.0 / dec.n_samples
    # per-alpha extremes over samples of 1 / (1 - h)^2: they bound the LOO error by the
    # ordinary residual norm, which costs O(r) per target instead of O(n r)
    G_np = backend.to_numpy(G).astype(np.float64)
    with np.errstate(divide="ignore"):
        w = 1.0 / G_np ** 2
    return _Tables(al, G, shrink, fit_frac, hat, w.min(1), w.max(1), w.mean(1))


def _take_cols(Y: Any, cols: np.ndarray) -> Any:
    if isinstance(Y, np.ndarray):
        return Y[:, cols]
    import torch

    return Y[:, torch.as_tensor(cols, dtype=torch.int64, device=Y.device)]


def _prepare(dec: Decomposition, backend: Backend, Ysrc: Any) -> tuple[Any, Any, Any, Any]:
    """Centered targets, targets-major: Yc [B, n], their means [B], Z = Yc U [B, r], and
    bounds on ``||Yc - Z U^T||^2`` per target.

    The last is None when centered targets lie in span(U) (dual form); else a float64
    array [2, B] of lower and upper bounds on the squared norm of the part of Yc outside
    span(U), ``||Yc||^2 - ||Z||^2`` widened by its rounding error. That part itself is
    never formed: residuals are computed as ``Yc - (f * Z) U^T``.
    """
    Yc = backend.transpose_copy(Ysrc)      # [B, n]: always a new array, safe to center
    ymean = None
    if dec.fit_intercept:
        ymean = backend.mean(Yc, 1)
        Yc -= ymean[:, None]
    Z = Yc @ dec.U
    perp = None
    if not dec.complete:
        f64 = lambda a: backend.to_numpy(row_sqnorm(backend, a)).astype(np.float64)  # noqa: E731
        yy = f64(Yc)
        d = np.maximum(yy - f64(Z), 0.0)
        eps = dec.u_eps or np.finfo(np.dtype(backend.dtype)).eps
        slack = 4.0 * (dec.n_samples + int(Z.shape[1])) * eps * yy
        perp = np.stack([np.maximum(d - slack, 0.0), d + slack])
    return Yc, ymean, Z, perp


def _finish(dec: Decomposition, tab: _Tables, backend: Backend, Yc: Any, Z: Any, best: Any,
            idx_np: np.ndarray, two_forms: bool) -> tuple[Any, np.ndarray, np.ndarray]:
    """Centered LOO predictions [B, n], Pearson r and explained variance at the chosen alphas.

    Targets-major, as :func:`_prepare`. Without ``two_forms`` the prediction is
    y - residual: rounding error about n eps relative, far below 1e-6 in float64 with an
    exact float64 decomposition. With it (float32, or float64 on a float32
    decomposition) two exact forms are combined, each accurate in one regime:
    (yhat - h y) / (1 - h) at strong shrinkage (no cancellation when predictions vary
    little), y - residual near interpolation; per entry, the one with the smaller
    rounding-error bound is kept. The residual itself (accurate when the fit is good)
    gives the explained variance.
    """
    if two_forms:
        sel = _index(backend, idx_np)
        rows = backend.take_rows
        pred = (rows(tab.fit_frac, sel) * Z) @ dec.U.T          # yhat
        err = abs(pred)
        hy = rows(tab.hat, sel) * Yc
        err += abs(hy)
        pred -= hy
        del hy
        Gs = rows(tab.G, sel)
        pred /= Gs
        err /= Gs
        del Gs
        err_resid = abs(Yc)
        err_resid += abs(best)
        pred = backend.where(err <= err_resid, pred, Yc - best)
        del err, err_resid
    else:
        pred = Yc - best
    ycen = Yc if dec.fit_intercept else Yc - backend.mean(Yc, 1)[:, None]
    pc = pred - backend.mean(pred, 1)[:, None]
    cov = row_dot(backend, ycen, pc)
    var_pred = row_sqnorm(backend, pc)
    del pc
    rc = best - backend.mean(best, 1)[:, None]
    var_res = row_sqnorm(backend, rc)
    del rc
    var_y = row_sqnorm(backend, ycen)
    f64 = lambda a: backend.to_numpy(a).astype(np.float64)  # noqa: E731
    vy = f64(var_y)
    with np.errstate(divide="ignore", invalid="ignore"):
        pearson = f64(cov) / np.sqrt(vy * f64(var_pred))
        ev = 1.0 - f64(var_res) / vy
    return pred, pearson, ev


def _float64_twin(dec: Decomposition, alphas: np.ndarray,
                  backend: Backend) -> tuple[Decomposition, _Tables, Backend]:
    """The float32 decomposition in float64 arithmetic, to re-compare near-tied alphas."""
    be64 = _float64_backend(backend)
    up = lambda a: None if a is None else be64.asarray(a)  # noqa: E731
    dec64 = Decomposition(dec.mode, up(dec.U), up(dec.s2), dec.n_samples, dec.n_features,
                          dec.fit_intercept, None, lev_perp=up(dec.lev_perp),
                          complete=dec.complete,
                          u_eps=float(np.finfo(np.dtype(backend.dtype)).eps))
    return dec64, _tables(dec64, alphas, be64), be64


def loo_scan(dec: Decomposition, Y: Any, alphas: Any, backend: Backend,
             alpha_per_target: bool = True, batch_size: int | None = None,
             return_predictions: bool = True, return_coef: bool = False,
             refine: bool | None = None, return_dual: bool = False) -> dict[str, np.ndarray]:
    """Leave-one-out ridge for every alpha; choose alpha; LOO predictions at the choice.

    Parameters
    ----------
    dec : decomposition of X from :func:`decompose`.
    Y : numpy (or backend) array [n_samples, n_targets], finite.
    alphas : validated alpha grid [A].
    alpha_per_target : choose alpha per target (by LOO MSE) or one alpha for all
        (by the LOO MSE summed over targets, as scikit-learn's RidgeCV).
    batch_size : targets processed at once (default: from a working budget of a quarter
        of the size of X plus Y, between 4 and 64 MB).
    return_predictions : also return the LOO predictions [n, t] at the chosen alpha.
    return_coef : also return ridge coefficients [p, t] and intercepts [t] at the chosen alpha.
    return_dual : dual form only: also return the dual coefficients [n, t] (ridge
        coefficients are ``Xc^T`` times them, see :func:`dual_to_coef`) and intercepts [t]
        at the chosen alpha; they cost n x t instead of p x t and no extra product.
    refine : float32 only (default on): alphas whose float32 LOO errors lie within
        ``REFINE_TOL`` (relative) of the best are compared again in float64 arithmetic
        (on the same decomposition), and those targets' predictions, r and EV are
        computed in float64 too. float32 cannot resolve the nearly flat LOO error of
        no-signal neuroids at large alphas; without this it picks another alpha there.

    Returns
    -------
    dict of numpy arrays: ``alpha`` [t], ``alpha_index`` [t], ``loo_mse`` [t],
    ``pearson`` [t], ``ev`` [t], ``n_refined`` (targets re-compared in float64), and
    optionally ``loo_predictions`` [n, t], ``coef`` [p, t], ``dual_coef`` [n, t],
    ``intercept`` [t].
    """
    n = dec.n_samples
    if Y.shape[0] != n:
        raise SolverInputError(f"Y has {Y.shape[0]} samples but X has {n}")
    if return_dual and not dec.complete:
        raise SolverInputError("dual coefficients exist only in dual form (p >= n); "
                               f"this decomposition is {dec.mode}")
    t = int(Y.shape[1])
    alphas = np.asarray(alphas, dtype=np.float64)
    if refine is None:
        refine = backend.dtype == "float32"
    tab = _tables(dec, alphas, backend)
    margin = 1e-6 if backend.dtype == "float64" else 1e-3
    r = int(dec.U.shape[1])
    bs = _batch_size(n, r, t, _itemsize(backend), batch_size, _budget(dec, Y))
    np_dtype = np.dtype(backend.dtype)
    twin: list = []   # the float64 twin, built on first need

    def get_twin() -> tuple[Decomposition, _Tables, Backend]:
        if not twin:
            twin.extend(_float64_twin(dec, alphas, backend))
        return twin[0], twin[1], twin[2]

    out: dict[str, np.ndarray] = {
        "alpha_index": np.zeros(t, dtype=np.int64),
        "loo_mse": np.zeros(t, dtype=np_dtype),
        "pearson": np.zeros(t, dtype=np_dtype),
        "ev": np.zeros(t, dtype=np_dtype),
    }
    if return_predictions:
        out["loo_predictions"] = np.empty((n, t), dtype=np_dtype)
    if return_coef:
        out["coef"] = np.empty((dec.n_features, t), dtype=np_dtype)
    if return_dual:
        out["dual_coef"] = np.empty((n, t), dtype=np_dtype)
        # intercept = ymean - x_mean . coef = ymean - (Xc x_mean) . dual
        be64 = _float64_backend(backend)
        xc_mean = _centered_x_mean(dec, be64) if dec.fit_intercept else None
    if return_coef or return_dual:
        out["intercept"] = np.zeros(t, dtype=np_dtype)
    n_refined = 0

    # shared alpha: a first pass sums the LOO squared error over all targets
    shared_idx = None
    if not alpha_per_target:
        shared_idx, sse = _shared_alpha(dec, tab, backend, Y, bs, margin)
        if refine:
            shared_idx = _refine_shared(Y, bs, shared_idx, sse, get_twin)

    for j0, j1 in _spans(t, bs):
        Yc, ymean, Z, perp = _prepare(dec, backend, Y[:, j0:j1])
        if shared_idx is None:
            best, best_mse, idx_np, mse_all = _select_per_target(
                dec, backend, Yc, Z, perp, tab, margin)
        else:
            best = _residual(dec, tab, backend, Yc, Z, shared_idx)
            best_mse = backend.to_numpy(row_sqnorm(backend, best)).astype(np.float64) / n
            idx_np = np.full(j1 - j0, shared_idx, dtype=np.int64)
            mse_all = None
        pred, pearson, ev = _finish(dec, tab, backend, Yc, Z, best, idx_np,
                                    two_forms=backend.dtype != "float64")
        dual = (_dual_coef(dec, tab, backend, best, idx_np)
                if return_coef or return_dual else None)
        del best, Yc
        if dec.fit_intercept:
            pred += ymean[:, None]
        pred_np = backend.to_numpy(pred) if return_predictions else None   # [B, n]
        del pred

        if refine and mse_all is not None:
            tied = mse_all <= best_mse[None, :] * (1.0 + REFINE_TOL)
            cols = np.nonzero(tied.sum(0) > 1)[0]
            if cols.size:
                n_refined += int(cols.size)
                dec64, tab64, be64 = get_twin()
                Y64 = _take_cols(Y[:, j0:j1], cols)
                Yc64, ymean64, Z64, Yp64 = _prepare(dec64, be64, Y64)
                b64, m64, i64, _ = _select_per_target(dec64, be64, Yc64, Z64, Yp64, tab64,
                                                      1e-6, allowed=tied[:, cols])
                p64, r64, e64 = _finish(dec64, tab64, be64, Yc64, Z64, b64, i64, two_forms=True)
                idx_np[cols], best_mse[cols] = i64, m64
                if dual is not None:   # refined targets: from their float64 residuals
                    dual[_index(backend, cols)] = backend.asarray(
                        be64.to_numpy(_dual_coef(dec64, tab64, be64, b64, i64)))
                pearson[cols], ev[cols] = r64, e64
                if pred_np is not None:
                    if dec.fit_intercept:
                        p64 += ymean64[:, None]
                    pred_np[cols] = be64.to_numpy(p64)
                del Yc64, Z64, Yp64, b64, p64

        out["alpha_index"][j0:j1] = idx_np
        out["loo_mse"][j0:j1] = best_mse
        out["pearson"][j0:j1] = pearson
        out["ev"][j0:j1] = ev
        if pred_np is not None:
            out["loo_predictions"][:, j0:j1] = pred_np.T
        del pred_np
        if return_coef:
            W, b = _coef_batch(dec, Z.T, ymean, tab.al, idx_np, backend, dual)
            out["coef"][:, j0:j1] = W
            if b is not None:
                out["intercept"][j0:j1] = b
        if return_dual:
            d_np = backend.to_numpy(dual)   # [B, n]
            out["dual_coef"][:, j0:j1] = d_np.T
            if xc_mean is not None:
                out["intercept"][j0:j1] = be64.to_numpy(
                    be64.asarray(ymean) - be64.asarray(dual) @ xc_mean)
            del d_np
        del Z, dual

    out["alpha"] = alphas[out["alpha_index"]]
    out["n_refined"] = np.asarray(n_refined)
    return out


def _residual(dec: Decomposition, tab: _Tables, backend: Backend, Yc: Any, Z: Any,
              a: int) -> Any:
    """LOO residuals y - y_loo [B, n] of every target (targets-major) at alpha index a."""
    if dec.complete:
        P = (tab.shrink[a:a + 1] * Z) @ dec.U.T
    else:
        P = backend.rsub_((tab.fit_frac[a:a + 1] * Z) @ dec.U.T, Yc)
    P /= tab.G[a:a + 1]
    return P


def _shared_sse(dec: Decomposition, tab: _Tables, backend: Backend, Y: Any, bs: int,
                cand: np.ndarray) -> np.ndarray:
    """Sum over all targets of the squared LOO residuals at the alphas ``cand``."""
    sse = np.full(tab.wmin.size, np.inf)
    sse[cand] = 0.0
    for j0, j1 in _spans(int(Y.shape[1]), bs):
        Yc, _, Z, _ = _prepare(dec, backend, Y[:, j0:j1])
        for a in cand:
            P = _residual(dec, tab, backend, Yc, Z, int(a))
            sse[a] += float(backend.to_numpy(row_sqnorm(backend, P)).astype(np.float64).sum())
            del P
    return sse


def _shared_alpha(dec: Decomposition, tab: _Tables, backend: Backend, Y: Any, bs: int,
                  margin: float) -> tuple[int, np.ndarray]:
    """One alpha for all targets (smallest LOO error summed over targets), and the sums."""
    A = tab.wmin.size
    # bounds on every alpha's total LOO error (cheap, see _error_bounds) prune alphas
    lo_tot, hi_tot = np.zeros(A), np.zeros(A)
    for j0, j1 in _spans(int(Y.shape[1]), bs):
        _, _, Z, perp = _prepare(dec, backend, Y[:, j0:j1])
        lo, hi = _error_bounds(backend, Z, perp, tab.shrink, tab.wmin, tab.wmax)
        lo_tot += lo.sum(1)
        hi_tot += hi.sum(1)
    cand = np.nonzero(lo_tot <= hi_tot.min() * (1 + margin))[0]
    sse = _shared_sse(dec, tab, backend, Y, bs, cand)
    return int(np.argmin(sse)), sse


def _refine_shared(Y: Any, bs: int, idx: int, sse: np.ndarray, get_twin: Any) -> int:
    """float32 mode, shared alpha: re-compare near-tied alphas in float64."""
    cand = np.nonzero(sse <= sse[idx] * (1.0 + REFINE_TOL))[0]
    if cand.size < 2:
        return idx
    dec64, tab64, be64 = get_twin()
    sse64 = _shared_sse(dec64, tab64, be64, Y, bs, cand)
    return int(np.argmin(sse64))


def _xt_matmul(X: Any, M: Any, backend: Backend, x_mean: Any = None) -> np.ndarray:
    """Xc^T M [p, B] (numpy) with Xc = X minus ``x_mean`` (if given), over blocks of
    features (X may be numpy in another dtype; no [p, B] temporary)."""
    n, p = X.shape
    W = np.empty((p, int(M.shape[1])), dtype=np.dtype(backend.dtype))
    if x_mean is not None:
        xm = backend.to_numpy(x_mean)
        msum = backend.to_numpy(backend.sum(M, 0))
    for j0, j1 in _spans(p, _block(n, _itemsize(backend))):
        backend.matmul_to_host_(backend.asarray(X[:, j0:j1]).T, M, W[j0:j1])
        if x_mean is not None:
            W[j0:j1] -= xm[j0:j1, None] * msum[None, :]
    return W


def _centered_x_mean(dec: Decomposition, be: Backend) -> Any:
    """Xc x_mean [n] (dual form) on the float64 backend ``be``, over blocks of features:
    the torch path never wakes numpy's BLAS, whose spinning threads would slow torch's
    next products."""
    X, n = dec.X, dec.n_samples
    xm = be.asarray(dec.x_mean)
    v = be.zeros((n,))
    for j0, j1 in _spans(dec.n_features, _block(n, 8)):
        v += be.asarray(X[:, j0:j1]) @ xm[j0:j1]
    return v - float(be.to_numpy(xm @ xm))


def _float64_backend(backend: Backend) -> Backend:
    """The float64 backend of the same kind and device."""
    if backend.dtype == "float64":
        return backend
    return get_backend(backend.name, "float64",
                       None if backend.name == "numpy" else str(backend.device))


def dual_to_coef(X: np.ndarray, dual: np.ndarray, x_mean: np.ndarray | None = None,
                 backend: str | Backend = "numpy", device: str | None = None) -> np.ndarray:
    """Ridge coefficients [p, t] = Xc^T dual from dual coefficients [n, t] (numpy), with
    Xc = X minus ``x_mean`` (if given), in the dual's dtype; X is never copied whole.
    The product runs on ``backend`` (and ``device``); the result is numpy."""
    be = get_backend(backend if isinstance(backend, str) else backend.name,
                     str(np.dtype(dual.dtype)), device)
    return _xt_matmul(X, be.asarray(dual), be,
                      None if x_mean is None else be.asarray(x_mean))


def dual_predict(Xn: np.ndarray, X: np.ndarray, dual: np.ndarray,
                 x_mean: np.ndarray | None = None, intercept: Any = 0.0) -> np.ndarray:
    """``Xn @ dual_to_coef(X, dual, x_mean) + intercept`` [m, t] without forming the
    coefficients: (Xn Xc^T) dual, over blocks of rows of Xn (memory O(rows x n))."""
    n, p = X.shape
    dtype = np.result_type(Xn.dtype, dual.dtype, np.float32)   # as Xn @ coef would be
    dual = np.asarray(dual, dtype=dtype)
    m = Xn.shape[0]
    out = np.empty((m, dual.shape[1]), dtype=dtype)
    dsum = dual.sum(0)
    xm = None if x_mean is None else np.asarray(x_mean, dtype=dtype)
    rows = max(1, (32 << 20) // max(1, n * dtype.itemsize))
    fblk = _block(n, dtype.itemsize)
    for i0, i1 in _spans(m, rows):
        Xi = np.asarray(Xn[i0:i1], dtype=dtype)
        K = np.zeros((i1 - i0, n), dtype=dtype)
        for j0, j1 in _spans(p, fblk):
            K += Xi[:, j0:j1] @ np.asarray(X[:, j0:j1], dtype=dtype).T
        out[i0:i1] = K @ dual
        if xm is not None:
            out[i0:i1] -= (Xi @ xm)[:, None] * dsum[None, :]
    out += np.asarray(intercept, dtype=dtype)
    return out


def _dual_coef(dec: Decomposition, tab: _Tables, backend: Backend, best: Any,
               idx_np: np.ndarray) -> Any | None:
    """Dual coefficients (K + alpha I)^-1 yc [B, n] from the LOO residuals [B, n] at the
    chosen alphas, in dual form (else None).

    There the ordinary residual is alpha (K + alpha I)^-1 yc and equals the LOO residual
    times 1 - h: an elementwise pass instead of an [n, r] x [r, B] product.
    """
    if not dec.complete:
        return None
    sel = _index(backend, idx_np)
    dual = best * backend.take_rows(tab.G, sel)
    dual /= tab.al[sel][:, None]
    return dual


def _coef_batch(dec: Decomposition, Z: Any, ymean: Any, al: Any, idx_np: np.ndarray,
                backend: Backend, dual: Any | None = None
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Ridge coefficients [p, B] (and intercepts) from rotated targets Z = U^T Yc, or in
    dual form from the dual coefficients [B, n] when given (see :func:`_dual_coef`)."""
    alpha_col = al[_index(backend, idx_np)]
    if dec.mode == "primal":
        Wb = dec.Vt.T @ ((dec.s[:, None] / (dec.s2[:, None] + alpha_col[None, :])) * Z)
        b = None
        if dec.fit_intercept:   # on the backend: no numpy BLAS call between torch's
            b = backend.to_numpy(ymean - dec.x_mean @ Wb)
        return backend.to_numpy(Wb), b
    else:
        if dual is not None:
            M = dual.T
        else:
            M = dec.U @ (Z / (dec.s2[:, None] + alpha_col[None, :]))
        W = _xt_matmul(dec.X, M, backend, dec.x_mean if dec.fit_intercept else None)
        del M
    b = None
    if dec.fit_intercept:
        b = backend.to_numpy(ymean) - backend.to_numpy(dec.x_mean) @ W
    return W, b


def fit_coef(dec: Decomposition, Y: Any, alphas: Any, backend: Backend,
             batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ridge coefficients [p, t] and intercepts [t] at one alpha per target column.

    ``alphas`` is a scalar or an array [t] (need not be on any grid).
    """
    n, t = int(Y.shape[0]), int(Y.shape[1])
    if n != dec.n_samples:
        raise SolverInputError(f"Y has {n} samples but X has {dec.n_samples}")
    a = np.broadcast_to(np.asarray(alphas, dtype=np.float64), (t,))
    check_alphas(a)
    uniq, inv = np.unique(a, return_inverse=True)
    al = backend.asarray(uniq)
    bs = _batch_size(n, int(dec.U.shape[1]), t, _itemsize(backend), batch_size,
                     _budget(dec, Y))
    coef = np.empty((dec.n_features, t), dtype=np.dtype(backend.dtype))
    intercept = np.zeros(t, dtype=np.dtype(backend.dtype))
    for j0, j1 in _spans(t, bs):
        Yc, ymean, Z, _ = _prepare(dec, backend, Y[:, j0:j1])
        del Yc
        W, b = _coef_batch(dec, Z.T, ymean, al, inv[j0:j1].astype(np.int64), backend)
        coef[:, j0:j1] = W
        if b is not None:
            intercept[j0:j1] = b
    return coef, intercept


def project_validation(dec: Decomposition, Xv: Any, backend: Backend) -> tuple[Any, Any]:
    """For held-out rows Xv: B [m, r] and the per-alpha diagonal's numerator d [r].

    Held-out predictions at alpha are ``y_mean + B @ (d / (s2 + alpha) * Z)``
    with Z = U^T Yc of the training targets (d = s in primal form, 1 in dual form).
    """
    Xvc = Xv - dec.x_mean[None, :] if dec.fit_intercept else Xv
    if dec.mode == "primal":
        return Xvc @ dec.Vt.T, dec.s
    XXt = None
    for j0, j1 in _spans(dec.n_features, _block(dec.n_samples, _itemsize(backend))):
        part = Xvc[:, j0:j1] @ backend.asarray(dec.X[:, j0:j1]).T
        XXt = part if XXt is None else XXt + part
    if dec.fit_intercept:
        XXt = XXt - (Xvc @ dec.x_mean)[:, None]
    return XXt @ dec.U, backend.full((int(dec.U.shape[1]),), 1.0)


def _index(backend: Backend, idx: np.ndarray) -> Any:
    return idx if backend.name == "numpy" else backend.torch.as_tensor(
        idx, dtype=backend.torch.int64, device=backend.device)


def _error_bounds(backend: Backend, Z: Any, perp: np.ndarray | None, shrink: Any,
                  wmin: np.ndarray, wmax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds [A, B] on n * LOO MSE for every alpha and target.

    The LOO residual is e_i / (1 - h_i) with e = Yperp + U (shrink * Z) the ordinary
    residual, so ``||e||^2 min_i (1-h_i)^-2 <= n MSE <= ||e||^2 max_i (1-h_i)^-2``, and
    ``||e||^2 = ||Yperp||^2 + sum_j shrink_j^2 Z_j^2`` (U has orthonormal columns);
    ``perp`` bounds ``||Yperp||^2`` (see :func:`_prepare`). Z is [B, r], shrink [A, r].
    """
    en = backend.to_numpy((shrink * shrink) @ (Z * Z).T).astype(np.float64)
    if perp is None:
        return en * wmin[:, None], en * wmax[:, None]
    return (en + perp[0]) * wmin[:, None], (en + perp[1]) * wmax[:, None]


def _row_block(backend: Backend, n: int) -> int | None:
    """Rows of an [K, n] array processed at a time by numpy's single-threaded elementwise
    passes, so that their operands stay in cache (about 1 MB); None: all at once."""
    if backend.name != "numpy":
        return None
    return max(8, (1 << 20) // max(1, n * _itemsize(backend)))


def _eval_pairs(dec: Decomposition, backend: Backend, Yc: Any, Z: Any, tab: _Tables,
                a_idx: np.ndarray, j_idx: np.ndarray | None) -> tuple[Any, np.ndarray]:
    """LOO residuals [K, n] and MSE [K] of the pairs (alpha a_idx[k], target j_idx[k]).

    One [K, r] x [r, n] product for all pairs (``j_idx`` None: every target once, in
    order): wide products run near the BLAS peak, one narrow product per alpha does not.
    The elementwise passes that follow run over blocks of rows small enough for cache.
    """
    rows = backend.take_rows
    ai = _index(backend, a_idx)
    ji = None if j_idx is None else _index(backend, j_idx)
    Zs = rows(tab.shrink if dec.complete else tab.fit_frac, ai)
    Zs *= Z if ji is None else rows(Z, ji)
    P = Zs @ dec.U.T
    del Zs
    K = int(P.shape[0])
    step = _row_block(backend, dec.n_samples) or K
    mse = np.empty(K)
    for k0, k1 in _spans(K, step):
        Pk = P[k0:k1]
        if not dec.complete:   # residual Yc - (f * Z) U^T: no out-of-span part stored
            yk = Yc[k0:k1] if ji is None else rows(Yc, ji[k0:k1])
            backend.rsub_(Pk, yk)
        Pk /= rows(tab.G, ai[k0:k1])
        mse[k0:k1] = backend.to_numpy(row_sqnorm(backend, Pk)).astype(np.float64)
    return P, mse / dec.n_samples


def _select_per_target(dec: Decomposition, backend: Backend, Yc: Any, Z: Any,
                       perp: np.ndarray | None, tab: _Tables, margin: float, allowed: np.ndarray | None = None
                       ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """Per-target alpha with the smallest exact LOO MSE, and the LOO residuals there.

    Exact, but skips the costly [b, r] x [r, n] products of alphas that cannot win:
    each target is first scored exactly at a guess of its best alpha (its upper bound,
    see :func:`_error_bounds`, rescaled from the largest to the mean leverage weight);
    then, round after round, at its not yet scored alpha
    with the smallest lower bound, as long as that bound does not exceed the best exact
    error found so far. Each round is one matrix product over all the targets still in
    play. Ties keep the first alpha of the grid, as scikit-learn. ``allowed`` [A, B]
    restricts the alphas of each target.

    Returns the residuals [B, n] at the chosen alphas, their MSE [B], the alpha indices
    [B] and the MSE of every alpha evaluated [A, B] (inf where pruned).
    """
    B = int(Z.shape[0])
    A = int(tab.shrink.shape[0])
    lo, hi = _error_bounds(backend, Z, perp, tab.shrink, tab.wmin, tab.wmax)
    lo = lo / dec.n_samples
    if allowed is not None:
        hi = np.where(allowed, hi, np.inf)
        lo = np.where(allowed, lo, np.inf)
    cols = np.arange(B)
    # start where the LOO error is probably smallest: the ordinary residual norm times
    # the mean weight (as GCV), not the max weight of the upper bound
    with np.errstate(invalid="ignore"):
        guess = hi * (tab.wmean / tab.wmax)[:, None]
    first = np.where(np.isnan(guess), np.inf, guess).argmin(0)
    best, best_mse = _eval_pairs(dec, backend, Yc, Z, tab, first, None)
    best_idx = first.copy()
    mse_all = np.full((A, B), np.inf)
    mse_all[first, cols] = best_mse
    lo[first, cols] = np.inf                      # scored
    # rounds: each target's unscored alpha with the smallest lower bound, while it may win
    chunk = max(1, B)
    while True:
        a_next = lo.argmin(0)
        live = np.nonzero(lo[a_next, cols] <= best_mse * (1 + margin))[0]
        if live.size == 0:
            break
        for k0, k1 in _spans(live.size, chunk):
            jj = live[k0:k1]
            aa = a_next[jj]
            P, mse = _eval_pairs(dec, backend, Yc, Z, tab, aa, jj)
            mse_all[aa, jj] = mse
            lo[aa, jj] = np.inf
            cur, cur_idx = best_mse[jj], best_idx[jj]
            better = (mse < cur) | ((mse == cur) & (aa < cur_idx))
            if better.any():
                k = np.nonzero(better)[0]
                upd = jj[k]
                best[_index(backend, upd)] = P[_index(backend, k)]
                best_mse[upd] = mse[k]
                best_idx[upd] = aa[k]
            del P
    return best, best_mse, best_idx, mse_all
