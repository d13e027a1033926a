"""The decoding math (paper 001) against independent references: a plain loop for 2AFC,
scikit-learn's StandardScaler + RidgeClassifierCV for the classifier, numpy's polyfit for
the log law, a closed-form log law for the matched-unit search."""
import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifierCV
from sklearn.preprocessing import StandardScaler

from cortexzoo.mapping import fit_ridge_classifier, log_fit, log_law, matched_units, two_afc
from cortexzoo.mapping.decode import DecodeInputError

ALPHAS = np.unique(np.r_[np.logspace(-2, 6, 17), 1.0])


def _loop_2afc(scores, labels):
    out = []
    for s, c in zip(scores, labels):
        trials = []
        for d in range(len(s)):
            if d == c:
                continue
            trials.append(1.0 if s[c] > s[d] else 0.5 if s[c] == s[d] else 0.0)
        out.append(sum(trials) / len(trials))
    return np.array(out)


@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_two_afc_equals_a_plain_loop_with_ties(n_classes):
    rng = np.random.default_rng(n_classes)
    scores = rng.integers(0, 3, size=(200, n_classes)).astype(float)  # many ties
    labels = rng.integers(0, n_classes, size=200)
    got = two_afc(scores, labels)
    want = _loop_2afc(scores, labels)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    assert np.any((want > 0) & (want < 1) & (want * 2 * (n_classes - 1) % 2 == 1))  # half points


def test_two_afc_cases_and_batches():
    s = np.array([[3.0, 1.0, 2.0], [1.0, 1.0, 1.0], [0.0, 5.0, 5.0]])
    np.testing.assert_allclose(two_afc(s, np.array([0, 2, 0])), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(two_afc(s, np.array([2, 1, 1])), [0.5, 0.5, 0.75])
    batch = np.stack([s, -s])
    lab = np.array([[0, 2, 0], [0, 2, 0]])
    np.testing.assert_allclose(two_afc(batch, lab), [[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]])
    with pytest.raises(DecodeInputError, match="out of range"):
        two_afc(s, np.array([0, 3, 0]))
    with pytest.raises(DecodeInputError, match="labels have shape"):
        two_afc(s, np.array([0, 1]))


def _data(rng, n, k, C, m=30):
    y = rng.integers(0, C, n)
    y[:C] = np.arange(C)  # every class present
    W = rng.normal(size=(C, k))
    X = W[y] * 0.7 + rng.normal(size=(n, k)) * rng.uniform(0.5, 3.0, size=k) + rng.normal(size=k) * 5
    Xt = rng.normal(size=(m, k)) * 2 + rng.normal(size=k)
    return X, y, Xt


@pytest.mark.parametrize("k", [1, 7, 60, 98, 99, 100, 400])
@pytest.mark.parametrize("C", [2, 4])
def test_classifier_equals_sklearn_ridgeclassifiercv(k, C):
    rng = np.random.default_rng(1000 * k + C)
    X, y, Xt = _data(rng, 100, k, C)
    sc = StandardScaler().fit(X)
    ref = RidgeClassifierCV(alphas=ALPHAS).fit(sc.transform(X), y)
    want = ref.decision_function(sc.transform(Xt))
    fit = fit_ridge_classifier(X, y, C, ALPHAS)
    assert fit.mode == ("primal" if k < 99 else "dual")
    assert fit.alpha[0] == ref.alpha_
    got = fit.decision_function(Xt)[0]
    if C == 2:  # scikit-learn keeps one column: the decision for class 1
        np.testing.assert_allclose(got[:, 1], want, atol=1e-9 * np.abs(want).max())
        np.testing.assert_allclose(got[:, 0], -want, atol=1e-9 * np.abs(want).max())
    else:
        np.testing.assert_allclose(got, want, atol=1e-9 * np.abs(want).max())
    np.testing.assert_array_equal(np.argmax(got, 1), np.searchsorted(ref.classes_, ref.predict(sc.transform(Xt))))


def test_batched_fits_equal_one_at_a_time_and_constant_units():
    rng = np.random.default_rng(5)
    Xs, ys = [], []
    for _ in range(6):
        X, y, _ = _data(rng, 40, 12, 3)
        X[:, 3] = 2.5  # a constant unit: StandardScaler keeps scale 1
        Xs.append(X)
        ys.append(y)
    batch = fit_ridge_classifier(np.stack(Xs), np.stack(ys), 3, ALPHAS, batch_bytes=1)  # chunks of 1
    for b in range(6):
        one = fit_ridge_classifier(Xs[b], ys[b], 3, ALPHAS)
        np.testing.assert_allclose(batch.coef[b], one.coef[0], atol=1e-12)
        sc = StandardScaler().fit(Xs[b])
        ref = RidgeClassifierCV(alphas=ALPHAS).fit(sc.transform(Xs[b]), ys[b])
        assert batch.alpha[b] == ref.alpha_
        np.testing.assert_allclose(Xs[b] @ batch.coef[b] + batch.intercept[b],
                                   ref.decision_function(sc.transform(Xs[b])), atol=1e-9)


def test_loo_errors_equal_explicit_leave_one_out():
    """The closed-form LOO error of every alpha equals refitting without each image
    (standardization fixed, as RidgeClassifierCV's LOO on standardized features)."""
    rng = np.random.default_rng(7)
    X, y, _ = _data(rng, 25, 6, 3)
    alphas = np.array([0.1, 3.0, 100.0])
    fit = fit_ridge_classifier(X, y, 3, alphas)
    Z = StandardScaler().fit_transform(X)
    Y = -np.ones((25, 3))
    Y[np.arange(25), y] = 1
    for a_i, a in enumerate(alphas):
        err = []
        for i in range(25):
            keep = np.arange(25) != i
            Zk, Yk = Z[keep], Y[keep]
            zm, ym = Zk.mean(0), Yk.mean(0)
            w = np.linalg.solve((Zk - zm).T @ (Zk - zm) + a * np.eye(6), (Zk - zm).T @ (Yk - ym))
            err.append(Y[i] - ((Z[i] - zm) @ w + ym))
        np.testing.assert_allclose(fit.loo_mse[0, a_i], np.mean(np.square(err)), rtol=1e-10)


def test_matched_units_finds_the_planted_k_of_a_log_law():
    a, b = 0.045, 0.52
    ks = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    acc = log_law(ks, a, b)
    for planted in (3.0, 17.3, 90.0, 300.0):
        ref = float(log_law(planted, a, b))
        assert matched_units(ks, acc, ref) == pytest.approx(planted, rel=1e-12)
    assert matched_units(ks, acc, 0.3) == 1.0          # reached at the grid's start
    assert np.isnan(matched_units(ks, acc, 0.99))      # never reached
    bumpy = np.array([0.6, 0.7, 0.65, 0.8])            # "first reaches"
    # 0.68 is first reached between 1 (0.6) and 10 (0.7) units: 80% of the way on log k
    assert matched_units([1, 10, 100, 1000], bumpy, 0.68) == pytest.approx(10 ** 0.8, rel=1e-12)
    with pytest.raises(DecodeInputError, match="ascending"):
        matched_units([4, 2, 8], [0.5, 0.6, 0.7], 0.55)


def test_log_fit_equals_polyfit():
    rng = np.random.default_rng(3)
    n = np.array([1, 2, 5, 10, 20, 50, 71])
    acc = 0.04 * np.log(n) + 0.55 + rng.normal(0, 0.01, n.size)
    a, b = log_fit(n, acc)
    pa, pb = np.polyfit(np.log(n), acc, 1)
    assert a == pytest.approx(pa, rel=1e-10) and b == pytest.approx(pb, rel=1e-10)
    assert float(log_law(12117, a, b)) == pytest.approx(pa * np.log(12117) + pb, rel=1e-10)
    with pytest.raises(DecodeInputError, match="2 distinct"):
        log_fit([5, 5], [0.6, 0.7])
