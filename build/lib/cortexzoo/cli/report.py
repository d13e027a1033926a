"""``cortexzoo report`` and ``cortexzoo results``: leaderboards, plots and queries.

Both group by dataset and scan configuration and never combine rows of different ones;
``--dataset``, ``--scan`` and ``--run`` narrow them to one.
"""
from __future__ import annotations

import sys

_FILTERS = ("dataset", "scan", "run")


def _filters(args) -> dict:
    return {k: getattr(args, k, None) for k in _FILTERS if getattr(args, k, None) is not None}


def cmd_report(args) -> int:
    from ..report import format_leaderboard, leaderboard, plot_depth, scan_label, with_scan
    from ..report.query import query_scores
    from ..store import ResultStore

    scores = query_scores(args.results, **_filters(args))
    print(format_leaderboard(leaderboard(scores)))
    store = ResultStore(args.results)
    if len(scores):
        for (ds, scan), g in with_scan(scores).groupby(["dataset", "scan"], sort=True):
            if not g["method"].isin(["ridge_gcv", "rsa"]).any():
                continue
            label = scan_label(ds, scan)
            store.put_bytes(f"plots/{label}/depth.png", plot_depth(g.drop(columns=["scan"])))
            print(f"\nlayer-by-depth plot ({ds}): {store.uri_of('plots', label, 'depth.png')}")
    if args.html or args.html_out:
        cmd_report_html(args)
    return 0


def cmd_report_html(args) -> int:
    """``cortexzoo report RESULTS --html [--html-out PATH]``."""
    from ..report.html import write_html_report

    where = write_html_report(args.results, getattr(args, "html_out", None))
    print(f"HTML report: {where}")
    return 0


def cmd_results(args) -> int:
    """``cortexzoo results RESULTS [--list] [--per-neuroid] [--dataset D] [--scan S]
    [--run R] [--region R] [--model GLOB] [--method M] [--metric X] [--top N]
    [--format table|csv|json]``."""
    from ..report.query import (_FORMATS, QueryError, format_results, query_neuroid_scores,
                                query_scores, store_listing)
    from ..store import SCORE_COLUMNS

    fmt = getattr(args, "format", None) or "table"
    if fmt not in _FORMATS:
        raise QueryError(f"unknown format {fmt!r}; choose one of {list(_FORMATS)}")
    if getattr(args, "list", False):
        df = store_listing(args.results)
    elif getattr(args, "per_neuroid", False):
        if getattr(args, "top", None) is not None:
            raise QueryError("--top ranks models; it does not apply to --per-neuroid")
        df = query_neuroid_scores(args.results, region=getattr(args, "region", None),
                                  model=getattr(args, "model", None),
                                  metric=getattr(args, "metric", None),
                                  layer=getattr(args, "layer", None), **_filters(args))
    else:
        df = query_scores(args.results, region=getattr(args, "region", None),
                          model=getattr(args, "model", None), method=getattr(args, "method", None),
                          metric=getattr(args, "metric", None), top=getattr(args, "top", None),
                          **_filters(args))
        if getattr(args, "top", None) is None and fmt == "table":
            # the full row set is wide: show the columns people look at
            keep = [c for c in SCORE_COLUMNS if c not in ("run_id", "code_version", "created_at",
                                                           "seed", "reduction")]
            df = df[[c for c in keep if c in df.columns]]
    text = format_results(df, fmt)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _scope(p) -> None:
    p.add_argument("--dataset", help="only this dataset (its name)")
    p.add_argument("--scan", help="only this scan configuration: its label (DATASET--xxxxxxxx, "
                   "see --list) or scan key")
    p.add_argument("--run", help="only this run id")


def register(sub) -> None:
    r = sub.add_parser("report", help="leaderboards and plots from a results URI, per dataset "
                       "and scan configuration")
    r.add_argument("results")
    _scope(r)
    r.add_argument("--html", action="store_true",
                   help="also write a self-contained HTML report (RESULTS/report.html)")
    r.add_argument("--html-out", help="write the HTML report to this local path instead")
    r.set_defaults(func=cmd_report)

    q = sub.add_parser("results", help="query scores without loading them all")
    q.add_argument("results")
    q.add_argument("--list", action="store_true",
                   help="what the store holds: datasets, scan configurations, runs, models, "
                        "rows, dates")
    q.add_argument("--per-neuroid", action="store_true",
                   help="the per-neuroid table (ridge r, EV, alpha and each neuroid's ceiling)")
    _scope(q)
    q.add_argument("--region")
    q.add_argument("--model", help="glob on the model spec")
    q.add_argument("--layer", help="with --per-neuroid: one layer")
    q.add_argument("--method")
    q.add_argument("--metric")
    q.add_argument("--top", type=int, help="best N models per region (best layer each)")
    q.add_argument("--format", choices=["table", "csv", "json"], default="table")
    q.set_defaults(func=cmd_results)
