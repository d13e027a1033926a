"""The image parameterization and the random warps, against numpy and torch references."""
import math
import os

import numpy as np
import pytest
import torch

from cortexzoo.control.augment import Augment, affine_warp
from cortexzoo.control.fourier import COLOR_SQRT, FourierImage, spectrum_frequencies


def _photo(size=64):
    """A real photo (scikit-learn ships two), resized, as [1, 3, S, S] in [0, 1]."""
    import sklearn
    from PIL import Image

    path = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images", "china.jpg")
    img = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize("size", [(64, 64), (48, 37)])
def test_a_seed_comes_back_as_itself(size):
    h, w = size
    photo = _photo(max(h, w))[..., :h, :w]
    noise = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    images = torch.cat([photo, noise])
    p = FourierImage.from_images(images)
    out = p()
    # exact up to the clamp of the logit's domain (eps = 0.005)
    inside = (images >= p.eps) & (images <= 1 - p.eps)
    torch.testing.assert_close(out[inside], images[inside], atol=2e-5, rtol=0)
    assert (out - images).abs().max() <= p.eps + 1e-5
    u8 = (images * 255).round()
    assert ((out * 255).round() - u8).abs().max() <= 1   # one grey level at most, at 0 and 255
    # the parameters are those of numpy's FFT of the decorrelated logits, divided by the scale
    lin = np.einsum("ij,bjhw->bihw", np.linalg.inv(COLOR_SQRT),
                    torch.logit(images.clamp(p.eps, 1 - p.eps)).double().numpy())
    ref = np.fft.rfft2(lin, norm="ortho") / p.scale.double().numpy()
    got = torch.view_as_complex(p.spectrum.detach()).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


def test_frequency_grid_is_numpys():
    f = spectrum_frequencies(10, 7).numpy()
    fy, fx = np.meshgrid(np.fft.fftfreq(10), np.fft.rfftfreq(7), indexing="ij")
    np.testing.assert_allclose(f, np.hypot(fx, fy))


def _radial_amplitude(img: np.ndarray):
    """Mean amplitude of numpy's 2-D FFT per integer radius (cycles per image)."""
    h, w = img.shape
    a = np.abs(np.fft.fft2(img))
    fy, fx = np.meshgrid(np.fft.fftfreq(h) * h, np.fft.fftfreq(w) * w, indexing="ij")
    r = np.round(np.hypot(fx, fy)).astype(int)
    radii = np.arange(2, h // 2 - 2)
    return radii, np.array([a[r == k].mean() for k in radii])


@pytest.mark.parametrize("decay", [1.0, 1.5])
def test_white_parameters_give_the_chosen_one_over_f_spectrum(decay):
    """Random parameters, small enough that the sigmoid is linear: the image's radially
    averaged amplitude spectrum (numpy) falls as 1/f**decay (log-log slope)."""
    torch.manual_seed(0)
    p = FourierImage(16, 64, 64, decay=decay)
    with torch.no_grad():
        p.spectrum.normal_(0, 0.01)
        img = (p() - 0.5).double().numpy()           # ~ logits / 4
    amp = np.mean([_radial_amplitude(img[b, c])[1] for b in range(16) for c in range(3)], axis=0)
    radii = _radial_amplitude(img[0, 0])[0]
    slope = np.polyfit(np.log(radii), np.log(amp), 1)[0]
    assert slope == pytest.approx(-decay, abs=0.08)
    # the colour decorrelation: channels of a white spectrum come out correlated as C C^T
    flat = img.transpose(1, 0, 2, 3).reshape(3, -1)
    cc = np.corrcoef(flat)
    cov = COLOR_SQRT @ COLOR_SQRT.T
    ref = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    np.testing.assert_allclose(cc, ref, atol=0.03)


def test_gradients_reach_the_spectrum():
    p = FourierImage.from_images(_photo(32))
    (p()[:, 0, 10:20, 10:20].sum()).backward()
    g = p.spectrum.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_warps_match_exact_references():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    zero, one = torch.zeros(2, 2), torch.ones(2)
    torch.testing.assert_close(affine_warp(x, zero, one, torch.zeros(2)), x)
    # a shift by whole pixels moves the image by that many pixels (inside the border)
    y = affine_warp(x, torch.tensor([[1.0, 2.0]] * 2), one, torch.zeros(2))
    torch.testing.assert_close(y[..., 2:, 1:], x[..., :-2, :-1])
    # a quarter turn is numpy's rot90 (clockwise as displayed)
    y = affine_warp(x, zero, one, torch.full((2,), math.pi / 2))
    np.testing.assert_allclose(y.numpy(), np.rot90(x.numpy(), k=-1, axes=(2, 3)), atol=1e-6)
    # zooming in 2x about the centre: the centre pixel's neighbourhood spreads out
    y = affine_warp(x, zero, torch.full((2,), 2.0), torch.zeros(2))
    c = x[..., 7:9, 7:9].mean(dim=(-1, -2))
    torch.testing.assert_close(y[..., 7:9, 7:9].mean(dim=(-1, -2)), c, atol=0.2, rtol=0)


def test_augment_is_seeded_shared_and_differentiable():
    x = torch.rand(3, 3, 24, 24, requires_grad=True)
    aug = Augment(jitter=0.1, scale=0.1, degrees=10)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, x)
    # shared: every image of the batch sees the same warp
    same = aug(x[:1].expand(3, -1, -1, -1), torch.Generator().manual_seed(7))
    torch.testing.assert_close(same[0], same[2])
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert Augment(0, 0, 0)(x, torch.Generator()) is x
