"""Leaderboards from the scores table (max over layers, SCIENCE.md §4)."""
from __future__ import annotations

import numpy as np
import pandas as pd

# The metric that stands for each method in a leaderboard, in order of preference
# (a dataset with only published RDMs has no response-based RSA).
HEADLINES = {"ridge_gcv": ("pearson_r",), "rsa": ("rsa_pearson", "rdms_spearman", "rdms_pearson")}


def headline(scores: pd.DataFrame, method: str) -> str:
    present = set(scores.loc[scores["method"] == method, "metric"])
    return next((m for m in HEADLINES[method] if m in present), HEADLINES[method][0])


def _use_ceiled(df: pd.DataFrame) -> str:
    return "ceiled_value" if df["ceiled_value"].notna().any() else "value"


def best_layers(scores: pd.DataFrame, method: str, metric: str | None = None,
                by: str | None = None) -> pd.DataFrame:
    """One row per (model, region): the best layer's score for ``method``/``metric``."""
    metric = metric or headline(scores, method)
    df = scores[(scores["method"] == method) & (scores["metric"] == metric)]
    if df.empty:
        return pd.DataFrame(columns=["model", "region", "value", "ceiled_value", "layer",
                                     "relative_depth"])
    by = by or _use_ceiled(df)
    idx = df.groupby(["model", "region"])[by].idxmax().dropna()
    best = df.loc[idx, ["model", "source", "weights", "region", "layer", "relative_depth",
                        "value", "ceiled_value", "ceiling", "n_neuroids"]]
    return best.reset_index(drop=True)


def leaderboard(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (region, model): ridge max, RSA max (ceiled where a ceiling exists), their
    mean as the overall score, with each method's best layer and its relative depth.
    Sorted by region, then overall score (best first)."""
    cols = ["region", "rank", "model", "weights", "score", "ridge", "ridge_layer",
            "ridge_depth", "rsa", "rsa_layer", "rsa_depth"]
    if scores is None or len(scores) == 0:
        return pd.DataFrame(columns=cols)
    parts = []
    for method, short in (("ridge_gcv", "ridge"), ("rsa", "rsa")):
        b = best_layers(scores, method)
        if b.empty:
            continue
        val = b["ceiled_value"].where(b["ceiled_value"].notna(), b["value"])
        parts.append(pd.DataFrame({"model": b["model"], "region": b["region"],
                                   "weights": b["weights"], short: val.astype(float),
                                   f"{short}_layer": b["layer"],
                                   f"{short}_depth": b["relative_depth"].astype(float)}))
    if not parts:
        return pd.DataFrame(columns=cols)
    board = parts[0]
    for p in parts[1:]:
        board = board.merge(p.drop(columns=["weights"]), on=["model", "region"], how="outer")
    present = [c for c in ("ridge", "rsa") if c in board]
    board["score"] = board[present].mean(axis=1, skipna=True)
    board = board.sort_values(["region", "score"], ascending=[True, False])
    board["rank"] = board.groupby("region").cumcount() + 1
    for c in cols:
        if c not in board:
            board[c] = np.nan
    return board[cols].reset_index(drop=True)


def format_leaderboard(board: pd.DataFrame, digits: int = 3) -> str:
    if board.empty:
        return "(no scores)"
    show = board.copy()
    for c in ("score", "ridge", "rsa", "ridge_depth", "rsa_depth"):
        show[c] = show[c].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
    return show.to_string(index=False)
