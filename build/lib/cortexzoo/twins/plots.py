"""Plot of the twins' neural-prediction scores: one column per encoder, seeds as dots."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

__all__ = ["plot_twins"]


def plot_twins(scores: pd.DataFrame, metric: str = "chunked_pearson_r",
               animal: str = "all") -> bytes:
    """PNG bytes: score per encoder (mean bar, one dot per seed, min-max whisker).

    ``scores`` are twin score rows (``method == "twin"``, with ``encoder`` and
    ``animal`` columns, as written by :func:`cortexzoo.twins.evaluate.evaluate_family`).
    The dashed line is the mean noise ceiling when the data have one.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = scores[(scores["method"] == "twin") & (scores["metric"] == metric)]
    if "animal" in df.columns:
        df = df[df["animal"] == animal]
    if df.empty:
        raise ValueError(f"no twin scores with metric {metric!r} for animal {animal!r}")
    enc = df["encoder"] if "encoder" in df.columns else df["model"].str.extract(r"twin:(.*)#")[0]
    df = df.assign(encoder=enc.to_numpy())
    order = (df.groupby("encoder")["value"].mean().sort_values(ascending=False).index.tolist())
    fig, ax = plt.subplots(figsize=(1.2 * len(order) + 2.5, 3.6), dpi=120)
    rng = np.random.default_rng(0)
    for i, e in enumerate(order):
        v = df.loc[df["encoder"] == e, "value"].to_numpy(float)
        ax.bar(i, np.nanmean(v), color="#9ecae1", width=0.6, zorder=1)
        ax.plot([i, i], [np.nanmin(v), np.nanmax(v)], color="#08519c", lw=1.5, zorder=2)
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(v)), v, color="#08519c", s=18, zorder=3)
    ceil = pd.to_numeric(df["ceiling"], errors="coerce").to_numpy(float)
    if np.isfinite(ceil).any():
        ax.axhline(np.nanmean(ceil), ls="--", color="gray", lw=1, label="noise ceiling")
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_xticks(range(len(order)), order, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(metric.replace("_", " "))
    n_seeds = df.groupby("encoder")["seed"].nunique().max()
    ax.set_title(f"digital twins, test {metric.replace('_', ' ')}\n({animal} animals, "
                 f"up to {n_seeds} seed(s) per encoder)", fontsize=9)
    ax.set_ylim(min(0.0, float(np.nanmin(df["value"])) - 0.05), None)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
