"""Forward hooks that reduce each layer's output the moment it is produced."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .reduce import LayerReducer, ReductionConfig


class _StopForward(Exception):
    """Raised by the last hook: layers after it are not needed."""


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


class FeatureExtractor:
    """Runs a model on image batches and returns reduced features per layer.

    The reduction happens inside the forward hook, before in-place operations of
    later modules (``ReLU(inplace=True)``) can change the tensor, and before the
    next layer's activations are allocated, so only one layer's full activations
    for one batch exist at a time. Projection matrices are kept between batches
    up to ``cache_bytes`` (beyond that they are regenerated, deterministically).
    """

    def __init__(self, model, layers: Sequence[str] | None = None,
                 reduction: ReductionConfig | None = None, device: str = "cpu",
                 cache_bytes: int = 256 << 20):
        self.model = model
        self.layers = list(layers) if layers is not None else list(model.layers)
        unknown = [name for name in self.layers if name not in model.relative_depth]
        if unknown:
            raise ValueError(f"{model.spec}: unknown layer(s) {unknown[:10]}; "
                             f"known: {list(model.relative_depth)[:20]} ...")
        self.reduction = reduction or ReductionConfig()
        self.device = torch.device(device)
        self.module = model.module.to(self.device).eval()
        self.cache_bytes = cache_bytes
        key = model.spec.key
        self.reducers = {name: LayerReducer(self.reduction, key, name) for name in self.layers}
        modules = dict(self.module.named_modules())
        missing = [name for name in self.layers if name not in modules]
        if missing:
            raise ValueError(f"{model.spec}: layer(s) {missing} are not modules of the network")
        self._targets = {name: modules[name] for name in self.layers}

    @torch.inference_mode()
    def __call__(self, images: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        x = x.to(self.device, dtype=torch.float32)
        out: dict[str, torch.Tensor] = {}
        handles = []

        def make_hook(name):
            def hook(_module, _inputs, output):
                if name in out:  # called twice: keep the first call, as layer order does
                    return
                t = _first_tensor(output)
                if t is None:
                    raise TypeError(f"layer {name!r} of {self.model.spec} returned "
                                    f"{type(output).__name__}, not a tensor")
                out[name] = self.reducers[name](t).float().cpu()
                if len(out) == len(self.layers):
                    raise _StopForward
            return hook

        for name, module in self._targets.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        try:
            self.module(x)
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        missing = [name for name in self.layers if name not in out]
        if missing:
            raise RuntimeError(f"{self.model.spec}: layer(s) {missing} were not called in the forward pass")
        self._trim_cache()
        return {name: out[name].numpy() for name in self.layers}

    def _trim_cache(self) -> None:
        total = 0
        for reducer in self.reducers.values():
            total += reducer.nbytes
            if total > self.cache_bytes:
                reducer.release()
