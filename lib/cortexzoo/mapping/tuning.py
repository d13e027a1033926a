"""Tuning summaries of latent units (paper 004 A.4, SCIENCE.md section 9), on plain arrays.

A unit is one output dimension of a frozen encoder. Its responses are *signed* model
features, not firing rates, so every summary here is the signed-feature variant:

* **global orientation selectivity** (:func:`gosi`): for a curve ``r(theta_k)`` over
  orientations ``theta_k`` in ``[0, pi)``, subtract the baseline ``min_k r(theta_k)``
  and take ``gOSI = |sum_k r_k e^{2 i theta_k}| / sum_k r_k`` (0: untuned, 1: responds
  at one orientation only); the vector preferred orientation is
  ``arg(sum_k r_k e^{2 i theta_k}) / 2`` in ``[0, pi)`` (:func:`preferred_orientation`).
* **phase modulation** (:func:`f1_f0`): for a curve over ``n`` phases uniform on
  ``[0, 2 pi)``, ``c = DFT(r) / n``; ``F1 = 2 |c_1|`` (the amplitude of the first
  harmonic), ``F0 = |c_0|`` (the absolute mean), ``F1/F0 = F1 / (F0 + 1e-8)``. A
  half-wave rectified sinusoid gives ``pi / 2``; a pure sinusoid around zero is
  very large (simple-like), a flat curve 0 (complex-like). The preferred phase is
  ``-arg(c_1)`` in ``[0, 2 pi)``, where a cosine ``cos(phi - phi_0)`` peaks.
* **contrast response** (:func:`fit_naka_rushton`): the signed Naka-Rushton function
  ``r(c) = b + g c^n / (c^n + c50^n)``, gain ``g`` of either sign.
* **spatial-frequency tuning** (:func:`fit_dog_sf`): a difference of Gaussians in
  ``x = log2(sf)`` (seven parameters, fitted by a batched Levenberg-Marquardt)
  ``r(x) = b + a_e exp(-(x - m_e)^2 / (2 s_e^2)) - a_i exp(-(x - m_i)^2 / (2 s_i^2))``,
  ``a_e, a_i >= 0``; the preferred SF is where the fitted curve peaks on a dense
  geometric grid over the sampled range.
* **quality control** (:func:`qc_flags`): loose inclusion criteria per unit.

Everything is numpy/scipy; nothing here knows models, torch or Ray.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["gosi", "preferred_orientation", "f1_f0", "preferred_phase", "naka_rushton",
           "fit_naka_rushton", "dog_log_sf", "fit_dog_sf", "grid_tuning_curves",
           "QCThresholds", "qc_flags", "TuningInputError"]

_EPS_F0 = 1e-8


class TuningInputError(ValueError):
    """Bad input to a tuning function (the message says which argument)."""


def _curves(curves: Any, name: str = "curves") -> np.ndarray:
    r = np.asarray(curves, dtype=np.float64)
    if r.ndim < 1 or r.shape[-1] < 2:
        raise TuningInputError(f"{name} must be [..., n] with n >= 2, got shape {list(r.shape)}")
    return r


def _thetas(thetas: Any, n: int) -> np.ndarray:
    th = np.asarray(thetas, dtype=np.float64)
    if th.shape != (n,):
        raise TuningInputError(f"thetas must have shape [{n}] (one per curve point), "
                               f"got {list(th.shape)}")
    return th


def _orientation_vector(curves: Any, thetas: Any) -> tuple[np.ndarray, np.ndarray]:
    r = _curves(curves)
    th = _thetas(thetas, r.shape[-1])
    r = r - r.min(axis=-1, keepdims=True)  # the baseline: the curve's minimum
    return (r * np.exp(2j * th)).sum(axis=-1), r.sum(axis=-1)


def gosi(curves: Any, thetas: Any) -> np.ndarray:
    """Global orientation selectivity of orientation curves ``[..., n_orientations]``.

    ``gOSI = |sum r e^{2 i theta}| / sum r`` after subtracting each curve's minimum;
    ``thetas`` in radians over ``[0, pi)``. NaN for a flat curve (nothing left after
    the baseline) or a curve holding NaN. Returns ``[...]``.
    """
    v, s = _orientation_vector(curves, thetas)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.abs(v) / s
    return np.where(s > 0, out, np.nan)


def preferred_orientation(curves: Any, thetas: Any) -> np.ndarray:
    """The vector preferred orientation ``arg(sum r e^{2 i theta}) / 2`` in ``[0, pi)``
    (baseline-subtracted as in :func:`gosi`); NaN where gOSI is."""
    v, s = _orientation_vector(curves, thetas)
    return np.where(s > 0, np.mod(np.angle(v) / 2.0, np.pi), np.nan)


def _phase_dft(phase_curves: Any) -> np.ndarray:
    r = _curves(phase_curves, "phase_curves")
    if r.shape[-1] < 3:
        raise TuningInputError("phase_curves need at least 3 phases for a first harmonic")
    return np.fft.fft(r, axis=-1) / r.shape[-1]


def f1_f0(phase_curves: Any) -> np.ndarray:
    """Phase modulation ``F1 / (F0 + 1e-8)`` of curves ``[..., n_phases]`` over phases
    uniform on ``[0, 2 pi)``: ``c = DFT / n``, ``F1 = 2 |c_1|``, ``F0 = |c_0|``."""
    c = _phase_dft(phase_curves)
    return 2.0 * np.abs(c[..., 1]) / (np.abs(c[..., 0]) + _EPS_F0)


def preferred_phase(phase_curves: Any) -> np.ndarray:
    """``-arg(c_1)`` in ``[0, 2 pi)``: the phase where the first harmonic peaks."""
    return np.mod(-np.angle(_phase_dft(phase_curves)[..., 1]), 2 * np.pi)


# ------------------------------------------------------------------- Naka-Rushton


def naka_rushton(c: Any, b: Any, g: Any, c50: Any, n: Any) -> np.ndarray:
    """``b + g c^n / (c^n + c50^n)`` (contrast ``c >= 0``, broadcasting)."""
    c = np.asarray(c, dtype=np.float64)
    cn = np.power(c, n)
    return b + g * cn / (cn + np.power(c50, n))


def _r2(y: np.ndarray, fit: np.ndarray) -> float:
    sst = float(((y - y.mean()) ** 2).sum())
    if not np.isfinite(sst) or sst <= 0:
        return float("nan")
    return 1.0 - float(((y - fit) ** 2).sum()) / sst


def _linear_bg(h: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares ``y ~ b + g h`` for every basis row of ``h`` [G, m] and curve of
    ``y`` [U, m] at once: returns b, g, sse, each [G, U]."""
    hm = h.mean(axis=1, keepdims=True)
    hc = h - hm
    shh = (hc ** 2).sum(axis=1)  # [G]
    ym = y.mean(axis=1)
    yc = y - ym[:, None]
    shy = hc @ yc.T  # [G, U]
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.where(shh[:, None] > 0, shy / shh[:, None], 0.0)
    b = ym[None, :] - g * hm
    sse = (yc ** 2).sum(axis=1)[None, :] - g * shy
    return b, g, sse


def fit_naka_rushton(contrasts: Any, responses: Any, n_starts: int = 4,
                     c50_bounds: tuple[float, float] | None = None,
                     n_bounds: tuple[float, float] = (0.3, 8.0)) -> dict[str, np.ndarray]:
    """Fit the signed Naka-Rushton function to each curve of ``responses`` [..., m].

    Starts: for each (c50, n) on a log-spaced grid the best ``b`` and ``g`` are linear
    least squares (all curves at once); the ``n_starts`` best distinct grid points of
    each curve are refined by bounded nonlinear least squares on all four parameters,
    and the fit with the smallest residual is kept. ``c50`` is bounded to
    ``c50_bounds`` (default: from a tenth of the smallest positive contrast to twice
    the largest), ``n`` to ``n_bounds``.

    Returns arrays of shape ``[...]``: ``b``, ``g``, ``c50``, ``n``, ``r2`` (coefficient
    of determination on the sampled curve; NaN for a flat curve), ``success`` and
    ``c50_at_bound`` (the fit pushed c50 to a bound: a curve that does not saturate in
    the sampled range, e.g. a linear one, ends at the upper bound).
    """
    from scipy.optimize import least_squares

    c = np.asarray(contrasts, dtype=np.float64)
    y = _curves(responses, "responses")
    if c.ndim != 1 or c.shape[0] != y.shape[-1]:
        raise TuningInputError(f"contrasts must be [{y.shape[-1]}], got {list(c.shape)}")
    if (c < 0).any() or not np.isfinite(c).all() or (c > 0).sum() < 2:
        raise TuningInputError("contrasts must be finite, >= 0, with at least 2 positive")
    lead = y.shape[:-1]
    y2 = y.reshape(-1, y.shape[-1])
    cpos = c[c > 0]
    lo, hi = c50_bounds or (cpos.min() / 10.0, 2.0 * cpos.max())
    c50_grid = np.geomspace(lo, hi, 24)
    n_grid = np.geomspace(n_bounds[0], n_bounds[1], 16)
    cc, nn = np.meshgrid(c50_grid, n_grid, indexing="ij")
    cc, nn = cc.ravel(), nn.ravel()
    h = naka_rushton(c[None, :], 0.0, 1.0, cc[:, None], nn[:, None])  # [G, m]
    ok_rows = np.isfinite(y2).all(axis=1)
    b_g, g_g, sse_g = _linear_bg(h, np.where(ok_rows[:, None], y2, 0.0))
    out = {k: np.full(y2.shape[0], np.nan) for k in ("b", "g", "c50", "n", "r2")}
    out["success"] = np.zeros(y2.shape[0], bool)
    lb = np.array([-np.inf, -np.inf, lo, n_bounds[0]])
    ub = np.array([np.inf, np.inf, hi, n_bounds[1]])
    for u in np.flatnonzero(ok_rows):
        yu = y2[u]
        if np.ptp(yu) <= 0:
            out["b"][u], out["g"][u] = yu[0], 0.0
            continue
        best = None
        for gi in np.argsort(sse_g[:, u])[:max(1, n_starts)]:
            p0 = np.clip([b_g[gi, u], g_g[gi, u], cc[gi], nn[gi]], lb + 1e-12, ub - 1e-12)
            try:
                res = least_squares(lambda p: naka_rushton(c, *p) - yu, p0, bounds=(lb, ub),
                                    x_scale="jac", max_nfev=400)
            except (ValueError, FloatingPointError):
                continue
            if np.all(np.isfinite(res.x)) and (best is None or res.cost < best.cost):
                best = res
        if best is None:
            continue
        out["b"][u], out["g"][u], out["c50"][u], out["n"][u] = best.x
        out["r2"][u] = _r2(yu, naka_rushton(c, *best.x))
        out["success"][u] = True
    with np.errstate(invalid="ignore"):
        out["c50_at_bound"] = (out["c50"] >= hi * (1 - 1e-6)) | (out["c50"] <= lo * (1 + 1e-6))
    return {k: v.reshape(lead) for k, v in out.items()}


# --------------------------------------------------------------------------- DoG


def dog_log_sf(x: Any, b: float, a_e: float, m_e: float, s_e: float, a_i: float,
               m_i: float, s_i: float) -> np.ndarray:
    """The difference of Gaussians in ``x = log2(sf)`` (see the module text)."""
    x = np.asarray(x, dtype=np.float64)
    return (b + a_e * np.exp(-0.5 * ((x - m_e) / s_e) ** 2)
            - a_i * np.exp(-0.5 * ((x - m_i) / s_i) ** 2))


def _half_height_bandwidth(xd: np.ndarray, fd: np.ndarray) -> float:
    """Full width (octaves) where the fitted curve is above half its peak over its
    minimum on the grid; NaN when the half-height crossing leaves the sampled range."""
    k = int(np.argmax(fd))
    lo_v, pk = float(fd.min()), float(fd[k])
    if pk - lo_v <= 0:
        return float("nan")
    half = lo_v + 0.5 * (pk - lo_v)
    left = np.flatnonzero(fd[:k] < half)
    right = np.flatnonzero(fd[k:] < half)
    if not len(left) or not len(right):
        return float("nan")
    return float(xd[k + right[0]] - xd[left[-1]])


def _dog_residual_jacobian(x: np.ndarray, y: np.ndarray):
    """Residuals [R, m] and Jacobians [R, m, 7] of :func:`dog_log_sf` for parameter rows."""
    def fn(p: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, ae, me, se, ai, mi, si = (p[:, k:k + 1] for k in range(7))
        ue, ui = (x - me) / se, (x - mi) / si
        E, I = np.exp(-0.5 * ue ** 2), np.exp(-0.5 * ui ** 2)
        r = b + ae * E - ai * I - y[rows]
        J = np.stack([np.ones_like(r), E, ae * E * ue / se, ae * E * ue ** 2 / se,
                      -I, -ai * I * ui / si, -ai * I * ui ** 2 / si], axis=-1)
        return r, J
    return fn


def _batched_lm(fn, p0: np.ndarray, lb: np.ndarray, ub: np.ndarray,
                max_iter: int = 300, rtol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt on many independent small problems at once, within bounds.

    ``fn(p [r, k], rows [r]) -> (residuals [r, m], Jacobian [r, m, k])`` for the problems
    ``rows`` at parameters ``p``. Marquardt's diagonal
    scaling; a coordinate at a bound whose gradient points outward is held (an active
    set), every step is clipped into the box, a step is kept only where it lowers the
    cost. Returns the parameters and the final costs (sums of squared residuals).
    """
    lb = np.broadcast_to(lb, p0.shape)
    ub = np.broadcast_to(ub, p0.shape)
    p = np.clip(p0, lb, ub)
    r, J = fn(p, np.arange(len(p)))
    cost = (r ** 2).sum(axis=1)
    lam = np.full(len(p), 1e-3)
    live = np.isfinite(cost)
    k = p.shape[1]
    eye = np.eye(k)
    for _ in range(max_iter):
        if not live.any():
            break
        idx = np.flatnonzero(live)
        Ji, ri, pi = J[idx], r[idx], p[idx]
        A = np.einsum("rmk,rml->rkl", Ji, Ji)
        g = np.einsum("rmk,rm->rk", Ji, ri)
        lbi, ubi = lb[idx], ub[idx]
        held = ((pi <= lbi) & (g > 0)) | ((pi >= ubi) & (g < 0))
        d = np.einsum("rkk->rk", A)
        d = d + 1e-9 * d.mean(axis=1, keepdims=True) + 1e-12
        M = A + lam[idx, None, None] * d[:, :, None] * eye
        M = np.where(held[:, :, None] | held[:, None, :], 0.0, M) + held[:, :, None] * eye
        g = np.where(held, 0.0, g)
        try:
            step = np.linalg.solve(M, -g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.stack([np.linalg.lstsq(m_, -g_, rcond=None)[0] for m_, g_ in zip(M, g)])
        pn = np.clip(pi + step, lbi, ubi)
        rn, Jn = fn(pn, idx)
        cn = (rn ** 2).sum(axis=1)
        better = np.isfinite(cn) & (cn < cost[idx])
        gain = np.where(better, cost[idx] - cn, 0.0)
        sel = idx[better]
        p[sel], r[sel], J[sel], cost[sel] = pn[better], rn[better], Jn[better], cn[better]
        lam[idx] = np.where(better, np.maximum(lam[idx] * 0.3, 1e-12), lam[idx] * 10.0)
        small = gain <= rtol * (cost[idx] + 1e-300)
        done = (better & small) | (lam[idx] > 1e12) | (cost[idx] <= 1e-30)
        live[idx[done]] = False
    return p, cost


def _dog_grid_starts(x: np.ndarray, y: np.ndarray, n_starts: int) -> np.ndarray:
    """Starting points [n_starts, R, 7] for the DoG fits of curves ``y`` [R, m].

    The amplitudes and the baseline enter the DoG linearly: for every (m_e, s_e, m_i, s_i)
    on a grid the best ``b``, ``a_e >= 0``, ``a_i >= 0`` are a small nonnegative least
    squares, solved in closed form for all curves at once (the unconstrained solution or,
    where an amplitude comes out negative, the best of the sub-models without it). Each
    curve's ``n_starts`` best grid points are the starts.
    """
    span = float(x.max() - x.min()) or 1.0
    m_e = np.linspace(x.min() - span / 4, x.max() + span / 4, 12)
    s_e = np.geomspace(0.08 * span, 1.5 * span, 6)
    m_i = np.linspace(x.min() - span / 4, x.max() + span / 4, 7)
    s_i = np.geomspace(0.15 * span, 2.5 * span, 4)
    G = np.stack(np.meshgrid(m_e, s_e, m_i, s_i, indexing="ij"), -1).reshape(-1, 4)
    E = np.exp(-0.5 * ((x[None] - G[:, :1]) / G[:, 1:2]) ** 2)   # [G, m]
    I = np.exp(-0.5 * ((x[None] - G[:, 2:3]) / G[:, 3:4]) ** 2)
    cols = np.stack([np.ones_like(E), E, -I], axis=-1)           # [G, m, 3]
    yty = (y ** 2).sum(axis=1)                                    # [R]
    best_sse = np.full((len(G), len(y)), np.inf)
    best_th = np.zeros((len(G), len(y), 3))
    for keep in ((0, 1, 2), (0, 1), (0, 2), (0,)):
        X = cols[:, :, keep]                                      # [G, m, q]
        gram = np.einsum("gmq,gmr->gqr", X, X) + 1e-12 * np.eye(len(keep))
        rhs = np.einsum("gmq,rm->grq", X, y)                      # [G, R, q]
        th = np.einsum("gqr,gur->guq", np.linalg.inv(gram), rhs)
        sse = yty[None] - 2 * (th * rhs).sum(-1) + np.einsum("guq,gqr,gur->gu", th, gram, th)
        ok = (th[..., 1:] >= 0).all(axis=-1) & (sse < best_sse)
        full = np.zeros((len(G), len(y), 3))
        full[..., list(keep)] = th
        best_sse = np.where(ok, sse, best_sse)
        best_th = np.where(ok[..., None], full, best_th)
    order = np.argsort(best_sse, axis=0)[:n_starts]               # [S, R]
    r = np.arange(len(y))
    th = best_th[order, r]                                        # [S, R, 3]
    g = G[order]                                                  # [S, R, 4]
    amp = np.ptp(y, axis=1)[None]
    return np.stack([th[..., 0], np.maximum(th[..., 1], 0) + 1e-6 * amp, g[..., 0], g[..., 1],
                     np.maximum(th[..., 2], 0), g[..., 2], g[..., 3]], axis=-1)


def fit_dog_sf(sfs: Any, responses: Any, n_starts: int = 5, n_dense: int = 200,
               max_iter: int = 300) -> dict[str, np.ndarray]:
    """Fit a difference of Gaussians in log2 spatial frequency to each curve of
    ``responses`` [..., m] sampled at spatial frequencies ``sfs`` [m] (cycles/pixel).

    Amplitudes ``a_e, a_i >= 0``, widths ``>= 0.05`` octaves, centres within a range's
    width of the sampled range. ``n_starts`` starting points per curve: the best points of
    a grid over the Gaussians' centres and widths, with the baseline and amplitudes
    solved exactly for each (:func:`_dog_grid_starts`); each start is refined by bounded
    Levenberg-Marquardt (all curves and starts at once) and the fit with the largest R^2
    is kept.

    Returns arrays ``[...]``: ``pref_sf`` (the fitted curve's maximum on ``n_dense``
    geometrically spaced SFs over the sampled range), ``pref_sf_sampled`` (the sampled
    SF of largest response), ``pref_sf_index`` (its index), ``bandwidth_octaves`` (full
    width at half height of the fitted curve above its minimum, NaN when not bounded in
    range), ``r2`` and ``success``; ``params`` [..., 7] (b, a_e, m_e, s_e, a_i, m_i, s_i).
    """
    f = np.asarray(sfs, dtype=np.float64)
    y = _curves(responses, "responses")
    if f.ndim != 1 or f.shape[0] != y.shape[-1] or (f <= 0).any():
        raise TuningInputError(f"sfs must be [{y.shape[-1]}] positive frequencies, got "
                               f"shape {list(f.shape)}")
    if n_starts < 1:
        raise TuningInputError(f"n_starts must be >= 1, got {n_starts}")
    x = np.log2(f)
    span = float(x.max() - x.min()) or 1.0
    xd = np.linspace(x.min(), x.max(), n_dense)
    lead = y.shape[:-1]
    y2 = y.reshape(-1, y.shape[-1])
    nu = y2.shape[0]
    out = {k: np.full(nu, np.nan) for k in ("pref_sf", "pref_sf_sampled", "bandwidth_octaves",
                                            "r2")}
    out["pref_sf_index"] = np.full(nu, -1, np.int64)
    out["success"] = np.zeros(nu, bool)
    out["params"] = np.full((nu, 7), np.nan)
    finite = np.isfinite(y2).all(axis=1)
    k = np.argmax(np.where(finite[:, None], y2, -np.inf), axis=1)
    out["pref_sf_index"][finite] = k[finite]
    out["pref_sf_sampled"][finite] = f[k[finite]]
    amp = np.ptp(np.where(finite[:, None], y2, 0.0), axis=1)
    fit_rows = np.flatnonzero(finite & (amp > 0))
    if fit_rows.size:
        yu = y2[fit_rows]
        starts = _dog_grid_starts(x, yu, n_starts)  # [S, R, 7]
        p0 = starts.reshape(-1, 7)
        yy = np.tile(yu, (len(starts), 1))
        lb = np.array([-np.inf, 0.0, x.min() - span, 0.05, 0.0, x.min() - span, 0.05])
        ub = np.array([np.inf, np.inf, x.max() + span, 4 * span, np.inf, x.max() + span, 4 * span])
        p, cost = _batched_lm(_dog_residual_jacobian(x, yy), p0, lb, ub, max_iter)
        sst = ((yy - yy.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        r2 = np.where(np.isfinite(cost), 1.0 - cost / sst, -np.inf).reshape(len(starts), -1)
        best = np.argmax(r2, axis=0)
        pb = p.reshape(len(starts), -1, 7)[best, np.arange(len(yu))]
        rb = r2[best, np.arange(len(yu))]
        fd = (pb[:, :1] + pb[:, 1:2] * np.exp(-0.5 * ((xd - pb[:, 2:3]) / pb[:, 3:4]) ** 2)
              - pb[:, 4:5] * np.exp(-0.5 * ((xd - pb[:, 5:6]) / pb[:, 6:7]) ** 2))
        ok = np.isfinite(rb) & np.isfinite(fd).all(axis=1)
        for j in np.flatnonzero(ok):
            u = fit_rows[j]
            out["params"][u], out["r2"][u], out["success"][u] = pb[j], rb[j], True
            out["pref_sf"][u] = 2.0 ** xd[int(np.argmax(fd[j]))]
            out["bandwidth_octaves"][u] = _half_height_bandwidth(xd, fd[j])
    res = {k_: v.reshape(lead) for k_, v in out.items() if k_ != "params"}
    res["params"] = out["params"].reshape(*lead, 7)
    return res


# ------------------------------------------------------------- grids and QC


def grid_tuning_curves(R: Any) -> dict[str, np.ndarray]:
    """Curves of every unit from a response tensor ``R[o, p, s, d]`` (orientation,
    phase, spatial frequency, unit) of full-field gratings (paper A.4):

    * ``orientation`` [d, o]: mean over phase and SF;
    * ``pref_ori_index`` [d]: the sampled orientation bin of largest mean response;
    * ``sf`` [d, s]: at the preferred orientation bin, mean over phase;
    * ``pref_sf_index`` [d]: the sampled SF of largest response there;
    * ``phase`` [d, p]: at the preferred orientation and SF bins.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 4:
        raise TuningInputError(f"R must be [orientations, phases, sfs, units], got {list(R.shape)}")
    d = np.arange(R.shape[3])
    ori = R.mean(axis=(1, 2)).T  # [d, o]
    io = np.argmax(ori, axis=1)
    sf = R[io, :, :, d].mean(axis=1)  # [d, s]
    isf = np.argmax(sf, axis=1)
    phase = R[io, :, isf, d]  # [d, p]
    return {"orientation": ori, "pref_ori_index": io, "sf": sf, "pref_sf_index": isf,
            "phase": phase}


@dataclass(frozen=True)
class QCThresholds:
    """Loose inclusion thresholds (paper A.4; its numbers were lost, these are ours).

    Ranges are peak-to-peak responses in the units' own (feature) scale."""

    responsive: float = 1e-3
    orientation_range: float = 1e-3
    phase_range: float = 1e-3
    sf_range: float = 1e-3
    contrast_range: float = 1e-3
    sf_r2: float = 0.5
    contrast_r2: float = 0.5


def qc_flags(curves: dict[str, Any], gosi_values: Any, f1f0_values: Any,
             dog: dict[str, Any], nr: dict[str, Any], sfs: Any,
             thresholds: QCThresholds = QCThresholds()) -> dict[str, np.ndarray]:
    """Quality-control flags per unit (paper A.4).

    ``curves`` holds ``orientation``, ``phase``, ``sf`` and ``contrast`` curves, each
    ``[units, points]``. A unit is *responsive* when the largest peak-to-peak range of
    its four curves exceeds ``responsive``. Then
    ``qc_orientation``: responsive, finite gOSI, orientation range > threshold;
    ``qc_phase``: responsive, finite F1/F0, phase range > threshold;
    ``qc_sf``: responsive, SF range > threshold, finite sampled and fitted preferred SF
    inside the sampled range, DoG fit succeeded with R^2 >= ``sf_r2``;
    ``qc_contrast``: responsive, contrast range > threshold, Naka-Rushton fit succeeded
    with finite parameters and R^2 >= ``contrast_r2``.
    """
    t = thresholds
    rng = {k: np.ptp(np.asarray(curves[k], dtype=np.float64), axis=-1)
           for k in ("orientation", "phase", "sf", "contrast")}
    responsive = np.nanmax(np.stack(list(rng.values())), axis=0) > t.responsive
    f = np.asarray(sfs, dtype=np.float64)
    pref = np.asarray(dog["pref_sf"], dtype=np.float64)
    in_range = np.isfinite(pref) & (pref >= f.min() * (1 - 1e-9)) & (pref <= f.max() * (1 + 1e-9))
    nr_finite = np.all([np.isfinite(np.asarray(nr[k], dtype=np.float64))
                        for k in ("b", "g", "c50", "n")], axis=0)
    dog_r2 = np.asarray(dog["r2"], dtype=np.float64)
    nr_r2 = np.asarray(nr["r2"], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return {
            "responsive": responsive,
            "qc_orientation": responsive & np.isfinite(np.asarray(gosi_values, float))
            & (rng["orientation"] > t.orientation_range),
            "qc_phase": responsive & np.isfinite(np.asarray(f1f0_values, float))
            & (rng["phase"] > t.phase_range),
            "qc_sf": responsive & (rng["sf"] > t.sf_range)
            & np.isfinite(np.asarray(dog["pref_sf_sampled"], float)) & in_range
            & np.asarray(dog["success"], bool) & (dog_r2 >= t.sf_r2),
            "qc_contrast": responsive & (rng["contrast"] > t.contrast_range)
            & np.asarray(nr["success"], bool) & nr_finite & (nr_r2 >= t.contrast_r2),
        }
