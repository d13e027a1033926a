"""Benchmark: Ray Train throughput of one twin with 1 and with 2 data-parallel workers.

    python benchmarks/twins.py                       # cnn, 36x64 frames, CPU (gloo)
    python benchmarks/twins.py --encoder resnet18 --use-gpu --workers 1,2,4

Synthetic sessions are written to a temporary folder; for each worker count one
``TorchTrainer`` run of ``--epochs`` epochs (``--batches`` global batches per animal
per epoch) is timed inside the train loop (model forward/backward/step and DDP
all-reduce, not worker start-up). Reported: training samples per second per worker
(rank 0's count over its train-loop time, median over the epochs after the first),
the aggregate rate (x workers), and the ratios to 1 worker. Each worker gets
``--cpus-per-worker`` CPUs and one torch thread, so with 2 workers on a 2-core machine
the ideal per-worker ratio is 1.0 (perfect scaling) and the aggregate ratio 2.0.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

for _k, _v in {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
               "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}.items():
    os.environ.setdefault(_k, _v)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default="cnn")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batches", type=int, default=4, help="global batches per animal per epoch")
    p.add_argument("--batch-size", type=int, default=64, help="global batch")
    p.add_argument("--frames", type=int, default=3000)
    p.add_argument("--height", type=int, default=36)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--address", help="Ray address (default: RAY_ADDRESS, else a private "
                   "local instance)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    from cortexzoo.data.sessions_synth import make_synthetic_sessions
    from cortexzoo.store import ResultStore
    from cortexzoo.twins.train import TwinsRunConfig, train_family

    counts = [int(w) for w in args.workers.split(",")]
    tmp = tempfile.mkdtemp(prefix="twins-bench-")
    data = os.path.join(tmp, "sessions")
    make_synthetic_sessions(data, n_animals=3, n_neurons=(24, 32, 40), n_frames=args.frames,
                            height=args.height, width=args.width)
    from cortexzoo.twins.train import init_ray

    init_ray(args.address)
    rows = []
    for w in counts:
        out = os.path.join(tmp, f"out-{w}")
        run = TwinsRunConfig(
            data=data, out=out, encoders=[args.encoder], seeds=[0], num_workers=w,
            use_gpu=args.use_gpu, cpus_per_worker=args.cpus_per_worker, max_failures=0,
            twin={"batch_size": args.batch_size, "max_epochs": args.epochs,
                  "max_batches_per_animal": args.batches, "early_stop_patience": 10 ** 6})
        t0 = time.time()
        train_family(run)
        wall = time.time() - t0
        hist = ResultStore(out).get_json(f"twins/runs/{args.encoder}-seed0.json")["history"]
        rates = sorted(h["samples_per_s_per_worker"] for h in hist[1:] or hist)
        per_worker = rates[len(rates) // 2]
        rows.append({"workers": w, "samples_per_s_per_worker": per_worker,
                     "samples_per_s_total": per_worker * w, "wall_s": wall,
                     "samples_per_epoch": hist[-1]["train_samples"]})
    base = rows[0]["samples_per_s_per_worker"]
    print(f"\ntwin '{args.encoder}', frames {args.height}x{args.width}, global batch "
          f"{args.batch_size}, {'GPU/nccl' if args.use_gpu else 'CPU/gloo'}, "
          f"{args.epochs} epochs x {rows[0]['samples_per_epoch']} samples")
    print(f"{'workers':>7} {'samples/s/worker':>17} {'samples/s total':>16} {'ratio/worker':>13} "
          f"{'wall s':>7}")
    for r in rows:
        r["ratio_per_worker"] = r["samples_per_s_per_worker"] / base
        print(f"{r['workers']:>7} {r['samples_per_s_per_worker']:>17.1f} "
              f"{r['samples_per_s_total']:>16.1f} {r['ratio_per_worker']:>13.2f} "
              f"{r['wall_s']:>7.1f}")
    if len(rows) > 1:
        print(f"per-worker throughput ratio ({rows[-1]['workers']} vs {rows[0]['workers']} "
              f"workers): {rows[-1]['ratio_per_worker']:.2f}; aggregate speed-up "
              f"{rows[-1]['samples_per_s_total'] / rows[0]['samples_per_s_total']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
