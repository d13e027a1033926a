"""cortexzoo.mapping.tuning against closed forms and plain numpy/scipy written here."""
from __future__ import annotations

import numpy as np
import pytest

from cortexzoo.mapping import tuning as T


# ------------------------------------------------------------------------ gOSI


def test_gosi_of_a_von_mises_curve_is_its_closed_form():
    # r(theta) = exp(k cos(2 (theta - mu))): the baseline exp(-k) is subtracted, then
    # sum r e^{2i theta} / sum r over a dense uniform grid -> the continuous integrals
    # gOSI = I1(k) / (I0(k) - e^{-k}) (Bessel functions), preferred orientation mu
    from scipy.special import iv

    thetas = np.arange(720) * np.pi / 720
    for k, j in ((0.5, 69), (2.0, 275), (6.0, 665)):
        mu = thetas[j]  # on the grid, so the sampled minimum is exactly e^{-k}
        r = np.exp(k * np.cos(2 * (thetas - mu)))
        expect = iv(1, k) / (iv(0, k) - np.exp(-k))
        assert T.gosi(r, thetas) == pytest.approx(expect, rel=1e-6)
        assert T.preferred_orientation(r, thetas) == pytest.approx(mu, abs=1e-9)


def test_gosi_limits_and_invariances():
    thetas = np.arange(8) * np.pi / 8
    one_hot = np.zeros(8)
    one_hot[3] = 2.0
    assert T.gosi(one_hot, thetas) == pytest.approx(1.0)
    assert T.preferred_orientation(one_hot, thetas) == pytest.approx(thetas[3])
    flat = np.full(8, 0.7)
    assert np.isnan(T.gosi(flat, thetas))
    # a constant offset (signed features: negative too) does not change gOSI
    r = np.cos(2 * (thetas - 0.4)) + 0.2
    assert T.gosi(r - 5.0, thetas) == pytest.approx(T.gosi(r, thetas))
    # nor does a positive gain
    assert T.gosi(3 * r, thetas) == pytest.approx(T.gosi(r, thetas))
    with pytest.raises(T.TuningInputError, match="thetas"):
        T.gosi(np.ones((2, 8)), thetas[:5])


def test_gosi_on_random_curves_matches_plain_numpy():
    rng = np.random.default_rng(0)
    thetas = np.sort(rng.uniform(0, np.pi, 12))
    curves = rng.normal(size=(5, 7, 12))
    got = T.gosi(curves, thetas)
    assert got.shape == (5, 7)
    for i in range(5):
        for j in range(7):
            r = curves[i, j] - curves[i, j].min()
            num = np.hypot((r * np.cos(2 * thetas)).sum(), (r * np.sin(2 * thetas)).sum())
            assert got[i, j] == pytest.approx(num / r.sum(), rel=1e-12)


# ----------------------------------------------------------------------- F1/F0


def test_f1_f0_of_a_half_wave_rectified_sinusoid_is_pi_over_two():
    phases = np.arange(4096) * 2 * np.pi / 4096
    for phi0, amp in ((0.0, 1.0), (1.3, 4.0)):
        r = amp * np.maximum(0.0, np.cos(phases - phi0))
        assert T.f1_f0(r) == pytest.approx(np.pi / 2, rel=1e-6)
        assert T.preferred_phase(r) == pytest.approx(phi0, abs=1e-6)


def test_f1_f0_closed_forms():
    phases = np.arange(16) * 2 * np.pi / 16
    # a + b cos(phi): F0 = |a|, F1 = |b|
    for a, b in ((2.0, 1.0), (-3.0, 0.5), (1.0, 0.0)):
        r = a + b * np.cos(phases + 0.7)
        assert T.f1_f0(r) == pytest.approx(abs(b) / (abs(a) + 1e-8), rel=1e-9, abs=1e-12)
    # zero mean: F1 / 1e-8
    assert T.f1_f0(np.cos(phases)) == pytest.approx(1.0 / 1e-8, rel=1e-6)


def test_f1_f0_on_random_curves_matches_a_plain_dft():
    rng = np.random.default_rng(1)
    curves = rng.normal(size=(6, 8))
    n = 8
    k = np.arange(n)
    for r, got in zip(curves, T.f1_f0(curves)):
        c0 = r.sum() / n
        c1 = (r * np.exp(-2j * np.pi * k / n)).sum() / n
        assert got == pytest.approx(2 * abs(c1) / (abs(c0) + 1e-8), rel=1e-12)


# -------------------------------------------------------------- Naka-Rushton


@pytest.mark.parametrize("b,g,c50,n", [(0.1, 1.0, 0.2, 2.0), (-0.3, -2.0, 0.08, 1.3),
                                       (2.0, 0.5, 0.45, 3.5)])
def test_naka_rushton_fit_recovers_noise_free_parameters(b, g, c50, n):
    c = np.array([0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0])
    r = b + g * c ** n / (c ** n + c50 ** n)
    fit = T.fit_naka_rushton(c, r)
    assert bool(fit["success"])
    assert float(fit["r2"]) > 1 - 1e-9
    assert float(fit["b"]) == pytest.approx(b, abs=1e-4)
    assert float(fit["g"]) == pytest.approx(g, rel=1e-3)
    assert float(fit["c50"]) == pytest.approx(c50, rel=1e-3)
    assert float(fit["n"]) == pytest.approx(n, rel=1e-3)


def test_naka_rushton_fits_many_units_and_flags_flat_ones():
    c = np.array([0.0, 0.05, 0.1, 0.2, 0.4, 0.8])
    true = [(0.0, 1.0, 0.1, 2.0), (0.5, -1.0, 0.3, 1.5)]
    curves = np.stack([T.naka_rushton(c, *p) for p in true] + [np.full(6, 0.3)])
    fit = T.fit_naka_rushton(c, curves.reshape(3, 1, 6))
    assert fit["c50"].shape == (3, 1)
    np.testing.assert_allclose(fit["c50"][:2, 0], [0.1, 0.3], rtol=1e-3)
    assert not fit["success"][2, 0] and np.isnan(fit["r2"][2, 0])
    with pytest.raises(T.TuningInputError, match="contrasts"):
        T.fit_naka_rushton(c[:4], curves)


# ------------------------------------------------------------------------- DoG


def test_dog_fit_recovers_a_noise_free_curve_and_its_peak():
    sfs = np.geomspace(0.01, 0.3, 10)
    x = np.log2(sfs)
    truth = (0.2, 1.5, np.log2(0.06), 0.8, 0.6, np.log2(0.05), 1.6)
    r = T.dog_log_sf(x, *truth)
    fit = T.fit_dog_sf(sfs, r)
    assert bool(fit["success"]) and float(fit["r2"]) > 0.9999
    xd = np.linspace(x.min(), x.max(), 200)
    expect_peak = 2 ** xd[np.argmax(T.dog_log_sf(xd, *truth))]
    assert float(fit["pref_sf"]) == pytest.approx(expect_peak, rel=0.02)
    assert float(fit["pref_sf_sampled"]) == sfs[np.argmax(r)]
    np.testing.assert_allclose(T.dog_log_sf(x, *fit["params"]), r, atol=1e-3)


def test_dog_fit_recovers_a_single_gaussian_exactly():
    sfs = np.geomspace(0.01, 0.4, 12)
    x = np.log2(sfs)
    r = -0.1 + 2.0 * np.exp(-0.5 * ((x - np.log2(0.05)) / 0.9) ** 2)
    fit = T.fit_dog_sf(sfs, r)
    assert float(fit["pref_sf"]) == pytest.approx(0.05, rel=0.02)
    # half height of a Gaussian above its baseline: 2 sqrt(2 ln 2) sigma octaves
    # (measured above the fitted curve's minimum on the range, which is nearly the baseline)
    assert float(fit["bandwidth_octaves"]) == pytest.approx(2 * np.sqrt(2 * np.log(2)) * 0.9,
                                                            rel=0.05)
    assert float(fit["r2"]) > 1 - 1e-8


# ----------------------------------------------------------- grids and QC


def test_grid_curves_pick_the_preferred_bins_as_plain_indexing_does():
    rng = np.random.default_rng(2)
    R = rng.normal(size=(6, 4, 5, 3))
    c = T.grid_tuning_curves(R)
    for d in range(3):
        ori = R[..., d].mean(axis=(1, 2))
        io = int(np.argmax(ori))
        sf = R[io, :, :, d].mean(axis=0)
        isf = int(np.argmax(sf))
        np.testing.assert_allclose(c["orientation"][d], ori)
        assert c["pref_ori_index"][d] == io and c["pref_sf_index"][d] == isf
        np.testing.assert_allclose(c["sf"][d], sf)
        np.testing.assert_allclose(c["phase"][d], R[io, :, isf, d])


def test_qc_flags_follow_their_definitions():
    sfs = np.array([0.01, 0.02, 0.04, 0.08])
    curves = {"orientation": np.array([[0, 1.0], [0, 1e-5]]),
              "phase": np.array([[0, 1.0], [0, 1e-5]]),
              "sf": np.array([[0, 1.0], [0, 1e-5]]),
              "contrast": np.array([[0, 1.0], [0, 1e-5]])}
    dog = {"pref_sf": np.array([0.03, 0.5]), "pref_sf_sampled": np.array([0.04, 0.01]),
           "success": np.array([True, True]), "r2": np.array([0.9, 0.9])}
    nr = {k: np.array([1.0, 1.0]) for k in ("b", "g", "c50", "n")}
    nr.update(success=np.array([True, True]), r2=np.array([0.4, 0.9]))
    q = T.qc_flags(curves, np.array([0.3, 0.3]), np.array([np.nan, 1.0]), dog, nr, sfs)
    assert q["responsive"].tolist() == [True, False]
    assert q["qc_orientation"].tolist() == [True, False]
    assert q["qc_phase"].tolist() == [False, False]       # F1/F0 not finite
    assert q["qc_sf"].tolist() == [True, False]
    assert q["qc_contrast"].tolist() == [False, False]    # R^2 below 0.5


def _scipy_best_r2(fun, y, starts, lb, ub):
    from scipy.optimize import least_squares

    best = -np.inf
    for p0 in starts:
        res = least_squares(lambda p: fun(p) - y, np.clip(p0, lb + 1e-9, ub - 1e-9),
                            bounds=(lb, ub))
        best = max(best, 1 - (res.fun ** 2).sum() / ((y - y.mean()) ** 2).sum())
    return best


def test_naka_rushton_fits_of_noisy_curves_match_plain_scipy_fits():
    rng = np.random.default_rng(7)
    c = np.array([0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0])
    curves = np.stack([T.naka_rushton(c, rng.normal(), rng.normal(), rng.uniform(0.05, 0.6),
                                      rng.uniform(0.8, 4)) for _ in range(12)])
    curves += 0.05 * rng.normal(size=curves.shape)
    fit = T.fit_naka_rushton(c, curves)
    lb, ub = np.array([-np.inf, -np.inf, 0.002, 0.3]), np.array([np.inf, np.inf, 2.0, 8.0])
    for u, y in enumerate(curves):
        starts = [[y[0], y[-1] - y[0], c50, n] for c50 in (0.05, 0.2, 0.6) for n in (1.0, 2.5)]
        ref = _scipy_best_r2(lambda p: T.naka_rushton(c, *p), y, starts, lb, ub)
        assert fit["r2"][u] >= ref - 1e-3


def test_dog_fits_of_noisy_curves_match_plain_scipy_fits():
    """DoG-shaped noisy curves: as good as scipy's least_squares from six starts of its
    own; curves of any shape (random walks): as good in the median (both find local
    optima of a 7-parameter fit to 10 points)."""
    rng = np.random.default_rng(8)
    sfs = np.geomspace(0.01, 0.25, 10)
    x = np.log2(sfs)
    span = x.max() - x.min()
    dogs = np.stack([T.dog_log_sf(x, rng.normal(), rng.uniform(0.5, 2),
                                  rng.uniform(x.min(), x.max()),
                                  rng.uniform(0.3, 2), rng.uniform(0, 1.5),
                                  rng.uniform(x.min(), x.max()), rng.uniform(0.5, 3))
                     for _ in range(6)]) + 0.05 * rng.normal(size=(6, 10))
    walks = rng.normal(size=(6, 10)).cumsum(axis=1)
    lb = np.array([-np.inf, 0, x.min() - span, 0.05, 0, x.min() - span, 0.05])
    ub = np.array([np.inf, np.inf, x.max() + span, 4 * span, np.inf, x.max() + span, 4 * span])
    diffs = {}
    for name, curves in (("dog", dogs), ("walk", walks)):
        fit = T.fit_dog_sf(sfs, curves)
        d = []
        for u, y in enumerate(curves):
            k = int(np.argmax(y))
            starts = [[y.min(), np.ptp(y), x[k], s, ai, x[k], 2 * s]
                      for s in (span / 8, span / 4, span / 2) for ai in (0.0, np.ptp(y))]
            d.append(fit["r2"][u] - _scipy_best_r2(lambda p: T.dog_log_sf(x, *p), y, starts,
                                                    lb, ub))
        diffs[name] = np.array(d)
    assert diffs["dog"].min() >= -0.02
    assert np.median(diffs["walk"]) >= -0.005


def test_naka_rushton_flags_a_c50_pushed_to_its_bound():
    c = np.array([0.0, 0.1, 0.2, 0.4, 0.8])
    fit = T.fit_naka_rushton(c, np.stack([3.0 * c, T.naka_rushton(c, 0, 1, 0.2, 2)]))
    assert fit["c50_at_bound"].tolist() == [True, False]
    assert fit["c50"][0] == pytest.approx(1.6) and fit["r2"][0] > 0.999
