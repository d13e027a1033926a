"""Benchmark: seconds per feature-accentuation sweep (paper 002), against the bare network.

    python benchmarks/control.py                         # the three networks below, CPU
    python benchmarks/control.py --steps 50 --models small
    python benchmarks/control.py --device cuda           # on a GPU

One sweep is what ``cortexzoo control accentuate`` makes per (site, seed image): 11 images
(seed prediction + {-5..5} x 0.2 SD), the default :class:`cortexzoo.control.SynthConfig`
(150 Adam steps on the Fourier parameters, each step a random warp of the 11 images and
the seed, a forward pass of the 12 through the network cut after the encoder's layer,
the scan's sparse random projection to 4096 dimensions and the readout, and the
regularization layer at half the encoder layer's depth), then the 8-bit images'
predictions and distances. The encoder is a random readout in the saved format (the
numbers do not change the work) whose "response SD" is the SD of its predictions over 24
synthetic stimuli, so that the levels are as far apart as a fitted site's; the seed is a
real photo (scikit-learn's china.jpg).

Networks: ``small`` timm:test_byobnet@random at 64 px (encoder layer stages.2.0),
``resnet18`` torchvision:resnet18@random at 224 px (layer3.1), ``resnet50``
torchvision:resnet50@random at 224 px (layer4.0; ResNet-50 size, as the paper's).

Reference, in the same process: forward and backward passes of 12 images through the
same cut network (LayerForward, loss = sum of the layers' outputs), the work no synthesis
can avoid: 15 passes before the sweep and 15 after (the machine's load drifts), their mean
time per pass times the sweep's steps. Printed per network: sweep seconds, reference seconds,
their ratio (what the parameterization, warps, projection, readout and regularizer
add), seconds per step, and how well the sweep hit its levels.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
_LIB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, _LIB)

import numpy as np  # noqa: E402
import torch  # noqa: E402

NETWORKS = {
    "small": ("timm:test_byobnet@random", 64, "stages.2.0"),
    "resnet18": ("torchvision:resnet18@random", 224, "layer3.1"),
    "resnet50": ("torchvision:resnet50@random", 224, "layer4.0"),
}


def random_encoder(out: str, spec: str, layer: str, input_size: int, k: int = 4096) -> str:
    """A random readout of ``layer`` for one site, written as a scan writes encoders."""
    from cortexzoo.core import cache_key
    from cortexzoo.features.reduce import ReductionConfig, layer_seed
    from cortexzoo.scan.encoders import ENCODER_FORMAT, Encoder, write_encoder
    from cortexzoo.store import ResultStore
    from cortexzoo.zoo import describe_model, parse_spec
    from cortexzoo.zoo.weights import weights_identity

    s = parse_spec(spec)
    desc = describe_model(s, input_size=input_size, stimulus="whole")
    red = ReductionConfig(n_components=k)
    wid = weights_identity(s)
    meta = {"format": ENCODER_FORMAT, "version": 1, "model": str(s), "model_key": s.key,
            "weights_id": wid, "model_id": cache_key.model_id(str(s), wid), "layer": layer,
            "region": "bench", "preprocessing": desc.preprocess.to_dict(), "stimulus": "whole",
            "input_size": input_size,
            "reduction": dict(dataclasses.asdict(red), model_key=s.key,
                              layer_seed=layer_seed(red.seed, s.key, layer)),
            "sites": {"neuroid_id": ["site"], "subject": [""], "alpha": [1.0], "r": [0.5],
                      "ev": [0.25], "response_mean": [0.0], "response_sd": [1.0]},
            "n_features": k}
    coef = np.random.default_rng(0).normal(0, 1 / np.sqrt(k), (k, 1))
    enc = Encoder(meta, coef, np.zeros(1), np.zeros(k))
    return write_encoder(ResultStore(out), f"encoders/{s.key}", enc)


def seed_photo(preprocessing: dict) -> np.ndarray:
    import sklearn

    from cortexzoo.control.seeds import read_seeds

    path = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images", "china.jpg")
    return read_seeds(path, preprocessing)[0].pixels


def calibrate(model, device: str, n: int = 24) -> float:
    """The SD of the random readout's predictions over synthetic stimuli (the scan's
    planted images), standing in for the SD of a site's responses: the sweep's levels are
    then as far apart, for this readout, as a real site's are for its encoder."""
    from cortexzoo.control.synth import from_uint8
    from cortexzoo.data.synthetic import make_images

    imgs = make_images(n, size=model.canvas_size, seed=0)
    return float(np.std(model.predict(from_uint8(np.asarray(imgs, np.uint8), device))[:, 0], ddof=1))


def reference(model, steps: int, n: int, device: str) -> float:
    """``steps`` forward+backward passes of ``n`` images through the cut network."""
    from cortexzoo.features.differentiable import LayerForward

    lf = LayerForward(model.model, [model.layer] + model.reg_layers)
    s = model.canvas_size
    x = torch.rand(n, 3, s, s, device=device, requires_grad=True)
    t0 = time.perf_counter()
    for _ in range(steps):
        x.grad = None
        out = lf(x)
        sum(v.sum() for v in out.values()).backward()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench(name: str, steps: int, device: str) -> dict:
    from cortexzoo.control import SynthConfig
    from cortexzoo.control.site_model import SiteModel, load_for_encoder, reg_layer_for
    from cortexzoo.control.synth import accentuate, levels
    from cortexzoo.scan.encoders import load_encoder

    spec, size, layer = NETWORKS[name]
    with tempfile.TemporaryDirectory() as tmp:
        enc = load_encoder(random_encoder(tmp, spec, layer, size))
    t0 = time.perf_counter()
    loaded = load_for_encoder(enc, device)
    cfg = SynthConfig(steps=steps)
    reg = reg_layer_for(loaded, layer, cfg.reg_layer)
    model = SiteModel(enc, ["site"], reg_layers=[reg], device=device, model=loaded)
    load = time.perf_counter() - t0
    model.response_sd = np.array([calibrate(model, device)])
    seed = seed_photo(enc.meta["preprocessing"])
    accentuate(model, "site", seed, levels(), dataclasses.replace(cfg, steps=2))  # warm-up
    half = max(1, min(steps, 30) // 2)
    before = reference(model, half, 12, device) / half
    t0 = time.perf_counter()
    res = accentuate(model, "site", seed, levels(), cfg)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    sweep = time.perf_counter() - t0
    after = reference(model, half, 12, device) / half
    ref = (before + after) / 2 * steps   # before and after the sweep: the load drifts
    err = np.abs((res["achieved"] - res["target"]) / res["sd"])
    return {"network": name, "spec": spec, "px": size, "layer": layer, "reg_layer": reg,
            "load_s": load, "sweep_s": sweep, "reference_s": ref, "ratio": sweep / ref,
            "step_s": sweep / steps, "max_err_sd": float(err.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="small,resnet18,resnet50",
                    help=f"comma-separated from {list(NETWORKS)}")
    ap.add_argument("--steps", type=int, default=150, help="Adam steps (the default sweep's)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else (
        f"CPU, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores")
    print(f"device: {dev}; {args.steps} steps, 11 images per sweep")
    print(f"{'network':10} {'px':>4} {'layer':10} {'reg':10} {'load s':>7} {'sweep s':>8} "
          f"{'ref s':>7} {'ratio':>6} {'s/step':>7} {'max err SD':>10}")
    for name in args.models.split(","):
        r = bench(name.strip(), args.steps, args.device)
        print(f"{r['network']:10} {r['px']:>4} {r['layer']:10} {r['reg_layer']:10} "
              f"{r['load_s']:7.2f} {r['sweep_s']:8.2f} {r['reference_s']:7.2f} {r['ratio']:6.2f} "
              f"{r['step_s']:7.3f} {r['max_err_sd']:10.3f}", flush=True)


if __name__ == "__main__":
    main()
