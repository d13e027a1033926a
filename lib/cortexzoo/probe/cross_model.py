"""The cross-model table of paper 004 (A.5) and the files made from it.

One row per (architecture, seed): neural prediction (the twin's test chunked Pearson r
over all animals, from its ``twins eval`` scores), orientation ID and OOD accuracy at the
largest training size, contrast balanced-accuracy nAUC, motion nAUC, median gOSI,
median F1/F0, median c50 and the GRU eigenspectrum alpha (the headline columns), plus
secondary ones (orientation nAUCs, median preferred SF, the encoder's alpha).

:func:`cross_model_stats` relates neural prediction to each endpoint over the
architecture means (seeds averaged first, as the paper's headline scatter plots do):
least-squares line, Pearson r and Spearman rho with their p-values (NaN with fewer than
3 architectures; Spearman's p exact by permutation up to 8 architectures).
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger("cortexzoo.probe")

__all__ = ["HEADLINE", "SECONDARY", "ENDPOINTS", "PROBE_METHODS", "build_cross_model",
           "architecture_means", "cross_model_stats", "spearman_exact", "ensure_neural_prediction"]

#: Cross-model column -> score-table metric, in table order.
HEADLINE = {
    "orientation_id_accuracy": "orientation_accuracy_id",
    "orientation_ood_accuracy": "orientation_accuracy_ood",
    "contrast_nauc": "contrast_nauc",
    "motion_nauc": "motion_nauc",
    "median_gosi": "median_gosi",
    "median_f1_f0": "median_f1_f0",
    "median_c50": "median_c50",
    "alpha_gru": "alpha_gru",
}
SECONDARY = {
    "orientation_id_nauc": "orientation_nauc_id",
    "orientation_ood_nauc": "orientation_nauc_ood",
    "median_pref_sf": "median_pref_sf",
    "alpha_encoder": "alpha_encoder",
}
#: The endpoints plotted against neural prediction.
ENDPOINTS = list(HEADLINE)
PROBE_METHODS = ("probe", "tuning", "eigenspectrum")


def build_cross_model(scores: pd.DataFrame, pairs: Sequence[tuple[str, str, int]]) -> pd.DataFrame:
    """The cross-model table from score rows, for ``pairs`` ``(pair, architecture, seed)``
    that have at least one probe score (NaN where a unit is missing)."""
    from ..twins.train import model_name

    cols = ["architecture", "seed", "model", "neural_prediction", *HEADLINE, *SECONDARY]
    if scores is None or scores.empty:
        return pd.DataFrame(columns=cols)
    probe = scores[scores["method"].isin(PROBE_METHODS)]
    wide = probe.pivot_table(index="model", columns="metric", values="value", aggfunc="mean")
    tw = scores[(scores["method"] == "twin") & (scores["metric"] == "chunked_pearson_r")]
    if "animal" in tw.columns:
        tw = tw[tw["animal"] == "all"]
    neural = tw.groupby("model")["value"].mean()
    rows = []
    for _, enc, seed in pairs:
        m = model_name(enc, seed)
        if m not in wide.index:
            continue
        row = {"architecture": enc, "seed": int(seed), "model": m,
               "neural_prediction": float(neural.get(m, np.nan))}
        for col, metric in {**HEADLINE, **SECONDARY}.items():
            row[col] = float(wide.at[m, metric]) if metric in wide.columns else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=cols).sort_values(["architecture", "seed"]).reset_index(
        drop=True)


def architecture_means(cross: pd.DataFrame) -> pd.DataFrame:
    """Mean and SD over seeds per architecture (columns ``<col>`` and ``<col>_sd``)."""
    num = [c for c in cross.columns if c not in ("architecture", "seed", "model")]
    g = cross.groupby("architecture")[num]
    mean, sd = g.mean(), g.std(ddof=1)
    out = mean.join(sd.add_suffix("_sd"))
    out["n_seeds"] = cross.groupby("architecture")["seed"].nunique()
    return out.reset_index()


def spearman_exact(x: Any, y: Any, max_exact: int = 8) -> tuple[float, float]:
    """Spearman's rho and its two-sided p-value: exact (every permutation of y's ranks)
    for up to ``max_exact`` points, where the t approximation is far off (3 points in
    perfect order get p = 1/3, not 0); scipy's approximation above."""
    import itertools
    import math

    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = float(stats.spearmanr(x, y)[0])
    n = len(x)
    if n > max_exact:
        return rho, float(stats.spearmanr(x, y)[1])
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rx = (rx - rx.mean()) / np.linalg.norm(rx - rx.mean())
    perms = np.array(list(itertools.permutations(ry)))
    perms = perms - perms.mean(axis=1, keepdims=True)
    r = perms @ rx / np.linalg.norm(perms, axis=1)
    return rho, float(np.sum(np.abs(r) >= abs(rho) - 1e-12) / math.factorial(n))


def cross_model_stats(cross: pd.DataFrame, x: str = "neural_prediction",
                      endpoints: Sequence[str] = tuple(ENDPOINTS)) -> pd.DataFrame:
    """Per endpoint, over architecture means: n, slope and intercept of the least-squares
    line, Pearson r and p, Spearman rho and p (NaN with < 3 complete architectures)."""
    from scipy import stats

    means = architecture_means(cross) if len(cross) else pd.DataFrame()
    rows = []
    for e in endpoints:
        row = {"x": x, "endpoint": e, "n": 0, "slope": np.nan, "intercept": np.nan,
               "pearson_r": np.nan, "pearson_p": np.nan, "spearman_rho": np.nan,
               "spearman_p": np.nan}
        if len(means) and x in means and e in means:
            ok = np.isfinite(means[x].to_numpy(float)) & np.isfinite(means[e].to_numpy(float))
            xs, ys = means[x].to_numpy(float)[ok], means[e].to_numpy(float)[ok]
            row["n"] = int(ok.sum())
            if len(xs) >= 2 and np.ptp(xs) > 0:
                row["slope"], row["intercept"] = (float(v) for v in np.polyfit(xs, ys, 1))
            if len(xs) >= 3 and np.ptp(xs) > 0 and np.ptp(ys) > 0:
                pr = stats.pearsonr(xs, ys)
                rho, p_rho = spearman_exact(xs, ys)
                row.update(pearson_r=float(pr[0]), pearson_p=float(pr[1]), spearman_rho=rho,
                           spearman_p=p_rho)
        rows.append(row)
    return pd.DataFrame(rows)


def ensure_neural_prediction(store: Any, data: str, pairs: Sequence[tuple[str, str, int]],
                             cfg: Any) -> list[str]:
    """Run ``twins eval`` for the twins whose neural-prediction score is missing; returns
    their pair keys."""
    from ..twins.train import model_name

    sc = store.read_scores(columns=["model", "method", "metric"])
    have = set(sc.loc[(sc["method"] == "twin") & (sc["metric"] == "chunked_pearson_r"), "model"])
    missing = [p for p, e, s in pairs if model_name(e, s) not in have]
    if missing:
        from ..twins.evaluate import evaluate_family

        log.info("neural prediction missing for %s: evaluating", missing)
        evaluate_family(data, store.uri, keys=missing, chunk=cfg.chunk, plot=False)
    return missing
