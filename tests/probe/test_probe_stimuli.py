"""Probe stimulus generators (cortexzoo.data.probe_stimuli) against direct computations."""
from __future__ import annotations

import numpy as np
import pytest

from cortexzoo.data import probe_stimuli as S


def test_grating_is_the_formula_and_its_bars_run_perpendicular_to_theta():
    h, w = 20, 30
    img = S.grating(h, w, theta=0.6, sf=0.1, phase=1.1, contrast=0.5, mean=0.4)[0]
    r, c = 7, 22
    x, y = c - (w - 1) / 2, r - (h - 1) / 2
    expect = 0.4 * (1 + 0.5 * np.sin(2 * np.pi * 0.1 * (x * np.cos(0.6) + y * np.sin(0.6)) + 1.1))
    assert img[r, c] == pytest.approx(expect, abs=1e-6)
    # theta = 0: the luminance varies along x only
    g0 = S.grating(h, w, 0.0, 0.1, 0.0)[0]
    assert np.ptp(g0, axis=0).max() < 1e-6 and np.ptp(g0, axis=1).min() > 0.5
    gv = S.grating(h, w, np.pi / 2, 0.1, 0.0)[0]
    assert np.ptp(gv, axis=1).max() < 1e-6
    # clipped to [0, 1]
    hi = S.grating(h, w, 0.3, 0.1, 0.0, contrast=1.5, mean=0.8)
    assert hi.min() >= 0 and hi.max() <= 1 and hi.dtype == np.float32


def test_gaussian_blur_equals_scipy_with_reflected_edges():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    imgs = rng.random((3, 12, 17))
    out = S.gaussian_blur(imgs, np.array([0.0, 1.0, 2.0]))
    np.testing.assert_allclose(out[0], imgs[0], atol=1e-6)
    for k, s in ((1, 1.0), (2, 2.0)):
        ref = gaussian_filter(imgs[k], s, mode="reflect", truncate=3.0)
        np.testing.assert_allclose(out[k], ref, atol=1e-5)


def test_orientation_stimuli_are_seeded_balanced_and_in_their_bins():
    a = S.orientation_stimuli(83, 16, 24, seed=[0, 1], n_classes=8)
    b = S.orientation_stimuli(83, 16, 24, seed=[0, 1], n_classes=8)
    c = S.orientation_stimuli(83, 16, 24, seed=[0, 2], n_classes=8)
    np.testing.assert_array_equal(a["images"], b["images"])
    assert not np.array_equal(a["images"], c["images"])
    assert a["images"].shape == (83, 16, 24)
    assert np.bincount(a["labels"][:80], minlength=8).tolist() == [10] * 8
    lo, hi = a["labels"] * np.pi / 8, (a["labels"] + 1) * np.pi / 8
    assert ((a["theta"] >= lo) & (a["theta"] < hi)).all()
    ood = S.orientation_stimuli(200, 16, 24, seed=3, sf=(0.15, 0.2), contrast=(0.1, 0.2),
                                noise=(0.1, 0.12), blur=(1.5, 2.0), mean=(0.2, 0.3))
    for k, (lo_, hi_) in dict(sf=(0.15, 0.2), contrast=(0.1, 0.2), noise=(0.1, 0.12),
                              blur=(1.5, 2.0), mean=(0.2, 0.3)).items():
        assert lo_ <= ood[k].min() and ood[k].max() <= hi_, k
    # without blur and noise an image is exactly its grating
    clean = S.orientation_stimuli(5, 16, 24, seed=4, noise=(0, 0), blur=(0, 0))
    ref = S.grating(16, 24, clean["theta"], clean["sf"], clean["phase"], clean["contrast"],
                    clean["mean"])
    np.testing.assert_allclose(clean["images"], ref, atol=1e-6)
    with pytest.raises(S.StimulusError, match="sf"):
        S.orientation_stimuli(5, 16, 24, seed=0, sf=(0.3, 0.1))


def test_contrast_clips_flash_the_gabor_once_in_the_last_three_frames():
    present = np.array([True, False, True, True, False, True] * 5)
    contrast = np.where(present, 0.6, 0.0)
    d = S.contrast_detection_clips(present, contrast, 20, 30, seed=5, noise=(0, 0), blur=(0, 0))
    clips = d["clips"]
    assert clips.shape == (30, 5, 20, 30)
    assert (d["target_frame"][~present] == -1).all()
    assert set(d["target_frame"][present]) <= {2, 3, 4} and len(set(d["target_frame"][present])) > 1
    for i in range(30):
        for t in range(5):
            if present[i] and t == d["target_frame"][i]:
                g = S.gabor(20, 30, (0.5 * 19, 0.5 * 29), 0.12 * 20, d["sf"][i], d["theta"][i],
                            d["phase"][i])[0]
                np.testing.assert_allclose(clips[i, t], 0.5 + 0.5 * 0.6 * g, atol=1e-6)
            else:
                np.testing.assert_allclose(clips[i, t], 0.5, atol=1e-7)
    # noise: the pixel SD of a blank clip is its drawn noise level
    nz = S.contrast_detection_clips(np.zeros(4, bool), 0.0, 40, 40, seed=6, noise=(0.1, 0.1))
    assert nz["clips"].std() == pytest.approx(0.1, rel=0.03)


def test_rdk_coherent_dots_shift_by_the_speed_each_frame():
    n, h, w = 3, 12, 20
    right = S.rdk_clips(np.ones(n), np.zeros(n), h, w, seed=7, n_frames=6, lifetime=10 ** 6,
                        speed=1.0, density=0.1)
    assert right.shape == (n, 6, h, w) and set(np.unique(right)) <= {0.0, 1.0}
    for t in range(5):
        np.testing.assert_array_equal(right[:, t + 1], np.roll(right[:, t], 1, axis=-1))
    down = S.rdk_clips(np.ones(n), np.full(n, np.pi / 2), h, w, seed=7, n_frames=4,
                       lifetime=10 ** 6, speed=2.0, density=0.1)
    for t in range(3):
        np.testing.assert_array_equal(down[:, t + 1], np.roll(down[:, t], 2, axis=-2))
    # no coherence, or dots that live one frame: the next frame is no shift of this one
    for kw in (dict(coherence=np.zeros(n), lifetime=10 ** 6),
               dict(coherence=np.ones(n), lifetime=1)):
        c = S.rdk_clips(kw["coherence"], np.zeros(n), h, w, seed=8, n_frames=3,
                        lifetime=kw["lifetime"], density=0.1)
        assert not np.array_equal(c[:, 1], np.roll(c[:, 0], 1, axis=-1))
    lit = right[:, 0].reshape(n, -1).sum(axis=1)
    assert (lit <= round(0.1 * h * w)).all() and (lit > 0.5 * 0.1 * h * w).all()
    np.testing.assert_array_equal(
        S.rdk_clips([0.5], [0.0], h, w, seed=9), S.rdk_clips([0.5], [0.0], h, w, seed=9))


def test_chunk_clips_keeps_the_end_of_the_clip():
    clips = np.arange(2 * 12 * 2 * 2).reshape(2, 12, 2, 2)
    ch = S.chunk_clips(clips, 5)
    assert ch.shape == (2, 2, 5, 2, 2)
    np.testing.assert_array_equal(ch[:, -1], clips[:, 7:12])
    np.testing.assert_array_equal(ch[:, 0], clips[:, 2:7])
