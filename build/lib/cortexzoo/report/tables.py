"""Leaderboards from the scores table (max over layers, SCIENCE.md §4).

Rows of different datasets or scan configurations (the ``scan_key``) are never combined:
every table here is per (dataset, scan, region). A model's layer is chosen on one seeded
half of the stimuli and scored on the other, and the reverse, averaged (``held-out``);
the in-sample max over layers is kept in its own column, never ranked on. Ceiled values
are used for a (dataset, scan, region, method) when every score of it has one, raw values
otherwise (the ``scale`` columns say which).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

# The metric that stands for each method in a leaderboard, in order of preference
# (a dataset with only published RDMs has no response-based RSA).
HEADLINES = {"ridge_gcv": ("pearson_r",), "rsa": ("rsa_pearson", "rdms_spearman", "rdms_pearson")}
GROUP = ["dataset", "scan"]
HALVES = ("half_a", "half_b")
_BOARD_COLUMNS = ["dataset", "scan", "region", "rank", "model", "weights", "score", "ridge",
                  "ridge_insample", "ridge_layer", "ridge_depth", "rsa", "rsa_insample",
                  "rsa_layer", "rsa_depth", "selection", "ridge_scale", "rsa_scale"]


def scan_label(dataset: str, scan_key: str | None) -> str:
    """A short, path-safe name for one scan configuration of one dataset."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", str(dataset)).strip("-") or "dataset"
    tail = re.sub(r"[^A-Za-z0-9]", "", str(scan_key or "none"))[-8:]
    return f"{name}--{tail}"


def with_scan(scores: pd.DataFrame) -> pd.DataFrame:
    """``scores`` with a ``scan`` column: the scan key, or ``run:<run_id>`` for rows
    written without one (fine-tuning, twins, very old stores)."""
    df = scores.copy()
    # hand-made tables may lack what the store always writes
    for col, default in (("dataset", ""), ("run_id", ""), ("split", "loo")):
        if col not in df.columns:
            df[col] = default
    sk = df["scan_key"] if "scan_key" in df.columns else pd.Series(np.nan, index=df.index)
    df["scan"] = sk.where(sk.notna(), "run:" + df["run_id"].astype(str)).astype(str)
    if "weights_id" in df.columns and df["weights_id"].notna().any() and "created_at" in df.columns:
        # a model whose weights file was replaced: only the newest weights' rows count
        wid = df["weights_id"].fillna("")
        newest = (df.assign(wid=wid).sort_values("created_at")
                  .groupby(["dataset", "scan", "model"])["wid"].last())
        keep = wid.to_numpy() == newest.reindex(
            pd.MultiIndex.from_frame(df[["dataset", "scan", "model"]])).to_numpy()
        df = df[keep]
    return df


def headline(scores: pd.DataFrame, method: str) -> str:
    present = set(scores.loc[scores["method"] == method, "metric"])
    return next((m for m in HEADLINES[method] if m in present), HEADLINES[method][0])


def _split_of(df: pd.DataFrame) -> pd.Series:
    # rows written before the held-out halves existed carry other split names (loo, test)
    return df["split"].where(df["split"].isin(HALVES), "all")


def _scale(df: pd.DataFrame) -> str:
    return "ceiled" if len(df) and np.isfinite(df["ceiled_value"].to_numpy(float)).all() else "raw"


def best_layers(scores: pd.DataFrame, method: str, metric: str | None = None,
                by: str | None = None) -> pd.DataFrame:
    """In-sample: one row per (dataset, scan, model, region), the layer with the highest
    score on all stimuli, for ``method``/``metric``."""
    cols = GROUP + ["model", "source", "weights", "region", "layer", "relative_depth",
                    "value", "ceiled_value", "ceiling", "n_neuroids", "scale"]
    df = with_scan(scores)
    metric = metric or headline(df, method)
    df = df[(df["method"] == method) & (df["metric"] == metric)]
    df = df[_split_of(df) == "all"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for _, g in df.groupby(GROUP + ["region"], sort=True):
        use = by or ("ceiled_value" if _scale(g) == "ceiled" else "value")
        idx = g.groupby("model")[use].idxmax().dropna()
        best = g.loc[idx].assign(scale=_scale(g) if by is None else by)
        out.append(best)
    return pd.concat(out).reindex(columns=cols).reset_index(drop=True)


def heldout_layers(scores: pd.DataFrame, method: str, metric: str | None = None) -> pd.DataFrame:
    """Held-out layer choice: per (dataset, scan, model, region), the layer chosen on
    half A scored on half B and the layer chosen on half B scored on half A, averaged
    (``value``; ceiled with each half's own ceiling where the region has ceilings).
    Empty where the scores have no half rows."""
    cols = GROUP + ["model", "source", "weights", "region", "value", "layer_a", "layer_b",
                    "relative_depth", "scale"]
    df = with_scan(scores)
    metric = metric or headline(df, method)
    df = df[(df["method"] == method) & (df["metric"] == metric) & df["split"].isin(HALVES)]
    if df.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (ds, scan, region), g in df.groupby(GROUP + ["region"], sort=True):
        use = "ceiled_value" if _scale(g) == "ceiled" else "value"
        for model, m in g.groupby("model", sort=True):
            a, b = m[m["split"] == "half_a"], m[m["split"] == "half_b"]
            if a.empty or b.empty:
                continue
            # choose on the raw score: within a half the ceiling is one number for all layers
            la = a.loc[a["value"].idxmax(), "layer"]
            lb = b.loc[b["value"].idxmax(), "layer"]
            vb = b.loc[b["layer"] == la, use]
            va = a.loc[a["layer"] == lb, use]
            if vb.empty or va.empty:
                continue
            first = m.iloc[0].reindex(["source", "weights"])
            depth = np.nanmean([float(a.loc[a["layer"] == la, "relative_depth"].iloc[0]),
                                float(b.loc[b["layer"] == lb, "relative_depth"].iloc[0])])
            rows.append(dict(dataset=ds, scan=scan, model=model, source=first["source"],
                             weights=first["weights"], region=region,
                             value=float(np.mean([vb.iloc[0], va.iloc[0]])), layer_a=la,
                             layer_b=lb, relative_depth=depth, scale=_scale(g)))
    return pd.DataFrame(rows, columns=cols)


def leaderboard(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, scan, region, model): ridge and RSA scores of the held-out layer
    choice (ceiled where the region has ceilings), their mean as the overall score
    (ranked on), the in-sample max of each beside it, the chosen layer(s) and depth.
    Sorted by dataset, scan, region, then overall score (best first). Where the scores
    have no half rows the in-sample max is ranked on and ``selection`` says so."""
    if scores is None or len(scores) == 0:
        return pd.DataFrame(columns=_BOARD_COLUMNS)
    parts = []
    key = GROUP + ["model", "region"]
    for method, short in (("ridge_gcv", "ridge"), ("rsa", "rsa")):
        ins = best_layers(scores, method)
        if ins.empty:
            continue
        ins_val = ins["ceiled_value"].where(ins["scale"] == "ceiled", ins["value"]).astype(float)
        part = pd.DataFrame({**{k: ins[k] for k in key}, "weights": ins["weights"],
                             f"{short}_insample": ins_val, f"{short}_layer": ins["layer"],
                             f"{short}_depth": ins["relative_depth"].astype(float),
                             f"{short}_scale": ins["scale"]})
        held = heldout_layers(scores, method)
        if held.empty:
            part[short] = part[f"{short}_insample"]
            part[f"{short}_selection"] = "in-sample"
        else:
            h = held.assign(**{short: held["value"],
                               f"{short}_hl": np.where(held["layer_a"] == held["layer_b"],
                                                       held["layer_a"],
                                                       held["layer_a"] + "|" + held["layer_b"]),
                               f"{short}_hd": held["relative_depth"]})
            part = part.merge(h[key + [short, f"{short}_hl", f"{short}_hd"]], on=key, how="left")
            has = part[short].notna()
            part[f"{short}_selection"] = np.where(has, "held-out", "in-sample")
            part[short] = part[short].where(has, part[f"{short}_insample"])
            part[f"{short}_layer"] = part[f"{short}_hl"].where(has, part[f"{short}_layer"])
            part[f"{short}_depth"] = part[f"{short}_hd"].where(has, part[f"{short}_depth"])
            part = part.drop(columns=[f"{short}_hl", f"{short}_hd"])
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=_BOARD_COLUMNS)
    board = parts[0]
    for p in parts[1:]:
        board = board.merge(p.drop(columns=["weights"]), on=key, how="outer")
    present = [c for c in ("ridge", "rsa") if c in board]
    board["score"] = board[present].mean(axis=1, skipna=True)
    sel = [board[f"{c}_selection"] for c in present if f"{c}_selection" in board]
    board["selection"] = sel[0]
    for s in sel[1:]:
        board["selection"] = board["selection"].where(board["selection"] == s, "mixed")
    board = board.sort_values(GROUP + ["region", "score"], ascending=[True] * 3 + [False])
    board["rank"] = board.groupby(GROUP + ["region"]).cumcount() + 1
    for c in _BOARD_COLUMNS:
        if c not in board:
            board[c] = np.nan
    return board[_BOARD_COLUMNS].reset_index(drop=True)


def format_leaderboard(board: pd.DataFrame, digits: int = 3) -> str:
    """The leaderboard as text, one block per (dataset, scan configuration)."""
    if board.empty:
        return "(no scores)"
    blocks = []
    for (ds, scan), g in board.groupby(["dataset", "scan"], sort=True):
        show = g.drop(columns=["dataset", "scan"]).copy()
        for c in ("score", "ridge", "ridge_insample", "rsa", "rsa_insample", "ridge_depth",
                  "rsa_depth"):
            show[c] = show[c].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
        show = show.dropna(axis=1, how="all")
        blocks.append(f"dataset {ds}, scan {scan_label(ds, scan)}:\n" + show.to_string(index=False))
    return "\n\n".join(blocks)
