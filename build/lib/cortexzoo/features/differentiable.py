"""A differentiable path through a zoo model: the forward pass up to chosen layers, with
gradients, for the stages that optimize images (parametric control) or probe a network.

The scan's :class:`~cortexzoo.features.extract.FeatureExtractor` runs under
``torch.inference_mode()`` and stops the forward pass by raising from its last hook:
fast, but nothing can take a gradient through it. :class:`LayerForward` instead cuts
the model's graph after the last requested layer with torch.fx (timm's
``create_feature_extractor``, which knows timm's own leaf modules and also traces
torchvision models), so later layers are never run and nothing is raised. Models that
fx cannot trace (data-dependent Python control flow) run their whole forward pass with
hooks that keep the requested outputs; the gradients are the same, only later layers
cost time. :attr:`LayerForward.truncated` says which path a model got.

Outputs are what the scan's hooks see: a layer's output tensor, or the first tensor of
a tuple output. :func:`normalize` and :func:`reduce` are the differentiable
counterparts of the scan's input normalization and layer reduction (the same numbers,
tested), so an encoding model fitted on scan features can be optimized through.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from torch import nn

from ..zoo.layers import first_tensor
from .extract import capture_layers, layer_targets
from .reduce import LayerReducer

__all__ = ["LayerForward", "normalize", "reduce"]

log = logging.getLogger("cortexzoo")


class LayerForward(nn.Module):
    """``model``'s forward pass to ``layers``: ``forward(x)`` returns ``{layer: tensor}``
    with gradients flowing back to ``x`` (a normalized input batch ``[b, 3, S, S]``).

    Parameters
    ----------
    model : cortexzoo.zoo.LoadedModel
        With its module (not a description).
    layers : layer names of ``model`` (see ``model.layers``).
    trace : try to cut the graph with torch.fx (default); False always runs the whole
        forward pass with hooks.
    """

    def __init__(self, model: Any, layers: Sequence[str], trace: bool = True):
        super().__init__()
        if getattr(model, "module", None) is None:
            raise ValueError(f"{model.spec}: a differentiable forward needs the loaded network, "
                             "not a description (use cortexzoo.zoo.load_model)")
        self.layers = list(dict.fromkeys(layers))
        if not self.layers:
            raise ValueError("LayerForward needs at least one layer")
        self.spec = model.spec
        self.network = model.module
        self._targets = layer_targets(model, self.layers)
        self.graph: nn.Module | None = None
        if trace:
            self.graph = self._trace()

    @property
    def truncated(self) -> bool:
        """True when the graph is cut after the last requested layer (fx traced it)."""
        return self.graph is not None

    def _trace(self) -> nn.Module | None:
        try:
            from timm.models import create_feature_extractor

            return create_feature_extractor(self.network, return_nodes={n: n for n in self.layers})
        except Exception as exc:  # noqa: BLE001 - any tracing failure: use hooks instead
            log.info("%s: torch.fx cannot trace it (%s: %s); the whole forward pass runs",
                     self.spec, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
            return None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.graph is not None:
            out = self.graph(x)
            return {n: first_tensor(out[n]) for n in self.layers}
        return capture_layers(self.network, self._targets, x, self.spec)


def normalize(preprocess: Any, images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1], float ``[b, 3, S, S]`` at the model's input size -> the model's
    input, differentiably: the same numbers as the scan's ``normalize_uint8`` of the
    8-bit crops (``(x * 255 - 255 mean) / (255 std)``)."""
    mean = torch.tensor(preprocess.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def reduce(reducer: LayerReducer, activation: torch.Tensor) -> torch.Tensor:
    """A layer's activation ``[b, ...]`` -> its reduced features ``[b, k]`` with the scan's
    reducer (the same projection matrix), differentiably."""
    return reducer(activation)
