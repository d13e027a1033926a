"""Contact sheets: one row per sweep (or controversial pair), the images in level order."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

__all__ = ["contact_sheet"]


def contact_sheet(rows: pd.DataFrame, images: dict[str, bytes], kind: str) -> bytes:
    """PNG bytes: each sweep of ``rows`` (stimuli rows of one kind) as a row of its images,
    titled with the intended and achieved prediction (accentuation: in SDs from the seed's
    prediction; controversial: A's and B's, in SDs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    groups = list(rows.groupby("sweep_key", sort=False))
    ncol = max(len(g) for _, g in groups)
    fig, axes = plt.subplots(len(groups), ncol, figsize=(1.15 * ncol, 1.45 * len(groups) + 0.5),
                             squeeze=False)
    for r, (_, g) in enumerate(groups):
        g = g.sort_values("level")
        for c in range(ncol):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c >= len(g):
                continue
            row = g.iloc[c]
            ax.imshow(np.asarray(Image.open(io.BytesIO(images[row["stimulus_id"]])).convert("RGB")))
            if kind == "accentuate":
                got = (row["predicted"] - row["seed_prediction"]) / row["response_sd"]
                ax.set_title(f"{row['offset_sd']:+.1f} / {got:+.2f}", fontsize=6, pad=2)
            else:
                ax.set_title(f"{row['condition']}\nA {row['z_a']:+.2f} B {row['z_b']:+.2f}",
                             fontsize=6, pad=2)
            if c == 0:
                ax.set_ylabel(f"{row['site']}\n{row['seed_id']}", fontsize=6)
    what = ("intended / achieved prediction, SDs from the seed's" if kind == "accentuate"
            else "predictions of A and B, SDs from the seed's")
    model = rows["model"].iloc[0] + " " + rows["layer"].iloc[0]
    if kind == "controversial":
        model = f"A {model} vs B {rows['model_b'].iloc[0]} {rows['layer_b'].iloc[0]}"
    fig.suptitle(f"{kind}: {model} ({what})", fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.97), pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
