"""From unit scores to paper 001's results: scaling factors, accuracy at matched unit
counts, model-vs-reference tests and the log law (SCIENCE.md section 6).

Every function takes the run's score rows (``method="decode_2afc"``), so the analysis of
a resumed run is the same as that of an uninterrupted one.

* **Curves**: accuracy per (population, k, domain); the out-of-domain mean per
  (population, k) is the mean over test domains of the per-domain accuracies.
* **Scaling factor**: for each model, the unit count at which its in-domain accuracy
  first reaches the reference's (:func:`cortexzoo.mapping.decode.matched_units`,
  interpolated on log k); ``units_per_site`` = matched k / the reference's size.
* **Matched accuracies**: each model at its matched count (rounded to a whole number of
  units, at least 1; decoded on the same splits), the reference at its full size.
* **Tests** over the test domains: a two-sample t-test (Student, two-sided) of each
  model's per-domain accuracies against the reference's; Friedman tests (scipy's
  ``friedmanchisquare``) across domains with the models as blocks on the accuracy
  differences model - reference (paper 001, Fig. 3D; needs 2 models and 3 test domains),
  and across populations (the reference and every model as treatments) with the domains
  as blocks (needs 3 populations).
* **Log law** ``acc = a log(n) + b`` (natural log) of in-domain and mean out-of-domain
  accuracy against the unit count, for every population; the reference's extrapolates it
  to more sites, e.g. to a model's whole layer in site equivalents (units / units_per_site).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from ..mapping.decode import log_fit, log_law, matched_units
from ..mapping.stats import StatsInputError, friedman_test, two_sample_ttest

__all__ = ["curves", "ood_mean", "scaling_table", "matched_table", "model_tests", "log_fits"]


def curves(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per (population, k, domain): accuracy, SD over splits and draws."""
    cols = ["population", "population_kind", "population_size", "layer", "k_units", "domain",
            "domain_role", "value", "std", "split_count", "n_draws"]
    df = scores[cols].copy()
    df["k_units"] = df["k_units"].astype(int)
    return df.sort_values(["population", "k_units", "domain_role", "domain"]).reset_index(drop=True)


def ood_mean(curve: pd.DataFrame) -> pd.DataFrame:
    """Per (population, k): in-domain accuracy, mean and SD over test domains."""
    ind = curve[curve["domain_role"] == "in_domain"].set_index(["population", "k_units"])["value"]
    ood = curve[curve["domain_role"] == "out_of_domain"].groupby(["population", "k_units"])["value"]
    out = pd.DataFrame({"in_domain": ind, "ood_mean": ood.mean(), "ood_sd": ood.std(ddof=1),
                        "n_domains": ood.size()}).reset_index()
    return out


def scaling_table(curve: pd.DataFrame, reference: str, reference_size: int,
                  reference_accuracy: float, models: list[str]) -> pd.DataFrame:
    """The scaling factor of every model (module docstring), with its in-domain curve."""
    summary = ood_mean(curve)
    rows = []
    for m in models:
        c = summary[summary["population"] == m].sort_values("k_units")
        if c.empty:
            continue
        size = int(curve.loc[curve["population"] == m, "population_size"].iloc[0])
        layer = str(curve.loc[curve["population"] == m, "layer"].iloc[0])
        k = matched_units(c["k_units"], c["in_domain"], reference_accuracy)
        reached = bool(np.isfinite(k))
        k_used = int(max(1, round(k))) if reached else None
        rows.append({"population": m, "layer": layer, "n_units": size, "reference": reference,
                     "reference_size": int(reference_size),
                     "reference_accuracy": float(reference_accuracy),
                     "matched_k": float(k), "k_used": k_used, "reached": reached,
                     "at_grid_start": reached and k == float(c["k_units"].iloc[0]),
                     "units_per_site": float(k / reference_size) if reached else float("nan"),
                     "curve": json.dumps([[int(a), round(float(b), 6)] for a, b in
                                          zip(c["k_units"], c["in_domain"])])})
    return pd.DataFrame(rows, columns=["population", "layer", "n_units", "reference",
                                       "reference_size", "reference_accuracy", "matched_k",
                                       "k_used", "reached", "at_grid_start", "units_per_site",
                                       "curve"])


def matched_table(curve: pd.DataFrame, scaling: pd.DataFrame, reference: str,
                  reference_size: int) -> pd.DataFrame:
    """Accuracy per domain of the reference (full size) and each model at its matched k."""
    picks = [(reference, int(reference_size))]
    picks += [(r.population, int(r.k_used)) for r in scaling.itertuples() if r.reached]
    parts = []
    for pop, k in picks:
        sub = curve[(curve["population"] == pop) & (curve["k_units"] == k)]
        parts.append(sub)
    if not parts:
        return curve.iloc[:0]
    return pd.concat(parts, ignore_index=True)


def _domain_matrix(matched: pd.DataFrame, populations: list[str]) -> tuple[pd.DataFrame, list[str]]:
    ood = matched[matched["domain_role"] == "out_of_domain"]
    wide = ood.pivot_table(index="domain", columns="population", values="value")
    wide = wide[[p for p in populations if p in wide.columns]].dropna()
    return wide, list(wide.index)


def model_tests(matched: pd.DataFrame, reference: str, models: list[str]) -> pd.DataFrame:
    """t-tests of every model against the reference over test domains, and the two
    Friedman tests (module docstring); a test that cannot be computed has a ``note``."""
    cols = ["test", "population", "reference", "statistic", "p", "df", "mean_diff", "hedges_g",
            "n_domains", "n_blocks", "n_treatments", "domains", "note"]
    pops = [reference] + [m for m in models if m in set(matched["population"])]
    wide, domains = _domain_matrix(matched, pops)
    rows = []
    if reference not in wide.columns:
        return pd.DataFrame(rows, columns=cols)
    ref = wide[reference].to_numpy()
    present = [m for m in pops[1:] if m in wide.columns]
    for m in present:
        row = {"test": "ttest_two_sample", "population": m, "reference": reference,
               "n_domains": len(domains), "domains": ",".join(domains), "note": ""}
        try:
            t = two_sample_ttest(wide[m].to_numpy(), ref)
            row.update(statistic=t.t, p=t.p, df=t.df, mean_diff=t.mean_diff, hedges_g=t.hedges_g)
        except StatsInputError as e:
            row["note"] = str(e)
        rows.append(row)
    deltas = wide[present].to_numpy() - ref[:, None] if present else np.empty((len(domains), 0))
    row = {"test": "friedman_domains", "population": ",".join(present), "reference": reference,
           "n_domains": len(domains), "n_blocks": len(present), "n_treatments": len(domains),
           "domains": ",".join(domains), "note": ""}
    if len(present) >= 2 and len(domains) >= 3:
        row["statistic"], row["p"] = friedman_test(deltas.T)  # rows: models (blocks)
    else:
        row["note"] = (f"needs >= 2 models at a matched count and >= 3 test domains, has "
                       f"{len(present)} and {len(domains)}")
    rows.append(row)
    row = {"test": "friedman_populations", "population": ",".join([reference] + present),
           "reference": reference, "n_domains": len(domains), "n_blocks": len(domains),
           "n_treatments": 1 + len(present), "domains": ",".join(domains), "note": ""}
    if len(present) >= 2 and len(domains) >= 2:
        row["statistic"], row["p"] = friedman_test(wide[[reference] + present].to_numpy())
    else:
        row["note"] = (f"needs >= 3 populations (the reference and 2 models at a matched count) "
                       f"and >= 2 test domains, has {1 + len(present)} and {len(domains)}")
    rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def log_fits(curve: pd.DataFrame) -> pd.DataFrame:
    """``acc = a log(k) + b`` of in-domain and mean out-of-domain accuracy, per population
    (over its unit counts below the full size where it has two or more, else all)."""
    summary = ood_mean(curve)
    rows = []
    for pop, c in summary.groupby("population"):
        size = int(curve.loc[curve["population"] == pop, "population_size"].iloc[0])
        kind = str(curve.loc[curve["population"] == pop, "population_kind"].iloc[0])
        for what in ("in_domain", "ood_mean"):
            ok = c[np.isfinite(c[what])]
            if ok["k_units"].nunique() < 2:
                continue
            a, b = log_fit(ok["k_units"], ok[what])
            pred = log_law(ok["k_units"], a, b)
            resid = ok[what].to_numpy() - pred
            rows.append({"population": pop, "population_kind": kind, "accuracy": what, "a": a,
                         "b": b, "n_points": int(len(ok)), "k_max": size,
                         "rmse": float(math.sqrt(float(np.mean(resid ** 2))))})
    return pd.DataFrame(rows, columns=["population", "population_kind", "accuracy", "a", "b",
                                       "n_points", "k_max", "rmse"])


def extrapolations(scaling: pd.DataFrame, fits: pd.DataFrame, summary: pd.DataFrame,
                   reference: str) -> pd.DataFrame:
    """Each model's whole layer against the reference extrapolated by its log law to the
    same number of sites (the layer's units / units_per_site), out of domain."""
    f = fits[(fits["population"] == reference) & (fits["accuracy"] == "ood_mean")]
    rows = []
    for r in scaling.itertuples():
        full = summary[(summary["population"] == r.population) & (summary["k_units"] == r.n_units)]
        model_full = float(full["ood_mean"].iloc[0]) if len(full) else float("nan")
        sites = r.n_units / r.units_per_site if r.reached and r.units_per_site > 0 else float("nan")
        pred = (float(log_law(sites, float(f["a"].iloc[0]), float(f["b"].iloc[0])))
                if len(f) and np.isfinite(sites) else float("nan"))
        rows.append({"population": r.population, "n_units": r.n_units, "site_equivalents": sites,
                     "model_ood_full_layer": model_full, "reference_ood_extrapolated": pred})
    return pd.DataFrame(rows, columns=["population", "n_units", "site_equivalents",
                                       "model_ood_full_layer", "reference_ood_extrapolated"])
