"""``cortexzoo control``: parametric control (paper 002).

    cortexzoo control accentuate --encoder URI --sites S1,S2 --seeds SEEDS --out R
    cortexzoo control controversial --a URI_A --b URI_B --sites S1 --seeds SEEDS --out R
    cortexzoo control score --stimuli R --responses DATASET   (or --oracle ENCODER_URI)

Encoders come from `cortexzoo scan ... --save-encoders best`.
"""
from __future__ import annotations

import argparse

from ._util import csv_list

_SYNTH = ("steps", "lr", "reg_weight", "reg_layer", "decay", "jitter", "zoom", "degrees")


def _config(args, kind: str):
    from ..control import ControlConfig
    from ..core.config import read_yaml_mapping

    d = dict(read_yaml_mapping(args.config, what="control config")) if args.config else {}
    d["kind"] = kind
    for key in ("encoder", "a", "b", "seeds", "n_seeds", "top_sites", "out", "n_levels",
                "step_sd", "delta_sd", "engine", "address", "device"):
        if getattr(args, key, None) is not None:
            d[key] = getattr(args, key)
    for key in ("sites", "seed_ids"):
        if getattr(args, key, None) is not None:
            d[key] = csv_list(getattr(args, key))
    synth = dict(d.get("synth") or {})
    for key in _SYNTH:
        if getattr(args, key, None) is not None:
            synth[key] = getattr(args, key)
    if args.aug_seed is not None:
        synth["seed"] = args.aug_seed
    if synth:
        d["synth"] = synth
    if args.no_plot:
        d["plot"] = False
    d["progress"] = not args.quiet
    return ControlConfig.from_dict(d, where=args.config)


def _print_run(res) -> None:
    import pandas as pd

    pd.set_option("display.width", 160)
    print(f"\n{res.written} sweeps made, {res.skipped} already in {res.out} "
          f"({res.seconds:.1f} s); {len(res.stimuli)} images in {res.out}/stimuli.parquet")
    s = res.sweeps
    if len(s):
        print(s[["site", "seed_id", "spearman", "max_abs_error_sd", "mean_distance_pixels",
                 "mean_distance_layer"]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for kind, uri in res.plots.items():
        print(f"contact sheet ({kind}): {uri}")


def cmd_accentuate(args) -> int:
    from ..control import run_control

    _print_run(run_control(_config(args, "accentuate")))
    return 0


def cmd_controversial(args) -> int:
    from ..control import run_control

    res = run_control(_config(args, "controversial"))
    _print_run(res)
    con = res.stimuli[res.stimuli["kind"] == "controversial"]
    if len(con):
        print(con[["site", "seed_id", "condition", "z_a", "z_b"]].to_string(
            index=False, float_format=lambda v: f"{v:+.2f}"))
    return 0


def cmd_score(args) -> int:
    from ..control import run_score

    res = run_score(args.stimuli, responses=args.responses, oracle=args.oracle, out=args.out,
                    device=args.device, engine=args.engine, address=args.address,
                    progress=not args.quiet)
    c = res.summary.get("control")
    if c:
        print(f"control score: mean r {c['mean_r_over_sites']:.3f} (SD {c['sd_r_over_sites']:.3f} "
              f"over {c['n_sites']} sites); over {c['n_sweeps']} sweeps: mean "
              f"{c['mean_r_over_sweeps']:.3f}, SD {c['sd_r_over_sweeps']:.3f}")
        print(res.sites.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    v = res.summary.get("controversial")
    if v:
        print(f"controversial pairs: {v['fraction_follows_a']:.2f} of {v['n_pairs']} follow A "
              f"({v['model_a']}); the recordings follow {v['follows']}")
    print(f"tables: {res.out}/")
    return 0


def _common(p, synth: bool = True) -> None:
    p.add_argument("--config", help="YAML control config (keys of ControlConfig); flags override it")
    p.add_argument("--sites", help="comma-separated site names (neuroid ids); default: the "
                   "--top-sites best predicted")
    p.add_argument("--top-sites", type=int, help="sites to sweep when --sites is not given (5)")
    p.add_argument("--seeds", help="seed images: a dataset folder, a folder of images, or "
                   "comma-separated image files or URIs")
    p.add_argument("--seed-ids", help="comma-separated ids of the seeds to use")
    p.add_argument("--n-seeds", type=int, help="use the first N seeds")
    p.add_argument("--out", help="output folder (local, s3:// or gs://): a stimulus set")
    p.add_argument("--steps", type=int, help="optimization steps (150)")
    p.add_argument("--lr", type=float, help="Adam learning rate on the Fourier parameters (0.02)")
    p.add_argument("--reg-weight", type=float, help="lambda of the layer distance to the seed (1)")
    p.add_argument("--reg-layer", help="regularization layer ('encoder': the encoder's own; "
                   "default: the layer at half its depth)")
    p.add_argument("--decay", type=float, help="spectrum decay power of the parameterization (1)")
    p.add_argument("--jitter", type=float, help="random shift, fraction of the side (0.04)")
    p.add_argument("--zoom", type=float, help="random zoom 1 +- this (0.05)")
    p.add_argument("--degrees", type=float, help="random rotation +- degrees (5)")
    p.add_argument("--aug-seed", type=int, help="seed of the random warps (0)")
    p.add_argument("--engine", choices=["ray", "local"])
    p.add_argument("--address", help="Ray address (default: RAY_ADDRESS or a local instance)")
    p.add_argument("--device", help="torch device (default: cuda when available)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--quiet", action="store_true")


def register(sub) -> argparse.ArgumentParser:
    c = sub.add_parser("control", help="parametric control: accentuation sweeps, controversial "
                       "stimuli and control scores from a scan's saved encoders",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = c.add_subparsers(dest="control_cmd", required=True)
    a = verbs.add_parser("accentuate", help="per (site, seed image), 11 images stepping the "
                         "site's predicted response from suppressing to enhancing")
    a.add_argument("--encoder", help="encoder URI (a folder under RESULTS/encoders/)")
    a.add_argument("--n-levels", type=int, help="levels on each side of the seed (5: 11 images)")
    a.add_argument("--step-sd", type=float, help="level spacing in SDs of the site's responses (0.2)")
    _common(a)
    a.set_defaults(func=cmd_accentuate)
    v = verbs.add_parser("controversial", help="per (site, seed), an image A predicts high and "
                         "B low, and the reverse")
    v.add_argument("--a", help="encoder A's URI")
    v.add_argument("--b", help="encoder B's URI")
    v.add_argument("--delta-sd", type=float, help="A up and B down by this many SDs (1.0)")
    _common(v)
    v.set_defaults(func=cmd_controversial)
    s = verbs.add_parser("score", help="control scores of a control folder against recorded "
                         "responses or an oracle encoder")
    s.add_argument("--stimuli", required=True, help="the control folder (its stimuli.parquet)")
    s.add_argument("--responses", help="dataset folder with the responses to those stimuli "
                   "(matched by stimulus_id; neuroid_id = site)")
    s.add_argument("--oracle", help="encoder URI that predicts the responses instead")
    s.add_argument("--out", help="where the tables go (default: R/control/score-...)")
    s.add_argument("--device", help="torch device for --oracle")
    s.add_argument("--engine", choices=["ray", "local"], default="ray",
                   help="where --oracle's predictions run: a Ray task per site (default) or here")
    s.add_argument("--address", help="Ray address (default: RAY_ADDRESS or a local instance)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_score)
    return c
