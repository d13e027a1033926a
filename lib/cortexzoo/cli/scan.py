"""``cortexzoo scan``: a zoo scan of a dataset folder."""
from __future__ import annotations

import os
import sys

from ._util import csv_list

def expand_models(entries: list[str]) -> list[str]:
    """Model specs from a list of specs, glob patterns, `curated`, or list files."""
    from ..zoo import default_zoo, list_models
    from ..zoo.spec import read_spec_list

    out: list[str] = []
    for e in entries:
        if e == "curated":
            out.extend(default_zoo())
        elif os.path.isfile(e):
            out.extend(str(spec) for spec in read_spec_list(e))
        elif any(c in e for c in "*?["):
            matched = [m.spec for m in list_models(e, curated=False)]
            if not matched:
                raise ValueError(f"model pattern {e!r} matches no registered model "
                                 "(see `cortexzoo zoo list --all`)")
            out.extend(matched)
        else:
            out.append(e)
    seen: set[str] = set()
    return [m for m in out if not (m in seen or seen.add(m))]


def cmd_scan(args) -> int:
    from ..report import format_leaderboard
    from ..scan import ScanConfig, ScanFailed, run_scan

    base = ScanConfig.from_yaml(args.config) if args.config else ScanConfig()
    d = base.to_dict()
    # "is not None": 0 and '' are values to check, not "flag absent"
    for key in ("data", "out", "engine", "address", "batch_size", "num_actors",
                "max_concurrent_models", "input_size", "stimulus"):
        if getattr(args, key) is not None:
            d[key] = getattr(args, key)
    if args.models is not None:
        d["models"] = expand_models(csv_list(args.models))
        if not d["models"]:
            raise ValueError(f"--models {args.models!r} names no model")
    if args.layers is not None:
        d["layers"] = csv_list(args.layers)
    for flag, key in (("reduction", "method"), ("k", "n_components")):
        if getattr(args, flag) is not None:
            d["reduction"][key] = getattr(args, flag)
    if args.methods is not None:
        d["scoring"]["methods"] = tuple(csv_list(args.methods))
    if args.min_reliability is not None:
        d["scoring"]["min_reliability"] = args.min_reliability
    if args.no_cache:
        d["cache_features"] = False
    if args.save_encoders is not None:
        d["save_encoders"] = "best" if args.save_encoders == "best" else csv_list(args.save_encoders)
    d["progress"] = not args.quiet
    cfg = ScanConfig.from_dict(d)
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
    for e in result.summary.get("encoders") or []:
        print(f"encoder {e['model']} {e['layer']} {e['region']} ({e['n_sites']} sites, "
              f"mean r {e['mean_r']:.3f}): {e['uri']}")
    return rc


def register(sub) -> None:
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
    s.add_argument("--input-size", type=int, help="override every model's input size")
    s.add_argument("--stimulus", choices=["whole", "crop"],
                   help="how stimuli are presented: 'whole' (default: the whole image resized "
                        "to the model's input, as Brain-Score presents it) or 'crop' (the "
                        "model's own evaluation transform: resize, center crop)")
    s.add_argument("--reduction", choices=["srp", "gap", "flatten"])
    s.add_argument("--k", type=int, help="SRP dimensions (default 4096)")
    s.add_argument("--methods", help="comma-separated: ridge_gcv,rsa")
    s.add_argument("--min-reliability", type=float)
    s.add_argument("--no-cache", action="store_true", help="do not cache reduced features")
    s.add_argument("--save-encoders", metavar="best|LAYERS",
                   help="also save the fitted encoding model of every site per (model, layer, "
                        "region): 'best' (the held-out chosen layer) or comma-separated layers "
                        "(for `cortexzoo control`)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_scan)
