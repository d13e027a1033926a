"""Gabor / GIST / random Fourier feature baselines (cortexzoo.zoo.baselines_extra)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cortexzoo.zoo.baselines_extra import GIST, GaborBank, RandomFourierFeatures


def _grating(size: int, f: float, theta: float, phase: float = 0.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64),
                            torch.arange(size, dtype=torch.float64), indexing="ij")
    g = 0.5 + 0.4 * torch.cos(2 * math.pi * f * (xx * math.cos(theta) + yy * math.sin(theta))
                              + phase)
    return g.float()[None, None].expand(1, 3, size, size).clone()


def test_gabor_bank_shape_hook_and_orientation_tuning():
    m = GaborBank(size=64, n_orientations=4, frequencies=(0.25, 0.125))
    x = torch.rand(2, 3, 64, 64)
    seen = {}
    getattr(m, m.layer_names[0]).register_forward_hook(lambda mod, i, o: seen.update(o=o))
    out = m(x)
    assert out.shape == (2, 8 * 64) and m.out_features == 8 * 64
    assert torch.equal(seen["o"], out)
    assert torch.equal(m(x), out)                                 # deterministic
    # a grating at 0.125 cycles/px, 45 degrees (an exact frequency on the 64 grid)
    f = 0.125
    energies = m.energy(_grating(64, f, math.pi / 4))[0]          # [filters, H, W]
    mean_e = energies.mean(dim=(1, 2))
    assert int(mean_e.argmax()) == 1 * 4 + 1                      # freq index 1, orient 45 deg
    # quadrature pair: energy of a matched grating is flat in space (phase invariant)
    e = energies[5, 16:48, 16:48]
    assert float(e.std() / e.mean()) < 0.05
    # energy does not depend on the grating's phase
    e2 = m.energy(_grating(64, f, math.pi / 4, phase=1.3))[0, 5, 16:48, 16:48]
    assert torch.allclose(e, e2, rtol=0.05)


def test_gist_random_projection_is_orthonormal_and_pca_fit_matches_sklearn():
    from sklearn.decomposition import PCA

    m = GIST(n_components=16, size=32, n_orientations=4, frequencies=(0.25, 0.125), seed=3)
    C = m.gist.components.double()
    assert m.projection_ == "random" and m.layer_names == ["gist"]
    assert torch.allclose(C @ C.T, torch.eye(16, dtype=torch.float64), atol=1e-5)
    assert torch.equal(C, GIST(n_components=16, size=32, n_orientations=4,
                               frequencies=(0.25, 0.125), seed=3).gist.components.double())
    imgs = torch.rand(30, 3, 32, 32)
    m.fit(imgs, batch_size=7)
    assert m.projection_ == "pca"
    out = m(imgs).double().numpy()
    E = m.energies(imgs).double().numpy()
    ref = PCA(16, svd_solver="full").fit_transform(E)
    np.testing.assert_allclose(np.abs(out), np.abs(ref), atol=2e-3 * np.abs(ref).max())
    with pytest.raises(ValueError, match="n_components"):
        GIST(n_components=10**6, size=32)


def test_rff_deterministic_and_approximates_rbf_kernel():
    a = RandomFourierFeatures(d=64, seed=1, size=8)
    b = RandomFourierFeatures(d=64, seed=1, size=8)
    c = RandomFourierFeatures(d=64, seed=2, size=8)
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))
    assert a(x).shape == (4, 64) and a.layer_names == ["rff"]
    big = RandomFourierFeatures(d=40000, seed=0, size=4, gamma=0.05)
    z = big(x).double()
    px = big.pixels(x).double()
    k = torch.exp(-0.05 * torch.cdist(px, px) ** 2)
    assert float((z @ z.T - k).abs().max()) < 0.03
    with pytest.raises(ValueError, match="batch"):
        a(torch.rand(3, 16, 16))
