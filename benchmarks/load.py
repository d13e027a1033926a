"""Load test: a scan of many tiny models on a local Ray cluster, one model at a time
and several at once, with no lost or duplicated score rows.

    python benchmarks/load.py                          # 8 tiny timm models, 1 vs 2 at once
    python benchmarks/load.py --models 16 --concurrent 1,2,4 --stimuli 48 --size 32
    python benchmarks/load.py --out s3://bucket/load   # results in object storage

Writes a small planted dataset (synthetic images, ``--size`` px), then scans the same
``--models`` random-init tiny timm networks (``timm:test_*@random#seed``, different
seeds are different networks) once per concurrency level, each into a fresh results
folder, on one local Ray instance (started first, so no level pays for it). For each
level it prints one JSON line: wall time, models/min, layers/s, score rows, store
retries, and the row check: every expected (model, layer, region, method, metric)
row, computed from each model's layer list, the dataset's regions and the scan's
metrics, must be there exactly once. The last line gives the speedups against
``max_concurrent_models=1``; the exit status is 1 when any row is lost or duplicated.
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
               ("HF_HUB_OFFLINE", "1"), ("RAY_DATA_DISABLE_PROGRESS_BARS", "1"),
               ("TQDM_DISABLE", "1")):
    os.environ.setdefault(_k, _v)

#: small timm test networks (a few layers each) cycled through, one seed per copy
TINY = ["timm:test_byobnet", "timm:test_convnext2", "timm:test_convnext3", "timm:test_efficientnet"]

#: (method, metric) pairs a scan writes per region (README, "Results")
METRICS = {("ridge_gcv", "pearson_r"), ("ridge_gcv", "pearson_r_median"),
           ("ridge_gcv", "explained_variance"), ("rsa", "rsa_pearson")}

KEY = ["model", "layer", "region", "method", "metric", "split"]


def tiny_specs(n: int, archs: list[str] = TINY) -> list[str]:
    """``n`` distinct random-init specs: the architectures in turn, a new seed per round."""
    return [f"{archs[i % len(archs)]}@random#{i // len(archs)}" for i in range(n)]


def expected_rows(specs: list[str], regions: list[str], methods=METRICS) -> set[tuple]:
    """Every (model, layer, region, method, metric) a full scan must write, from the
    models' own layer lists (no weights loaded)."""
    from cortexzoo.zoo import describe_model, parse_spec

    out = set()
    for s in specs:
        m = describe_model(s)
        name = str(parse_spec(s))
        out |= {(name, layer, r, meth, met) for layer in m.layers for r in regions
                for meth, met in methods}
    return out


def check_rows(scores, expected: set[tuple]) -> dict:
    """Lost, duplicated and unexpected rows of ``scores`` against ``expected``."""
    got = list(map(tuple, scores[KEY].itertuples(index=False, name=None)))
    seen: dict[tuple, int] = {}
    for k in got:
        seen[k] = seen.get(k, 0) + 1
    return {"expected": len(expected), "rows": len(got),
            "lost": len(expected - set(seen)),
            "duplicated": sum(1 for v in seen.values() if v > 1),
            "unexpected": len(set(seen) - expected)}


def make_dataset(path: str, n_stimuli: int, size: int, n_neuroids: int, seed: int = 0) -> str:
    """A planted dataset on pixels: cheap to make, any model can be scanned against it."""
    from cortexzoo.scan.planted import make_planted_dataset

    return make_planted_dataset(path, model="pixels", n_stimuli=n_stimuli, image_size=size,
                                n_neuroids=n_neuroids, n_reps=3, seed=seed)


def scan_once(data: str, out: str, specs: list[str], concurrent: int, size: int, k: int,
              batch_size: int):
    from cortexzoo.features.reduce import ReductionConfig
    from cortexzoo.scan import ScanConfig, run_scan
    from cortexzoo.scan.scoring import ScoringConfig

    cfg = ScanConfig(data=data, models=specs, out=out, engine="ray", input_size=size,
                     batch_size=batch_size, reduction=ReductionConfig(n_components=k),
                     scoring=ScoringConfig(reliability_splits=10), progress=False, plot=False,
                     max_concurrent_models=concurrent)
    t0 = time.time()
    res = run_scan(cfg)
    return res, time.time() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", type=int, default=8, help="number of tiny models")
    p.add_argument("--concurrent", default="1,2", help="max_concurrent_models levels; 1 first")
    p.add_argument("--stimuli", type=int, default=40)
    p.add_argument("--size", type=int, default=32, help="image side and input size (px)")
    p.add_argument("--neuroids", type=int, default=12)
    p.add_argument("--k", type=int, default=256, help="SRP dimensions")
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray")
    p.add_argument("--out", default=None, help="results root (default: a temp folder); "
                   "each level writes under OUT/c<level>")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = p.parse_args()
    levels = [int(x) for x in args.concurrent.split(",") if x.strip()]
    if not levels or min(levels) < 1:
        p.error("--concurrent: comma-separated integers >= 1")

    import ray

    from cortexzoo.data import load_dataset
    from cortexzoo.store import ResultStore, join

    work = tempfile.mkdtemp(prefix="cz-bench-load-")
    try:
        data = make_dataset(os.path.join(work, "ds"), args.stimuli, args.size, args.neuroids)
        regions = sorted(load_dataset(data).neuroids["region"].unique())
        specs = tiny_specs(args.models)
        expected = expected_rows(specs, regions)
        t0 = time.time()
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False,
                 log_to_driver=False)
        t_ray = time.time() - t0
        root = args.out or os.path.join(work, "results")
        results, ok = {}, True
        for c in levels:
            out = join(root, f"c{c}-{time.strftime('%H%M%S')}")
            res, wall = scan_once(data, out, specs, c, args.size, args.k, args.batch_size)
            check = check_rows(ResultStore(out).read_scores(), expected)
            ok &= check["lost"] == 0 and check["duplicated"] == 0 and check["unexpected"] == 0
            s = res.summary
            line = {"max_concurrent_models": c, "models": len(specs), "wall_s": round(wall, 2),
                    "models_per_min": round(60 * len(specs) / wall, 2),
                    "layers_per_s": round(s["units_written"] / wall, 3),
                    "units_written": s["units_written"], "rows_written": s["rows_written"],
                    "store_retries": s["store"]["retries"], "check": check}
            results[c] = line
            print(json.dumps(line), flush=True)
        base = results.get(1) or results[levels[0]]
        print(json.dumps({
            "benchmark": "load", "host": platform.node(), "cpus": ray.cluster_resources().get("CPU"),
            "ray_start_s": round(t_ray, 2), "stimuli": args.stimuli, "size": args.size,
            "models": specs, "speedup_vs_first": {c: round(base["wall_s"] / r["wall_s"], 3)
                                                   for c, r in results.items()},
            "rows_ok": bool(ok)}), flush=True)
        ray.shutdown()
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
