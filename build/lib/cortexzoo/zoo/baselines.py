"""Non-network baselines (003): raw pixels, plus Gabor / GIST / random Fourier features.

``baseline:pixels`` (= ``pixels``; canonical ``baseline:pixels@none``) downsamples the
preprocessed batch to 32x32 (``pixelsN`` for N x N) and returns the flattened RGB
pixels through a child module named ``pixels``, so forward hooks see a layer
``pixels``.  Its preprocessing is a 64-pixel center crop with mean 0 and std 1, i.e.
plain [0, 1] intensities.

The other baselines live in :mod:`cortexzoo.zoo.baselines_extra` (written separately);
they are looked up lazily so that this module works with or without that file:
``baseline:gabor`` -> ``GaborBank``, ``baseline:gist`` -> ``GIST``,
``baseline:rff`` -> ``RandomFourierFeatures``.  Each is wrapped so that its output is
a layer with the baseline's name.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from cortexzoo.zoo.preprocess import PreprocessConfig

PIXELS_DEFAULT_SIZE = 32
_PIXELS_RE = re.compile(r"pixels(\d+)?")
# baseline name -> class name in cortexzoo.zoo.baselines_extra
EXTRA_BASELINES: dict[str, str] = {
    "gabor": "GaborBank",
    "gist": "GIST",
    "rff": "RandomFourierFeatures",
}


class PixelReadout(nn.Module):
    """Flatten [b, C, H, W] -> [b, C*H*W]; a named layer (not dropped as an identity)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class PixelsBaseline(nn.Module):
    """Resize the batch to ``size`` x ``size`` and expose the flattened pixels.

    Parameters
    ----------
    size : int
        Output side (default 32); features = 3 * size * size (or size*size if grayscale).
    grayscale : bool
        Average the channels first.
    """

    def __init__(self, size: int = PIXELS_DEFAULT_SIZE, grayscale: bool = False) -> None:
        super().__init__()
        if size <= 0:
            raise ValueError(f"pixels baseline size must be positive, got {size}")
        self.size = int(size)
        self.grayscale = bool(grayscale)
        self.pixels = PixelReadout()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"pixels baseline expects [b, C, H, W], got shape {tuple(x.shape)}")
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(
                x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                antialias=x.device.type != "meta",
            )
        if self.grayscale:
            x = x.mean(dim=1, keepdim=True)
        return self.pixels(x)


class NamedBaseline(nn.Module):
    """Wraps a baseline feature module as a single child layer named ``name``."""

    def __init__(self, name: str, core: nn.Module) -> None:
        super().__init__()
        self._layer_name = name
        self.add_module(name, core)

    def forward(self, x: torch.Tensor) -> Any:
        return getattr(self, self._layer_name)(x)


def _extra_module():
    try:
        return importlib.import_module("cortexzoo.zoo.baselines_extra")
    except ImportError:
        return None


def _extra_classes() -> dict[str, type]:
    mod = _extra_module()
    if mod is None:
        return {}
    out = {}
    for name, cls_name in EXTRA_BASELINES.items():
        cls = getattr(mod, cls_name, None)
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            out[name] = cls
    return out


def available_baselines() -> list[str]:
    """Baseline names usable now (``pixels`` plus the extras that import)."""
    return ["pixels"] + sorted(_extra_classes())


def is_baseline_name(name: str) -> bool:
    """True for ``pixels``, ``pixelsN`` and the importable extras."""
    if _PIXELS_RE.fullmatch(name):
        return True
    return name in _extra_classes()


def pixels_config() -> PreprocessConfig:
    """64-pixel center crop of a 64-pixel resize, no normalization (values in [0, 1])."""
    return PreprocessConfig(64, 64, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear")


def _construct(cls: type, seed: int) -> nn.Module:
    """Build an extra baseline, passing ``seed`` when its constructor accepts one."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    torch.manual_seed(seed)
    if "seed" in params:
        return cls(seed=seed)
    if "random_state" in params:
        return cls(random_state=seed)
    return cls()


def build_baseline(name: str, seed: int = 0) -> tuple[nn.Module, PreprocessConfig]:
    """Module and preprocessing of baseline ``name``.

    Raises
    ------
    ValueError
        Unknown baseline name.
    """
    m = _PIXELS_RE.fullmatch(name)
    if m:
        size = int(m.group(1)) if m.group(1) else PIXELS_DEFAULT_SIZE
        return PixelsBaseline(size), pixels_config()
    classes = _extra_classes()
    if name not in classes:
        raise ValueError(
            f"unknown baseline {name!r}; available: {available_baselines()} "
            "(gabor/gist/rff need cortexzoo.zoo.baselines_extra)"
        )
    core = _construct(classes[name], seed)
    size = int(getattr(core, "input_size", 64))
    cfg = PreprocessConfig(size, size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear")
    return NamedBaseline(name, core), cfg


BaselineFactory = Callable[[int], tuple[nn.Module, PreprocessConfig]]
