"""Synthetic images and planted neuroids: the ground truth must be recoverable."""
from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict

from cortexzoo.data import DatasetError, load_dataset
from cortexzoo.data.synthetic import PLANTED_RATES, make_images, plant_responses, planted_dataset


def test_make_images_shape_determinism_variety():
    a = make_images(24, size=48, seed=3)
    assert a.shape == (24, 48, 48, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, make_images(24, size=48, seed=3))
    b = make_images(24, size=48, seed=4)
    assert np.mean(a != b) > 0.9
    x = a.reshape(24, -1).astype(np.float64)
    # images differ from one another: low pixel correlation between different images
    c = np.corrcoef(x)
    off = c[~np.eye(24, dtype=bool)]
    assert np.median(np.abs(off)) < 0.5
    # use most of the range, with contrast and mean colour varying from image to image
    assert a.min() < 30 and a.max() > 225
    assert x.std(axis=1).std() > 5 and a.reshape(24, -1, 3).mean(axis=1).std(axis=0).min() > 5
    # oriented structure varies: the dominant gradient orientation differs across images
    g = a.astype(np.float64).mean(axis=3)
    gy, gx = np.gradient(g, axis=(1, 2))
    ori = np.angle(np.sum((gx + 1j * gy) ** 2, axis=(1, 2))) / 2
    assert np.ptp(ori) > 1.5


def test_make_images_speed():
    t = time.perf_counter()
    make_images(100, size=224, seed=0)
    assert time.perf_counter() - t < 4.0  # ~0.4 s on an idle core; generous for shared CI


def low_rank_features(n: int, r: int, p: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, r)) @ rng.standard_normal((r, p)) + 3.0


def split_half_sb(resp: np.ndarray) -> np.ndarray:
    """Odd/even repetition halves, Pearson across stimuli, Spearman-Brown, per neuroid."""
    a, b = resp[:, 0::2].mean(axis=1), resp[:, 1::2].mean(axis=1)
    r = np.array([stats.pearsonr(a[:, j], b[:, j])[0] for j in range(resp.shape[2])])
    return 2 * r / (1 + r)


def test_planted_responses_reliable_and_linearly_recoverable():
    n, r, p = 300, 5, 40
    feats = low_rank_features(n, r, p, seed=1)
    assert np.linalg.matrix_rank(feats - feats.mean(0)) == r
    resp, rates = plant_responses(feats, n_neuroids=30, n_reps=12, mean_rate=8.0, seed=7)
    assert resp.shape == (n, 12, 30) and resp.dtype == np.float32
    assert rates.shape == (n, 30) and (rates > 0).all()
    np.testing.assert_allclose(rates.mean(axis=0), 8.0)
    # counts are Poisson around the rates: integer, mean ~ rate, variance ~ mean (Fano ~ 1)
    assert np.all(resp == np.round(resp)) and resp.min() >= 0
    np.testing.assert_allclose(resp.mean(axis=(0, 1)), rates.mean(axis=0), rtol=0.05)
    fano = resp.var(axis=1, ddof=1).mean() / resp.mean()
    assert 0.9 < fano < 1.1

    rel = split_half_sb(resp)
    assert np.median(rel) > 0.85

    # ridge from the features recovers the ground-truth rates out of sample
    pred = cross_val_predict(RidgeCV(alphas=np.logspace(-3, 3, 13)), feats, resp.mean(axis=1),
                             cv=KFold(5, shuffle=True, random_state=0))
    r_true = np.array([stats.pearsonr(pred[:, j], rates[:, j])[0] for j in range(30)])
    assert r_true.min() > 0.9, r_true

    # unrelated features do not predict them (the test can fail)
    noise = np.random.default_rng(9).standard_normal((n, p))
    pred0 = cross_val_predict(RidgeCV(alphas=np.logspace(-3, 3, 13)), noise, resp.mean(axis=1),
                              cv=KFold(5, shuffle=True, random_state=0))
    r0 = np.array([stats.pearsonr(pred0[:, j], rates[:, j])[0] for j in range(30)])
    assert np.median(r0) < 0.3


def test_planted_components_and_gain():
    feats = low_rank_features(200, 8, 30, seed=2)
    _, rates = plant_responses(feats, n_neuroids=25, n_components=2, seed=0, gain=1e-3)
    # near-linear regime (tiny gain): rates are affine in a 2-D drive, so their rank is ~2
    centred = rates - rates.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    assert s[2] / s[0] < 1e-2 < s[1] / s[0]
    # a large gain rectifies: many stimuli near zero rate, a poorer linear fit
    _, rect = plant_responses(feats, n_neuroids=25, seed=0, gain=8.0)
    _, lin = plant_responses(feats, n_neuroids=25, seed=0, gain=0.1)
    assert np.mean(rect < 1.0) > 0.3 and np.mean(lin < 1.0) < 0.05
    # determinism per seed
    np.testing.assert_array_equal(plant_responses(feats, seed=4)[0], plant_responses(feats, seed=4)[0])
    assert not np.array_equal(plant_responses(feats, seed=4)[1], plant_responses(feats, seed=5)[1])
    with pytest.raises(DatasetError, match="constant"):
        plant_responses(np.ones((10, 3)))
    with pytest.raises(DatasetError, match=r"shape \(10,\)"):
        plant_responses(np.ones(10))


def test_planted_dataset_roundtrip(tmp_path):
    imgs = make_images(12, size=32, seed=0)
    feats = imgs.reshape(12, -1)[:, ::50].astype(float)
    out = planted_dataset(str(tmp_path / "planted"), imgs, feats, n_neuroids=5, n_reps=3, seed=2,
                          meta_extra={"name": "planted_toy"})
    ds = load_dataset(out)
    assert ds.name == "planted_toy" and ds.regions == ["planted"]
    assert ds.neuroids["subject"].tolist() == ["s0", "s0", "s0", "s1", "s1"]
    resp, rates = plant_responses(feats, n_neuroids=5, n_reps=3, seed=2)
    np.testing.assert_array_equal(ds.responses, resp)
    np.testing.assert_array_equal(np.load(f"{out}/{PLANTED_RATES}"), rates)
    for i in (0, 11):
        np.testing.assert_array_equal(np.asarray(ds.read_image(i)), imgs[i])
    assert ds.meta["planted"]["seed"] == 2
