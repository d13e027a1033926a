"""Cluster-scale scans: scoring on the workers, overlapped with extraction, against the
extraction alone and against scoring in the driver, in the same run.

A local multi-node Ray cluster (``ray.cluster_utils``: a head without CPUs, so every
actor and task runs on a worker node, and ``--nodes`` one-CPU worker nodes, all on
loopback) scans several small models of synthetic stimuli (generated, not stored in the
repository) at each size of ``--sizes``:

* ``extract``: the extraction alone: the same Ray Data pipeline and model actors, the
  features written to the cache in blocks, no scoring;
* ``workers``: the scan as it runs now: a scoring task per (model, layer) on the workers,
  started when the model's features are complete, while the next model is extracted;
* ``driver``: the scan as it ran before: every layer's features gathered in the driver
  and scored there, one layer after another.

Printed per size: wall times and their ratios (goal: ``workers / extract`` <= 1.15) and
the driver's peak memory above its start (sampled every 20 ms; goal: flat in the
number of stimuli). Every mode starts from an empty results store.

    python benchmarks/scan_scale.py [--sizes 1000,4000,10000 --nodes 2 --k 256]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time

for _k, _v in {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
               "RAY_USAGE_STATS_ENABLED": "0", "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
               "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}.items():
    os.environ.setdefault(_k, _v)

MODELS = ["timm:test_byobnet@random", "timm:test_convnext2@random", "timm:test_byobnet@random#1"]


class PeakRSS:
    """Peak resident memory of this process above its level at start (MB)."""

    def __init__(self, every: float = 0.02):
        import psutil

        self.proc, self.every = psutil.Process(), every
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


def make_data(root: str, n: int) -> str:
    from cortexzoo.scan.planted import make_planted_dataset

    return make_planted_dataset(os.path.join(root, f"ds{n}"), model="pixels", n_stimuli=n,
                                image_size=32, n_neuroids=40, n_reps=2, seed=n)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="1000,4000,10000")
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--models", default=",".join(MODELS))
    args = p.parse_args()
    import ray
    from ray.cluster_utils import Cluster

    from cortexzoo.data import load_dataset
    from cortexzoo.features.cache import FeatureCache
    from cortexzoo.features.pipeline import extract_to_cache
    from cortexzoo.features.reduce import ReductionConfig
    from cortexzoo.scan import ScanConfig, run_scan
    from cortexzoo.scan.model import describe, plan_model
    from cortexzoo.scan.plan import worker_plan
    from cortexzoo.scan.scoring import ScoringConfig
    from cortexzoo.store import ResultStore
    from cortexzoo.zoo import parse_spec

    tmp = tempfile.mkdtemp(prefix="czscale-", dir="/tmp")
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=0, include_dashboard=False, object_store_memory=300 << 20))
    for _ in range(args.nodes):
        cluster.add_node(num_cpus=1, object_store_memory=300 << 20)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    red = ReductionConfig(n_components=args.k)
    scoring = ScoringConfig(reliability_splits=20, inter_animal=False)
    rows = []
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            t = time.time()
            data = make_data(tmp, n)
            ds = load_dataset(data)
            print(f"\n{n} stimuli: dataset made in {time.time() - t:.0f} s", flush=True)

            def cfg(out: str, **kw):
                return ScanConfig(data=data, models=models, out=out, engine="ray", batch_size=32,
                                  input_size=32, reduction=red, scoring=scoring, progress=False,
                                  plot=False, **kw)

            out = os.path.join(tmp, f"extract{n}")
            store = ResultStore(out)
            cache = FeatureCache(store, ds.stimulus_fingerprint(), n)
            c = cfg(out)
            plan = worker_plan(c, 1, None)
            with PeakRSS() as mem_x:
                t = time.perf_counter()
                for m in models:
                    mp = plan_model(parse_spec(m), c, store, "x", set())
                    keys = {ly: cache.key(mp.model_id, ly, red, mp.preprocessing) for ly in mp.layers}
                    extract_to_cache(ds, describe(parse_spec(m), c), keys, red, cache,
                                     batch_size=32, chunk=c.chunk, plan=plan["extraction"],
                                     progress=False)
                t_x = time.perf_counter() - t
            print(f"  extract only: {t_x:.1f} s", flush=True)
            with PeakRSS() as mem_w:
                t = time.perf_counter()
                res_w = run_scan(cfg(os.path.join(tmp, f"workers{n}"), score_on="workers"))
                t_w = time.perf_counter() - t
            print(f"  scoring on workers: {t_w:.1f} s", flush=True)
            with PeakRSS() as mem_d:
                t = time.perf_counter()
                res_d = run_scan(cfg(os.path.join(tmp, f"driver{n}"), score_on="driver"))
                t_d = time.perf_counter() - t
            print(f"  scoring in the driver: {t_d:.1f} s", flush=True)
            assert len(res_w.scores) == len(res_d.scores)
            units = res_w.summary["units_written"]
            rows.append(dict(stimuli=n, units=units, extract_s=t_x, workers_s=t_w, driver_s=t_d,
                             workers_vs_extract=t_w / t_x, driver_vs_extract=t_d / t_x,
                             driver_vs_workers=t_d / t_w, extract_peak_mb=mem_x.mb,
                             workers_peak_mb=mem_w.mb, driver_peak_mb=mem_d.mb))
            shutil.rmtree(os.path.join(tmp, f"driver{n}"), ignore_errors=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    import pandas as pd

    print("\n" + pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\nworkers_vs_extract: the scan's wall time over the extraction's alone (goal <= "
          "1.15); *_peak_mb: the driver's resident memory above its start")


if __name__ == "__main__":
    main()
