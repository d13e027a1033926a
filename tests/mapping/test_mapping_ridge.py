"""RidgeGCV / GCVSolver / KFoldRidge / PCARidge / PLS / RidgeClassifierLOO vs scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.cross_decomposition import PLSRegression as SkPLS
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeClassifierCV, RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline

from cortexzoo.mapping import (GCVSolver, KFoldRidge, PCARidge, PLSRegression, RidgeClassifierLOO,
                               RidgeGCV)
from cortexzoo.mapping.solvers import default_alphas

ALPHAS = np.logspace(-2, 4, 9)


def _problem(n: int, p: int, t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) + rng.normal(size=p) * 2   # non-zero means: intercept matters
    W = rng.normal(size=(p, t)) * rng.uniform(0, 1, size=t)
    Y = X @ W / np.sqrt(p) + rng.normal(size=(n, t)) * rng.uniform(0.2, 3, size=t) + 5
    return X, Y


def _sklearn_loo(X, Y, alphas):
    """sklearn's LOO predictions [n, t, A] and per-target alphas."""
    sk = RidgeCV(alphas=alphas, alpha_per_target=True, store_cv_results=True,
                 scoring="neg_mean_squared_error").fit(X, Y)
    return sk, sk.cv_results_


def _brute_force_loo(X, y, alpha):
    n = X.shape[0]
    out = np.empty(n)
    for i in range(n):
        m = np.arange(n) != i
        xm, ym = X[m].mean(0), y[m].mean()
        Xc = X[m] - xm
        w = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y[m] - ym))
        out[i] = (X[i] - xm) @ w + ym
    return out


def test_default_alphas():
    a = default_alphas()
    np.testing.assert_array_equal(a, np.unique(np.r_[np.logspace(-2, 6, 17), 1.0]))
    assert a.size == 17 and 1.0 in a


@pytest.mark.parametrize("n,p,mode", [(40, 10, "primal"), (25, 60, "dual")])
def test_ridgegcv_matches_sklearn_loo(n, p, mode):
    X, Y = _problem(n, p, 7)
    sk, cv = _sklearn_loo(X, Y, ALPHAS)
    ours = RidgeGCV(alphas=ALPHAS).fit(X, Y)
    assert ours.mode_ == mode
    np.testing.assert_array_equal(ours.alpha_, sk.alpha_)
    idx = np.searchsorted(ALPHAS, sk.alpha_)
    sk_loo = cv[:, np.arange(Y.shape[1]), idx]
    np.testing.assert_allclose(ours.loo_predictions_, sk_loo, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours.coef_, sk.coef_, atol=1e-6)
    np.testing.assert_allclose(ours.intercept_, sk.intercept_, atol=1e-6)
    np.testing.assert_allclose(ours.predict(X[:5]), sk.predict(X[:5]), atol=1e-6)
    np.testing.assert_allclose(ours.best_score_, sk.best_score_, rtol=1e-8)
    # per-neuroid metrics of the LOO predictions, computed independently
    for j in range(Y.shape[1]):
        r = np.corrcoef(Y[:, j], sk_loo[:, j])[0, 1]
        ev = 1 - np.var(Y[:, j] - sk_loo[:, j]) / np.var(Y[:, j])
        assert abs(ours.loo_pearson_[j] - r) < 1e-8
        assert abs(ours.loo_ev_[j] - ev) < 1e-8


@pytest.mark.parametrize("n,p", [(30, 6), (12, 30)])
def test_ridgegcv_forced_mode_and_brute_force(n, p):
    X, Y = _problem(n, p, 3, seed=1)
    a = 3.0
    ref = _brute_force_loo(X, Y[:, 0], a)
    for mode in ("primal", "dual"):
        res = GCVSolver(X, alphas=[a], mode=mode).loo(Y)
        np.testing.assert_allclose(res.loo_predictions[:, 0], ref, atol=1e-8)


def test_ridgegcv_matches_sklearn_squared_errors_no_scorer():
    X, Y = _problem(30, 50, 4, seed=2)
    sk = RidgeCV(alphas=ALPHAS, alpha_per_target=True, store_cv_results=True).fit(X, Y)
    res = GCVSolver(X, alphas=ALPHAS).loo(Y)
    idx = np.searchsorted(ALPHAS, sk.alpha_)
    se = sk.cv_results_[:, np.arange(4), idx]
    np.testing.assert_allclose((Y - res.loo_predictions) ** 2, se, atol=1e-6)
    np.testing.assert_allclose(res.loo_mse, se.mean(0), rtol=1e-8)


def test_shared_alpha_and_1d_and_no_intercept():
    X, Y = _problem(35, 12, 5, seed=3)
    sk = RidgeCV(alphas=ALPHAS, alpha_per_target=False).fit(X, Y)
    ours = RidgeGCV(alphas=ALPHAS, alpha_per_target=False, neuroid_batch_size=2).fit(X, Y)
    assert ours.alpha_ == sk.alpha_
    np.testing.assert_allclose(ours.coef_, sk.coef_, atol=1e-8)
    sk1 = RidgeCV(alphas=ALPHAS).fit(X, Y[:, 1])
    o1 = RidgeGCV(alphas=ALPHAS).fit(X, Y[:, 1])
    assert o1.alpha_ == sk1.alpha_ and o1.coef_.shape == (12,)
    np.testing.assert_allclose(o1.coef_, sk1.coef_, atol=1e-8)
    assert abs(o1.intercept_ - sk1.intercept_) < 1e-8
    for n, p in [(35, 12), (10, 40)]:
        X, Y = _problem(n, p, 3, seed=4)
        sk0 = RidgeCV(alphas=ALPHAS, alpha_per_target=True, fit_intercept=False,
                      scoring="neg_mean_squared_error", store_cv_results=True).fit(X, Y)
        o0 = RidgeGCV(alphas=ALPHAS, fit_intercept=False).fit(X, Y)
        np.testing.assert_array_equal(o0.alpha_, sk0.alpha_)
        np.testing.assert_allclose(o0.coef_, sk0.coef_, atol=1e-8)
        idx = np.searchsorted(ALPHAS, sk0.alpha_)
        np.testing.assert_allclose(o0.loo_predictions_, sk0.cv_results_[:, np.arange(3), idx],
                                   atol=1e-8)


@pytest.mark.parametrize("n,p", [(40, 10), (20, 50), (200, 260)])
def test_torch_backend_equals_numpy(n, p):
    X, Y = _problem(n, p, 6, seed=5)
    a = GCVSolver(X, ALPHAS).loo(Y, return_coef=True)
    b = GCVSolver(X, ALPHAS, backend="torch").loo(Y, return_coef=True)
    np.testing.assert_array_equal(a.alpha, b.alpha)
    np.testing.assert_allclose(a.loo_predictions, b.loo_predictions, atol=1e-9)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-9)
    np.testing.assert_allclose(a.pearson, b.pearson, atol=1e-10)
    c = GCVSolver(X, ALPHAS, backend="torch", dtype="float32").loo(Y)
    assert c.loo_predictions.dtype == np.float32
    assert np.abs(c.pearson - a.pearson).max() < 1e-4


@pytest.mark.parametrize("n,chunk", [(300, 37), (130, None), (64, 10)])
def test_centered_gram_equals_numpy_in_both_backends(n, chunk):
    """The Gram matrix of centered X, accumulated over feature blocks (torch: over the
    lower block triangle only, then mirrored) equals Xc Xc^T."""
    from cortexzoo.mapping.backend import get_backend
    from cortexzoo.mapping.solvers import _centered_gram

    X, _ = _problem(n, 150, 1, seed=3)
    Xc = X - X.mean(0)
    want = Xc @ Xc.T
    for name in ("numpy", "torch"):
        be = get_backend(name, "float64")
        K = be.to_numpy(_centered_gram(X, be.asarray(X.mean(0)), be, chunk))
        np.testing.assert_allclose(K, want, rtol=1e-12, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_take_rows_equals_fancy_indexing(dtype):
    from cortexzoo.mapping.backend import get_backend

    x = np.random.default_rng(0).normal(size=(7, 5)).astype(dtype)
    for idx in (np.array([4, 0, 0, 6]), np.array([], dtype=np.int64), np.arange(7)):
        for name in ("numpy", "torch"):
            be = get_backend(name, dtype)
            got = be.to_numpy(be.take_rows(be.asarray(x), idx))
            np.testing.assert_array_equal(got, x[idx])


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_transpose_copy_is_a_new_array(name):
    """The solver centers the result in place: it must never alias the caller's Y."""
    from cortexzoo.mapping.backend import get_backend

    be = get_backend(name, "float64")
    Y = np.random.default_rng(1).normal(size=(6, 4))
    for src in (Y, Y[:, 1:3], Y[:, 2:3], be.asarray(Y), be.asarray(Y)[:, 2:3]):
        keep = be.to_numpy(src).copy()
        T = be.transpose_copy(src)
        np.testing.assert_array_equal(be.to_numpy(T), keep.T)
        T -= 1.0
        np.testing.assert_array_equal(be.to_numpy(src), keep)
    # float32 backend from float64 input: converted, same values
    be32 = get_backend(name, "float32")
    np.testing.assert_array_equal(be32.to_numpy(be32.transpose_copy(Y)), Y.T.astype(np.float32))


def test_batching_does_not_change_results():
    X, Y = _problem(30, 40, 9, seed=6)
    a = GCVSolver(X, ALPHAS).loo(Y)
    b = GCVSolver(X, ALPHAS, neuroid_batch_size=2).loo(Y)
    np.testing.assert_allclose(a.loo_predictions, b.loo_predictions, atol=1e-12)
    np.testing.assert_array_equal(a.alpha, b.alpha)


def test_solver_reuse_for_several_regions():
    X, Y = _problem(30, 40, 6, seed=7)
    solver = GCVSolver(X, ALPHAS)
    r1, r2 = solver.loo(Y[:, :2]), solver.loo(Y[:, 2:])
    full = solver.loo(Y)
    np.testing.assert_allclose(np.r_[r1.pearson, r2.pearson], full.pearson)


def test_bad_input_errors():
    X, Y = _problem(10, 4, 2)
    Yn = Y.copy()
    Yn[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"columns \[1\]"):
        RidgeGCV().fit(X, Yn)
    with pytest.raises(ValueError, match="samples"):
        RidgeGCV().fit(X, Y[:5])
    with pytest.raises(ValueError, match="alphas"):
        RidgeGCV(alphas=[1.0, -1.0]).fit(X, Y)
    with pytest.raises(ValueError, match="backend"):
        RidgeGCV(backend="jax").fit(X, Y)
    with pytest.raises(ValueError, match="mode"):
        RidgeGCV(mode="kernel").fit(X, Y)


def test_sklearn_api():
    from sklearn.base import clone
    est = RidgeGCV(alphas=ALPHAS, dtype="float32")
    assert clone(est).get_params()["dtype"] == "float32"
    est.set_params(backend="torch")
    X, Y = _problem(20, 5, 2)
    assert est.fit(X, Y).score(X, Y) > 0


@pytest.mark.parametrize("n,p", [(40, 8), (30, 60)])
def test_kfold_ridge_matches_sklearn(n, p):
    X, Y = _problem(n, p, 4, seed=8)
    cv = KFold(5)
    sk = RidgeCV(alphas=ALPHAS, cv=cv).fit(X, Y)
    ours = KFoldRidge(alphas=ALPHAS, n_splits=5).fit(X, Y)
    assert ours.alpha_ == sk.alpha_
    np.testing.assert_allclose(ours.coef_, sk.coef_, atol=1e-8)
    np.testing.assert_allclose(ours.predict(X), sk.predict(X), atol=1e-8)
    # per-target alpha: each target alone with sklearn's grid search
    per = KFoldRidge(alphas=ALPHAS, alpha_per_target=True, shuffle=True, random_state=0).fit(X, Y)
    for j in range(Y.shape[1]):
        skj = RidgeCV(alphas=ALPHAS, cv=KFold(5, shuffle=True, random_state=0)).fit(X, Y[:, j])
        assert per.alpha_[j] == skj.alpha_


def test_pca_ridge_matches_sklearn_pipeline():
    X, Y = _problem(40, 30, 3, seed=9)
    pipe = make_pipeline(PCA(10, svd_solver="full"),
                         RidgeCV(alphas=ALPHAS, alpha_per_target=True)).fit(X, Y)
    ours = PCARidge(n_components=10, alphas=ALPHAS).fit(X, Y)
    np.testing.assert_allclose(ours.predict(X[:7]), pipe.predict(X[:7]), atol=1e-8)
    np.testing.assert_array_equal(ours.alpha_, pipe[-1].alpha_)
    pk = PCARidge(n_components=10, alphas=ALPHAS, cv=5, alpha_per_target=False).fit(X, Y)
    pipe_k = make_pipeline(PCA(10, svd_solver="full"), RidgeCV(alphas=ALPHAS, cv=KFold(5))).fit(X, Y)
    np.testing.assert_allclose(pk.predict(X[:7]), pipe_k.predict(X[:7]), atol=1e-8)


def test_pls_matches_sklearn():
    X, Y = _problem(40, 30, 3, seed=10)
    ours = PLSRegression().fit(X, Y)
    assert ours.n_components_ == 25
    sk = SkPLS(n_components=25, scale=False).fit(X, Y)
    np.testing.assert_allclose(ours.predict(X), sk.predict(X), atol=1e-10)
    small = PLSRegression().fit(X[:, :5], Y)   # capped at n_features
    assert small.n_components_ == 5


@pytest.mark.parametrize("n_classes,p", [(2, 10), (4, 10), (3, 80)])
def test_ridge_classifier_matches_sklearn(n_classes, p):
    rng = np.random.default_rng(11)
    n = 45
    y = rng.integers(0, n_classes, size=n)
    X = rng.normal(size=(n, p)) + y[:, None] * rng.normal(size=p) * 0.5
    labels = np.array(["cat", "dog", "car", "face"])[y]
    sk = RidgeClassifierCV(alphas=ALPHAS).fit(X, labels)
    ours = RidgeClassifierLOO(alphas=ALPHAS).fit(X, labels)
    assert ours.alpha_ == sk.alpha_
    np.testing.assert_allclose(ours.coef_, sk.coef_, atol=1e-8)
    np.testing.assert_allclose(ours.decision_function(X), sk.decision_function(X), atol=1e-8)
    np.testing.assert_array_equal(ours.predict(X), sk.predict(X))


@pytest.mark.parametrize("n,p", [(60, 20), (30, 90)])
def test_dense_grid_pruning_is_exact(n, p):
    # a dense grid makes neighbouring alphas' LOO errors close: the bound-based
    # pruning must still find sklearn's exact per-target choice
    X, Y = _problem(n, p, 40, seed=12)
    alphas = np.logspace(-3, 5, 60)
    sk = RidgeCV(alphas=alphas, alpha_per_target=True).fit(X, Y)
    for backend in ("numpy", "torch"):
        res = GCVSolver(X, alphas, backend=backend, neuroid_batch_size=7).loo(Y)
        np.testing.assert_array_equal(res.alpha, sk.alpha_)
        np.testing.assert_allclose(res.loo_mse, -sk.best_score_, rtol=1e-9)


@pytest.mark.parametrize("n,p", [(80, 12), (30, 70)])
def test_pruning_exact_for_nearly_noise_free_targets(n, p):
    # targets almost inside span(X): the part outside span(U) is bounded from
    # ||Yc||^2 - ||Z||^2 (never formed), where rounding matters most
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, p)) + 1.0
    noise = np.r_[0.0, 1e-12, 1e-9, 1e-6, 1e-3, 1e-1, 1.0, 10.0]
    Y = X @ rng.normal(size=(p, noise.size)) + rng.normal(size=(n, noise.size)) * noise + 3
    alphas = np.logspace(-4, 4, 33)
    sk = RidgeCV(alphas=alphas, alpha_per_target=True, store_cv_results=True).fit(X, Y)
    exhaustive = sk.cv_results_.mean(0)              # [t, A] LOO MSE of every alpha
    res = GCVSolver(X, alphas, neuroid_batch_size=3).loo(Y)
    np.testing.assert_array_equal(res.alpha_index, exhaustive.argmin(1))
    np.testing.assert_allclose(res.loo_mse, exhaustive.min(1), rtol=1e-6, atol=1e-20)
