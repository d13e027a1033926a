"""Image preprocessing that follows each model's own config.

The pipeline is the standard ImageNet evaluation transform: resize the shorter side
to ``resize_size`` (antialiased, PIL-style filters), center-crop ``input_size``, scale
to [0, 1], normalize with ``mean``/``std``.  Grayscale stimuli are repeated to three
channels.  Implemented with torch (``F.interpolate(antialias=True)``, which
reproduces PIL's resampling filters) so that equal-sized batches resize at once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic", "nearest")
#: How a stimulus becomes the model's input: "whole" resizes the whole image to the input
#: size (Brain-Score's presentation: the animal saw all of it); "crop" is the model's own
#: evaluation transform (shorter side to ``resize_size``, center crop ``input_size``).
STIMULUS_MODES: tuple[str, ...] = ("whole", "crop")


class PreprocessError(ValueError):
    """Bad preprocessing config or bad images."""


@dataclass(frozen=True)
class PreprocessConfig:
    """How to turn images into a model's input tensor (picklable, ships to Ray workers).

    Parameters
    ----------
    input_size : int
        Side of the square center crop fed to the model.
    resize_size : int
        The shorter image side is resized to this before cropping (>= input_size).
    mean, std : tuple of 3 floats
        Per-channel normalization applied after scaling to [0, 1].
    interpolation : {"bilinear", "bicubic", "nearest"}
    mode : {"crop", "whole"}
        "crop": resize the shorter side to ``resize_size`` and center-crop ``input_size``
        (the ImageNet evaluation transform); "whole": resize the whole image to
        ``input_size`` x ``input_size`` (``resize_size`` unused). Scans present stimuli
        whole by default (see :data:`STIMULUS_MODES`).
    """

    input_size: int
    resize_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    mode: str = "crop"

    def __post_init__(self) -> None:
        if self.mode not in STIMULUS_MODES:
            raise PreprocessError(f"stimulus mode {self.mode!r} not in {STIMULUS_MODES}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if int(self.input_size) <= 0 or int(self.resize_size) <= 0:
            raise PreprocessError(f"input_size and resize_size must be positive: {self}")
        object.__setattr__(self, "input_size", int(self.input_size))
        object.__setattr__(self, "resize_size", int(self.resize_size))
        if self.resize_size < self.input_size:
            raise PreprocessError(
                f"resize_size {self.resize_size} < input_size {self.input_size}: the center crop "
                "would not fit"
            )
        if len(self.mean) != 3 or len(self.std) != 3:
            raise PreprocessError(f"mean and std need 3 values each, got {self.mean}, {self.std}")
        if any(s <= 0 for s in self.std):
            raise PreprocessError(f"std must be positive, got {self.std}")
        if self.interpolation not in INTERPOLATIONS:
            raise PreprocessError(
                f"interpolation {self.interpolation!r} not in {INTERPOLATIONS}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------------ apply
    def apply(self, images: Any) -> np.ndarray:
        """Preprocess a batch of images.

        Parameters
        ----------
        images : list of PIL images, or array [b, H, W, 3] / [b, H, W]
            uint8 arrays are scaled by 1/255; float arrays must already lie in [0, 1].
            A list may also hold individual [H, W(, 3)] arrays of different sizes.

        Returns
        -------
        np.ndarray, float32, shape [b, 3, input_size, input_size]
        """
        import torch

        batches = _to_float_batches(images)
        out = [self._apply_tensor(t) for t in batches]
        if not out:
            return np.zeros((0, 3, self.input_size, self.input_size), np.float32)
        return torch.cat(out).numpy()

    def geometry(self) -> dict[str, Any]:
        """Resize/crop settings as a plain dict (for decode workers without torch)."""
        return {"input_size": self.input_size, "resize_size": self.resize_size,
                "interpolation": self.interpolation, "mode": self.mode}

    def normalize_uint8(self, x: Any, device: Any = "cpu") -> "Any":
        """uint8 crops [b, S, S, 3] (from ``cortexzoo.data.images.read_and_crop``) ->
        normalized float32 tensor [b, 3, S, S] on ``device``.

        Converting on the device keeps what travels (object store, host-to-GPU) at
        one byte per pixel."""
        import torch

        a = np.asarray(x)
        t = torch.from_numpy(a if a.flags.writeable else a.copy()).to(device)
        if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
            raise PreprocessError(f"expected uint8 crops [b, S, S, 3], got {t.dtype} {tuple(t.shape)}")
        t = t.permute(0, 3, 1, 2).float()
        mean = torch.tensor(self.mean, device=t.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.std, device=t.device).view(1, 3, 1, 1) * 255.0
        return ((t - mean) / std).contiguous()

    def apply_tensor(self, x: "Any") -> "Any":
        """Like :meth:`apply` for a float tensor [b, 3, H, W] with values in [0, 1]."""
        return self._apply_tensor(x)

    def _apply_tensor(self, x: "Any") -> "Any":
        import torch
        import torch.nn.functional as F

        b, c, h, w = x.shape
        if self.mode == "whole":
            s = self.input_size
            if (h, w) != (s, s):
                if self.interpolation == "nearest":
                    x = F.interpolate(x, size=(s, s), mode="nearest-exact")
                else:
                    x = F.interpolate(x, size=(s, s), mode=self.interpolation,
                                      align_corners=False, antialias=True)
            if self.interpolation == "bicubic":
                x = x.clamp(0.0, 1.0)
            mean = torch.tensor(self.mean, dtype=x.dtype).view(1, 3, 1, 1)
            std = torch.tensor(self.std, dtype=x.dtype).view(1, 3, 1, 1)
            return ((x - mean) / std).contiguous()
        short, long = (h, w) if h <= w else (w, h)
        if short != self.resize_size:
            # torchvision's convention: the long side is truncated, not rounded.
            new_long = int(self.resize_size * long / short)
            size = (self.resize_size, new_long) if h <= w else (new_long, self.resize_size)
            if self.interpolation == "nearest":
                x = F.interpolate(x, size=size, mode="nearest-exact")
            else:
                x = F.interpolate(
                    x, size=size, mode=self.interpolation, align_corners=False, antialias=True
                )
            h, w = size
        s = self.input_size
        top = int(round((h - s) / 2.0))
        left = int(round((w - s) / 2.0))
        x = x[:, :, top : top + s, left : left + s]
        if self.interpolation == "bicubic":
            # Bicubic overshoots; PIL clips to the valid range, so do the same.
            x = x.clamp(0.0, 1.0)
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous()


def _one_to_float(img: Any, where: str) -> np.ndarray:
    """One image (PIL or array [H, W] / [H, W, 3|4]) -> float32 [3, H, W] in [0, 1]."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(img, Image.Image):
        img = np.asarray(img.convert("RGB"))
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise PreprocessError(f"{where}: expected [H, W] or [H, W, 3] image, got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 4:
        arr = arr[..., :3]
    return _scale(arr, where).transpose(2, 0, 1)


def _scale(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = (float(np.nanmin(arr)), float(np.nanmax(arr))) if arr.size else (0.0, 0.0)
        if not np.isfinite(arr).all() or lo < -1e-6 or hi > 1.0 + 1e-6:
            raise PreprocessError(
                f"{where}: float images must lie in [0, 1] (got range [{lo:.4g}, {hi:.4g}]); "
                "pass uint8 for 0-255 data"
            )
        return arr.astype(np.float32)
    raise PreprocessError(f"{where}: unsupported image dtype {arr.dtype}; use uint8 or float in [0, 1]")


def _to_float_batches(images: Any) -> list:
    """Group images into float tensors [n, 3, H, W] of equal size, keeping order."""
    import torch

    if isinstance(images, np.ndarray):
        arr = images
        if arr.ndim == 3:  # [b, H, W] grayscale
            arr = np.repeat(arr[..., None], 3, axis=-1)
        if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
            raise PreprocessError(
                f"image array must be [b, H, W] or [b, H, W, 3], got shape {images.shape}"
            )
        if arr.shape[-1] == 1:
            arr = np.repeat(arr, 3, axis=-1)
        x = _scale(arr, "image array").transpose(0, 3, 1, 2)
        return [torch.from_numpy(np.ascontiguousarray(x))]
    if not isinstance(images, Sequence) or isinstance(images, (str, bytes)):
        raise PreprocessError(
            f"images must be a list of PIL images/arrays or an array [b, H, W(, 3)], got {type(images).__name__}"
        )
    groups: list = []
    current: list[np.ndarray] = []
    for i, img in enumerate(images):
        a = _one_to_float(img, f"image {i}")
        if current and a.shape != current[0].shape:
            groups.append(torch.from_numpy(np.stack(current)))
            current = []
        current.append(a)
    if current:
        groups.append(torch.from_numpy(np.stack(current)))
    return groups


def default_config() -> PreprocessConfig:
    """ImageNet defaults for models without their own config: 224 crop of a 256 resize."""
    return PreprocessConfig(224, 256, IMAGENET_MEAN, IMAGENET_STD, "bilinear")


def _interp_name(x: Any) -> str:
    name = getattr(x, "value", x)
    name = str(name).lower()
    if "bicubic" in name:
        return "bicubic"
    if "nearest" in name:
        return "nearest"
    return "bilinear"


def torchvision_config(name: str) -> PreprocessConfig:
    """Config of a torchvision architecture from its DEFAULT weights' transform metadata.

    Never downloads: ``weights.transforms()`` only builds the transform object.
    """
    import torchvision

    try:
        weights_enum = torchvision.models.get_model_weights(name)
        default = weights_enum.DEFAULT
    except (ValueError, KeyError, AttributeError):
        return default_config()
    t = default.transforms()
    crop = int(_first(getattr(t, "crop_size", 224)))
    resize = int(_first(getattr(t, "resize_size", 256)))
    return PreprocessConfig(
        input_size=crop,
        resize_size=max(resize, crop),
        mean=tuple(getattr(t, "mean", IMAGENET_MEAN)),
        std=tuple(getattr(t, "std", IMAGENET_STD)),
        interpolation=_interp_name(getattr(t, "interpolation", "bilinear")),
    )


def _first(v: Any) -> Any:
    return v[0] if isinstance(v, (list, tuple)) else v


def timm_config_from_dict(cfg: dict[str, Any]) -> PreprocessConfig:
    """Config from a timm data config (``timm.data.resolve_data_config`` output)."""
    input_size = cfg.get("input_size", (3, 224, 224))
    s = int(input_size[-1])
    crop_pct = float(cfg.get("crop_pct", 0.875) or 0.875)
    # timm's eval transform: scale_size = floor(img_size / crop_pct).
    resize = max(s, int(math.floor(s / crop_pct)))
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    if len(mean) == 1:
        mean = mean * 3
    if len(std) == 1:
        std = std * 3
    return PreprocessConfig(s, resize, mean, std, _interp_name(cfg.get("interpolation", "bilinear")))


def timm_config(name: str, model: Any = None) -> PreprocessConfig:
    """Config of a timm architecture (optionally ``name.tag``) from its pretrained_cfg."""
    import timm
    from timm.data import resolve_data_config

    if model is not None:
        cfg = resolve_data_config({}, model=model)
    else:
        pcfg = timm.models.get_pretrained_cfg(name)
        if pcfg is None:
            return default_config()
        cfg = resolve_data_config({}, pretrained_cfg=pcfg.to_dict())
    return timm_config_from_dict(cfg)
