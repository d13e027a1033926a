"""Peak memory of a streaming scan extraction against holding full activations.

    python benchmarks/scan_memory.py                      # vgg16 random, 500 images, 224 px
    python benchmarks/scan_memory.py --n 100 --model torchvision:resnet18@random --repeats 1

Runs the scan's extraction of every layer of the model (sparse random projection to
4096 dims, on the fly; the model actors write the reduced features to the feature cache
in blocks, as a scan does, so the driver holds none) on a local Ray instance, sampling
the proportional set size (PSS: shared pages split between the processes that map
them, so nothing is counted twice) of this process and every Ray process every 0.2 s.
Each of ``--repeats`` runs starts a fresh Ray instance; the spread over runs is printed
(one run's peak moves with the machine's state: allocator, page cache, Ray's workers).
The reference, computed in the same run from the layer shapes, is what a plain script
would hold: every layer's full activations for the whole stimulus set, float32. Prints
both, their ratio, and whether every run stayed under the --limit-gb goal (4 GB).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _pss_by_process() -> dict[str, int]:
    import psutil

    me = psutil.Process()
    procs = [me] + me.children(recursive=True)
    # Ray's raylet/gcs/workers are started as children of the driver for a local instance.
    out: dict[str, int] = {}
    for p in procs:
        try:
            name = "driver" if p.pid == me.pid else " ".join(p.cmdline()[:1])[:60]
            out[f"{name} [{p.pid}]"] = p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def _pss_of_tree() -> int:
    return sum(_pss_by_process().values())


class Sampler(threading.Thread):
    def __init__(self, every: float = 0.2):
        super().__init__(daemon=True)
        self.every, self.peak, self._stop_evt = every, 0, threading.Event()
        self.at_peak: dict[str, int] = {}

    def run(self):
        while not self._stop_evt.is_set():
            now = _pss_by_process()
            if sum(now.values()) > self.peak:
                self.peak, self.at_peak = sum(now.values()), now
            time.sleep(self.every)

    def stop(self):
        self._stop_evt.set()
        self.join()


def full_activation_bytes(spec: str, model, n: int) -> int:
    """Bytes of every layer's activations for n stimuli, from a meta-device forward."""
    import torch

    from cortexzoo.zoo.registry import _meta_instance, parse_spec

    spec = parse_spec(spec)
    module = _meta_instance(spec.source, spec.arch).eval()
    sizes = {}
    mods = dict(module.named_modules())
    hooks = [mods[name].register_forward_hook(
        lambda m, i, o, name=name: sizes.__setitem__(name, (o[0] if isinstance(o, tuple) else o)[0].numel()))
        for name in model.layers]
    with torch.no_grad(), torch.device("meta"):
        s = model.preprocess.input_size
        module(torch.zeros(1, 3, s, s))
    for h in hooks:
        h.remove()
    return sum(sizes.values()) * 4 * n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="torchvision:vgg16@random")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--size", type=int, default=224, help="stimulus image size (px)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--limit-gb", type=float, default=4.0)
    ap.add_argument("--num-actors", type=int, default=1,
                    help="model actors (each holds a model copy and a projection cache)")
    ap.add_argument("--chunk", type=int, default=128, help="stimuli per feature block (the scan's)")
    ap.add_argument("--repeats", type=int, default=3, help="runs, each in a fresh Ray instance")
    args = ap.parse_args(argv)

    import numpy as np
    import pandas as pd
    import ray

    from cortexzoo.data import load_dataset, write_dataset
    from cortexzoo.data.synthetic import make_images
    from cortexzoo.features import ReductionConfig
    from cortexzoo.zoo import describe_model

    tmp = tempfile.mkdtemp(prefix="cz-mem-")
    imgs = make_images(args.n, size=args.size, seed=0)
    names = [f"s{i:04d}.png" for i in range(args.n)]
    write_dataset(tmp + "/ds", meta={"name": "mem", "description": "memory benchmark",
                                     "source": "synthetic", "license": "CC0",
                                     "response_unit": "none"},
                  stimuli=pd.DataFrame({"stimulus_id": [n[:-4] for n in names], "image": names}),
                  neuroids=pd.DataFrame({"neuroid_id": ["n0"], "subject": ["s"], "region": ["r"]}),
                  responses=np.random.default_rng(0).random((args.n, 2, 1)).astype(np.float32),
                  images=dict(zip(names, imgs)))
    del imgs
    ds = load_dataset(tmp + "/ds")
    model = describe_model(args.model)  # no weights on the driver, as in a scan
    reference = full_activation_bytes(args.model, model, args.n)

    from cortexzoo.features.cache import FeatureCache
    from cortexzoo.features.pipeline import default_actor_plan, extract_to_cache
    from cortexzoo.store import ResultStore

    gb = 1 << 30
    runs = []
    for r in range(args.repeats):
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                 object_store_memory=1 << 30, log_to_driver=False)
        time.sleep(2)
        base = _pss_of_tree()
        cache = FeatureCache(ResultStore(f"{tmp}/store{r}"), ds.stimulus_fingerprint(), args.n)
        red = ReductionConfig()
        keys = {name: cache.key(str(model.spec), name, red, model.preprocess.to_dict())
                for name in model.layers}
        sampler = Sampler()
        sampler.start()
        t0 = time.time()
        extract_to_cache(ds, model, keys, red, cache, batch_size=args.batch_size,
                         chunk=args.chunk, plan=default_actor_plan(args.num_actors),
                         progress=False)
        dt = time.time() - t0
        sampler.stop()
        ray.shutdown()
        parts = {"driver": 0, "model actor": 0, "other Ray": 0}
        for name, b in sampler.at_peak.items():
            key = ("driver" if name.startswith("driver") else
                   "model actor" if "_ModelActor" in name or "MapWorker" in name else "other Ray")
            parts[key] += b
        runs.append(dict(run=r + 1, seconds=dt, idle_ray_gb=base / gb, peak_gb=sampler.peak / gb,
                         **{f"{k}_gb": v / gb for k, v in parts.items()}))
        print(f"run {r + 1}: {dt:.0f} s, peak {sampler.peak / gb:.2f} GB", flush=True)
    import pandas as pd

    table = pd.DataFrame(runs)
    print(f"model {args.model}: {len(model.layers)} layers, {args.n} images at "
          f"{model.preprocess.input_size} px, {args.num_actors} actor(s), chunks of "
          f"{args.chunk} stimuli per feature block")
    print(f"reference: full activations of every layer, float32   {reference / gb:8.2f} GB")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    peaks = table["peak_gb"]
    print(f"peak over {len(table)} runs: min {peaks.min():.2f}, median {peaks.median():.2f}, "
          f"max {peaks.max():.2f} GB; ratio max peak / reference {peaks.max() * gb / reference:.3f}")
    ok = bool((peaks < args.limit_gb).all())
    print(f"every run under {args.limit_gb:.1f} GB: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
