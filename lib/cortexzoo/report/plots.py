"""Figures people would rather look at than read."""
from __future__ import annotations

import io

import pandas as pd

from .tables import HEADLINE


def _base_name(model: str) -> str:
    return model.split("@")[0]


def plot_depth(scores: pd.DataFrame, method: str = "ridge_gcv", metric: str | None = None,
               path: str | None = None) -> bytes:
    """Score vs relative depth per model, one panel per region; trained solid, random
    dashed, one colour per architecture (Fig. 1 of paper 000). Returns PNG bytes and
    writes them to ``path`` when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = metric or HEADLINE[method]
    df = scores[(scores["method"] == method) & (scores["metric"] == metric)]
    regions = sorted(df["region"].unique()) or ["(none)"]
    fig, axes = plt.subplots(1, len(regions), figsize=(5.5 * len(regions), 4.2), squeeze=False)
    use = "ceiled_value" if df["ceiled_value"].notna().any() else "value"
    archs = sorted({_base_name(m) for m in df["model"].unique()})
    colors = {a: plt.cm.tab10(i % 10) for i, a in enumerate(archs)}
    for ax, region in zip(axes[0], regions):
        sub = df[df["region"] == region]
        for model, g in sub.groupby("model"):
            g = g.sort_values("relative_depth")
            weights = str(g["weights"].iloc[0])
            style = "--" if weights == "random" else "-"
            marker = "o" if len(g) == 1 else None
            ax.plot(g["relative_depth"], g[use], style, color=colors[_base_name(model)],
                    marker=marker, label=model, lw=1.6)
        ax.set_title(f"{region}")
        ax.set_xlabel("relative depth")
        ax.set_ylabel(f"{metric} ({'ceiled' if use == 'ceiled_value' else 'raw'})")
        ax.set_xlim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{method}: score by layer depth (solid trained, dashed random)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    data = buf.getvalue()
    if path:
        with open(path, "wb") as f:
            f.write(data)
    return data
