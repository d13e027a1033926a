"""Per-neuroid metrics and their aggregation over neuroids of a region (SCIENCE.md
sections 4 and 8). The one place these formulas live: scans, fine-tuning, twins and
ceilings all call them. Imports numpy only (no scikit-learn, no Ray), so that a Ray
Tune trial or a Train worker can use it cheaply.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["pearson_r", "explained_variance", "neuroid_metrics", "masked_pearson",
           "chunked_pearson", "overall_pearson", "aggregate", "MetricInputError"]


class MetricInputError(ValueError):
    """Bad input to a metric (shape mismatch, empty input)."""


def _pair(y: Any, y_hat: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    y = np.asarray(y, dtype=np.float64)
    y_hat = np.asarray(y_hat, dtype=np.float64)
    if y.shape != y_hat.shape:
        raise MetricInputError(f"y has shape {y.shape} but y_hat has shape {y_hat.shape}")
    was_1d = y.ndim == 1
    if was_1d:
        y, y_hat = y[:, None], y_hat[:, None]
    if y.ndim != 2:
        raise MetricInputError(f"need [n_samples, n_targets] arrays, got shape {y.shape}")
    return y, y_hat, was_1d


def _masked(y: np.ndarray, y_hat: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-column EV and r over the rows where ``ok``; also the count and Var(y).

    EV = 1 - Var(y - y_hat) / Var(y) (sklearn's explained_variance_score); r = Pearson."""
    n = ok.sum(0)
    w = ok.astype(np.float64)
    y0, p0 = np.where(ok, y, 0.0), np.where(ok, y_hat, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        my, mp = y0.sum(0) / n, p0.sum(0) / n
        yc, pc = (y0 - my) * w, (p0 - mp) * w
        vy = (yc ** 2).sum(0) / n
        res = (y0 - p0) * w
        vres = ((res - res.sum(0) / n) * w) ** 2
        ev = 1.0 - (vres.sum(0) / n) / vy
        r = (yc * pc).sum(0) / np.sqrt((yc ** 2).sum(0) * (pc ** 2).sum(0))
    return ev, r, n, vy


def neuroid_metrics(y: Any, y_hat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuroid explained variance and Pearson r, each neuroid over the stimuli where
    its target is finite (NaN targets are skipped, per neuroid).

    NaN for a neuroid with fewer than 2 valid stimuli or constant responses."""
    y, y_hat, _ = _pair(y, y_hat)
    ev, r, n, vy = _masked(y, y_hat, np.isfinite(y))
    bad = (n < 2) | ~(vy > 0)
    ev[bad] = np.nan
    r[bad] = np.nan
    return ev, r


def masked_pearson(a: Any, b: Any, min_count: int = 2) -> np.ndarray:
    """Pearson r per column over the rows where both ``a`` and ``b`` are finite; NaN for
    columns with fewer than ``min_count`` such rows or a constant side."""
    a, b, _ = _pair(a, b)
    ok = np.isfinite(a) & np.isfinite(b)
    _, r, n, _ = _masked(a, b, ok)
    r = np.where(np.isfinite(r), r, np.nan)
    r[n < min_count] = np.nan
    return r


def pearson_r(y: Any, y_hat: Any) -> np.ndarray | float:
    """Pearson correlation of each column of y with the same column of y_hat.

    Constant columns, and columns holding NaN or inf, give NaN. 1-D inputs give a float.
    """
    y, y_hat, was_1d = _pair(y, y_hat)
    if y.shape[0] < 2:
        raise MetricInputError(f"need [n_samples >= 2, n_targets] arrays, got shape {y.shape}")
    finite = np.isfinite(y).all(0) & np.isfinite(y_hat).all(0)
    _, r, _, _ = _masked(y, y_hat, np.ones_like(y, dtype=bool))
    r = np.where(finite, r, np.nan)
    return float(r[0]) if was_1d else r


def explained_variance(y: Any, y_hat: Any) -> np.ndarray | float:
    """``1 - Var(y - y_hat) / Var(y)`` per column (sklearn's explained_variance_score,
    multioutput="raw_values"); a constant y column gives NaN (sklearn gives 1 or 0),
    as does a column holding NaN or inf."""
    y, y_hat, was_1d = _pair(y, y_hat)
    if y.shape[0] < 2:
        raise MetricInputError(f"need [n_samples >= 2, n_targets] arrays, got shape {y.shape}")
    finite = np.isfinite(y).all(0) & np.isfinite(y_hat).all(0)
    ev, _, _, vy = _masked(y, y_hat, np.ones_like(y, dtype=bool))
    ev = np.where(finite & (vy > 0), ev, np.nan)
    return float(ev[0]) if was_1d else ev


def chunked_pearson(pred: Any, true: Any, chunk: int = 100) -> np.ndarray:
    """Per-neuron Pearson r within non-overlapping ``chunk``-sample chunks, chunk-averaged
    (the twins' neural-prediction metric, SCIENCE.md section 8).

    ``pred``/``true`` are [T, N]. Chunks are ``[0, chunk), [chunk, 2 chunk), ...``; a
    trailing remainder shorter than ``chunk`` is dropped (when ``T < chunk`` the whole
    series is one chunk). Chunks where either series is constant have no correlation
    and are left out of that neuron's average. Returns [N] (NaN for a neuron without
    any defined chunk).
    """
    pred = np.asarray(pred, np.float64)
    true = np.asarray(true, np.float64)
    if pred.shape != true.shape or pred.ndim != 2:
        raise ValueError(f"pred and true must be [T, N] of one shape, got {pred.shape} and "
                         f"{true.shape}")
    if chunk < 2:
        raise ValueError(f"chunk must be >= 2, got {chunk}")
    t, n = pred.shape
    nc = t // chunk
    if nc == 0:
        p, y = pred[None], true[None]
    else:
        p = pred[:nc * chunk].reshape(nc, chunk, n)
        y = true[:nc * chunk].reshape(nc, chunk, n)
    pc = p - p.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    sp, sy = (pc ** 2).sum(axis=1), (yc ** 2).sum(axis=1)
    # "constant" relative to the series' scale, so float round-off is not a correlation
    ok = (sp > 1e-20 * np.maximum(1.0, (p ** 2).sum(axis=1))) & \
         (sy > 1e-20 * np.maximum(1.0, (y ** 2).sum(axis=1)))
    r = np.full(ok.shape, np.nan)
    r[ok] = (pc * yc).sum(axis=1)[ok] / np.sqrt(sp[ok] * sy[ok])
    cnt = ok.sum(axis=0)
    out = np.full(n, np.nan)
    has = cnt > 0
    out[has] = np.nansum(r, axis=0)[has] / cnt[has]
    return out


def overall_pearson(pred: Any, true: Any) -> float:
    """Pearson r over all entries of ``pred`` and ``true`` (flattened)."""
    p = np.asarray(pred, np.float64).ravel()
    y = np.asarray(true, np.float64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"pred and true differ in size: {p.size} vs {y.size}")
    p, y = p - p.mean(), y - y.mean()
    den = np.sqrt((p ** 2).sum() * (y ** 2).sum())
    return float((p * y).sum() / den) if den > 0 else float("nan")


def aggregate(values: Any, groups: Any) -> "pandas.DataFrame":  # noqa: F821
    """Mean, median, count and SEM of per-neuroid values per group (e.g. region), NaN-skipping.

    Returns a DataFrame indexed by group with columns ``mean``, ``median``, ``n``
    (finite values used), ``n_nan`` and ``sem``.
    """
    import pandas as pd

    v = np.asarray(values, dtype=np.float64).ravel()
    g = np.asarray(groups).ravel()
    if v.shape != g.shape:
        raise MetricInputError(f"values has {v.size} entries but groups has {g.size}")
    df = pd.DataFrame({"group": g, "value": v})
    out = df.groupby("group", sort=True)["value"].agg(
        mean="mean", median="median", n="count", sem="sem")
    out["n_nan"] = df["value"].isna().groupby(df["group"]).sum().astype(int)
    return out[["mean", "median", "n", "n_nan", "sem"]]
