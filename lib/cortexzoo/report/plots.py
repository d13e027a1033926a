"""Figures people would rather look at than read."""
from __future__ import annotations

import io

import pandas as pd

from .tables import HALVES, headline


def _base_name(model: str) -> str:
    return model.split("@")[0]


def plot_depth(scores: pd.DataFrame, methods: tuple[str, ...] = ("ridge_gcv", "rsa"),
               path: str | None = None) -> bytes:
    """Score vs relative depth per model: one row of panels per method, one column per
    region; trained solid, random dashed, one colour per architecture (Fig. 1 of paper
    000); single-layer baselines as dotted horizontal lines. Returns PNG bytes (and
    writes them to ``path`` when given). ``scores`` should hold one dataset and scan
    configuration (see :func:`cortexzoo.report.with_scan`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in methods if (scores["method"] == m).any()] or list(methods[:1])
    # regions of the plotted methods only (decoding rows, for one, have regions of their own)
    regions = sorted(scores.loc[scores["method"].isin(methods), "region"].unique()) or ["(none)"]
    fig, axes = plt.subplots(len(methods), len(regions), squeeze=False,
                             figsize=(5.5 * len(regions), 3.9 * len(methods)))
    archs = sorted({_base_name(m) for m in scores["model"].unique()})
    colors = {a: plt.cm.tab10(i % 10) for i, a in enumerate(archs)}
    for row, method in enumerate(methods):
        metric = headline(scores, method)
        df = scores[(scores["method"] == method) & (scores["metric"] == metric)
                    & ~scores.get("split", pd.Series("loo", index=scores.index)).isin(HALVES)]
        use = "ceiled_value" if df["ceiled_value"].notna().any() else "value"
        for ax, region in zip(axes[row], regions):
            sub = df[df["region"] == region]
            for model, g in sub.groupby("model"):
                g = g.sort_values("relative_depth")
                color = colors[_base_name(model)]
                if len(g) == 1:  # a baseline has no depth: a reference line
                    ax.axhline(float(g[use].iloc[0]), color=color, ls=":", lw=1.4, label=model)
                    continue
                style = "--" if str(g["weights"].iloc[0]) == "random" else "-"
                ax.plot(g["relative_depth"], g[use], style, color=color, label=model, lw=1.6)
            ax.set_title(f"{region}: {method}")
            ax.set_xlabel("relative depth")
            ax.set_ylabel(f"{metric} ({'ceiled' if use == 'ceiled_value' else 'raw'})")
            ax.set_xlim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="best")
    fig.suptitle("score by layer depth\n(solid trained, dashed random, dotted baselines)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    data = buf.getvalue()
    if path:
        with open(path, "wb") as f:
            f.write(data)
    return data
