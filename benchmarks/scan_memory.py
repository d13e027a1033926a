"""Peak memory of a streaming scan extraction against holding full activations.

    python benchmarks/scan_memory.py                      # vgg16 random, 500 images, 224 px
    python benchmarks/scan_memory.py --n 100 --model torchvision:resnet18@random

Runs the Ray Data extraction of every layer of the model (sparse random projection to
4096 dims, on the fly) on a local Ray instance, sampling the proportional set size (PSS:
shared pages split between the processes that map them, so nothing is counted twice)
of this process and every Ray process every 0.2 s. The reference, computed in the same
run from the layer shapes, is what a plain script would hold: every layer's full
activations for the whole stimulus set, float32. Prints both, their ratio, and whether
peak memory stayed under the --limit-gb goal (4 GB).
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
    args = ap.parse_args(argv)

    import numpy as np
    import pandas as pd
    import ray

    from cortexzoo.data import load_dataset, write_dataset
    from cortexzoo.data.synthetic import make_images
    from cortexzoo.features import ReductionConfig, extract_ray
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

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             object_store_memory=1 << 30, log_to_driver=False)
    time.sleep(2)
    base = _pss_of_tree()
    sampler = Sampler()
    sampler.start()
    t0 = time.time()
    lf = extract_ray(ds, model, None, ReductionConfig(), batch_size=args.batch_size,
                     num_actors=args.num_actors, progress=True)
    dt = time.time() - t0
    sampler.stop()
    ray.shutdown()
    peak = sampler.peak
    reduced = sum(f.nbytes for f in lf.features.values())
    gb = 1 << 30
    print(f"model {args.model}: {len(model.layers)} layers, {args.n} images at "
          f"{model.preprocess.input_size} px, {args.num_actors} actor(s), {dt:.0f} s "
          f"({args.n / dt:.1f} img/s)")
    print(f"reference: full activations of every layer, float32   {reference / gb:8.2f} GB")
    print(f"reduced features kept by the driver (SRP 4096)        {reduced / gb:8.2f} GB")
    print(f"peak PSS of driver + Ray processes (idle Ray {base / gb:.2f} GB) {peak / gb:8.2f} GB")
    for name, b in sorted(sampler.at_peak.items(), key=lambda kv: -kv[1])[:8]:
        print(f"    at peak: {b / gb:6.2f} GB  {name}")
    print(f"ratio peak / reference                                {peak / reference:8.3f}")
    ok = peak < args.limit_gb * gb
    print(f"peak under {args.limit_gb:.1f} GB: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
