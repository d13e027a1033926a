"""``cortexzoo decode``: out-of-domain decoding of recorded sites and model layers (paper 001)."""
from __future__ import annotations

from ._util import csv_list


def _print_result(res) -> None:
    import pandas as pd

    pd.set_option("display.width", 160)
    print(f"\nrun {res.run_id}: {res.written_units} units decoded, {res.skipped_units} already "
          f"done; scores in {res.out}/scores/, tables in {res.summary['tables']}/")
    print(f"reference: {res.reference}, in-domain 2AFC accuracy {res.reference_accuracy:.3f}")
    if len(res.scaling):
        cols = ["population", "layer", "n_units", "matched_k", "k_used", "units_per_site"]
        print("\nscaling factors (units needed to match the reference in-domain):")
        print(res.scaling[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    m = res.matched
    if len(m):
        ood = m[m["domain_role"] == "out_of_domain"].groupby("population")["value"].agg(["mean", "std"])
        ind = m[m["domain_role"] == "in_domain"].set_index("population")["value"]
        k = m.groupby("population")["k_units"].first()
        table = pd.DataFrame({"k": k, "in_domain": ind, "ood_mean": ood["mean"], "ood_sd": ood["std"]})
        print("\naccuracy at matched counts:")
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    t = res.tests
    if len(t):
        print("\nmodel vs reference over test domains:")
        print(t[["test", "population", "statistic", "p", "note"]].to_string(
            index=False, float_format=lambda v: f"{v:.3g}"))
    for name, uri in res.plots.items():
        print(f"plot ({name}): {uri}")


def cmd_decode(args) -> int:
    from ..decode import DecodeConfig, run_decode
    from .scan import expand_models

    base = DecodeConfig.from_yaml(args.config) if args.config else DecodeConfig()
    d = base.to_dict()
    for key in ("data", "out", "engine", "address", "batch_size", "num_actors", "input_size",
                "train_domain", "reference", "reference_accuracy", "min_reliability", "draws",
                "grid_points", "k_min", "max_units", "seed", "run_id"):
        if getattr(args, key) is not None:
            d[key] = getattr(args, key)
    if args.models is not None:
        d["models"] = expand_models(csv_list(args.models))
    if args.layers is not None:
        d["layers"] = csv_list(args.layers)
    for key in ("regions", "test_domains"):
        if getattr(args, key) is not None:
            d[key] = csv_list(getattr(args, key))
    if args.k_grid is not None:
        d["k_grid"] = [int(x) for x in csv_list(args.k_grid)]
    if args.alphas is not None:
        d["alphas"] = [float(x) for x in csv_list(args.alphas)]
    for flag, key in (("splits", "n_splits"), ("n_train", "n_train"), ("n_test_id", "n_test_id"),
                      ("n_test_ood", "n_test_ood"), ("split_seed", "seed"), ("group_column", "group_column")):
        if getattr(args, flag) is not None:
            d["splits"][key] = getattr(args, flag)
    if d["splits"].get("group_column") == "none":
        d["splits"]["group_column"] = None
    if args.no_neural:
        d["neural"] = False
    if args.no_cache:
        d["cache_features"] = False
    if args.no_plot:
        d["plot"] = False
    d["progress"] = not args.quiet
    res = run_decode(DecodeConfig.from_dict(d))
    _print_result(res)
    return 0


def register(sub) -> None:
    s = sub.add_parser("decode", help="out-of-domain decoding: a linear readout trained on one "
                       "image domain, tested on the others, for recorded sites and model layers")
    s.add_argument("--config", help="YAML decode config (keys of DecodeConfig); flags override it")
    s.add_argument("--data", help="dataset folder whose stimuli.parquet has 'domain' and 'category'")
    s.add_argument("--models", help="comma-separated model specs, glob patterns, 'curated' or a "
                   "list file (none: recorded populations only)")
    s.add_argument("--layers", help="one layer for every model, one per model in order, or "
                   "'spec=layer' pairs (default: each model's penultimate layer)")
    s.add_argument("--train-domain", help="the domain the readout is trained on (default: "
                   "dataset.json's source_domain)")
    s.add_argument("--test-domains", help="comma-separated test domains (default: all others)")
    s.add_argument("--out", help="results URI (local, s3:// or gs://)")
    s.add_argument("--regions", help="comma-separated recorded regions (default: all)")
    s.add_argument("--no-neural", action="store_true", help="decode the models only")
    s.add_argument("--min-reliability", type=float,
                   help="keep neuroids whose split-half reliability reaches this (e.g. 0.7)")
    s.add_argument("--reference", help="the population models are matched to (region or spec; "
                   "default IT, else the first region, else the first model)")
    s.add_argument("--reference-accuracy", type=float,
                   help="match to this in-domain accuracy instead of the reference's measured one")
    s.add_argument("--splits", type=int, help="number of splits (default 100)")
    s.add_argument("--n-train", type=int, help="training images per split (default 100)")
    s.add_argument("--n-test-id", type=int, help="held-out training-domain images per split (20)")
    s.add_argument("--n-test-ood", type=int, help="test images per other domain and split (50)")
    s.add_argument("--split-seed", type=int)
    s.add_argument("--group-column", help="images sharing this column's value never straddle "
                   "train and test ('auto': source_id when present; 'none')")
    s.add_argument("--draws", type=int, help="unit draws per split at each count (default 5)")
    s.add_argument("--k-grid", help="comma-separated unit counts (default: a log grid)")
    s.add_argument("--grid-points", type=int, help="points of the log grid (default 10)")
    s.add_argument("--k-min", type=int, help="smallest count of the log grid (default 1)")
    s.add_argument("--alphas", help="comma-separated ridge alphas (default logspace(-2, 6, 17) + 1)")
    s.add_argument("--max-units", type=int, help="units kept per layer (a seeded sample above this)")
    s.add_argument("--seed", type=int, help="seed of the unit draws")
    s.add_argument("--engine", choices=["ray", "local"])
    s.add_argument("--address", help="Ray address (default: RAY_ADDRESS or a local instance)")
    s.add_argument("--batch-size", type=int)
    s.add_argument("--num-actors", type=int)
    s.add_argument("--input-size", type=int, help="override every model's input crop size")
    s.add_argument("--run-id")
    s.add_argument("--no-cache", action="store_true", help="do not cache layer features")
    s.add_argument("--no-plot", action="store_true")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_decode)
