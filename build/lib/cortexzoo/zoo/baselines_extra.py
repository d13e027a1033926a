"""Hand-made feature spaces of paper 003 as torch modules: Gabor bank, GIST, random
Fourier features.

Each module takes a float image batch [b, 3, H, W] (intensities, already resized by
the preprocessing; ``input_size`` says which size it expects) and returns [b, d].
Each exposes ``layer_names``: the names of its child modules whose outputs are the
features (the last child, which also is what ``forward`` returns), so an extractor
can hook them. All are deterministic given their ``seed``.

* :class:`GaborBank` - quadrature Gabor filters (``n_orientations`` x ``frequencies``)
  applied in the Fourier domain to the grayscale image; the energy (modulus of the
  complex response, i.e. a complex cell) is averaged on an 8 x 8 grid.
  Default: 8 orientations x 4 frequencies x 64 cells = 2048 features.
* :class:`GIST` - principal components of those Gabor energies (Oliva & Torralba 2001;
  003 calls them "GISTPCs"). PCA needs a set of images: call ``fit(images)`` (or
  ``fit_features``) once; a streaming extractor that cannot fit gets a fixed,
  seeded random orthonormal projection of the energies instead (``projection_`` says
  which is in use: "pca" or "random"). With ``n_components`` equal to the energy
  dimension that random rotation loses nothing for ridge (which is rotation
  invariant), and a downstream PCA reduction over the stimuli yields the GIST PCs.
* :class:`RandomFourierFeatures` - ``sqrt(2/d) cos(x W + b)`` of the downsampled pixels
  (Rahimi & Recht 2007), W ~ N(0, 2 gamma), b ~ U(0, 2 pi): an RBF kernel
  ``exp(-gamma ||x - y||^2)`` approximated with d = 4096 features. 003 takes the max
  over repeated draws: vary ``seed``.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GaborEnergy", "GridPool", "GaborBank", "GIST", "RandomFourierFeatures"]

_LUMA = (0.299, 0.587, 0.114)


def _check_batch(x: torch.Tensor, who: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who} expects a float batch [b, 3 (or 1), H, W], got {shape}")
    return x if x.is_floating_point() else x.float()


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)


class GaborEnergy(nn.Module):
    """Energy maps [b, n_filters, size, size] of a quadrature Gabor bank.

    The transfer function of each filter is a Gaussian in the frequency plane centered
    on ``f0 (cos theta, sin theta)`` (cycles/pixel at ``size``), of width
    ``f0 * (2^bw - 1) / ((2^bw + 1) sqrt(2 ln 2))`` for a bandwidth of ``bw`` octaves.
    It has one lobe, so the response is complex (even + i odd) and its modulus is the
    local energy. Images are converted to luminance and their mean is removed first.
    """

    def __init__(self, size: int = 128, n_orientations: int = 8,
                 frequencies: Iterable[float] = (0.25, 0.125, 0.0625, 0.03125),
                 bandwidth: float = 1.0, filter_chunk: int = 8) -> None:
        super().__init__()
        freqs = [float(f) for f in frequencies]
        if size < 8 or n_orientations < 1 or not freqs or not all(0 < f <= 0.5 for f in freqs):
            raise ValueError(f"bad Gabor bank: size={size}, n_orientations={n_orientations}, "
                             f"frequencies={freqs} (need size >= 8, 0 < f <= 0.5 cycles/pixel)")
        self.size = int(size)
        self.n_orientations = int(n_orientations)
        self.frequencies = freqs
        self.filter_chunk = int(filter_chunk)
        fy = torch.fft.fftfreq(self.size, dtype=torch.float64)[:, None]
        fx = torch.fft.fftfreq(self.size, dtype=torch.float64)[None, :]
        k = (2 ** bandwidth - 1) / ((2 ** bandwidth + 1) * math.sqrt(2 * math.log(2)))
        bank = []
        for f0 in freqs:
            sigma = f0 * k
            for i in range(self.n_orientations):
                th = math.pi * i / self.n_orientations
                d2 = (fx - f0 * math.cos(th)) ** 2 + (fy - f0 * math.sin(th)) ** 2
                bank.append(torch.exp(-d2 / (2 * sigma ** 2)))
        self.register_buffer("transfer", torch.stack(bank).float(), persistent=False)

    @property
    def n_filters(self) -> int:
        return int(self.transfer.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _resize(_gray(_check_batch(x, "GaborEnergy")), self.size)[:, 0]
        x = x - x.mean(dim=(-2, -1), keepdim=True)
        spec = torch.fft.fft2(x.float())[:, None]                     # [b, 1, H, W]
        out = []
        for j0 in range(0, self.n_filters, self.filter_chunk):        # bound memory
            h = self.transfer[j0:j0 + self.filter_chunk].to(spec.device)
            out.append(torch.fft.ifft2(spec * h[None]).abs())
        return torch.cat(out, dim=1).to(x.dtype)


class GridPool(nn.Module):
    """Average [b, c, H, W] maps on a ``grid`` x ``grid`` lattice and flatten to [b, c*grid^2]."""

    def __init__(self, grid: int = 8) -> None:
        super().__init__()
        self.grid = int(grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, self.grid).flatten(1)


class GaborBank(nn.Module):
    """Gabor energies pooled on an 8 x 8 grid (003 baseline 1). Output [b, n_filters * 64].

    Children: ``energy`` (:class:`GaborEnergy`), ``gabor`` (:class:`GridPool`, the features).
    ``seed`` is accepted for a uniform interface; the bank itself is deterministic.
    """

    layer_names = ["gabor"]

    def __init__(self, size: int = 128, n_orientations: int = 8,
                 frequencies: Iterable[float] = (0.25, 0.125, 0.0625, 0.03125),
                 grid: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.input_size = int(size)
        self.seed = int(seed)
        self.energy = GaborEnergy(size, n_orientations, frequencies)
        self.gabor = GridPool(grid)
        self.out_features = self.energy.n_filters * grid * grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gabor(self.energy(x))


class _Projection(nn.Module):
    """(x - mean) @ components.T with buffers (saved in the state dict)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(d_in))
        self.register_buffer("components", torch.zeros(d_out, d_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) @ self.components.to(x.dtype).T


class GIST(nn.Module):
    """Principal components of the pooled Gabor energies (003 baseline 2). Output [b, k].

    Children: ``energy``, ``pool``, ``gist`` (the projection; the features).
    Unfitted, ``gist`` is a seeded random orthonormal projection (see module doc);
    :meth:`fit` replaces it with the PCA of the energies of the given images.
    """

    layer_names = ["gist"]

    def __init__(self, n_components: int = 512, size: int = 128, n_orientations: int = 8,
                 frequencies: Iterable[float] = (0.25, 0.125, 0.0625, 0.03125),
                 grid: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.input_size = int(size)
        self.seed = int(seed)
        self.energy = GaborEnergy(size, n_orientations, frequencies)
        self.pool = GridPool(grid)
        d = self.energy.n_filters * grid * grid
        if not 1 <= n_components <= d:
            raise ValueError(f"n_components must be in [1, {d}], got {n_components}")
        self.n_components = int(n_components)
        self.gist = _Projection(d, self.n_components)
        g = torch.Generator().manual_seed(self.seed)
        q, _ = torch.linalg.qr(torch.randn(d, self.n_components, generator=g,
                                           dtype=torch.float64))
        self.gist.components.copy_(q.T.float())
        self.projection_ = "random"
        self.out_features = self.n_components

    def energies(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled Gabor energies [b, n_filters * grid^2]."""
        return self.pool(self.energy(x))

    @torch.no_grad()
    def fit_features(self, feats: torch.Tensor) -> "GIST":
        """Fit the PCA on pooled energies [n, d] (n >= 2); components beyond rank are zero."""
        feats = torch.as_tensor(feats, dtype=torch.float64)
        if feats.ndim != 2 or feats.shape[1] != self.gist.mean.numel() or feats.shape[0] < 2:
            raise ValueError(f"expected energies [n >= 2, {self.gist.mean.numel()}], "
                             f"got {tuple(feats.shape)}")
        mean = feats.mean(0)
        _, _, vh = torch.linalg.svd(feats - mean, full_matrices=False)
        comps = torch.zeros(self.n_components, feats.shape[1], dtype=torch.float64)
        k = min(self.n_components, vh.shape[0])
        comps[:k] = vh[:k]
        # sign convention: largest-magnitude loading positive (deterministic output)
        idx = comps[:k].abs().argmax(1)
        sgn = torch.sign(comps[torch.arange(k), idx])
        comps[:k] *= torch.where(sgn == 0, torch.ones_like(sgn), sgn)[:, None]
        self.gist.mean.copy_(mean.float())
        self.gist.components.copy_(comps.float())
        self.projection_ = "pca"
        self.n_fit_ = int(feats.shape[0])
        return self

    @torch.no_grad()
    def fit(self, images: torch.Tensor | Iterable[torch.Tensor], batch_size: int = 64) -> "GIST":
        """Fit the PCA on the energies of ``images`` ([n, 3, H, W] or an iterable of batches)."""
        batches = (images.split(batch_size) if isinstance(images, torch.Tensor) else images)
        feats = torch.cat([self.energies(b).double().cpu() for b in batches])
        return self.fit_features(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gist(self.energies(x))


class _RFF(nn.Module):
    def __init__(self, d_in: int, d: int, gamma: float, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(d_in, d, generator=g, dtype=torch.float64) * math.sqrt(2.0 * gamma)
        b = torch.rand(d, generator=g, dtype=torch.float64) * (2 * math.pi)
        # regenerated from the seed: kept out of the state dict (50 MB at the defaults)
        self.register_buffer("weight", w.float(), persistent=False)
        self.register_buffer("bias", b.float(), persistent=False)
        self.scale = math.sqrt(2.0 / d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.cos(x @ self.weight.to(x.dtype) + self.bias.to(x.dtype))


class _Pixels(nn.Module):
    def __init__(self, size: int, grayscale: bool) -> None:
        super().__init__()
        self.size = size
        self.grayscale = grayscale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_batch(x, "RandomFourierFeatures")
        if self.grayscale:
            x = _gray(x)
        elif x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return _resize(x, self.size).flatten(1)


class RandomFourierFeatures(nn.Module):
    """Random Fourier features of downsampled pixels (003 baseline 3). Output [b, d].

    ``gamma`` defaults to ``1 / (2 * 0.05 * n_pixels)``: with [0, 1] intensities of
    natural images (per-pixel variance about 0.05) that makes ``gamma ||x - y||^2`` of
    order 1 for typical image pairs. Children: ``pixels``, ``rff`` (the features).
    """

    layer_names = ["rff"]

    def __init__(self, d: int = 4096, seed: int = 0, size: int = 32,
                 gamma: float | None = None, grayscale: bool = False,
                 input_size: int = 64) -> None:
        super().__init__()
        if d < 1 or size < 1:
            raise ValueError(f"d and size must be positive, got d={d}, size={size}")
        self.input_size = int(input_size)
        self.seed = int(seed)
        n_in = (1 if grayscale else 3) * size * size
        self.gamma = float(gamma) if gamma is not None else 1.0 / (2 * 0.05 * n_in)
        if self.gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        self.pixels = _Pixels(int(size), bool(grayscale))
        self.rff = _RFF(n_in, int(d), self.gamma, self.seed)
        self.out_features = int(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rff(self.pixels(x))
