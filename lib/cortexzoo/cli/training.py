"""``cortexzoo finetune`` and ``cortexzoo tune``.

    cortexzoo finetune --data DATASET_URI --preset resnet34-it --out RESULTS_URI
    cortexzoo finetune --data D --preset shallow-cnn,pixels --out R      # + pixel baselines
    cortexzoo finetune --data D --preset R/presets/tiny-best.yaml --out R
    cortexzoo tune --data D --space tune_spaces/resnet_decoder.yaml --trials 40 --out R
    cortexzoo tune --config campaign.yaml [--resume]
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register", "register_cli", "cmd_finetune", "cmd_tune"]

from ..core.raysetup import init_ray

TUNE_CONFIG_KEYS = {"data", "space", "trials", "out", "name", "resume", "cpus_per_trial",
                    "gpus_per_trial", "max_concurrent", "max_failures", "checkpoint_every",
                    "address"}


def _parse_value(s: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(s)
    except yaml.YAMLError:
        return s


def _overrides(pairs: list[str] | None) -> dict[str, Any]:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise ValueError(f"--set expects KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        v = _parse_value(v)
        if isinstance(v, str):
            try:
                v = float(v)  # '1e-5'
            except ValueError:
                pass
        out[k.strip()] = v
    return out


def cmd_finetune(args: argparse.Namespace) -> int:
    from ..store import ResultStore
    from ..zoo import WeightsUnavailableError

    from ..training.finetune import run_finetune
    from ..training.leaderboard import finetune_leaderboard, format_finetune_leaderboard
    from ..training.presets import ConfigError, FinetuneConfig, load_preset

    overrides = _overrides(args.set)
    names = [p.strip() for p in (args.preset or "").split(",") if p.strip()]
    if args.config:
        names.append(args.config)
    if not names:
        names = ["resnet34-it"]
    run_pixels = args.baselines or "pixels" in names
    names = [n for n in names if n != "pixels"]
    try:
        cfgs = [load_preset(n, **overrides) for n in names]
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rc = 0
    for cfg in cfgs:
        print(f"fine-tuning {cfg.backbone} (preset {cfg.preset or 'custom'}) on {args.data} ...")
        try:
            res = run_finetune(args.data, cfg, args.out, run_id=args.run_id, device=args.device,
                               force=args.force, save_checkpoint=not args.no_checkpoint,
                               checkpoint_every=args.checkpoint_every)
        except (ValueError, OSError, WeightsUnavailableError) as e:
            # bad config/data, unreachable storage, or trained weights not available offline
            print(f"error: {cfg.preset or cfg.backbone}: {e}", file=sys.stderr)
            rc = 2
            continue
        state = "already done (use --force to retrain)" if res.skipped else \
            f"best epoch {res.best_epoch}/{len(res.history)}" + (
                f" (continued after epoch {res.resumed_epoch})" if res.resumed_epoch else "")
        print(f"  {state}: val EV {100 * res.val_ev:.2f}%  test EV {100 * res.test_ev:.2f}%  "
              f"test r {100 * res.test_r:.2f}%  unit {res.unit_key}")
        if res.checkpoint_uri:
            print(f"  checkpoint: {res.checkpoint_uri}")
    if run_pixels:
        from ..training.baselines import run_pixel_baselines

        base = cfgs[0] if cfgs else FinetuneConfig(backbone="custom:shallow_cnn")
        print(f"pixel baselines ({args.pixel_size} px) ...")
        run_pixel_baselines(args.data, args.out, size=args.pixel_size, cfg=base,
                            run_id=args.run_id, force=args.force)
    print()
    print(format_finetune_leaderboard(finetune_leaderboard(ResultStore(args.out).read_scores())))
    return rc


def cmd_tune(args: argparse.Namespace) -> int:
    from ..training.presets import ConfigError
    from ..training.space import SpaceError
    from ..training.tune import TuneError, run_tune

    settings: dict[str, Any] = {}
    if args.config:
        from ..training.presets import _read_yaml

        doc = _read_yaml(args.config) or {}
        bad = sorted(set(doc) - TUNE_CONFIG_KEYS) if isinstance(doc, dict) else ["<not a mapping>"]
        if bad:
            print(f"error: {args.config}: unknown key(s) {bad}; allowed: "
                  f"{sorted(TUNE_CONFIG_KEYS)}", file=sys.stderr)
            return 2
        settings.update(doc)
    for k in TUNE_CONFIG_KEYS:
        v = getattr(args, k, None)
        if v is not None and v is not False:
            settings[k] = v
    missing = [k for k in ("data", "space", "out") if not settings.get(k)]
    if missing:
        print(f"error: tune needs {', '.join('--' + m for m in missing)} (or a --config "
              "with those keys)", file=sys.stderr)
        return 2
    init_ray(settings.get("address"))
    try:
        res = run_tune(settings["data"], settings["space"], int(settings.get("trials", 10)),
                       settings["out"], name=settings.get("name"),
                       resume=bool(settings.get("resume", False)),
                       cpus_per_trial=settings.get("cpus_per_trial"),
                       gpus_per_trial=settings.get("gpus_per_trial"),
                       max_concurrent=settings.get("max_concurrent"),
                       max_failures=int(settings.get("max_failures", 2)),
                       checkpoint_every=int(settings.get("checkpoint_every", 1)),
                       verbose=0 if args.quiet else 1)
    except (SpaceError, ConfigError, TuneError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cols = [c for c in ("trial_id", "status", "epochs_run", "best_val_ev", "test_ev")
            if c in res.trials.columns]
    cols += [c for c in res.trials.columns if c.startswith("param_")]
    print(res.trials[cols].to_string(index=False))
    print(f"\ncampaign {res.name}: {res.n_trials} trials; experiment {res.experiment_path}")
    if res.interrupted:
        print("campaign interrupted: continue it with --resume")
    if res.best_config is not None:
        print(f"best trial {res.best_trial_id}: validation EV {100 * res.best_score:.2f}%")
        print(f"best preset: {res.preset_uri}")
    print(f"trials: {res.trials_uri}\nplot: {res.plot_uri}")
    bad = (res.trials["status"] == "ERROR").sum() if len(res.trials) else 0
    return 1 if bad or res.best_config is None else 0


def register_cli(subparsers: Any) -> None:
    """Add the ``finetune`` and ``tune`` subcommands to an argparse subparsers object."""
    f = subparsers.add_parser(
        "finetune", help="train backbone + decoder networks (and pixel baselines) end to end",
        description="Fine-tune a network to predict neuroids and write val/test EV and r to "
                    "the scores table (method 'finetune').")
    f.add_argument("--data", required=True, help="dataset folder URI (local, s3:// or gs://)")
    f.add_argument("--preset", help="comma-separated preset names (resnet34-it, "
                   "vgg11bn-5blocks-it, shallow-cnn, pixels) or preset YAML paths/URIs; "
                   "default resnet34-it")
    f.add_argument("--config", help="a FinetuneConfig YAML (instead of / besides --preset)")
    f.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a setting, e.g. --set epochs=10 --set image_size=128")
    f.add_argument("--out", default="cortexzoo-results", help="results URI (local, s3:// or gs://)")
    f.add_argument("--device", help="torch device (default: cuda when available)")
    f.add_argument("--run-id")
    f.add_argument("--force", action="store_true", help="retrain even if the unit exists")
    f.add_argument("--no-checkpoint", action="store_true", help="do not store model.pt")
    f.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=1,
                   help="epochs between saves of the training state, from which a killed "
                        "run continues when started again (default 1; 0: never)")
    f.add_argument("--baselines", action="store_true", help="also fit the pixel baselines")
    f.add_argument("--pixel-size", type=int, default=32, help="pixel baseline image side")
    f.set_defaults(func=cmd_finetune)

    t = subparsers.add_parser(
        "tune", help="Ray Tune + Optuna (TPE) + ASHA campaign over a YAML search space",
        description="Search fine-tuning settings; writes trials, scores, the best preset and "
                    "a plot under --out.")
    t.add_argument("--config", help="campaign YAML with keys " + ", ".join(sorted(TUNE_CONFIG_KEYS)))
    t.add_argument("--data", help="dataset folder URI (local, s3:// or gs://)")
    t.add_argument("--space", help="search-space YAML (see tune_spaces/)")
    t.add_argument("--trials", type=int, help="number of trials (default 10)")
    t.add_argument("--out", help="results URI (local, s3:// or gs://)")
    t.add_argument("--name", help="campaign name (default: the space's name)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted campaign")
    t.add_argument("--cpus-per-trial", dest="cpus_per_trial", type=float)
    t.add_argument("--gpus-per-trial", dest="gpus_per_trial", type=float)
    t.add_argument("--max-concurrent", dest="max_concurrent", type=int)
    t.add_argument("--max-failures", dest="max_failures", type=int,
                   help="times a failed trial (e.g. its node was lost) is run again, from its "
                        "latest checkpoint (default 2)")
    t.add_argument("--checkpoint-every", dest="checkpoint_every", type=int,
                   help="epochs between a trial's checkpoints (default 1; 0: none)")
    t.add_argument("--address", help="Ray address (default: RAY_ADDRESS or a local instance)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_tune)


register = register_cli
