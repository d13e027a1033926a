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
batches of neuroids to bound memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import Backend, col_dot, col_sqnorm

__all__ = ["Decomposition", "decompose", "loo_complement", "loo_scan", "fit_coef",
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
    vv = float(backend.to_numpy(col_dot(backend, v[:, None], v[:, None]))[0])
    return v, 2.0 / vv


def decompose(X: Any, backend: Backend, fit_intercept: bool = True, mode: str = "auto",
              feature_chunk: int = 2048) -> Decomposition:
    """Factorize X once (SVD in primal form, Gram eigendecomposition in dual form).

    Parameters
    ----------
    X : array [n_samples, n_features], already converted with ``backend.asarray``.
    backend : the array backend.
    fit_intercept : center X (and later Y) and leave the intercept unpenalized.
    mode : "auto" (primal when n > p, else dual), "primal" or "dual".
    feature_chunk : columns of X centered at a time while building the Gram matrix.
    """
    n, p = int(X.shape[0]), int(X.shape[1])
    if n < 2:
        raise SolverInputError(f"need at least 2 samples for leave-one-out, got {n}")
    mode = _choose_mode(n, p, mode)
    x_mean = backend.mean(X, 0) if fit_intercept else None

    if mode == "primal":
        Xc = X - x_mean[None, :] if fit_intercept else backend.copy(X)
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
        lev = col_sqnorm(backend, U.T)
        lev_perp = 1.0 - lev - (1.0 / n if fit_intercept else 0.0)
        lev_perp = backend.clip_min(lev_perp, 0.0)
        return Decomposition("primal", U, s2, n, p, fit_intercept, x_mean, Vt=Vt, s=s,
                             lev_perp=lev_perp, complete=False)

    # dual: Gram of centered X, built over feature chunks (no centered copy of X)
    K = backend.zeros((n, n))
    for j0 in range(0, p, feature_chunk):
        xb = X[:, j0:j0 + feature_chunk]
        if fit_intercept:
            xb = xb - x_mean[None, j0:j0 + feature_chunk]
        K += xb @ xb.T
        del xb
    if fit_intercept:
        # Reflect the constant direction onto e_1 and drop it: eigenvectors of the
        # (n-1)x(n-1) block span exactly the complement of 1, where centered y lives.
        v, beta = _householder_to_ones(backend, n)
        Kv = K @ v
        K = K - beta * (v[:, None] * Kv[None, :])          # H K (K symmetric)
        Kv2 = K @ v
        K = K - beta * (Kv2[:, None] * v[None, :])         # (H K) H
        K = K[1:, 1:]
        K = (K + K.T) * 0.5
        w, Q = backend.eigh(K)
        del K
        # lift: U = H [0; Q]
        Qp = backend.zeros((n, Q.shape[1]))
        Qp[1:, :] = Q
        del Q
        U = Qp - beta * (v[:, None] * (v[None, :] @ Qp))
        del Qp
    else:
        w, U = backend.eigh(K)
        del K
    s2 = backend.clip_min(w, 0.0)
    return Decomposition("dual", U, s2, n, p, fit_intercept, x_mean, X=X, complete=True)


def loo_complement(dec: Decomposition, alphas: Any, backend: Backend) -> Any:
    """``1 - h`` (diagonal of I - hat matrix) for every sample and alpha: [n, n_alphas]."""
    al = backend.asarray(np.asarray(alphas, dtype=np.float64))
    shrink = al[None, :] / (dec.s2[:, None] + al[None, :])      # [r, A] = 1 - f
    G = (dec.U * dec.U) @ shrink
    if dec.lev_perp is not None:
        G = G + dec.lev_perp[:, None]
    return G


def _batch_size(n: int, r: int, t: int, itemsize: int, batch: int | None,
                budget_bytes: int = 64 << 20) -> int:
    if batch is not None:
        if int(batch) < 1:
            raise SolverInputError(f"neuroid_batch_size must be >= 1, got {batch}")
        return int(batch)
    # about eight [n, batch] buffers live at once
    return int(max(1, min(t, budget_bytes // (8 * max(n, r) * itemsize))))


def loo_scan(dec: Decomposition, Y: Any, alphas: Any, backend: Backend,
             alpha_per_target: bool = True, batch_size: int | None = None,
             return_predictions: bool = True, return_coef: bool = False) -> dict[str, np.ndarray]:
    """Leave-one-out ridge for every alpha; choose alpha; LOO predictions at the choice.

    Parameters
    ----------
    dec : decomposition of X from :func:`decompose`.
    Y : numpy (or backend) array [n_samples, n_targets], finite.
    alphas : validated alpha grid [A].
    alpha_per_target : choose alpha per target (by LOO MSE) or one alpha for all
        (by the LOO MSE summed over targets, as scikit-learn's RidgeCV).
    batch_size : targets processed at once (default: from a 64 MB working budget).
    return_predictions : also return the LOO predictions [n, t] at the chosen alpha.
    return_coef : also return ridge coefficients [p, t] and intercepts [t] at the chosen alpha.

    Returns
    -------
    dict of numpy arrays: ``alpha`` [t], ``alpha_index`` [t], ``loo_mse`` [t],
    ``pearson`` [t], ``ev`` [t], and optionally ``loo_predictions`` [n, t],
    ``coef`` [p, t], ``intercept`` [t].
    """
    n = dec.n_samples
    if Y.shape[0] != n:
        raise SolverInputError(f"Y has {Y.shape[0]} samples but X has {n}")
    t = int(Y.shape[1])
    alphas = np.asarray(alphas, dtype=np.float64)
    A = alphas.size
    al = backend.asarray(alphas)
    G = loo_complement(dec, alphas, backend)                       # [n, A]
    shrink = al[None, :] / (dec.s2[:, None] + al[None, :])         # [r, A]
    fit_frac = dec.s2[:, None] / (dec.s2[:, None] + al[None, :])   # [r, A]
    hat = (dec.U * dec.U) @ fit_frac                               # [n, A] diag(H) ...
    if dec.fit_intercept:
        hat = hat + 1.0 / n                                        # ... incl. the intercept
    # per-alpha extremes over samples of 1 / (1 - h)^2: they bound the LOO error by the
    # ordinary residual norm, which costs O(r) per target instead of O(n r)
    G_np = backend.to_numpy(G).astype(np.float64)
    with np.errstate(divide="ignore"):
        w = 1.0 / G_np ** 2
    wmin, wmax = w.min(0), w.max(0)
    margin = 1e-6 if backend.dtype == "float64" else 1e-3
    r = int(dec.U.shape[1])
    itemsize = 8 if backend.dtype == "float64" else 4
    bs = _batch_size(n, r, t, itemsize, batch_size)
    np_dtype = np.dtype(backend.dtype)

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
        out["intercept"] = np.zeros(t, dtype=np_dtype)

    def prepare(j0: int, j1: int) -> tuple[Any, Any, Any, Any, Any]:
        Yb = backend.asarray(Y[:, j0:j1])
        if dec.fit_intercept:
            ymean = backend.mean(Yb, 0)
            Yc = Yb - ymean[None, :]
        else:
            ymean = None
            Yc = Yb
        Z = dec.U.T @ Yc
        Yperp = None if dec.complete else Yc - dec.U @ Z
        return Yb, ymean, Yc, Z, Yperp

    def residual(Z: Any, Yperp: Any, a: int | Any) -> Any:
        """LOO residuals y - y_loo at alpha index a (int, or per-column index array)."""
        if isinstance(a, (int, np.integer)):
            P = dec.U @ (shrink[:, a:a + 1] * Z)
            if Yperp is not None:
                P += Yperp
            P /= G[:, a:a + 1]
        else:
            P = dec.U @ (shrink[:, a] * Z)
            if Yperp is not None:
                P += Yperp
            P /= G[:, a]
        return P

    # shared alpha: a first pass sums the LOO squared error over all targets
    shared_idx = None
    if not alpha_per_target:
        # bounds on every alpha's total LOO error (cheap, see _error_bounds) prune alphas
        lo_tot, hi_tot = np.zeros(A), np.zeros(A)
        for j0 in range(0, t, bs):
            _, _, _, Z, Yperp = prepare(j0, min(t, j0 + bs))
            lo, hi = _error_bounds(backend, Z, Yperp, shrink, wmin, wmax)
            lo_tot += lo.sum(1)
            hi_tot += hi.sum(1)
        cand = np.nonzero(lo_tot <= hi_tot.min() * (1 + margin))[0]
        sse = np.full(A, np.inf)
        sse[cand] = 0.0
        for j0 in range(0, t, bs):
            _, _, _, Z, Yperp = prepare(j0, min(t, j0 + bs))
            for a in cand:
                P = residual(Z, Yperp, int(a))
                sse[a] += float(backend.to_numpy(col_sqnorm(backend, P)).astype(np.float64).sum())
                del P
        shared_idx = int(np.argmin(sse))

    for j0 in range(0, t, bs):
        j1 = min(t, j0 + bs)
        Yb, ymean, Yc, Z, Yperp = prepare(j0, j1)
        if shared_idx is None:
            best, best_mse_np, idx_np = _select_per_target(
                dec, backend, Z, Yperp, shrink, G, wmin, wmax, margin)
            best_mse = backend.asarray(best_mse_np)
        else:
            best = residual(Z, Yperp, shared_idx)
            best_mse = col_sqnorm(backend, best) / n
            idx_np = np.full(j1 - j0, shared_idx, dtype=np.int64)

        out["alpha_index"][j0:j1] = idx_np
        out["loo_mse"][j0:j1] = backend.to_numpy(best_mse)
        # LOO predictions at the chosen alpha, from y_loo - ybar = (yhat_c - h yc) / (1 - h):
        # no cancellation when predictions vary little (strong shrinkage, float32),
        # unlike y - residual. The residual (accurate when the fit is good) gives EV.
        sel = backend.asarray(idx_np.astype(np.float64)).long() if backend.name == "torch" \
            else idx_np
        # Two exact forms of the centered LOO prediction, each accurate in one regime:
        # (yhat - h y) / (1 - h) at strong shrinkage, y - residual near interpolation.
        # Take, per entry, the one with the smaller rounding-error bound.
        yhat = dec.U @ (fit_frac[:, sel] * Z)
        hy = hat[:, sel] * Yc
        Gs = G[:, sel]
        err_direct = (abs(yhat) + abs(hy)) / Gs
        pred = (yhat - hy) / Gs
        del yhat, hy, Gs
        err_resid = abs(Yc) + abs(best)
        pred = backend.where(err_direct <= err_resid, pred, Yc - best)
        del err_direct, err_resid
        if dec.fit_intercept:
            ycen = Yc
        else:
            ycen = Yb - backend.mean(Yb, 0)[None, :]
        pred_c = pred - backend.mean(pred, 0)[None, :]
        res_c = best - backend.mean(best, 0)[None, :]
        var_y = col_sqnorm(backend, ycen)
        var_res = col_sqnorm(backend, res_c)
        cov = col_dot(backend, ycen, pred_c)
        var_pred = col_sqnorm(backend, pred_c)
        del pred_c, res_c, best
        with np.errstate(divide="ignore", invalid="ignore"):
            vy = backend.to_numpy(var_y).astype(np.float64)
            out["pearson"][j0:j1] = backend.to_numpy(cov) / np.sqrt(
                vy * backend.to_numpy(var_pred).astype(np.float64))
            out["ev"][j0:j1] = 1.0 - backend.to_numpy(var_res) / vy
        if return_predictions:
            if dec.fit_intercept:
                pred += ymean[None, :]
            out["loo_predictions"][:, j0:j1] = backend.to_numpy(pred)
        del pred
        if return_coef:
            W, b = _coef_batch(dec, Z, ymean, al, idx_np, backend)
            out["coef"][:, j0:j1] = W
            if b is not None:
                out["intercept"][j0:j1] = b
        del Yb, Yc, Z, Yperp

    out["alpha"] = alphas[out["alpha_index"]]
    return out


def _coef_batch(dec: Decomposition, Z: Any, ymean: Any, al: Any, idx_np: np.ndarray,
                backend: Backend) -> tuple[np.ndarray, np.ndarray | None]:
    """Ridge coefficients [p, B] (and intercepts) from rotated targets Z = U^T Yc."""
    idx_b = backend.asarray(idx_np.astype(np.float64))
    alpha_col = al[idx_np] if backend.name == "numpy" else al[idx_b.long()]
    if dec.mode == "primal":
        W = dec.Vt.T @ ((dec.s[:, None] / (dec.s2[:, None] + alpha_col[None, :])) * Z)
    else:
        M = dec.U @ (Z / (dec.s2[:, None] + alpha_col[None, :]))
        W = dec.X.T @ M
        if dec.fit_intercept:
            W = W - dec.x_mean[:, None] * backend.sum(M, 0)[None, :]
        del M
    b = None
    if dec.fit_intercept:
        b = backend.to_numpy(ymean - dec.x_mean @ W)
    return backend.to_numpy(W), b


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
    itemsize = 8 if backend.dtype == "float64" else 4
    bs = _batch_size(n, int(dec.U.shape[1]), t, itemsize, batch_size)
    coef = np.empty((dec.n_features, t), dtype=np.dtype(backend.dtype))
    intercept = np.zeros(t, dtype=np.dtype(backend.dtype))
    for j0 in range(0, t, bs):
        j1 = min(t, j0 + bs)
        Yb = backend.asarray(Y[:, j0:j1])
        ymean = backend.mean(Yb, 0) if dec.fit_intercept else None
        Yc = Yb - ymean[None, :] if dec.fit_intercept else Yb
        Z = dec.U.T @ Yc
        W, b = _coef_batch(dec, Z, ymean, al, inv[j0:j1].astype(np.int64), backend)
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
    XXt = Xvc @ dec.X.T
    if dec.fit_intercept:
        XXt = XXt - (Xvc @ dec.x_mean)[:, None]
    return XXt @ dec.U, backend.full((int(dec.U.shape[1]),), 1.0)


def _index(backend: Backend, idx: np.ndarray) -> Any:
    return idx if backend.name == "numpy" else backend.torch.as_tensor(
        idx, dtype=backend.torch.int64, device=backend.device)


def _error_bounds(backend: Backend, Z: Any, Yperp: Any, shrink: Any, wmin: np.ndarray,
                  wmax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds [A, B] on n * LOO MSE for every alpha and target.

    The LOO residual is e_i / (1 - h_i) with e = Yperp + U (shrink * Z) the ordinary
    residual, so ``||e||^2 min_i (1-h_i)^-2 <= n MSE <= ||e||^2 max_i (1-h_i)^-2``, and
    ``||e||^2 = ||Yperp||^2 + sum_j shrink_j^2 Z_j^2`` (U has orthonormal columns).
    """
    en = backend.to_numpy((shrink * shrink).T @ (Z * Z)).astype(np.float64)
    if Yperp is not None:
        en += backend.to_numpy(col_sqnorm(backend, Yperp)).astype(np.float64)[None, :]
    return en * wmin[:, None], en * wmax[:, None]


def _select_per_target(dec: Decomposition, backend: Backend, Z: Any, Yperp: Any, shrink: Any,
                       G: Any, wmin: np.ndarray, wmax: np.ndarray,
                       margin: float) -> tuple[Any, np.ndarray, np.ndarray]:
    """Per-target alpha with the smallest exact LOO MSE, and the LOO residuals there.

    Exact, but skips the costly [n, r] x [r, b] products of alphas that cannot win:
    each target is first scored exactly at the alpha with the smallest upper bound
    (see :func:`_error_bounds`); any alpha whose lower bound exceeds the best exact
    error found so far is then skipped for that target. Ties keep the first alpha of
    the grid, as scikit-learn.
    """
    n = dec.n_samples
    B = int(Z.shape[1])
    A = int(shrink.shape[1])
    lo, hi = _error_bounds(backend, Z, Yperp, shrink, wmin, wmax)
    lo = lo / n
    best = backend.zeros((n, B))
    best_mse = np.full(B, np.inf)
    best_idx = np.zeros(B, dtype=np.int64)
    done = np.zeros((A, B), dtype=bool)

    def evaluate(a: int, cols: np.ndarray) -> None:
        nonlocal best
        if cols.size == 0:
            return
        if cols.size == B:
            Zs, Yp = Z, Yperp
        else:
            ci = _index(backend, cols)
            Zs = Z[:, ci]
            Yp = None if Yperp is None else Yperp[:, ci]
        P = dec.U @ (shrink[:, a:a + 1] * Zs)
        if Yp is not None:
            P += Yp
        P /= G[:, a:a + 1]
        mse = backend.to_numpy(col_sqnorm(backend, P)).astype(np.float64) / n
        cur, cur_idx = best_mse[cols], best_idx[cols]
        better = (mse < cur) | ((mse == cur) & (a < cur_idx))
        done[a, cols] = True
        if better.any():
            upd = cols[better]
            if upd.size == B:
                best = P
            else:
                best[:, _index(backend, upd)] = P[:, _index(backend, np.nonzero(better)[0])]
            best_mse[upd] = mse[better]
            best_idx[upd] = a

    first = hi.argmin(0)
    for a in np.unique(first):
        evaluate(int(a), np.nonzero(first == a)[0])
    for a in range(A):
        cols = np.nonzero((lo[a] <= best_mse * (1 + margin)) & ~done[a])[0]
        evaluate(a, cols)
    return best, best_mse, best_idx
