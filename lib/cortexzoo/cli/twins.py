"""``cortexzoo twins``: train / evaluate / probe the digital-twin family, make synthetic sessions.

    cortexzoo twins synth OUT [--animals 3 --frames 4000 --height 36 --width 64]
    cortexzoo twins train --data SESSIONS --encoders cnn,resnet18 --seeds 0,1,2 --out RESULTS
    cortexzoo twins eval  --data SESSIONS --out RESULTS
    cortexzoo twins run   --config configs/twins_demo.yaml        (train, then eval)
    cortexzoo twins probe --data SESSIONS --out RESULTS [--config configs/probe_default.yaml]

Flags override the YAML config (keys of :class:`cortexzoo.twins.train.TwinsRunConfig`;
``twin:`` holds :class:`cortexzoo.twins.model.TwinConfig` keys; for ``probe``, keys of
:class:`cortexzoo.probe.config.ProbeConfig`).
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["register", "register_cli", "config_from_args", "probe_config_from_args"]


def _csv(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def config_from_args(args: argparse.Namespace):
    """A :class:`TwinsRunConfig` from ``--config`` (if any) with the flags applied."""
    from ..twins.train import TwinsRunConfig

    base = TwinsRunConfig.from_yaml(args.config).to_dict() if getattr(args, "config", None) \
        else TwinsRunConfig().to_dict()
    for flag, key in (("data", "data"), ("out", "out"), ("address", "address")):
        v = getattr(args, flag, None)
        if v:
            base[key] = v
    if getattr(args, "encoders", None):
        base["encoders"] = _csv(args.encoders)
    if getattr(args, "seeds", None):
        base["seeds"] = [int(s) for s in _csv(args.seeds)]
    for flag in ("num_workers", "cpus_per_worker", "max_concurrent", "max_failures"):
        v = getattr(args, flag, None)
        if v is not None:
            base[flag] = v
    if getattr(args, "use_gpu", None) is not None:
        base["use_gpu"] = args.use_gpu
    if getattr(args, "overwrite", False):
        base["overwrite"] = True
    twin = dict(base.get("twin") or {})
    for flag in ("max_epochs", "batch_size"):
        v = getattr(args, flag, None)
        if v is not None:
            twin[flag] = v
    base["twin"] = twin
    return TwinsRunConfig.from_dict(base)


def cmd_train(args: argparse.Namespace) -> int:
    from ..twins.train import TrainingFailed, pair_key, train_family

    run = config_from_args(args)

    def show(r) -> None:
        if r.status == "trained":
            print(f"  {pair_key(r.encoder, r.seed)}: best epoch {r.best_epoch}, val loss "
                  f"{r.best_val_loss:.4f}, {r.epochs_run} epochs, {r.n_resumes} restart(s), "
                  f"{r.seconds:.0f} s", flush=True)
        else:
            print(f"  {pair_key(r.encoder, r.seed)}: FAILED {r.error}", flush=True)

    print(f"training {len(run.encoders) * len(run.seeds)} twin(s) "
          f"({','.join(run.encoders)} x seeds {run.seeds}) with {run.num_workers} worker(s) "
          f"each -> {run.out}/twins/", flush=True)
    try:
        results = train_family(run, on_result=show)
    except TrainingFailed as exc:
        print(str(exc), file=sys.stderr)
        return 1
    skipped = [r for r in results if r.status == "skipped"]
    if skipped:
        print(f"  {len(skipped)} already trained (use --overwrite to retrain): "
              + ", ".join(pair_key(r.encoder, r.seed) for r in skipped))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..twins.evaluate import evaluate_family

    run = config_from_args(args)
    if not run.data:
        raise ValueError("--data (or data: in --config) is required")
    keys = None
    if getattr(args, "encoders", None) or getattr(args, "seeds", None):
        from ..twins.train import pair_key

        keys = [pair_key(e, s) for e in run.encoders for s in run.seeds]
    scores = evaluate_family(run.data, run.out, keys=keys, chunk=run.chunk,
                             batch_size=run.eval_batch_size, device=getattr(args, "device", None))
    tab = scores[scores["animal"] == "all"].pivot_table(
        index="model", columns="metric", values="value").sort_values(
        "chunked_pearson_r", ascending=False)
    ceil = scores[scores["animal"] == "all"].groupby("metric")["ceiling"].mean()
    print(tab.to_string(float_format=lambda v: f"{v:.3f}"))
    if ceil.notna().any():
        print("noise ceiling: " + ", ".join(f"{m} {v:.3f}" for m, v in ceil.items()))
    print(f"scores in {run.out.rstrip('/')}/scores/, plot {run.out.rstrip('/')}/plots/twins.png")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    rc = cmd_train(args)
    return rc if rc else cmd_eval(args)


def cmd_synth(args: argparse.Namespace) -> int:
    from ..data.sessions_synth import make_synthetic_sessions

    counts = [int(c) for c in _csv(args.neurons)]
    if len(counts) == 1:
        counts = counts * args.animals
    idx = make_synthetic_sessions(args.out, n_animals=args.animals, n_neurons=counts,
                                  n_frames=args.frames, height=args.height, width=args.width,
                                  seed=args.seed, rate_scale=args.rate_scale)
    print(f"{len(idx['sessions'])} synthetic sessions in {args.out}")
    for a, c in idx["noise_ceiling"].items():
        print(f"  {a}: noise ceiling chunked r {c['chunked_pearson_r']:.3f}, overall r "
              f"{c['overall_pearson_r']:.3f}")
    return 0


def probe_config_from_args(args: argparse.Namespace):
    """A :class:`ProbeConfig` from ``--config`` (if any) with the flags applied."""
    from ..probe.config import ProbeConfig

    base = ProbeConfig.from_yaml(args.config).to_dict() if getattr(args, "config", None) \
        else {}
    for flag in ("data", "out", "address"):
        v = getattr(args, flag, None)
        if v:
            base[flag] = v
    if getattr(args, "families", None):
        base["families"] = _csv(args.families)
    if getattr(args, "encoders", None):
        base["encoders"] = _csv(args.encoders)
    if getattr(args, "seeds", None):
        base["seeds"] = [int(s) for s in _csv(args.seeds)]
    for flag in ("seed", "cpus_per_task", "gpus_per_task", "batch_size", "use_gpu"):
        v = getattr(args, flag, None)
        if v is not None:
            base[flag] = v
    if getattr(args, "overwrite", False):
        base["overwrite"] = True
    if getattr(args, "no_plots", False):
        base["plots"] = False
    return ProbeConfig.from_dict(base)


def cmd_probe(args: argparse.Namespace) -> int:
    from ..probe.run import ProbeFailed, probe_family

    cfg = probe_config_from_args(args)

    def show(r) -> None:
        if r.status == "done":
            t = r.timings
            print(f"  {r.pair} {r.family}: {t.get('total_s', r.seconds or 0):.1f} s "
                  f"(forward {t.get('forward_s', 0):.1f} s)", flush=True)
        else:
            print(f"  {r.pair} {r.family}: FAILED {r.error}", flush=True)

    print(f"probing the twins under {cfg.out.rstrip('/')}/twins/best/ "
          f"({', '.join(cfg.families)}) -> {cfg.out.rstrip('/')}/probes/", flush=True)
    try:
        run = probe_family(cfg, on_unit=show, device=getattr(args, "device", None))
    except ProbeFailed as exc:
        print(str(exc), file=sys.stderr)
        return 1
    skipped = [r for r in run.results if r.status == "skipped"]
    if skipped:
        print(f"  {len(skipped)} unit(s) already done (use --overwrite to recompute)")
    tab = run.cross_model.drop(columns=["model"]).set_index(["architecture", "seed"])
    if len(tab):
        print(tab.to_string(float_format=lambda v: f"{v:.3f}"))
    out = cfg.out.rstrip("/")
    print(f"scores in {out}/scores/, tables in {out}/probes/, cross-model table "
          f"{out}/probes/cross_model.parquet, plots in {out}/probes/plots/")
    return 0


def _common(p: argparse.ArgumentParser, training: bool) -> None:
    p.add_argument("--config", help="YAML twins config; flags override it")
    p.add_argument("--data", help="sessions root URI (local, s3:// or gs://)")
    p.add_argument("--out", help="results URI (local, s3:// or gs://)")
    p.add_argument("--encoders", help="comma-separated: cnn,resnet18,efficientnet_b0,"
                   "mobilenet_v2,alexnet,squeezenet1_1,shufflenet_v2_x1_0,regnet_y_400mf")
    p.add_argument("--seeds", help="comma-separated run seeds, e.g. 0,1,2")
    if training:
        p.add_argument("--num-workers", type=int, help="data-parallel workers per twin")
        p.add_argument("--use-gpu", action=argparse.BooleanOptionalAction, default=None)
        p.add_argument("--cpus-per-worker", type=float)
        p.add_argument("--max-concurrent", type=int,
                       help="twins trained side by side (default: as many as fit)")
        p.add_argument("--max-failures", type=int, help="worker-group restarts per twin")
        p.add_argument("--max-epochs", type=int)
        p.add_argument("--batch-size", type=int, help="global batch (split across workers)")
        p.add_argument("--address", help="Ray address; 'auto' joins the cluster on this "
                       "machine (default: RAY_ADDRESS, else a private local instance)")
        p.add_argument("--overwrite", action="store_true", help="retrain finished twins")


def _device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="evaluation device (default cuda if available)")


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add the ``twins`` subcommand (train/eval/run/probe/synth) to ``subparsers``.

    Each handler is set as ``func`` and receives the argparse namespace; it returns
    the exit status.
    """
    t = subparsers.add_parser("twins", help="digital twins of mouse V1 (Ray Train)",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = t.add_subparsers(dest="twins_cmd", required=True)
    tr = sub.add_parser("train", help="train every (encoder, seed) twin with Ray Train")
    _common(tr, training=True)
    tr.set_defaults(func=cmd_train)
    ev = sub.add_parser("eval", help="score trained twins on the held-out test segments")
    _common(ev, training=False)
    _device(ev)
    ev.set_defaults(func=cmd_eval)
    rn = sub.add_parser("run", help="train, then eval")
    _common(rn, training=True)
    _device(rn)
    rn.set_defaults(func=cmd_run)
    pr = sub.add_parser("probe", help="probe every trained twin: linear probes, unit tuning, "
                        "eigenspectra, the cross-model table (paper 004)")
    pr.add_argument("--config", help="YAML probe config (configs/probe_default.yaml); flags "
                    "override it")
    pr.add_argument("--data", help="sessions root URI (the twins' training sessions)")
    pr.add_argument("--out", help="results URI holding twins/best/ (local, s3:// or gs://)")
    pr.add_argument("--families", help="comma-separated probe families: orientation,contrast,"
                    "motion,tuning,eigenspectrum (default: all)")
    pr.add_argument("--encoders", help="only these encoders (comma-separated)")
    pr.add_argument("--seeds", help="only these run seeds (comma-separated)")
    pr.add_argument("--seed", type=int, help="stimulus seed (default 0)")
    pr.add_argument("--use-gpu", action=argparse.BooleanOptionalAction, default=None,
                    help="tasks on GPUs (default: when the cluster has them)")
    pr.add_argument("--cpus-per-task", type=float)
    pr.add_argument("--gpus-per-task", type=float)
    pr.add_argument("--batch-size", type=int, help="frames per forward pass")
    pr.add_argument("--address", help="Ray address (default: RAY_ADDRESS, else a private "
                    "local instance)")
    pr.add_argument("--overwrite", action="store_true", help="recompute finished units")
    pr.add_argument("--no-plots", action="store_true", help="skip the figures")
    _device(pr)
    pr.set_defaults(func=cmd_probe)
    sy = sub.add_parser("synth", help="write synthetic freely-moving sessions")
    sy.add_argument("out")
    sy.add_argument("--animals", type=int, default=3)
    sy.add_argument("--neurons", default="24,32,40", help="per animal, comma-separated")
    sy.add_argument("--frames", type=int, default=4000)
    sy.add_argument("--height", type=int, default=36)
    sy.add_argument("--width", type=int, default=64)
    sy.add_argument("--rate-scale", type=float, default=1.0)
    sy.add_argument("--seed", type=int, default=0)
    sy.set_defaults(func=cmd_synth)
    return t


register = register_cli
