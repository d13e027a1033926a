"""A saved encoder made differentiable: pixels -> predicted responses of its sites.

The path is the scan's, step by step, so that what is optimized is what the encoder was
fitted on: the stimulus as the model is shown it (a ``crop`` encoder's canvas is the
model's resize size, of which the model sees the centre crop, exactly as
:func:`cortexzoo.data.images.resize_center_crop` presents a saved image of that size; a
``whole`` encoder's canvas is the input itself), the normalization of the weights loaded
(:func:`cortexzoo.features.differentiable.normalize`), the network cut after the
encoder's layer (:class:`~cortexzoo.features.differentiable.LayerForward`), the scan's
reduction with the same matrix (a :class:`~cortexzoo.features.reduce.LayerReducer` built
from the encoder's reduction config, model key and layer, which is what seeded the
scan's), and the ridge readout.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..features.differentiable import LayerForward, normalize, reduce
from ..features.reduce import LayerReducer, layer_seed
from ..scan.encoders import Encoder, EncoderError

__all__ = ["SiteModel", "check_compatible", "check_fits", "load_for_encoder", "pick_device",
           "reg_layer_for"]

log = logging.getLogger("cortexzoo")


def pick_device(device: str | None = None) -> str:
    """``device``, else ``cuda`` when torch sees a GPU, else ``cpu``."""
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def reg_layer_for(model, layer: str, choice: str | None = None) -> str:
    """The accentuation's regularization layer: ``choice`` (a layer name, or
    ``"encoder"`` for the encoder's own layer), else the layer whose relative depth is
    closest to half the encoder layer's (the shallower on a tie): between the pixels and
    the encoding layer, it keeps the image close to the seed in pixels as well as in
    features, where the encoder's own layer lets pixels wander along directions that
    leave it unchanged (measured: README, Parametric control)."""
    if choice == "encoder":
        return layer
    if choice:
        return choice
    depth = model.relative_depth
    half = depth[layer] / 2.0
    return min(model.layers, key=lambda n: (abs(depth[n] - half), depth[n]))


def _norm(v):
    return [float(x) for x in v] if isinstance(v, (list, tuple)) else v


def _diff(a: dict, b: dict) -> list[str]:
    """``key: saved ..., here ...`` for every key where the two mappings differ."""
    return [f"{k}: saved {a.get(k)!r}, here {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if _norm(a.get(k)) != _norm(b.get(k))]


def check_compatible(encoder: Encoder, model) -> None:
    """Raise :class:`EncoderError` when ``model`` (a LoadedModel) is not the network the
    encoder was fitted on: other weights or architecture code (``weights_id``, which
    holds the weights' identity and the building library's version), other preprocessing
    (input size, resize, normalization, interpolation, stimulus mode), another model key
    (which seeds the projection) or a missing layer."""
    from ..zoo.weights import weights_identity

    meta = encoder.meta
    where = encoder.uri or "the encoder"
    wid = weights_identity(model.spec)
    if wid != meta["weights_id"]:
        raise EncoderError(f"{where} was fitted on {meta['model']} with weights/version "
                           f"{meta['weights_id']!r}; the model loaded here has {wid!r} (other "
                           "weights or another torchvision/timm version: fit the encoder again "
                           "with a scan)")
    if model.spec.key != meta["model_key"]:
        raise EncoderError(f"{where} was fitted on model key {meta['model_key']!r}, the model "
                           f"loaded here is {model.spec.key!r}")
    diff = _diff(meta["preprocessing"], model.preprocess.to_dict())
    if diff:
        raise EncoderError(f"{where} was fitted with other preprocessing than the model loaded "
                           "here presents: " + "; ".join(diff))
    if encoder.layer not in model.relative_depth:
        raise EncoderError(f"{where}: layer {encoder.layer!r} is not a layer of {model.spec}")


def check_fits(encoder: Encoder) -> None:
    """:func:`check_compatible` against the model's description (no weights loaded)."""
    from ..zoo import describe_model

    pre = encoder.meta["preprocessing"]
    check_compatible(encoder, describe_model(encoder.spec, input_size=int(pre["input_size"]),
                                             stimulus=pre["mode"]))


def load_for_encoder(encoder: Encoder, device: str = "cpu"):
    """The network of ``encoder``, loaded as the scan presented stimuli to it, checked."""
    from ..zoo import load_model

    pre = encoder.meta["preprocessing"]
    model = load_model(encoder.spec, device=device, input_size=int(pre["input_size"]),
                       stimulus=pre["mode"])
    # a local weights file's preprocess.json or a registry change could move these
    check_compatible(encoder, model)
    return model


class SiteModel(nn.Module):
    """``forward(x)`` for canvases ``x`` in [0, 1], ``[b, 3, R, R]`` (R =
    :attr:`canvas_size`) -> ``(predictions [b, n_sites], {reg_layer: activation})``.

    Parameters
    ----------
    encoder : a loaded encoder.
    sites : the site names to predict (columns of the output, in this order).
    reg_layers : layers whose activations are returned too (for the accentuation's
        regularizer); default none. The encoder's layer may be one of them.
    model : the LoadedModel (default: loaded and checked with :func:`load_for_encoder`).
    """

    def __init__(self, encoder: Encoder, sites: Sequence[str], reg_layers: Sequence[str] = (),
                 device: str = "cpu", model=None):
        super().__init__()
        self.encoder = encoder
        self.sites = list(sites)
        idx = encoder.site_index(self.sites)
        self.model = model if model is not None else load_for_encoder(encoder, device)
        self.model.module.to(device)
        for p in self.model.module.parameters():
            p.requires_grad_(False)
        self.pre = self.model.preprocess
        self.layer = encoder.layer
        self.reg_layers = [r for r in dict.fromkeys(reg_layers)]
        unknown = [r for r in self.reg_layers if r not in self.model.relative_depth]
        if unknown:
            raise ValueError(f"regularization layer(s) {unknown} not in {self.model.spec}; "
                             f"its layers: {self.model.layers}")
        self.net = LayerForward(self.model, [self.layer] + self.reg_layers)
        meta = encoder.meta
        red = encoder.reduction
        self.reducer = LayerReducer(red, meta["model_key"], self.layer)
        seed = layer_seed(red.seed, meta["model_key"], self.layer)
        saved = meta["reduction"].get("layer_seed")
        if saved is not None and int(saved) != seed:
            raise EncoderError(f"{encoder.uri}: its projection seed {saved} is not the one "
                               f"this version derives ({seed}) for {meta['model_key']} {self.layer}")
        self.register_buffer("coef", torch.tensor(encoder.coef[:, idx], dtype=torch.float32))
        self.register_buffer("intercept", torch.tensor(encoder.intercept[idx], dtype=torch.float32))
        self.response_sd = encoder.site_stat("response_sd")[idx]
        self.device = torch.device(device)
        self.to(device)

    @property
    def canvas_size(self) -> int:
        """Side of the images synthesized: the model's input (``whole``) or its resize
        size (``crop``: the model sees the centre ``input_size`` crop)."""
        return self.pre.resize_size if self.pre.mode == "crop" else self.pre.input_size

    def present(self, x: torch.Tensor) -> torch.Tensor:
        """Canvases -> the model's view in [0, 1] (``crop``: the centre crop, with the
        offsets of :func:`cortexzoo.data.images.resize_center_crop`)."""
        s, r = self.pre.input_size, x.shape[-1]
        if x.shape[-2:] != (self.canvas_size, self.canvas_size):
            raise ValueError(f"canvas of {tuple(x.shape[-2:])} pixels; this encoder's is "
                             f"{self.canvas_size} x {self.canvas_size}")
        if r == s:
            return x
        top = int(round((r - s) / 2.0))
        return x[..., top:top + s, top:top + s]

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(reduced features [b, k] of the encoder's layer, {reg layer: activation})."""
        acts = self.net(normalize(self.pre, self.present(x)))
        feats = reduce(self.reducer, acts[self.layer])
        if feats.shape[1] != self.coef.shape[0]:
            raise EncoderError(f"{self.encoder.uri}: the layer reduces to {feats.shape[1]} "
                               f"dimensions, the encoder has {self.coef.shape[0]}")
        return feats, {r: acts[r] for r in self.reg_layers}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feats, regs = self.features(x)
        return feats @ self.coef + self.intercept, regs

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> np.ndarray:
        """Predictions [b, n_sites] in float64, the readout in float64 as the encoder's
        own :meth:`~cortexzoo.scan.encoders.Encoder.predict`."""
        feats, _ = self.features(x.to(self.device))
        return self.encoder.predict(feats.double().cpu().numpy(), self.sites)
