"""Trials per hour of a small tuning campaign on this machine.

    python benchmarks/tune.py                       # tiny space, 8 trials, 200 stimuli, 32 px
    python benchmarks/tune.py --trials 16 --stimuli 400 --size 64 --cpus-per-trial 1

Makes a planted dataset (cortexzoo.training.demo), runs a Ray Tune + Optuna + ASHA
campaign on it with a local Ray instance, and prints one JSON line per campaign: wall
time, trials per hour (whole campaign, including Ray and worker start-up), mean seconds
per trial as Ray reports it, epochs per trial (ASHA stops some early) and the best
validation EV. The same campaign runs twice in the same Ray instance: with a trial
checkpoint every ``--checkpoint-every`` epochs (the default, 1) and without checkpoints
(the reference), ``--repeat`` times each in alternating order; a last line gives the
ratio of their best trials per hour.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time

for _k, _v in (("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0"),
               ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"), ("OMP_NUM_THREADS", "1"),
               ("HF_HUB_OFFLINE", "1"), ("RAY_DATA_DISABLE_PROGRESS_BARS", "1")):
    os.environ.setdefault(_k, _v)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--stimuli", type=int, default=200)
    p.add_argument("--size", type=int, default=32, help="image side (px)")
    p.add_argument("--space", default=os.path.join(ROOT, "tune_spaces", "tiny.yaml"))
    p.add_argument("--cpus-per-trial", type=float, default=None)
    p.add_argument("--max-concurrent", type=int, default=None)
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local Ray")
    p.add_argument("--checkpoint-every", type=int, default=1,
                   help="epochs between trial checkpoints in the measured campaign")
    p.add_argument("--repeat", type=int, default=2,
                   help="campaigns per setting, alternating which goes first")
    p.add_argument("--keep", action="store_true", help="keep the results folder")
    args = p.parse_args()
    if args.checkpoint_every < 1:
        p.error("--checkpoint-every must be >= 1 (the reference campaign has none)")

    import ray

    from cortexzoo.training.demo import make_planted_dataset
    from cortexzoo.training.space import load_space
    from cortexzoo.training.tune import run_tune

    work = tempfile.mkdtemp(prefix="cz-bench-tune-")
    try:
        data = make_planted_dataset(os.path.join(work, "ds"), n_stimuli=args.stimuli,
                                    size=args.size, blocks=2, n_neuroids=20)
        space = load_space(args.space)
        if space.base.image_size is not None:
            space.base = space.base.replace(image_size=args.size)
        t0 = time.time()
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False,
                 log_to_driver=False)
        t_ray = time.time() - t0
        rows: dict[int, list[dict]] = {args.checkpoint_every: [], 0: []}
        order = [(args.checkpoint_every, 0), (0, args.checkpoint_every)]
        for i, every in enumerate(e for r in range(args.repeat) for e in order[r % 2]):
            t1 = time.time()
            res = run_tune(data, space, args.trials, os.path.join(work, f"results{i}"),
                           cpus_per_trial=args.cpus_per_trial,
                           max_concurrent=args.max_concurrent, verbose=0,
                           checkpoint_every=every)
            wall = time.time() - t1
            tr = res.trials
            row = {
                "benchmark": "tune", "machine": platform.node(), "cpus": os.cpu_count(),
                "gpus": ray.cluster_resources().get("GPU", 0), "space": space.name,
                "checkpoint_every": every,
                "trials": int(len(tr)), "stimuli": args.stimuli, "image_size": args.size,
                "epochs_max": space.base.epochs, "ray_init_s": round(t_ray, 1),
                "campaign_wall_s": round(wall, 1),
                "trials_per_hour": round(3600.0 * len(tr) / wall, 1),
                "mean_trial_s": round(float(tr["seconds"].mean()), 2),
                "mean_epochs_per_trial": round(float(tr["epochs_run"].mean()), 2),
                "stopped_by_asha": int((tr["stop_reason"] == "scheduler").sum()),
                "best_val_ev": round(float(res.best_score), 4),
            }
            rows[every].append(row)
            print(json.dumps(row), flush=True)
        best = {k: max(v, key=lambda r: r["trials_per_hour"]) for k, v in rows.items()}
        ck, ref = best[args.checkpoint_every], best[0]
        print(json.dumps({
            "checkpoint_every": args.checkpoint_every,
            "trials_per_hour": ck["trials_per_hour"],
            "trials_per_hour_without_checkpoints": ref["trials_per_hour"],
            "ratio_vs_no_checkpoints": round(ck["trials_per_hour"] / ref["trials_per_hour"], 3),
            "mean_trial_s_ratio_vs_no_checkpoints": round(
                min(r["mean_trial_s"] for r in rows[args.checkpoint_every])
                / min(r["mean_trial_s"] for r in rows[0]), 3),
        }))
        ray.shutdown()
    finally:
        if args.keep:
            print(f"results kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
