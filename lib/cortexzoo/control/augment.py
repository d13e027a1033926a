"""Differentiable random jitter, scale and rotation (one affine warp), for robust synthesis.

Feature visualization optimizes an image under small random transformations so that it
drives the network through what it depicts, not through a pixel-exact pattern that a
shift of one pixel would undo (lucid/lucent's ``standard_transforms``: pad, jitter,
random scale, random rotate, jitter; faccent's ``standard_jitter_transforms``). Here the
three are one affine warp (``F.affine_grid`` + ``F.grid_sample``, bilinear, reflected
borders so no constant frame is introduced), drawn from a seeded generator so that a
sweep is reproducible. With all three at zero the warp is the identity, exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Augment", "affine_warp"]


def affine_warp(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor,
                angle: torch.Tensor) -> torch.Tensor:
    """Warp ``x`` [b, c, h, w]: per image, shift by ``shift`` [b, 2] (x, y) in pixels,
    then zoom by ``scale`` and rotate by ``angle`` (radians) about the centre (the output
    at pixel ``p`` samples the input at ``R(-angle) p / scale - shift``, bilinearly).
    Gradients flow to ``x``."""
    b, _, h, w = x.shape
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output to input coordinates in [-1, 1]: the inverse transform
    inv = 1.0 / scale
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = inv * cos
    theta[:, 0, 1] = inv * sin * h / w
    theta[:, 1, 0] = -inv * sin * w / h
    theta[:, 1, 1] = inv * cos
    theta[:, 0, 2] = -2.0 * shift[:, 0] / w
    theta[:, 1, 2] = -2.0 * shift[:, 1] / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@dataclass
class Augment:
    """Random affine warps: shifts uniform in ``±jitter`` of the image side, zoom
    uniform in ``1 ± scale``, rotation uniform in ``±degrees``. ``shared``: one draw for
    the whole batch (the images of a sweep and their seed see the same warp)."""

    jitter: float = 0.04
    scale: float = 0.05
    degrees: float = 5.0
    shared: bool = True

    @property
    def identity(self) -> bool:
        return self.jitter == 0 and self.scale == 0 and self.degrees == 0

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.identity:
            return x
        b, _, h, w = x.shape
        n = 1 if self.shared else b

        def u(lo_hi: float, size) -> torch.Tensor:
            return (torch.rand(size, generator=gen, dtype=torch.float64) * 2 - 1) * lo_hi

        shift = u(self.jitter, (n, 2)) * torch.tensor([w, h], dtype=torch.float64)
        zoom = 1.0 + u(self.scale, (n,))
        angle = u(math.radians(self.degrees), (n,))
        if self.shared:
            shift, zoom, angle = shift.expand(b, 2), zoom.expand(b), angle.expand(b)
        dev, dt = x.device, x.dtype
        return affine_warp(x, shift.to(dev, dt), zoom.to(dev, dt), angle.to(dev, dt))
