"""Per-neuroid metrics and their aggregation over neuroids of a region (SCIENCE.md section 4)."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["pearson_r", "explained_variance", "aggregate", "MetricInputError"]


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
    if y.ndim != 2 or y.shape[0] < 2:
        raise MetricInputError(f"need [n_samples >= 2, n_targets] arrays, got shape {y.shape}")
    return y, y_hat, was_1d


def pearson_r(y: Any, y_hat: Any) -> np.ndarray | float:
    """Pearson correlation of each column of y with the same column of y_hat.

    Constant columns give NaN. 1-D inputs give a float.
    """
    y, y_hat, was_1d = _pair(y, y_hat)
    yc = y - y.mean(0)
    pc = y_hat - y_hat.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (yc * pc).sum(0) / np.sqrt((yc ** 2).sum(0) * (pc ** 2).sum(0))
    return float(r[0]) if was_1d else r


def explained_variance(y: Any, y_hat: Any) -> np.ndarray | float:
    """``1 - Var(y - y_hat) / Var(y)`` per column (sklearn's explained_variance_score,
    multioutput="raw_values"); a constant y column gives NaN (sklearn gives 1 or 0)."""
    y, y_hat, was_1d = _pair(y, y_hat)
    with np.errstate(divide="ignore", invalid="ignore"):
        vy = y.var(0)
        ev = 1.0 - (y - y_hat).var(0) / vy
    ev = np.where(vy > 0, ev, np.nan)
    return float(ev[0]) if was_1d else ev


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
