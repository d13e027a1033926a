"""cortexzoo.mapping.eigenspectrum: power laws recovered, PCA and cvPCA against numpy."""
from __future__ import annotations

import numpy as np
import pytest

from cortexzoo.mapping import eigenspectrum as E


def _population(alpha: float, n: int, d: int, seed: int) -> np.ndarray:
    """n samples of d features whose covariance has eigenvalues k^-alpha (random axes)."""
    rng = np.random.default_rng(seed)
    lam = np.arange(1, d + 1, dtype=float) ** -alpha
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (rng.normal(size=(n, d)) * np.sqrt(lam)) @ q.T


@pytest.mark.parametrize("alpha", [0.6, 1.0, 1.7])
def test_powerlaw_alpha_recovers_an_exact_power_law(alpha):
    lam = 3.0 * np.arange(1, 257, dtype=float) ** -alpha
    fit = E.powerlaw_fit(lam, (20, 200))
    assert fit.alpha == pytest.approx(alpha, abs=1e-12)
    assert fit.n_used == 181 and fit.intercept == pytest.approx(np.log(3.0))
    # only the window counts: a different head changes nothing
    lam2 = lam.copy()
    lam2[:19] = 100.0
    assert E.powerlaw_alpha(lam2) == pytest.approx(alpha, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.8, 1.0, 1.3])
def test_powerlaw_alpha_from_the_pca_of_a_sampled_population(alpha):
    X = _population(alpha, n=6000, d=512, seed=int(alpha * 10))
    lam = E.eigenspectrum(X, n_components=256)
    assert lam.shape == (256,)
    assert E.powerlaw_alpha(lam, (20, 200)) == pytest.approx(alpha, abs=0.05)


def test_eigenspectrum_is_the_pca_of_standardized_features():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 8)) @ rng.normal(size=(8, 8)) * np.arange(1, 9) + 5.0
    X[:, 2] = 1.0  # a constant dimension is dropped
    lam = E.eigenspectrum(X, n_components=256)
    Z = np.delete(X, 2, axis=1)
    Z = (Z - Z.mean(0)) / Z.std(0, ddof=1)
    ref = np.sort(np.linalg.eigvalsh(np.corrcoef(Z, rowvar=False)))[::-1]
    np.testing.assert_allclose(lam, ref, rtol=1e-10, atol=1e-12)
    assert lam.sum() == pytest.approx(7.0)
    # at most n - 1 components; wide data go through the SVD
    W = rng.normal(size=(10, 40))
    lw = E.eigenspectrum(W, n_components=256)
    assert lw.shape == (9,)
    Zw = (W - W.mean(0)) / W.std(0, ddof=1)
    np.testing.assert_allclose(lw, np.linalg.svd(Zw, compute_uv=False)[:9] ** 2 / 9, rtol=1e-10)
    assert E.eigenspectrum(X, n_components=3).shape == (3,)


def test_powerlaw_needs_two_points_in_the_window():
    assert np.isnan(E.powerlaw_alpha(np.arange(10, 0, -1.0), (20, 200)))
    with pytest.raises(E.EigenspectrumInputError):
        E.powerlaw_fit(np.ones(5), (0, 3))
    with pytest.raises(E.EigenspectrumInputError, match="features"):
        E.eigenspectrum(np.array([[1.0, np.nan], [2.0, 3.0]]))


def test_cvpca_removes_the_noise_floor_of_a_single_repeat():
    rng = np.random.default_rng(4)
    n, d, alpha = 2000, 200, 1.0
    signal = _population(alpha, n, d, seed=5)
    sig_var = np.sort(np.linalg.eigvalsh(np.cov(signal, rowvar=False)))[::-1]
    noise = 0.05
    r1 = signal + rng.normal(scale=np.sqrt(noise), size=(n, d))
    r2 = signal + rng.normal(scale=np.sqrt(noise), size=(n, d))
    cv = E.cvpca(r1, r2, n_components=100, n_shuffles=5, seed=0)
    plain = np.sort(np.linalg.eigvalsh(np.cov(r1, rowvar=False)))[::-1][:100]
    # single-repeat PCA sits on the noise floor (about `noise`) in the tail; cvPCA does not
    assert plain[60:100].min() > noise * 0.7
    np.testing.assert_allclose(cv[:10], sig_var[:10], rtol=0.1)
    assert np.abs(cv[60:100] - sig_var[60:100]).max() < 0.25 * noise
    assert E.powerlaw_alpha(cv, (5, 80)) == pytest.approx(alpha, abs=0.1)


def test_cvpca_without_shuffles_is_the_cross_covariance_on_repeat_one_axes():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(30, 6)), rng.normal(size=(30, 6))
    got = E.cvpca(a, b, n_shuffles=0)
    ac, bc = a - a.mean(0), b - b.mean(0)
    w, v = np.linalg.eigh(ac.T @ ac)
    v = v[:, ::-1]
    ref = np.array([(ac @ v[:, k]) @ (bc @ v[:, k]) for k in range(6)]) / 29
    np.testing.assert_allclose(got, ref, atol=1e-12)
    with pytest.raises(E.EigenspectrumInputError, match="differ"):
        E.cvpca(a, b[:20])
