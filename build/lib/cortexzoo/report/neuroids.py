"""Per-neuroid comparisons: for what fraction of neuroids does a trained network's best
layer beat its random initialization's best layer (SCIENCE.md section 4)?

Each model's best layer is its in-sample best for the region (highest mean ridge r on
all stimuli, the layer the per-neuroid table has values for); the comparison is paired
over the region's neuroids: the fraction with a higher r for the trained variant (ties
count one half), and a paired t-test with Hedges' g (g_av) and d_z.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .tables import GROUP, best_layers, with_scan

__all__ = ["trained_vs_random_neuroids", "NEUROID_COMPARISON_COLUMNS"]

NEUROID_COMPARISON_COLUMNS = ["dataset", "scan", "region", "architecture", "trained_layer",
                              "random_layer", "n_neuroids", "fraction_trained_better", "t", "df",
                              "p", "mean_diff", "hedges_g", "d_z"]


def _arch(model: str) -> str:
    return str(model).split("@")[0]


def trained_vs_random_neuroids(scores: pd.DataFrame, neuroids: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, scan, region, architecture) that has a trained and a random
    variant with per-neuroid ridge r at their best layers."""
    from ..mapping import paired_ttest

    best = best_layers(scores, "ridge_gcv", "pearson_r")
    if best.empty or neuroids is None or len(neuroids) == 0:
        return pd.DataFrame(columns=NEUROID_COMPARISON_COLUMNS)
    nr = neuroids[neuroids["metric"].astype(str) == "pearson_r"].copy()
    if "scan_key" in nr.columns:
        nr["scan"] = nr["scan_key"].astype(str)
    else:
        nr = with_scan(nr)
    for c in ("dataset", "model", "layer", "region", "neuroid_id"):
        nr[c] = nr[c].astype(str)
    best = best[best["weights"].isin(["trained", "random"])].assign(
        architecture=lambda d: d["model"].map(_arch))
    rows = []
    for (ds, scan, region, arch), g in best.groupby(GROUP + ["region", "architecture"], sort=True):
        variants = {w: r for w, r in zip(g["weights"], g.itertuples())}
        if set(variants) != {"trained", "random"}:
            continue
        vals = {}
        for w, r in variants.items():
            sel = nr[(nr["dataset"] == ds) & (nr["scan"] == scan) & (nr["region"] == region)
                     & (nr["model"] == r.model) & (nr["layer"] == r.layer)]
            vals[w] = sel.set_index("neuroid_id")["value"].astype(np.float64)
        both = pd.concat(vals, axis=1, join="inner").dropna()
        if both.empty:
            continue
        t, b = both["trained"].to_numpy(), both["random"].to_numpy()
        row = dict(dataset=ds, scan=scan, region=region, architecture=arch,
                   trained_layer=variants["trained"].layer, random_layer=variants["random"].layer,
                   n_neuroids=int(t.size),
                   fraction_trained_better=float(np.mean((t > b) + 0.5 * (t == b))),
                   t=np.nan, df=np.nan, p=np.nan, mean_diff=float(np.mean(t - b)),
                   hedges_g=np.nan, d_z=np.nan)
        if t.size >= 2:
            res = paired_ttest(t, b)
            row.update(t=res.t, df=res.df, p=res.p, mean_diff=res.mean_diff,
                       hedges_g=res.hedges_g, d_z=res.d_z)
        rows.append(row)
    return pd.DataFrame(rows, columns=NEUROID_COMPARISON_COLUMNS)
