"""``cortexzoo report`` and ``cortexzoo results``: leaderboards, plots and queries."""
from __future__ import annotations

import sys


def cmd_report(args) -> int:
    from ..report import format_leaderboard, leaderboard, plot_depth
    from ..store import ResultStore

    store = ResultStore(args.results)
    scores = store.read_scores()
    print(format_leaderboard(leaderboard(scores)))
    if len(scores):
        store.put_bytes("plots/depth.png", plot_depth(scores))
        print(f"\nlayer-by-depth plot: {args.results.rstrip('/')}/plots/depth.png")
    if args.html or args.html_out:
        cmd_report_html(args)
    return 0


def cmd_report_html(args) -> int:
    """CLI handler: ``cortexzoo report RESULTS --html [--html-out PATH]`` (``args.results``,
    optional ``args.html_out``)."""
    from ..report.html import write_html_report

    where = write_html_report(args.results, getattr(args, "html_out", None))
    print(f"HTML report: {where}")
    return 0


def cmd_results(args) -> int:
    """CLI handler: ``cortexzoo results RESULTS [--region R] [--model GLOB] [--method M]
    [--metric X] [--top N] [--format table|csv|json]``."""
    from ..report.query import _FORMATS, QueryError, format_results, query_scores
    from ..store import SCORE_COLUMNS

    fmt = getattr(args, "format", None) or "table"
    if fmt not in _FORMATS:
        raise QueryError(f"unknown format {fmt!r}; choose one of {list(_FORMATS)}")
    df = query_scores(args.results, region=getattr(args, "region", None),
                      model=getattr(args, "model", None), method=getattr(args, "method", None),
                      metric=getattr(args, "metric", None), top=getattr(args, "top", None))
    if getattr(args, "top", None) is None and fmt == "table":
        # the full row set is wide: show the columns people look at
        keep = [c for c in SCORE_COLUMNS if c not in ("run_id", "code_version", "created_at",
                                                       "split", "seed", "reduction")]
        df = df[[c for c in keep if c in df.columns]]
    text = format_results(df, fmt)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def register(sub) -> None:
    r = sub.add_parser("report", help="leaderboard and plots from a results URI")
    r.add_argument("results")
    r.add_argument("--html", action="store_true",
                   help="also write a self-contained HTML report (RESULTS/report.html)")
    r.add_argument("--html-out", help="write the HTML report to this local path instead")
    r.set_defaults(func=cmd_report)

    q = sub.add_parser("results", help="query scores without loading them all")
    q.add_argument("results")
    q.add_argument("--region")
    q.add_argument("--model", help="glob on the model spec")
    q.add_argument("--method")
    q.add_argument("--metric")
    q.add_argument("--top", type=int, help="best N models per region (best layer each)")
    q.add_argument("--format", choices=["table", "csv", "json"], default="table")
    q.set_defaults(func=cmd_results)
