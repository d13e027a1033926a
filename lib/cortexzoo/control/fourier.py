"""A decorrelated Fourier image parameterization, and its inverse for seed images.

An image ``x`` in [0, 1] ``[b, 3, H, W]`` is ``sigmoid(C @ irfft2(scale * z))``: ``z`` the
parameters (the complex half-spectrum ``[b, 3, H, W // 2 + 1]``, kept as real and
imaginary parts), ``scale = 1 / max(f, 1 / max(H, W)) ** decay`` with ``f`` each
coefficient's spatial frequency in cycles per pixel (so white parameters give images with
a ``1/f**decay`` amplitude spectrum, as natural images have; normalized to unit root
mean square, so that the learning rate is the size of a step in logits), ``irfft2``
orthonormal,
``C`` the square root of ImageNet's colour covariance (per pixel: decorrelated channels ->
RGB) and a sigmoid to [0, 1]. A gradient step on ``z`` therefore changes the image mostly
at low spatial frequencies and along natural colour directions: the preconditioning of
Olah et al. 2017 (lucid, and lucent's ``fft_image`` and ``to_valid_rgb(decorrelate=True)``,
whose colour matrix and frequency grid this follows), used for feature accentuation by
Hamblin et al. 2024 (faccent's ``fourier`` parameterization with ``img_to_params``; Horama's
``inverse_image_spectrum``). No magic desaturation constant: the inverse takes a seed to
its parameters exactly, so a seed comes back as itself (up to ``eps``: pixel values are
clamped to [eps, 1 - eps] before the logit).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["COLOR_SQRT", "FourierImage", "spectrum_frequencies", "spectrum_scale"]

#: lucid/lucent's square root of ImageNet's RGB covariance (its SVD factor), columns scaled
#: so that the largest has norm 1 (lucent's ``color_correlation_normalized``).
_SVD_SQRT = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_SQRT = _SVD_SQRT / np.max(np.linalg.norm(_SVD_SQRT, axis=0))


def spectrum_frequencies(h: int, w: int) -> torch.Tensor:
    """Spatial frequency (cycles per pixel) of each coefficient of ``rfft2`` of an
    ``h x w`` image: ``[h, w // 2 + 1]``."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def spectrum_scale(h: int, w: int, decay: float = 1.0) -> torch.Tensor:
    """``1 / max(f, 1 / max(h, w)) ** decay`` per coefficient (the DC term gets the
    lowest frequency's scale), divided by its root mean square: a step of ``s`` on every
    parameter then changes the image's logits by about ``s`` (RMS), whatever the size."""
    f = spectrum_frequencies(h, w)
    scale = 1.0 / torch.clamp(f, min=1.0 / max(h, w)) ** decay
    return scale / torch.sqrt((scale ** 2).mean())


class FourierImage(nn.Module):
    """``batch`` images of ``h x w`` pixels in the decorrelated Fourier parameterization;
    ``forward()`` returns them in [0, 1], ``[batch, 3, h, w]`` (float32).

    Parameters
    ----------
    decay : the spectrum's decay power (1: amplitude ~ 1/f).
    decorrelate : mix channels with :data:`COLOR_SQRT` (else each channel on its own).
    eps : seed pixels are clamped to [eps, 1 - eps] before the logit (see :meth:`set_images`).
    """

    def __init__(self, batch: int, h: int, w: int, decay: float = 1.0, decorrelate: bool = True,
                 eps: float = 0.005):
        super().__init__()
        self.h, self.w, self.decay, self.eps = int(h), int(w), float(decay), float(eps)
        self.spectrum = nn.Parameter(torch.zeros(batch, 3, self.h, self.w // 2 + 1, 2))
        self.register_buffer("scale", spectrum_scale(self.h, self.w, decay).float(), persistent=False)
        color = COLOR_SQRT if decorrelate else np.eye(3)
        self.register_buffer("color", torch.tensor(color, dtype=torch.float32), persistent=False)
        self.register_buffer("color_inv", torch.tensor(np.linalg.inv(color), dtype=torch.float32),
                             persistent=False)

    @classmethod
    def from_images(cls, images: torch.Tensor, **kw) -> "FourierImage":
        """A parameterization whose ``forward()`` gives back ``images`` ([b, 3, h, w] in [0, 1])."""
        b, c, h, w = images.shape
        if c != 3:
            raise ValueError(f"images need 3 channels, got {c}")
        p = cls(b, h, w, **kw).to(images.device)
        p.set_images(images)
        return p

    def logits(self) -> torch.Tensor:
        """The image before the sigmoid (RGB logits), ``[b, 3, h, w]``."""
        spec = torch.view_as_complex(self.spectrum) * self.scale
        lin = torch.fft.irfft2(spec, s=(self.h, self.w), norm="ortho")
        return torch.einsum("ij,bjhw->bihw", self.color, lin)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.logits())

    @torch.no_grad()
    def set_images(self, images: torch.Tensor) -> None:
        """Set the parameters to those of ``images`` (the exact inverse of ``forward`` on
        pixels within [eps, 1 - eps])."""
        x = images.to(self.spectrum.device, torch.float32).clamp(self.eps, 1.0 - self.eps)
        lin = torch.einsum("ij,bjhw->bihw", self.color_inv, torch.logit(x))
        spec = torch.fft.rfft2(lin, norm="ortho") / self.scale
        self.spectrum.copy_(torch.view_as_real(spec))
