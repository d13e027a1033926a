"""The decoding figures (paper 001, Fig. 2-3): PNG bytes from the run's tables."""
from __future__ import annotations


import numpy as np
import pandas as pd

from ..mapping.decode import log_law
from .analysis import ood_mean
from ..report.figures import png_bytes, pyplot

__all__ = ["plot_domains", "plot_units"]


def _plt():
    return pyplot()


def _png(fig, plt=None) -> bytes:
    return png_bytes(fig, dpi=90)


def _short(name: str) -> str:
    return name.replace("timm:", "").replace("torchvision:", "").replace("baseline:", "")


def plot_domains(matched: pd.DataFrame, reference: str, domains: list[str]) -> bytes:
    """Accuracy per domain (held-out training-domain images first) for the reference at its
    full size and each model at its matched unit count; error bars: SD over splits (and
    unit draws). Chance is 0.5."""
    plt = _plt()
    pops = [reference] + [p for p in dict.fromkeys(matched["population"]) if p != reference]
    fig, ax = plt.subplots(figsize=(min(13.0, max(6.0, 0.45 * len(domains) * max(1, len(pops)) ** 0.5 + 3)), 4.2))
    width = 0.8 / max(1, len(pops))
    x = np.arange(len(domains))
    for i, pop in enumerate(pops):
        sub = matched[matched["population"] == pop].set_index("domain").reindex(domains)
        k = sub["k_units"].dropna()
        label = f"{_short(pop)} ({int(k.iloc[0])} {'sites' if (sub['population_kind'] == 'recorded').any() else 'units'})" \
            if len(k) else _short(pop)
        ax.bar(x + (i - (len(pops) - 1) / 2) * width, sub["value"], width, yerr=sub["std"],
               label=label, capsize=1.5, error_kw={"lw": 0.7},
               color="0.35" if pop == reference else plt.cm.tab10((i - 1) % 10))
    ax.axhline(0.5, color="0.5", lw=0.8, ls=":")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{domains[0]}\n(I.D.)"] + list(domains[1:]), rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("2AFC accuracy")
    lo = float(np.nanmin(matched["value"] - matched["std"])) if len(matched) else 0.5
    ax.set_ylim(min(0.45, lo - 0.02), 1.0)
    ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=min(4, len(pops)),
              frameon=False)
    ax.set_ylim(ax.get_ylim()[0], 1.0)
    fig.tight_layout()
    return _png(fig, plt)


def plot_units(curve: pd.DataFrame, scaling: pd.DataFrame, fits: pd.DataFrame, reference: str,
               reference_accuracy: float) -> bytes:
    """(A) in-domain accuracy vs units (log axis) per model, the reference's accuracy and
    each model's matched count; (B) mean out-of-domain accuracy (shaded: SD over domains)
    vs site equivalents (units / units_per_site), the reference against its own sites and
    its log-law extrapolation (dashed)."""
    plt = _plt()
    summary = ood_mean(curve)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10.5, 3.9))
    ref = summary[summary["population"] == reference].sort_values("k_units")
    colors = {}
    for i, r in enumerate(scaling.itertuples()):
        colors[r.population] = plt.cm.tab10(i % 10)
        c = summary[summary["population"] == r.population].sort_values("k_units")
        a1.plot(c["k_units"], c["in_domain"], "o-", ms=3, color=colors[r.population],
                label=_short(r.population))
        if r.reached:
            a1.axvline(r.matched_k, color=colors[r.population], ls=":", lw=0.9)
            a1.plot([r.matched_k], [reference_accuracy], "s", color=colors[r.population], ms=5)
    if len(ref):
        a1.plot(ref["k_units"], ref["in_domain"], "o-", ms=3, color="0.3", label=f"{_short(reference)} (reference)")
    a1.axhline(reference_accuracy, color="0.3", ls="--", lw=1.0,
               label=f"reference in-domain {reference_accuracy:.3f}")
    a1.set_xscale("log")
    a1.set_xlabel("units (log scale)")
    a1.set_ylabel("in-domain 2AFC accuracy")
    a1.set_title("A  units needed to match the reference", fontsize=9)
    a1.legend(fontsize=7, loc="lower right")
    a1.grid(alpha=0.3, which="both")
    xmax = float(ref["k_units"].max()) if len(ref) else 1.0
    for r in scaling.itertuples():
        if not r.reached or not r.units_per_site > 0:
            continue
        c = summary[summary["population"] == r.population].sort_values("k_units")
        xs = c["k_units"] / r.units_per_site
        xmax = max(xmax, float(xs.max()))
        a2.plot(xs, c["ood_mean"], "o-", ms=3, color=colors[r.population], label=_short(r.population))
        a2.fill_between(xs, c["ood_mean"] - c["ood_sd"], c["ood_mean"] + c["ood_sd"],
                        color=colors[r.population], alpha=0.07, lw=0)
    if len(ref):
        a2.plot(ref["k_units"], ref["ood_mean"], "o-", ms=3, color="0.3", label=f"{_short(reference)}")
        a2.fill_between(ref["k_units"], ref["ood_mean"] - ref["ood_sd"], ref["ood_mean"] + ref["ood_sd"],
                        color="0.3", alpha=0.07, lw=0)
        f = fits[(fits["population"] == reference) & (fits["accuracy"] == "ood_mean")]
        if len(f) and xmax > float(ref["k_units"].max()):
            xs = np.geomspace(float(ref["k_units"].max()), xmax, 30)
            law = np.minimum(log_law(xs, float(f["a"].iloc[0]), float(f["b"].iloc[0])), 1.0)
            a2.plot(xs, law, "--", color="0.3", lw=1.2,
                    label=f"{_short(reference)}: {float(f['a'].iloc[0]):.3f} log(n) + "
                          f"{float(f['b'].iloc[0]):.3f} (capped at 1)")
    a2.axhline(0.5, color="0.5", lw=0.8, ls=":")
    a2.set_xscale("log")
    a2.set_xlabel("reference sites (model units / units per site; log scale)")
    a2.set_ylabel("mean out-of-domain 2AFC accuracy")
    a2.set_title("B  out of domain, unit counts in site equivalents", fontsize=9)
    a2.set_ylim(top=1.02)
    a2.legend(fontsize=7, loc="upper left")
    a2.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return _png(fig, plt)

