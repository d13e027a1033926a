"""A self-contained HTML report of a results URI (``cortexzoo report --html``).

One file, no external resources (a Content-Security-Policy forbids them): leaderboards
per region, a ranking of architectures with trained vs random variants (Fig. 8 of
paper 003), score by relative depth (:func:`plot_depth`), trained vs random pairs
with a paired t-test and Hedges' g, and the rank agreement of ridge and RSA with
Spearman's rho, a section per dataset and scan configuration; where ``RESULTS/probes/``
exists, the probes of the digital twins (:func:`probe_sections`). Figures are base64
PNGs; all text is HTML-escaped.
"""
from __future__ import annotations

import base64
import html
import os
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from .plots import plot_depth
from .query import query_scores
from .tables import leaderboard, scan_label, with_scan
from .figures import png_bytes, pyplot

__all__ = ["paired_stats", "rank_agreement", "plot_ranking", "plot_trained_vs_random",
           "plot_rank_agreement", "render_html_report", "write_html_report", "probe_sections"]

#: Columns the report reads (everything else in the scores dataset stays on disk).
REPORT_COLUMNS = ["run_id", "dataset", "scan_key", "region", "model", "source", "weights", "layer",
                  "relative_depth", "method", "metric", "split", "value", "ceiling",
                  "ceiled_value", "n_neuroids", "ci_low", "ci_high", "k_units"]
_MEASURES = (("score", "overall (mean of ridge and RSA)"), ("ridge", "ridge (best layer)"),
             ("rsa", "RSA (best layer)"))
_WEIGHT_COLORS = {"trained": "#d62728", "random": "#1f77b4"}   # red / blue as in Fig. 8
_OTHER_COLOR = "#7f7f7f"


def _arch(model: str) -> str:
    return str(model).split("@")[0]


def _plt():
    return pyplot()


def _png(fig) -> bytes:
    return png_bytes(fig, dpi=90)


def _pairs(board: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Per (region, architecture): the trained and the random variant's score."""
    b = board[board["weights"].isin(["trained", "random"])].assign(arch=lambda d: d["model"].map(_arch))
    if b.empty:
        return pd.DataFrame(columns=["region", "arch", "trained", "random"])
    wide = b.pivot_table(index=["region", "arch"], columns="weights", values=measure,
                         aggfunc="mean")
    for w in ("trained", "random"):
        if w not in wide:
            wide[w] = np.nan
    return wide[["trained", "random"]].dropna().reset_index()


def paired_stats(board: pd.DataFrame) -> pd.DataFrame:
    """Trained vs random per region and measure (overall score, ridge, RSA): paired
    t-test over architectures that have both variants (trained minus random), Hedges'
    g (g_av) and d_z; NaN statistics where fewer than 2 pairs exist."""
    from ..mapping import paired_ttest

    rows = []
    for measure, _ in _MEASURES:
        if measure not in board or board[measure].isna().all():
            continue
        pairs = _pairs(board, measure)
        for region, g in pairs.groupby("region"):
            row = dict(region=region, measure=measure, n_pairs=len(g), t=np.nan, df=np.nan,
                       p=np.nan, mean_diff=float((g["trained"] - g["random"]).mean()),
                       hedges_g=np.nan, d_z=np.nan)
            if len(g) >= 2:
                res = paired_ttest(g["trained"].to_numpy(), g["random"].to_numpy())
                row.update(t=res.t, df=res.df, p=res.p, mean_diff=res.mean_diff,
                           hedges_g=res.hedges_g, d_z=res.d_z)
            rows.append(row)
    return pd.DataFrame(rows, columns=["region", "measure", "n_pairs", "t", "df", "p",
                                       "mean_diff", "hedges_g", "d_z"])


def _ranks(board: pd.DataFrame) -> pd.DataFrame:
    """Models scored by both ridge and RSA, with their rank under each (1 = best)."""
    b = board.dropna(subset=["ridge", "rsa"]).copy()
    if b.empty:
        return b.assign(ridge_rank=[], rsa_rank=[])
    grp = b.groupby("region")
    b["ridge_rank"] = grp["ridge"].rank(ascending=False, method="average")
    b["rsa_rank"] = grp["rsa"].rank(ascending=False, method="average")
    return b


def rank_agreement(board: pd.DataFrame) -> pd.DataFrame:
    """Per region: Spearman rho (and p) between models' ridge and RSA scores (the same as
    between their ranks); NaN where fewer than 3 models have both."""
    from ..mapping import spearman_agreement

    rows = []
    for region, g in _ranks(board).groupby("region"):
        rho = p = np.nan
        if len(g) >= 3 and g["ridge"].nunique() > 1 and g["rsa"].nunique() > 1:
            rho, p = spearman_agreement(g["ridge"].to_numpy(), g["rsa"].to_numpy())
        rows.append(dict(region=region, n_models=len(g), spearman_rho=rho, p=p))
    return pd.DataFrame(rows, columns=["region", "n_models", "spearman_rho", "p"])


def plot_ranking(board: pd.DataFrame) -> bytes:
    """Architectures sorted by their trained variant's score (mean over regions), trained
    (red) and random (blue) bars overlaid, 95% bootstrap CI across regions; one panel per
    measure (ridge, RSA). Models without a trained/random variant (baselines) in grey."""
    from ..mapping import bootstrap_ci

    plt = _plt()
    measures = [m for m in ("ridge", "rsa") if m in board and board[m].notna().any()] or ["score"]
    archs = sorted({_arch(m) for m in board["model"]}) if len(board) else []
    fig, axes = plt.subplots(1, len(measures), squeeze=False,
                             figsize=(4.8 * len(measures), 1.2 + 0.32 * max(len(archs), 1)))
    for ax, measure in zip(axes[0], measures):
        b = board.assign(arch=board["model"].map(_arch))
        stats = {}
        for (arch, weights), g in b.groupby(["arch", "weights"]):
            v = g[measure].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            if v.size == 0:
                continue
            lo, hi = bootstrap_ci(v) if v.size > 1 else (v[0], v[0])
            stats[(arch, weights)] = (v.mean(), lo, hi)

        def key(a):   # trained score first (as in Fig. 8), else the best variant's
            tr = stats.get((a, "trained"))
            best = max((s[0] for (aa, _), s in stats.items() if aa == a), default=-np.inf)
            return tr[0] if tr else best

        order = sorted({a for a, _ in stats}, key=key)   # best at the top of a barh
        y = {a: i for i, a in enumerate(order)}
        for (arch, weights), (mean, lo, hi) in sorted(stats.items(), key=lambda kv: kv[0][1] != "trained"):
            color = _WEIGHT_COLORS.get(str(weights), _OTHER_COLOR)
            ax.barh(y[arch], mean, color=color, alpha=0.55 if weights == "random" else 0.8,
                    height=0.7, xerr=[[mean - lo], [hi - mean]], ecolor="black",
                    error_kw=dict(lw=0.8, capsize=2))
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels(order, fontsize=7)
        ax.set_xlabel(f"{measure} (mean over regions, 95% CI)")
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(f"ranking by {measure}", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.8) for c in
               (_WEIGHT_COLORS["trained"], _WEIGHT_COLORS["random"], _OTHER_COLOR)]
    fig.legend(handles, ["trained", "random", "other"], loc="lower right", fontsize=7)
    fig.tight_layout()
    return _png(fig)


def plot_trained_vs_random(board: pd.DataFrame, measure: str = "score") -> bytes:
    """Each architecture's random and trained score joined by a line, one panel per
    region, with the paired t-test in the title where there are >= 2 pairs."""
    plt = _plt()
    pairs = _pairs(board, measure)
    stats = paired_stats(board)
    regions = sorted(pairs["region"].unique()) or ["(no pairs)"]
    fig, axes = plt.subplots(1, len(regions), squeeze=False, figsize=(3.6 * len(regions), 3.6))
    for ax, region in zip(axes[0], regions):
        g = pairs[pairs["region"] == region]
        for _, r in g.iterrows():
            up = r["trained"] >= r["random"]
            ax.plot([0, 1], [r["random"], r["trained"]], "-", color="#444" if up else "#e377c2",
                    lw=1, alpha=0.8)
            ax.text(1.04, r["trained"], str(r["arch"]), fontsize=6, va="center")
        ax.scatter(np.zeros(len(g)), g["random"], color=_WEIGHT_COLORS["random"], zorder=3, s=18)
        ax.scatter(np.ones(len(g)), g["trained"], color=_WEIGHT_COLORS["trained"], zorder=3, s=18)
        ax.set_xticks([0, 1])
        ax.set_xticklabels(["random", "trained"])
        ax.set_xlim(-0.3, 1.6)
        ax.set_ylabel(measure)
        s = stats[(stats["region"] == region) & (stats["measure"] == measure)]
        title = f"{region}"
        if len(s) and np.isfinite(s["t"].iloc[0]):
            r = s.iloc[0]
            title += f"\nt({int(r['df'])}) = {r['t']:.2f}, p = {r['p']:.3g}, g = {r['hedges_g']:.2f}"
        ax.set_title(title, fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def plot_rank_agreement(board: pd.DataFrame) -> bytes:
    """Model ranks by ridge (x) vs RSA (y) per region, 1 = best, with Spearman's rho."""
    plt = _plt()
    ranks = _ranks(board)
    agree = rank_agreement(board)
    regions = sorted(ranks["region"].unique()) if len(ranks) else ["(no models with both)"]
    fig, axes = plt.subplots(1, len(regions), squeeze=False, figsize=(3.6 * len(regions), 3.6))
    for ax, region in zip(axes[0], regions):
        g = ranks[ranks["region"] == region] if len(ranks) else ranks
        colors = [_WEIGHT_COLORS.get(str(w), _OTHER_COLOR) for w in g["weights"]]
        ax.scatter(g["ridge_rank"], g["rsa_rank"], c=colors, s=20, zorder=3)
        n = max(len(g), 1)
        ax.plot([1, n], [1, n], ":", color="grey", lw=1)
        ax.set_xlabel("rank by ridge")
        ax.set_ylabel("rank by RSA")
        ax.invert_xaxis()
        ax.invert_yaxis()
        a = agree[agree["region"] == region]
        title = str(region)
        if len(a) and np.isfinite(a["spearman_rho"].iloc[0]):
            title += f"\nSpearman rho = {a['spearman_rho'].iloc[0]:.2f} (p = {a['p'].iloc[0]:.3g})"
        ax.set_title(title, fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


# ------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:right}
th{background:#f0f0f0}td.t{text-align:left}
img{max-width:100%;display:block;margin:.5em 0 1.5em}
.note{color:#555;font-size:.85em}
"""

# Marks every image once it is decoded (or failed) so a headless browser's DOM dump
# shows whether the figures really render.
_SCRIPT = """
(function(){
  function mark(img, ok){
    img.setAttribute('data-loaded', (ok && img.complete && img.naturalWidth > 0) ? 'ok' : 'error');
    img.setAttribute('data-natural-width', String(img.naturalWidth));
  }
  function check(){
    // after the load event every image is complete: a zero width means it failed to
    // decode. Marked synchronously so that a DOM dump taken right after load sees it;
    // img.decode() then confirms (or refutes) each one asynchronously.
    var imgs = Array.prototype.slice.call(document.images);
    imgs.forEach(function(img){ mark(img, true); });
    document.body.setAttribute('data-images-checked', String(imgs.length));
    imgs.forEach(function(img){
      if (img.decode) { img.decode().then(function(){}, function(){ mark(img, false); }); }
    });
  }
  if (document.readyState === 'complete') { check(); } else { window.addEventListener('load', check); }
})();
"""

_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'")


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _cell(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)) or (not isinstance(v, str) and pd.isna(v)):
        return "<td></td>"
    if isinstance(v, (float, np.floating)):
        return f"<td>{_e(f'{float(v):.{digits}f}')}</td>"
    if isinstance(v, (int, np.integer)):
        return f"<td>{_e(int(v))}</td>"
    return f'<td class="t">{_e(v)}</td>'


def _table(df: pd.DataFrame, cls: str = "") -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>"
                   for row in df.itertuples(index=False, name=None))
    return f'<table class="{_e(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _img(png: bytes, alt: str, fig_id: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img id="{_e(fig_id)}" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _scan_section(scores: pd.DataFrame, suffix: str, neuroid_rows: pd.DataFrame | None) -> list[str]:
    """The sections of one dataset and scan configuration."""
    board = leaderboard(scores)
    parts = ["<h3>Leaderboards</h3>",
             '<p class="note">Each model\'s layer is chosen on one seeded half of the stimuli '
             'and scored on the other (and the reverse, averaged); the in-sample max over layers '
             'is shown beside it (<code>*_insample</code>), never ranked on. Ceiled where the '
             'region has a ceiling (<code>*_scale</code>); overall = mean of ridge and RSA.</p>']
    if board.empty:
        parts.append("<p>(no scores)</p>")
    for region, g in board.groupby("region", sort=True):
        parts.append(f'<h4 id="board{_e(suffix)}-{_e(region)}">{_e(region)}</h4>')
        parts.append(_table(g.drop(columns=["region", "dataset", "scan"]), "leaderboard"))
    ia = scores[scores["method"] == "inter_animal"] if "method" in scores else scores.iloc[:0]
    if len(ia):
        parts.append("<h4>Inter-animal ceiling</h4>")
        parts.append('<p class="note">Each neuroid predicted from the same region\'s neuroids '
                     'of every other subject with the scan\'s ridge; mean r with a 95% '
                     'bootstrap interval over neuroids.</p>')
        cols = [c for c in ("region", "value", "ci_low", "ci_high", "n_neuroids", "k_units")
                if c in ia.columns]
        parts.append(_table(ia[cols].rename(columns={"value": "mean_r", "k_units": "subjects"}),
                            "stats"))
    if board.empty:
        return parts
    parts.append("<h3>Ranking across architectures</h3>")
    parts.append('<p class="note">Sorted by the trained variant (red); random initialization '
                 'in blue, overlaid; error bars: 95% bootstrap CI across regions.</p>')
    parts.append(_img(plot_ranking(board), "ranking of models, trained vs random", f"fig-ranking{suffix}"))
    parts.append("<h3>Score by relative depth</h3>")
    parts.append(_img(plot_depth(scores), "score by relative layer depth", f"fig-depth{suffix}"))
    parts.append("<h3>Trained vs random</h3>")
    parts.append('<p class="note">Paired over architectures with both variants '
                 '(trained minus random); Hedges\' g is g_av, bias-corrected.</p>')
    parts.append(_img(plot_trained_vs_random(board), "trained vs random per architecture",
                      f"fig-trained-random{suffix}"))
    parts.append(_table(paired_stats(board), "stats"))
    if neuroid_rows is not None and len(neuroid_rows):
        from .neuroids import trained_vs_random_neuroids

        comp = trained_vs_random_neuroids(scores, neuroid_rows)
        if len(comp):
            parts.append("<h3>Trained vs random, neuroid by neuroid</h3>")
            parts.append('<p class="note">Per region and architecture: the fraction of neuroids '
                         'whose ridge r at the trained network\'s best layer exceeds the random '
                         'network\'s (ties count one half), and a paired t-test over neuroids.</p>')
            parts.append(_table(comp.drop(columns=["dataset", "scan"]), "stats"))
    parts.append("<h3>Ridge vs RSA rank agreement</h3>")
    parts.append(_img(plot_rank_agreement(board), "model ranks by ridge vs RSA",
                      f"fig-rank-agreement{suffix}"))
    parts.append(_table(rank_agreement(board), "stats"))
    return parts


def render_html_report(scores: pd.DataFrame, title: str = "cortexzoo report",
                       neuroid_rows: pd.DataFrame | None = None,
                       extra_sections: list[str] | None = None) -> str:
    """The report for a scores table (the columns of :data:`REPORT_COLUMNS` suffice): a
    section per dataset and scan configuration, never mixing them. ``neuroid_rows``:
    per-neuroid ridge r (``ResultStore.read_neuroid_scores``), for the neuroid-by-neuroid
    comparison; ``extra_sections``: more HTML (e.g. probes) appended at the end."""
    scored = with_scan(scores) if len(scores) else scores.assign(scan=pd.Series(dtype=str))
    groups = list(scored.groupby(["dataset", "scan"], sort=True)) if len(scored) else []
    n_models = scored["model"].nunique() if len(scored) else 0
    parts = [f"<h1>{_e(title)}</h1>",
             f'<p class="note">{_e(len(scores))} score rows, {_e(n_models)} models, '
             f'{_e(len(groups))} dataset/scan configuration(s); generated '
             f'{_e(datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))}.</p>']
    if not groups:
        parts.append("<h2>Leaderboards</h2><p>(no scores)</p>")
    for (ds, scan), g in groups:
        label = scan_label(ds, scan)
        suffix = "" if len(groups) == 1 else f"-{label}"
        parts.append(f'<h2 id="scan{_e(suffix)}">Dataset {_e(ds)} (scan {_e(label)})</h2>')
        parts += _scan_section(g.drop(columns=["scan"]), suffix, neuroid_rows)
    parts += list(extra_sections or [])
    body = "\n".join(parts)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_e(_CSP)}\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n"
            f"<script>{_SCRIPT}</script>\n</body></html>\n")


def write_html_report(uri: str, out_path: str | os.PathLike | None = None,
                      **storage_options: Any) -> str:
    """Render the report of results ``uri`` and write it.

    Without ``out_path`` it goes to ``<uri>/report.html`` (through the store, so s3://
    works); with one, to that local file. Only :data:`REPORT_COLUMNS` are read.

    Returns
    -------
    str
        Where the report was written.
    """
    from ..store import ResultStore

    scores = query_scores(uri, columns=REPORT_COLUMNS, **storage_options)
    store = ResultStore(uri, **storage_options)
    neuroid_rows = store.read_neuroid_scores(filters=[("metric", "==", "pearson_r")])
    text = render_html_report(scores, title=f"cortexzoo report: {uri}", neuroid_rows=neuroid_rows,
                              extra_sections=probe_sections(uri, **storage_options))
    data = text.encode("utf-8")
    if out_path is not None:
        out_path = os.fspath(out_path)
        d = os.path.dirname(os.path.abspath(out_path))
        if not os.path.isdir(d):
            raise ValueError(f"output folder {d!r} does not exist")
        with open(out_path, "wb") as f:
            f.write(data)
        return out_path
    return ResultStore(uri, **storage_options).put_bytes("report.html", data)


def probe_sections(uri: str, **storage_options: Any) -> list[str]:
    """The "Probing digital twins" section (paper 004) when ``RESULTS/probes/`` holds a
    cross-model table: the table, neural prediction vs each endpoint, the figures."""
    from .probes import load_probe_artifacts

    probes = load_probe_artifacts(uri, **storage_options)
    if probes is None:
        return []
    parts = ['<h2 id="probes">Probing digital twins</h2>',
             '<p class="note">One row per (architecture, seed): neural prediction (test chunked '
             'Pearson r), orientation accuracy at the largest training size (ID, OOD), contrast '
             'and motion nAUC, median gOSI, F1/F0 and c50 over quality-controlled units, GRU '
             'eigenspectrum alpha.</p>']
    cross = probes.cross_model
    parts.append(_table(cross.drop(columns=[c for c in ("model",) if c in cross.columns]),
                        "probes-cross-model"))
    if len(probes.stats):
        parts.append('<p class="note">Neural prediction vs each endpoint over architecture '
                     'means (NaN correlations with fewer than 3 architectures).</p>')
        parts.append(_table(probes.stats.drop(columns=["x"], errors="ignore"), "probes-stats"))
    for name, caption, png in probes.figures:
        parts.append(f'<p class="note">{_e(caption)}</p>')
        parts.append(_img(png, caption, "fig-probes-" + name.rsplit(".", 1)[0].replace("_", "-")))
    return parts
