"""Figures of the probe battery (paper 004 Figs. 2-4), PNG bytes from the probe tables.

* :func:`plot_probe_curves`: orientation accuracy vs training size (ID and OOD), contrast
  balanced accuracy vs contrast, motion accuracy vs coherence; one line per
  architecture (mean over seeds, band: min-max over seeds), chance dotted.
* :func:`plot_tuning_distributions`: per architecture, the distributions over QC-passing
  units of gOSI, F1/F0, preferred SF and c50.
* :func:`plot_eigenspectra`: eigenspectra on log-log axes (each normalized to sum 1, so
  spectra of different sizes share an axis; the slope is unchanged), the fitted power
  law over the rank window dashed, alpha in the legend; GRU states and the encoder
  diagnostic side by side, the neural cvPCA reference in black where there is one.
* :func:`plot_cross_model`: neural prediction against each endpoint, architecture means
  with SD over seeds, single seeds faint, the least-squares line over the means and
  Pearson r / Spearman rho in each title.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .cross_model import ENDPOINTS, architecture_means, cross_model_stats
from ..report.figures import png_bytes, pyplot

__all__ = ["plot_probe_curves", "plot_tuning_distributions", "plot_eigenspectra",
           "plot_cross_model", "write_plots", "PLOT_FILES"]

#: Plot name -> caption, in the order the HTML report shows them.
PLOT_FILES = {
    "cross_model.png": "neural prediction vs each endpoint (architecture means, SD over seeds)",
    "probe_curves.png": "probe curves per architecture (mean over seeds, band: min-max)",
    "tuning.png": "tuning distributions over QC-passing encoder units",
    "eigenspectra.png": "eigenspectra, log-log, with the fitted power law",
}


def _plt():
    return pyplot()


def _png(fig) -> bytes:
    return png_bytes(fig, dpi=100)


def _colors(archs) -> dict[str, Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return {a: cmap(i % 10) for i, a in enumerate(sorted(archs))}


def _curve_panel(ax, df: pd.DataFrame, x: str, y: str, colors: dict, chance: float | None,
                 title: str, logx: bool = False) -> None:
    if df.empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    for arch, g in df.groupby("architecture"):
        st = g.groupby(x)[y].agg(["mean", "min", "max"]).reset_index()
        ax.plot(st[x], st["mean"], "-o", ms=3, color=colors[arch], label=arch)
        ax.fill_between(st[x], st["min"], st["max"], color=colors[arch], alpha=0.15, lw=0)
    if chance is not None:
        ax.axhline(chance, ls=":", color="grey", lw=1)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)


def plot_probe_curves(orientation: pd.DataFrame, contrast: pd.DataFrame,
                      motion: pd.DataFrame) -> bytes:
    plt = _plt()
    archs = set()
    for d in (orientation, contrast, motion):
        if len(d):
            archs |= set(d["architecture"])
    colors = _colors(archs)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    n_cls = float(orientation["chance"].iloc[0]) if len(orientation) else None
    for ax, split in zip(axes[:2], ("id", "ood")):
        d = orientation[orientation["split"] == split] if len(orientation) else orientation
        _curve_panel(ax, d, "train_size", "accuracy", colors, n_cls,
                     f"orientation ({split.upper()} test)", logx=True)
    _curve_panel(axes[2], contrast, "contrast", "balanced_accuracy", colors, 0.5,
                 "dynamic contrast detection")
    _curve_panel(axes[3], motion, "coherence", "accuracy", colors, 0.5, "motion (RDK)")
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[2].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    return _png(fig)


_TUNING_PANELS = (("gosi", "qc_orientation", "gOSI", False),
                  ("f1_f0", "qc_phase", "F1/F0", True),
                  ("pref_sf", "qc_sf", "preferred SF (cycles/px)", True),
                  ("nr_c50", "qc_contrast", "c50", True))


def plot_tuning_distributions(tuning: pd.DataFrame) -> bytes:
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    archs = sorted(set(tuning["architecture"])) if len(tuning) else []
    colors = _colors(archs)
    for ax, (col, qc, label, logy) in zip(axes, _TUNING_PANELS):
        data, pos, names = [], [], []
        for i, a in enumerate(archs, start=1):
            g = tuning[(tuning["architecture"] == a) & tuning[qc].astype(bool)]
            v = g[col].to_numpy(float)
            v = v[np.isfinite(v) & ((v > 0) if logy else True)]
            if v.size:  # an architecture without QC-passing units gets its label only
                data.append(v)
                pos.append(i)
            names.append(f"{a}\n(n={v.size})")
        if data:
            parts = ax.violinplot(data, positions=pos, showmedians=True, showextrema=False)
            for body, i in zip(parts["bodies"], pos):
                body.set_facecolor(colors[archs[i - 1]])
                body.set_alpha(0.5)
        if archs:
            ax.set_xticks(range(1, len(archs) + 1), names, rotation=30, ha="right", fontsize=7)
            ax.set_xlim(0.5, len(archs) + 0.5)
        if logy:
            ax.set_yscale("log")
        ax.set_title(label + " (QC-passing units)", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _png(fig)


def plot_eigenspectra(eig: pd.DataFrame, neural: pd.DataFrame | None = None) -> bytes:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    archs = sorted(set(eig["architecture"])) if len(eig) else []
    colors = _colors(archs)
    for ax, space, title in ((axes[0], "gru", "final GRU state"),
                             (axes[1], "encoder", "encoder output (diagnostic)")):
        d = eig[eig["space"] == space] if len(eig) else eig
        for arch in archs:
            alphas = []
            for pair, g in d[d["architecture"] == arch].groupby("pair"):
                g = g.sort_values("rank")
                lam = g["eigenvalue"].to_numpy(float)
                total = lam.sum()
                if total <= 0:
                    continue
                r = g["rank"].to_numpy(float)
                ax.plot(r, lam / total, color=colors[arch], lw=1, alpha=0.8)
                a, c = float(g["alpha"].iloc[0]), float(g["intercept"].iloc[0])
                lo, hi = int(g["rank_lo"].iloc[0]), min(int(g["rank_hi"].iloc[0]), len(lam))
                if np.isfinite(a) and hi > lo:
                    rr = np.arange(lo, hi + 1)
                    ax.plot(rr, np.exp(c) * rr ** (-a) / total, "--", color=colors[arch], lw=1.5)
                alphas.append(a)
            ax.plot([], [], color=colors[arch],
                    label=f"{arch} (alpha {np.nanmean(alphas):.2f})" if alphas and
                    np.isfinite(alphas).any() else arch)
        if space == "gru" and neural is not None and len(neural):
            for s, g in neural.groupby("session"):
                g = g.sort_values("rank")
                lam = g["eigenvalue"].to_numpy(float)
                pos = lam > 0
                ax.plot(g["rank"].to_numpy(float)[pos], lam[pos] / lam[pos].sum(), color="black",
                        lw=1.2, label=f"recorded {s}, cvPCA (alpha {g['alpha'].iloc[0]:.2f})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("PC rank")
        ax.set_ylabel("variance fraction")
        ax.set_title(f"eigenspectrum: {title}; dashed: power-law fit", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig)


def plot_cross_model(cross: pd.DataFrame, x: str = "neural_prediction") -> bytes:
    plt = _plt()
    stats = cross_model_stats(cross, x)
    means = architecture_means(cross)
    colors = _colors(set(cross["architecture"]))
    n = len(ENDPOINTS)
    fig, axes = plt.subplots(2, (n + 1) // 2, figsize=(3.4 * ((n + 1) // 2), 7))
    for ax, e in zip(axes.ravel(), ENDPOINTS):
        for _, r in cross.iterrows():
            ax.scatter(r[x], r[e], color=colors[r["architecture"]], s=10, alpha=0.35)
        for _, r in means.iterrows():
            ax.errorbar(r[x], r[e], xerr=r.get(f"{x}_sd"), yerr=r.get(f"{e}_sd"), fmt="o",
                        color=colors[r["architecture"]], ms=6, capsize=2,
                        label=r["architecture"])
        st = stats[stats["endpoint"] == e].iloc[0]
        title = e.replace("_", " ")
        if np.isfinite(st["slope"]):
            xs = means[x].to_numpy(float)
            xs = np.linspace(np.nanmin(xs), np.nanmax(xs), 20)
            ax.plot(xs, st["intercept"] + st["slope"] * xs, "-", color="black", lw=1)
        if np.isfinite(st["pearson_r"]):
            title += (f"\nr={st['pearson_r']:.2f} (p={st['pearson_p']:.2g}), "
                      f"rho={st['spearman_rho']:.2f} (p={st['spearman_p']:.2g})")
        else:
            title += f"\n(n={int(st['n'])} architectures: no correlation)"
        ax.set_title(title, fontsize=8)
        ax.set_xlabel(x.replace("_", " "), fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(8, len(handles)), fontsize=8,
                   frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return _png(fig)


def write_plots(store: Any, cross: pd.DataFrame) -> list[str]:
    """Write every figure under ``probes/plots/``; returns their URIs."""
    from .files import read_tables

    out = [store.put_bytes("probes/plots/cross_model.png", plot_cross_model(cross))]
    ori, con, mot = (read_tables(store, n) for n in ("orientation", "contrast", "motion"))
    if len(ori) or len(con) or len(mot):
        out.append(store.put_bytes("probes/plots/probe_curves.png",
                                   plot_probe_curves(ori, con, mot)))
    tun = read_tables(store, "tuning")
    if len(tun):
        out.append(store.put_bytes("probes/plots/tuning.png", plot_tuning_distributions(tun)))
    eig = read_tables(store, "eigenspectrum")
    if len(eig):
        twin = eig[eig["space"].isin(["gru", "encoder"])]
        neural = eig[eig["space"] == "neural_cvpca"]
        out.append(store.put_bytes("probes/plots/eigenspectra.png",
                                   plot_eigenspectra(twin, neural)))
    return out
