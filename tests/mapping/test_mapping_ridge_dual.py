"""RidgeGCV in dual form keeps dual coefficients; coef_ and predict equal scikit-learn's."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import RidgeCV

from cortexzoo.mapping import GCVSolver, RidgeGCV
from cortexzoo.mapping.solvers import SolverInputError, dual_predict, dual_to_coef

ALPHAS = np.logspace(-2, 4, 9)


def _problem(n, p, t, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) + rng.normal(size=p) * 2
    W = rng.normal(size=(p, t)) * rng.uniform(0, 1, size=t)
    Y = X @ W / np.sqrt(p) + rng.normal(size=(n, t)) * rng.uniform(0.2, 3, size=t) + 5
    return X, Y


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_dual_fit_defers_coef_and_predicts_as_sklearn(backend):
    X, Y = _problem(30, 80, 6)
    Xn = np.random.default_rng(1).normal(size=(11, 80)) + 1.0
    sk = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X, Y)
    ours = RidgeGCV(alphas=ALPHAS, backend=backend).fit(X, Y)
    assert ours.mode_ == "dual" and ours.X_fit_ is X and ours.dual_coef_.shape == (30, 6)
    assert "_coef" not in ours.__dict__   # not formed by fit
    # predictions from the dual coefficients, before coef_ exists
    np.testing.assert_allclose(ours.predict(Xn), sk.predict(Xn), rtol=0, atol=1e-8)
    assert "_coef" not in ours.__dict__
    np.testing.assert_allclose(ours.coef_, sk.coef_, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.intercept_, sk.intercept_, rtol=0, atol=1e-8)
    assert ours.__dict__["_coef"] is ours.coef_   # formed once, then kept
    np.testing.assert_allclose(ours.predict(Xn), sk.predict(Xn), rtol=0, atol=1e-8)


def test_dual_coefficients_solve_the_kernel_system():
    # planted: the dual coefficients are (Kc + alpha I)^-1 yc, computed here by a solve
    X, Y = _problem(20, 50, 3, seed=2)
    ours = RidgeGCV(alphas=ALPHAS).fit(X, Y)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    for j in range(3):
        want = np.linalg.solve(Xc @ Xc.T + ours.alpha_[j] * np.eye(20), Yc[:, j])
        np.testing.assert_allclose(ours.dual_coef_[:, j], want, rtol=1e-8, atol=1e-10)


def test_dual_one_target_and_no_intercept():
    X, Y = _problem(25, 60, 1, seed=3)
    y = Y[:, 0]
    Xn = X[:7] * 0.5
    for fi in (True, False):
        sk = RidgeCV(alphas=ALPHAS, fit_intercept=fi).fit(X, y)
        ours = RidgeGCV(alphas=ALPHAS, fit_intercept=fi).fit(X, y)
        assert ours.dual_coef_.shape == (25,)
        np.testing.assert_allclose(ours.predict(Xn), sk.predict(Xn), rtol=0, atol=1e-8)
        np.testing.assert_allclose(ours.coef_, sk.coef_, rtol=0, atol=1e-8)
        assert ours.coef_.shape == (60,) and np.isclose(ours.intercept_, sk.intercept_)


def test_float32_dual_predict_close_to_float64():
    X, Y = _problem(40, 120, 5, seed=4)
    Xn = X[:9] + 0.1
    p64 = RidgeGCV(alphas=ALPHAS).fit(X, Y).predict(Xn)
    e32 = RidgeGCV(alphas=ALPHAS, dtype="float32").fit(X, Y)
    assert e32.dual_coef_.dtype == np.float32
    p32 = e32.predict(Xn)
    scale = np.abs(p64).max()
    assert np.abs(p32 - p64).max() < 1e-4 * scale
    np.testing.assert_allclose(Xn @ e32.coef_.T + e32.intercept_, p32, rtol=0,
                               atol=1e-4 * scale)


def test_refit_in_primal_form_drops_the_dual_state_and_unfitted_has_no_coef():
    est = RidgeGCV(alphas=ALPHAS)
    assert not hasattr(est, "coef_")
    with pytest.raises(NotFittedError):
        est.predict(np.zeros((2, 3)))
    X, Y = _problem(20, 40, 2)
    est.fit(X, Y)
    assert hasattr(est, "dual_coef_")
    X2, Y2 = _problem(50, 8, 2, seed=5)
    est.fit(X2, Y2)
    assert est.mode_ == "primal" and not hasattr(est, "dual_coef_")
    assert not hasattr(est, "X_fit_")
    sk = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X2, Y2)
    np.testing.assert_allclose(est.coef_, sk.coef_, rtol=0, atol=1e-8)
    with pytest.raises(ValueError, match="features"):
        est.predict(np.zeros((2, 40)))


def test_dual_model_pickles_and_clones():
    X, Y = _problem(20, 40, 3)
    est = RidgeGCV(alphas=ALPHAS).fit(X, Y)
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.predict(X[:4]), est.predict(X[:4]))
    np.testing.assert_array_equal(back.coef_, est.coef_)
    assert not hasattr(clone(est), "dual_coef_")
    with pytest.raises(ValueError, match="features"):
        est.predict(np.zeros((2, 39)))


def test_helpers_against_numpy():
    rng = np.random.default_rng(6)
    X, d, Xn = rng.normal(size=(15, 70)), rng.normal(size=(15, 4)), rng.normal(size=(6, 70))
    xm = rng.normal(size=70)
    W = (X - xm).T @ d
    np.testing.assert_allclose(dual_to_coef(X, d, xm), W, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dual_predict(Xn, X, d, xm, intercept=np.arange(4.0)),
                               Xn @ W + np.arange(4.0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dual_to_coef(X, d), X.T @ d, rtol=1e-12, atol=1e-12)


def test_solver_refuses_dual_coefficients_in_primal_form():
    X, Y = _problem(40, 10, 2)
    with pytest.raises(SolverInputError, match="dual form"):
        GCVSolver(X, ALPHAS).loo(Y, return_dual=True)
