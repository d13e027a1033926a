"""The `cortexzoo` command line."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

log = logging.getLogger("cortexzoo")


def _setup_env() -> None:
    # Before Ray is imported: see ../shared/ENVIRONMENT.md.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if not sys.stderr.isatty():
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


def expand_models(entries: list[str]) -> list[str]:
    """Model specs from a list of specs, glob patterns, `curated`, or list files."""
    from .zoo import default_zoo, list_models
    from .zoo.spec import read_spec_list

    out: list[str] = []
    for e in entries:
        if e == "curated":
            out.extend(default_zoo())
        elif os.path.isfile(e):
            out.extend(str(spec) for spec in read_spec_list(e))
        elif any(c in e for c in "*?["):
            matched = [m.spec for m in list_models(e, curated=False)]
            if not matched:
                raise SystemExit(f"error: model pattern {e!r} matches no registered model")
            out.extend(matched)
        else:
            out.append(e)
    seen: set[str] = set()
    return [m for m in out if not (m in seen or seen.add(m))]


def _csv(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def cmd_scan(args) -> int:
    from .report import format_leaderboard
    from .scan import ScanConfig, ScanFailed, run_scan

    cfg = ScanConfig.from_yaml(args.config) if args.config else ScanConfig()
    if args.data:
        cfg.data = args.data
    if args.models:
        cfg.models = expand_models(_csv(args.models))
    if args.out:
        cfg.out = args.out
    if args.layers:
        cfg.layers = _csv(args.layers)
    if args.engine:
        cfg.engine = args.engine
    if args.address:
        cfg.address = args.address
    if args.batch_size:
        cfg.batch_size = args.batch_size
    if args.num_actors:
        cfg.num_actors = args.num_actors
    if args.max_concurrent_models:
        cfg.max_concurrent_models = args.max_concurrent_models
    if args.input_size:
        cfg.input_size = args.input_size
    if args.reduction:
        cfg.reduction = dataclasses.replace(cfg.reduction, method=args.reduction)
    if args.k:
        cfg.reduction = dataclasses.replace(cfg.reduction, n_components=args.k)
    if args.methods:
        cfg.scoring = dataclasses.replace(cfg.scoring, methods=tuple(_csv(args.methods)))
    if args.min_reliability is not None:
        cfg.scoring = dataclasses.replace(cfg.scoring, min_reliability=args.min_reliability)
    if args.no_cache:
        cfg.cache_features = False
    cfg.progress = not args.quiet
    try:
        result = run_scan(cfg)
        rc = 0
    except ScanFailed as e:
        print(str(e), file=sys.stderr)
        result, rc = e.result, 1
    print(f"\nrun {result.run_id}: {result.written_units} (model, layer) units scored, "
          f"{result.skipped_units} already done; scores in {result.out}/scores/")
    print(format_leaderboard(result.leaderboard))
    if result.plot_path:
        print(f"\nlayer-by-depth plot: {result.plot_path}")
    return rc


def cmd_zoo_list(args) -> int:
    from .zoo import list_models

    entries = list_models(args.pattern, curated=not args.all)
    if args.format == "csv":
        print("spec,source,name,weights,weights_available,n_layers")
        for e in entries:
            print(f"{e.spec},{e.source},{e.name},{e.weights},{e.weights_available},{e.n_layers}")
    else:
        print(f"{'spec':58s} {'source':11s} {'weights':8s} {'available':9s} {'layers':>6s}")
        for e in entries:
            n = "" if e.n_layers is None else str(e.n_layers)
            print(f"{e.spec:58s} {e.source:11s} {e.weights:8s} "
                  f"{'yes' if e.weights_available else 'no':9s} {n:>6s}")
        print(f"{len(entries)} model(s)")
    return 0


def cmd_data_cowley(args) -> int:
    from .data.cowley import convert_cowley_v4

    print(convert_cowley_v4(args.src, args.out))
    return 0


def cmd_data_planted(args) -> int:
    from .scan.planted import EMBEDDED, make_planted_dataset

    print(make_planted_dataset(args.out, model=args.model or EMBEDDED["model"], layer=args.layer,
                               n_stimuli=args.n_stimuli, n_neuroids=args.n_neuroids,
                               n_reps=args.n_reps, seed=args.seed))
    return 0


def cmd_data_validate(args) -> int:
    from .data import load_dataset

    ds = load_dataset(args.uri)
    print(f"{args.uri}: ok ({ds.n_stimuli} stimuli, {ds.n_neuroids} neuroids, "
          f"regions {ds.regions}, fingerprint {ds.fingerprint()[:12]})")
    return 0


def cmd_report(args) -> int:
    from .report import format_leaderboard, leaderboard, plot_depth
    from .store import ResultStore

    store = ResultStore(args.results)
    scores = store.read_scores()
    print(format_leaderboard(leaderboard(scores)))
    if len(scores):
        store.put_bytes("plots/depth.png", plot_depth(scores))
        print(f"\nlayer-by-depth plot: {args.results.rstrip('/')}/plots/depth.png")
    if args.html or args.html_out:
        from .report.html import cmd_report_html

        cmd_report_html(args)
    return 0


def cmd_results(args) -> int:
    from .report.query import cmd_results as run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cortexzoo", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("scan", help="score every layer of a zoo of models against a dataset")
    s.add_argument("--config", help="YAML scan config (keys of ScanConfig); flags override it")
    s.add_argument("--data", help="dataset folder URI (local, s3:// or gs://); default: embedded")
    s.add_argument("--models", help="comma-separated specs SOURCE:NAME@WEIGHTS, glob patterns, "
                   "'curated', or a text file with one spec per line")
    s.add_argument("--out", help="results URI (local, s3:// or gs://); default ./cortexzoo-results")
    s.add_argument("--layers", help="comma-separated layer names (default: all)")
    s.add_argument("--engine", choices=["ray", "local"])
    s.add_argument("--address", help="Ray address (default: RAY_ADDRESS or a local instance)")
    s.add_argument("--batch-size", type=int)
    s.add_argument("--num-actors", type=int)
    s.add_argument("--max-concurrent-models", type=int,
                   help="models extracted and scored at once (each its own Ray Data pipeline)")
    s.add_argument("--input-size", type=int, help="override every model's input crop size")
    s.add_argument("--reduction", choices=["srp", "gap", "flatten"])
    s.add_argument("--k", type=int, help="SRP dimensions (default 4096)")
    s.add_argument("--methods", help="comma-separated: ridge_gcv,rsa")
    s.add_argument("--min-reliability", type=float)
    s.add_argument("--no-cache", action="store_true", help="do not cache reduced features")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_scan)

    z = sub.add_parser("zoo", help="the model zoo").add_subparsers(dest="zoo_cmd", required=True)
    zl = z.add_parser("list", help="list registered models")
    zl.add_argument("pattern", nargs="?", help="glob on the spec, e.g. 'timm:resnet*'")
    zl.add_argument("--all", action="store_true", help="every torchvision/timm architecture, "
                    "not only the curated zoo")
    zl.add_argument("--format", choices=["table", "csv"], default="table")
    zl.set_defaults(func=cmd_zoo_list)

    d = sub.add_parser("data", help="make or check dataset folders").add_subparsers(
        dest="data_cmd", required=True)
    dc = d.add_parser("cowley", help="convert the Cowley et al. V4 session to a dataset folder")
    dc.add_argument("src")
    dc.add_argument("out")
    dc.set_defaults(func=cmd_data_cowley)
    dp = d.add_parser("planted", help="a synthetic recording planted in one model layer")
    dp.add_argument("out")
    dp.add_argument("--model")
    dp.add_argument("--layer")
    dp.add_argument("--n-stimuli", type=int, default=200)
    dp.add_argument("--n-neuroids", type=int, default=40)
    dp.add_argument("--n-reps", type=int, default=4)
    dp.add_argument("--seed", type=int, default=0)
    dp.set_defaults(func=cmd_data_planted)
    dv = d.add_parser("validate", help="check a dataset folder")
    dv.add_argument("uri")
    dv.set_defaults(func=cmd_data_validate)

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

    from .training.cli import register_cli as register_training
    from .twins.cli import register_cli as register_twins

    register_training(sub)
    register_twins(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    _setup_env()
    args = build_parser().parse_args(argv)
    _setup_logging(getattr(args, "quiet", False))
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
