"""The fine-tuning leaderboard, ordered like Table 1 of paper 000.

Groups, in order: pixel baselines (Linear, Linear + PCA, Ridge Regression, Ridge
Regression + PCA), task-driven features (scan rows, method ``ridge_gcv``: each model's
best layer, trained before random), the shallow CNN, and fine-tuned networks (one row per
preset run or tuning campaign; a campaign is represented by its trial with the best
*validation* EV). Within the last groups rows go from the lowest to the highest EV, so
the best model closes the table as in 000.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .baselines import PIXEL_METHODS

__all__ = ["finetune_leaderboard", "format_finetune_leaderboard"]

_GROUPS = ("pixels", "task-driven", "shallow CNN", "fine-tuned")
_EV, _R = "explained_variance", "pearson_r"


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df.columns else pd.Series([None] * len(df), index=df.index)


def finetune_leaderboard(scores: pd.DataFrame, split: str = "test",
                         region: str | None = None) -> pd.DataFrame:
    """Table 1 of 000 from a scores table (``ResultStore.read_scores()``).

    Parameters
    ----------
    scores : score rows of scans, pixel baselines, fine-tuning runs and campaigns.
    split : which split's numbers to show for baselines and fine-tuned networks
        ("test" by default; scan rows are leave-one-out over all stimuli and shown as is).
    region : keep one region (default: every region, one block of rows per region).

    Returns
    -------
    DataFrame with columns group, label, model, method, layer, preset, ev_pct, corr_pct,
    ev_ceiled, region, split, n_neuroids, run_id, selected_by — ordered like Table 1.
    """
    out_cols = ["group", "label", "model", "method", "layer", "preset", "ev_pct", "corr_pct",
                "ev_ceiled", "region", "split", "n_neuroids", "run_id", "selected_by"]
    if scores is None or len(scores) == 0:
        return pd.DataFrame(columns=out_cols)
    df = scores[scores["metric"].isin([_EV, _R])].copy()
    if region is not None:
        df = df[df["region"] == region]
    df["preset"] = _col(df, "preset")
    df["campaign"] = _col(df, "campaign")
    df["trial_id"] = _col(df, "trial_id")
    df["unit_key"] = _col(df, "unit_key")
    records = []

    def pair(sub: pd.DataFrame) -> tuple[float, float, float]:
        ev = sub[sub["metric"] == _EV]
        r = sub[sub["metric"] == _R]
        return (float(ev["value"].mean()) if len(ev) else np.nan,
                float(r["value"].mean()) if len(r) else np.nan,
                float(ev["ceiled_value"].mean()) if len(ev) else np.nan)

    def add(group, label, sub, selected_by="", split_shown=split):
        ev, r, evc = pair(sub)
        first = sub.iloc[0]
        records.append(dict(group=group, label=label, model=first["model"],
                            method=first["method"], layer=first["layer"],
                            preset=first["preset"], ev_pct=100 * ev, corr_pct=100 * r,
                            ev_ceiled=evc, region=first["region"], split=split_shown,
                            n_neuroids=int(first["n_neuroids"]), run_id=first["run_id"],
                            selected_by=selected_by))

    for reg in sorted(df["region"].dropna().unique()):
        d = df[df["region"] == reg]
        # 1. pixel baselines, fixed order
        pix = d[d["method"].isin(list(PIXEL_METHODS)) & (d["split"] == split)]
        for m, label in PIXEL_METHODS.items():
            sub = pix[pix["method"] == m]
            for model, g in sub.groupby("model", sort=True):
                last = g[g["run_id"] == g.sort_values("created_at")["run_id"].iloc[-1]]
                add("pixels", label if model.endswith("pixels32@none") else f"{label} ({model})",
                    last)
        # 2. task-driven layers from scans: best layer of each model
        scan = d[d["method"] == "ridge_gcv"]
        if len(scan):
            ev = scan[scan["metric"] == _EV]
            best = ev.loc[ev.groupby("model")["value"].idxmax()]
            best = best.assign(trained=best["weights"] != "random").sort_values(
                ["trained", "model"], ascending=[False, True])
            for _, b in best.iterrows():
                sub = scan[(scan["model"] == b["model"]) & (scan["layer"] == b["layer"])]
                add("task-driven", f"{b['model']} ({b['layer']})", sub,
                    selected_by="best layer", split_shown=str(b["split"]))
        # 3./4. fine-tuned networks
        ft = d[d["method"] == "finetune"]
        entries = []
        for key, g in ft.groupby(ft["campaign"].fillna("") + "|" + ft["preset"].fillna("") + "|"
                                 + ft["model"], sort=True):
            val = g[(g["split"] == "val") & (g["metric"] == _EV)]
            if not len(val):
                continue
            by_unit = val.groupby("unit_key")["value"].mean()
            unit = by_unit.idxmax()
            sub = g[(g["unit_key"] == unit) & (g["split"] == split)]
            if not len(sub):
                continue
            first = sub.iloc[0]
            shallow = str(first["model"]).startswith("custom:shallow_cnn")
            camp = first["campaign"]
            if shallow:
                label = "Shallow CNN"
            elif isinstance(camp, str) and camp:
                label = f"{first['model']} (tuned: {camp}, trial {first['trial_id']})"
            else:
                label = f"{first['model']} ({first['preset']})"
            sel = "best validation EV" + (f" of {by_unit.size} runs" if by_unit.size > 1 else "")
            entries.append(("shallow CNN" if shallow else "fine-tuned", label, sub, sel))
        for grp in ("shallow CNN", "fine-tuned"):
            chosen = [e for e in entries if e[0] == grp]
            chosen.sort(key=lambda e: pair(e[2])[0])
            for g, label, sub, sel in chosen:
                add(g, label, sub, selected_by=sel)
    out = pd.DataFrame.from_records(records, columns=out_cols)
    if len(out):
        order = {g: i for i, g in enumerate(_GROUPS)}
        out["_g"] = out["group"].map(order)
        out["_i"] = np.arange(len(out))
        out = out.sort_values(["region", "_g", "_i"], kind="stable").drop(columns=["_g", "_i"])
    return out.reset_index(drop=True)


def format_finetune_leaderboard(board: pd.DataFrame) -> str:
    """The leaderboard as text, Table 1 style (EV % and Corr %)."""
    if board is None or len(board) == 0:
        return "(no fine-tuning or baseline scores)"
    lines = []
    for reg, g in board.groupby("region", sort=False):
        lines.append(f"region {reg}")
        lines.append(f"  {'model':64s} {'EV (%)':>8s} {'Corr (%)':>9s}  split")
        current = None
        for _, r in g.iterrows():
            if r["group"] != current:
                current = r["group"]
                lines.append(f"  [{current}]")
            lines.append(f"  {str(r['label'])[:64]:64s} {r['ev_pct']:8.2f} {r['corr_pct']:9.2f}  "
                         f"{r['split']}")
    return "\n".join(lines)
