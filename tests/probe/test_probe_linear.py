"""The linear probes against scikit-learn's logistic regression, and their helpers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from cortexzoo.probe.linear import fit_logistic, fit_probe, normalized_auc, standardize


def _data(n=300, d=12, k=4, seed=0, shift=1.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = rng.normal(size=(n, d))
    X[np.arange(n), y] += shift
    return X, y


@pytest.mark.parametrize("l2", [1e-3, 1e-1])
def test_softmax_probe_is_sklearns_multinomial_logistic_regression(l2):
    X, y = _data()
    p = fit_logistic(X, y, 4, l2, max_iter=500)
    sk = LogisticRegression(C=1.0 / (l2 * len(y)), tol=1e-12, max_iter=20000).fit(X, y)
    z = X @ p.W.numpy() + p.b.numpy()
    prob = np.exp(z - z.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(prob, sk.predict_proba(X), atol=2e-5)
    np.testing.assert_array_equal(p.predict(torch.as_tensor(X)), sk.predict(X))


def test_binary_probe_is_one_logit_logistic_regression():
    X, y = _data(k=2, seed=1, shift=0.5)
    l2 = 1e-2
    p = fit_logistic(X, y, 2, l2, max_iter=500)
    assert p.W.shape == (12, 1)
    sk = LogisticRegression(C=1.0 / (l2 * len(y)), tol=1e-12, max_iter=20000).fit(X, y)
    np.testing.assert_allclose(p.W.numpy()[:, 0], sk.coef_[0], atol=2e-5)
    assert float(p.b) == pytest.approx(float(sk.intercept_[0]), abs=2e-5)


def test_fit_probe_keeps_the_l2_with_the_best_validation_accuracy():
    X, y = _data(n=120, d=40, seed=2, shift=0.6)
    Xv, yv = _data(n=400, d=40, seed=3, shift=0.6)
    grid = [1e-4, 1e-2, 1.0, 30.0]
    fit = fit_probe(X, y, Xv, yv, 4, grid, max_iter=500)
    # each l2 fitted on its own from zero: same validation accuracies, same choice
    accs = {}
    for l2 in grid:
        pr = fit_logistic(X, y, 4, l2, max_iter=500).predict(torch.as_tensor(Xv))
        accs[l2] = float(np.mean(pr == yv))
    for g in fit.grid:
        assert g["val_accuracy"] == pytest.approx(accs[g["l2"]], abs=1.0 / len(yv) + 1e-12)
    best = max(accs.values())
    assert fit.val_accuracy == pytest.approx(best, abs=1.0 / len(yv) + 1e-12)
    assert accs[fit.l2] >= best - 1.0 / len(yv) - 1e-12
    assert [g["l2"] for g in fit.grid] == sorted(grid, reverse=True)


def test_normalized_auc_and_standardize():
    x = np.array([0.0, 0.25, 1.0])
    assert normalized_auc(x, [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    # y = x on [0, 1]: area 1/2; trapezoids are exact for a line
    assert normalized_auc(x, x) == pytest.approx(0.5)
    assert normalized_auc([1, 2, 4], [0, 1, 1]) == pytest.approx((0.5 + 2.0) / 3)
    with pytest.raises(ValueError):
        normalized_auc([1, 1], [0, 1])
    rng = np.random.default_rng(4)
    tr, te = rng.normal(3, 2, (50, 3)), rng.normal(0, 1, (10, 3))
    tr[:, 2] = 5.0
    a, b = standardize(tr, te)
    np.testing.assert_allclose(a[:, :2].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(a[:, :2].std(0), 1, atol=1e-12)
    np.testing.assert_allclose(b, (te - tr.mean(0)) / np.where(tr.std(0) > 0, tr.std(0), 1))
