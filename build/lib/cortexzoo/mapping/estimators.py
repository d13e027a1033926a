"""Estimators with a scikit-learn face over the solvers in :mod:`.solvers`.

* :class:`GCVSolver` - decompose X once, then score any number of target matrices
  by exact leave-one-out (what the scan uses: one call per layer and region).
* :class:`RidgeGCV` - ridge with LOO alpha selection (matches sklearn ``RidgeCV``).
* :class:`KFoldRidge` - ridge with k-fold alpha search (matches sklearn
  ``RidgeCV(cv=KFold(k))``), optionally per target.
* :class:`PCARidge` - PCA then ridge (LOO or k-fold alpha).
* :class:`PLSRegression` - sklearn's PLS with Brain-Score's defaults (25 comps, no scaling).
* :class:`RidgeClassifierLOO` - ridge classifier, LOO alpha (matches ``RidgeClassifierCV``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from .backend import get_backend
from .solvers import (check_alphas, decompose, dual_predict, dual_to_coef, fit_coef,
                      loo_scan, project_validation)

__all__ = ["GCVSolver", "GCVResult", "RidgeGCV", "KFoldRidge", "PCARidge", "PLSRegression",
           "RidgeClassifierLOO", "MappingInputError"]


class MappingInputError(ValueError):
    """Bad input to a mapping estimator (shape mismatch, NaN, ...)."""


def _check_X(X: Any, name: str = "X") -> np.ndarray:
    if hasattr(X, "detach"):  # torch tensor
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim != 2:
        raise MappingInputError(f"{name} must be 2-D [n_samples, n_features], got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise MappingInputError(f"{name} must be numeric, got dtype {X.dtype}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise MappingInputError(f"{name} is empty: shape {X.shape}")
    if not np.isfinite(X).all():
        rows = np.where(~np.isfinite(X).all(axis=1))[0]
        raise MappingInputError(f"{name} has NaN/inf values in rows {rows[:10].tolist()}"
                                + (" ..." if rows.size > 10 else ""))
    return X


def _check_Y(Y: Any, n: int, name: str = "y") -> tuple[np.ndarray, bool]:
    """Return Y as 2-D and whether it was 1-D."""
    if hasattr(Y, "detach"):
        Y = Y.detach().cpu().numpy()
    Y = np.asarray(Y)
    was_1d = Y.ndim == 1
    if was_1d:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise MappingInputError(f"{name} must be 1-D or 2-D, got shape {Y.shape}")
    if Y.shape[0] != n:
        raise MappingInputError(f"{name} has {Y.shape[0]} samples but X has {n}")
    if not np.issubdtype(Y.dtype, np.number):
        raise MappingInputError(f"{name} must be numeric, got dtype {Y.dtype}")
    if not np.isfinite(Y).all():
        cols = np.where(~np.isfinite(Y).all(axis=0))[0]
        raise MappingInputError(f"{name} has NaN/inf values in target columns {cols[:10].tolist()}"
                                + (" ..." if cols.size > 10 else ""))
    return Y, was_1d


def _check_n_components(k: Any) -> None:
    if int(k) < 1:
        raise MappingInputError(f"n_components must be >= 1, got {k}")


def _linear_predict(est: Any, X: Any) -> np.ndarray:
    """X @ coef_.T + intercept_ of a fitted linear estimator, checking the feature count."""
    check_is_fitted(est, "coef_")
    X = _check_X(X)
    if X.shape[1] != est.n_features_in_:
        raise MappingInputError(f"X has {X.shape[1]} features, the model was fit with "
                                f"{est.n_features_in_}")
    return X @ est.coef_.T + est.intercept_


@dataclass
class GCVResult:
    """Per-target leave-one-out results at the chosen alpha."""

    alpha: np.ndarray            # [t]
    alpha_index: np.ndarray      # [t] index into the grid
    loo_mse: np.ndarray          # [t]
    pearson: np.ndarray          # [t] Pearson r(y, y_loo)
    ev: np.ndarray               # [t] explained variance of y_loo
    loo_predictions: np.ndarray | None = None   # [n, t]
    coef: np.ndarray | None = None              # [p, t]
    dual_coef: np.ndarray | None = None         # [n, t] (dual form; coef = Xc^T dual_coef)
    intercept: np.ndarray | None = None         # [t]
    n_refined: int = 0   # float32 mode: targets whose near-tied alphas were re-compared in float64


class GCVSolver:
    """Decompose X once; score any number of target matrices by exact LOO ridge.

    Parameters
    ----------
    X : array [n_samples, n_features]
    alphas : alpha grid (default ``logspace(-2, 6, 17)`` plus 1.0).
    fit_intercept : center X and Y; the intercept is unpenalized and re-fit in every LOO fold.
    backend : "numpy" or "torch"; dtype "float64" (exact) or "float32" (fast: float32
        arithmetic, with near-tied alphas re-compared in float64 so that alphas and r match
        float64); device: torch device ("cpu", "cuda", ...).
    mode : "auto" (primal SVD if n > p else dual Gram eigendecomposition), "primal", "dual".
    neuroid_batch_size : targets per batch (default: from a working budget of a quarter
        of the size of X plus Y, 4 to 64 MB; peak memory stays within 2x X plus Y).

    Examples
    --------
    >>> solver = GCVSolver(features)                     # one SVD / eigh
    >>> res_v1 = solver.loo(responses_v1)                # per-neuroid r, EV, alpha
    >>> res_lm = solver.loo(responses_lm)
    """

    def __init__(self, X: Any, alphas: Any = None, fit_intercept: bool = True,
                 backend: str = "numpy", dtype: str = "float64", device: str | None = None,
                 mode: str = "auto", neuroid_batch_size: int | None = None) -> None:
        X = _check_X(X)
        self.alphas = check_alphas(alphas)
        self.backend = get_backend(backend, dtype, device)
        self.neuroid_batch_size = neuroid_batch_size
        self.fit_intercept = fit_intercept
        # X goes in as is: the dual form converts and centers it a block at a time
        self.decomposition = decompose(X, self.backend, fit_intercept=fit_intercept, mode=mode)
        self.mode = self.decomposition.mode
        self.n_samples, self.n_features = X.shape

    def loo(self, Y: Any, alpha_per_target: bool = True, return_predictions: bool = True,
            return_coef: bool = False, return_dual: bool = False) -> GCVResult:
        """LOO scores of every column of Y ([n_samples, n_targets] or 1-D).

        ``return_dual`` (dual form only) returns dual coefficients [n, t] instead of
        forming the [p, t] coefficients (see :func:`.solvers.dual_to_coef`)."""
        Y, _ = _check_Y(Y, self.n_samples, "Y")
        out = loo_scan(self.decomposition, Y, self.alphas, self.backend,
                       alpha_per_target=alpha_per_target, batch_size=self.neuroid_batch_size,
                       return_predictions=return_predictions, return_coef=return_coef,
                       return_dual=return_dual)
        return GCVResult(alpha=out["alpha"], alpha_index=out["alpha_index"],
                         loo_mse=out["loo_mse"], pearson=out["pearson"], ev=out["ev"],
                         loo_predictions=out.get("loo_predictions"), coef=out.get("coef"),
                         dual_coef=out.get("dual_coef"),
                         intercept=out.get("intercept"), n_refined=int(out["n_refined"]))


class RidgeGCV(RegressorMixin, BaseEstimator):
    """Ridge regression with alpha chosen by exact leave-one-out (GCV), per target.

    Same LOO predictions and alphas as ``sklearn.linear_model.RidgeCV(alphas,
    alpha_per_target=True)`` (tested to 1e-6 in float64), much faster: one
    decomposition for every alpha and target, batched over targets, on numpy or torch.

    Attributes
    ----------
    alpha_ : float or array [t]; coef_ : [t, p] (or [p]); intercept_ : [t] (or float);
    loo_predictions_ : [n, t] (or [n]) at the chosen alpha; loo_pearson_, loo_ev_ : [t];
    best_score_ : minus the LOO mean squared error at the chosen alpha (sklearn's convention);
    mode_ : "primal" or "dual"; alphas_ : the grid used.
    dual_coef_ : [n, t] (or [n]), dual form only, with ``X_fit_`` (a reference to the X
        given to fit, not a copy, as in scikit-learn's ``KernelRidge``).

    In dual form (p >= n) the fit keeps the dual coefficients, n x t, and forms ``coef_``
    (p x t, larger) only on first access; ``predict`` works from the dual coefficients
    until then ((X_new X_fit^T) dual_coef_). A scoring user who reads only the LOO
    results never pays for the p x t coefficients.
    """

    def __init__(self, alphas: Any = None, alpha_per_target: bool = True,
                 fit_intercept: bool = True, backend: str = "numpy", dtype: str = "float64",
                 device: str | None = None, neuroid_batch_size: int | None = None,
                 mode: str = "auto") -> None:
        self.alphas = alphas
        self.alpha_per_target = alpha_per_target
        self.fit_intercept = fit_intercept
        self.backend = backend
        self.dtype = dtype
        self.device = device
        self.neuroid_batch_size = neuroid_batch_size
        self.mode = mode

    def fit(self, X: Any, y: Any) -> "RidgeGCV":
        X = _check_X(X)
        Y, was_1d = _check_Y(y, X.shape[0])
        for k in ("_coef", "dual_coef_", "X_fit_", "_x_mean"):   # a refit starts clean
            self.__dict__.pop(k, None)
        solver = GCVSolver(X, self.alphas, self.fit_intercept, self.backend, self.dtype,
                           self.device, self.mode, self.neuroid_batch_size)
        dual = bool(solver.decomposition.complete)
        res = solver.loo(Y, alpha_per_target=self.alpha_per_target, return_predictions=True,
                         return_coef=not dual, return_dual=dual)
        self.alphas_ = solver.alphas
        self.mode_ = solver.mode
        self.n_features_in_ = X.shape[1]
        t = Y.shape[1]
        shared = not self.alpha_per_target or was_1d
        if dual:
            self.dual_coef_ = res.dual_coef[:, 0] if was_1d else res.dual_coef
            self.X_fit_ = X
            xm = solver.decomposition.x_mean
            self._x_mean = None if xm is None else solver.backend.to_numpy(xm)
        else:
            self._coef = res.coef.T[0] if was_1d else res.coef.T
        if was_1d:
            self.intercept_ = float(res.intercept[0]) if self.fit_intercept else 0.0
            self.loo_predictions_ = res.loo_predictions[:, 0]
        else:
            self.intercept_ = res.intercept if self.fit_intercept else np.zeros(t)
            self.loo_predictions_ = res.loo_predictions
        self.alpha_ = float(res.alpha[0]) if shared else res.alpha
        self.loo_pearson_ = res.pearson
        self.loo_ev_ = res.ev
        self.loo_mse_ = res.loo_mse
        self.best_score_ = float(-res.loo_mse.mean()) if shared else -res.loo_mse
        return self

    @property
    def coef_(self) -> np.ndarray:
        coef = self.__dict__.get("_coef")
        if coef is None:
            if "dual_coef_" not in self.__dict__:   # unfitted: hasattr() is False
                raise AttributeError("'RidgeGCV' object has no attribute 'coef_'")
            d = self.dual_coef_
            coef = dual_to_coef(self.X_fit_, d[:, None] if d.ndim == 1 else d, self._x_mean,
                                self.backend, self.device)
            coef = coef[:, 0] if d.ndim == 1 else coef.T
            self._coef = coef
        return coef

    @coef_.setter
    def coef_(self, value: np.ndarray) -> None:
        self._coef = value

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "alpha_")
        if self.__dict__.get("_coef") is not None or "dual_coef_" not in self.__dict__:
            return _linear_predict(self, X)
        X = _check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise MappingInputError(f"X has {X.shape[1]} features, the model was fit with "
                                    f"{self.n_features_in_}")
        d = self.dual_coef_
        pred = dual_predict(X, self.X_fit_, d[:, None] if d.ndim == 1 else d, self._x_mean,
                            self.intercept_)
        return pred[:, 0] if d.ndim == 1 else pred


def _r2_cols(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-column R^2 as sklearn's r2_score(multioutput='raw_values') (constant y -> 1 or 0)."""
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - ss_res / ss_tot
    const = ss_tot == 0
    r2[const] = np.where(ss_res[const] == 0, 1.0, 0.0)
    return r2


class KFoldRidge(RegressorMixin, BaseEstimator):
    """Ridge with alpha chosen by k-fold cross-validation over a grid (paper 000).

    Each training fold is decomposed once and serves every alpha. With
    ``alpha_per_target=False`` and ``scoring="r2"`` the choice equals scikit-learn's
    ``RidgeCV(alphas, cv=KFold(n_splits, shuffle, random_state))`` (mean over folds of
    the target-averaged R^2). With ``alpha_per_target=True`` each target gets the alpha
    with the best mean-over-folds score of its own. The model is then refit on all data.

    Attributes: alpha_, coef_ [t, p], intercept_ [t], cv_scores_ [n_alphas, t]
    (mean over folds), alphas_.
    """

    def __init__(self, alphas: Any = None, n_splits: int = 5, shuffle: bool = False,
                 random_state: int | None = None, alpha_per_target: bool = False,
                 scoring: str = "r2", fit_intercept: bool = True, backend: str = "numpy",
                 dtype: str = "float64", device: str | None = None, mode: str = "auto") -> None:
        self.alphas = alphas
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state
        self.alpha_per_target = alpha_per_target
        self.scoring = scoring
        self.fit_intercept = fit_intercept
        self.backend = backend
        self.dtype = dtype
        self.device = device
        self.mode = mode

    def fit(self, X: Any, y: Any) -> "KFoldRidge":
        from sklearn.model_selection import KFold

        X = _check_X(X)
        Y, was_1d = _check_Y(y, X.shape[0])
        if self.scoring not in ("r2", "mse"):
            raise MappingInputError(f"scoring must be 'r2' or 'mse', got {self.scoring!r}")
        alphas = check_alphas(self.alphas)
        be = get_backend(self.backend, self.dtype, self.device)
        kf = KFold(self.n_splits, shuffle=self.shuffle,
                   random_state=self.random_state if self.shuffle else None)
        scores = np.zeros((alphas.size, Y.shape[1]))
        al = be.asarray(alphas)
        for tr, va in kf.split(X):
            dec = decompose(be.asarray(X[tr]), be, self.fit_intercept, self.mode)
            Bv, d = project_validation(dec, be.asarray(X[va]), be)
            Ytr = be.asarray(Y[tr])
            ymean = be.mean(Ytr, 0) if self.fit_intercept else None
            Yc = Ytr - ymean[None, :] if self.fit_intercept else Ytr
            Z = dec.U.T @ Yc
            yv = Y[va]
            for a in range(alphas.size):
                pred = Bv @ ((d / (dec.s2 + al[a]))[:, None] * Z)
                if self.fit_intercept:
                    pred = pred + ymean[None, :]
                pred = be.to_numpy(pred).astype(np.float64)
                if self.scoring == "r2":
                    scores[a] += _r2_cols(yv, pred)
                else:
                    scores[a] -= ((yv - pred) ** 2).mean(0)
        scores /= self.n_splits
        if self.alpha_per_target:
            idx = np.argmax(scores, axis=0)   # first best on ties
        else:
            idx = np.full(Y.shape[1], int(np.argmax(scores.mean(1))))
        alpha_t = alphas[idx]
        dec = decompose(be.asarray(X), be, self.fit_intercept, self.mode)
        coef, intercept = fit_coef(dec, Y, alpha_t, be)
        self.alphas_ = alphas
        self.cv_scores_ = scores
        self.n_features_in_ = X.shape[1]
        self.best_score_ = scores[idx, np.arange(Y.shape[1])]
        shared = not self.alpha_per_target or was_1d
        self.alpha_ = float(alpha_t[0]) if shared else alpha_t
        if was_1d:
            self.coef_, self.intercept_ = coef[:, 0], float(intercept[0])
        else:
            self.coef_, self.intercept_ = coef.T, intercept
        return self

    def predict(self, X: Any) -> np.ndarray:
        return _linear_predict(self, X)


class PCARidge(RegressorMixin, BaseEstimator):
    """PCA (fit on the training X) followed by ridge on the component scores.

    ``cv=None`` selects alpha by exact LOO (:class:`RidgeGCV`), an int by k-fold
    (:class:`KFoldRidge`). ``n_components`` is capped at ``min(n_samples, n_features)``.
    Equals ``make_pipeline(PCA(n_components), RidgeCV(alphas, ...))`` of scikit-learn.
    """

    def __init__(self, n_components: int = 1000, alphas: Any = None, cv: int | None = None,
                 alpha_per_target: bool = True, fit_intercept: bool = True,
                 backend: str = "numpy", dtype: str = "float64", device: str | None = None) -> None:
        self.n_components = n_components
        self.alphas = alphas
        self.cv = cv
        self.alpha_per_target = alpha_per_target
        self.fit_intercept = fit_intercept
        self.backend = backend
        self.dtype = dtype
        self.device = device

    def fit(self, X: Any, y: Any) -> "PCARidge":
        import scipy.linalg

        X = _check_X(X)
        _check_Y(y, X.shape[0])
        _check_n_components(self.n_components)
        k = int(min(self.n_components, X.shape[0], X.shape[1]))
        self.mean_ = X.mean(0)
        _, s, vt = scipy.linalg.svd(X - self.mean_, full_matrices=False, check_finite=False)
        self.components_ = vt[:k]
        self.explained_variance_ = s[:k] ** 2 / max(X.shape[0] - 1, 1)
        self.n_components_ = k
        self.n_features_in_ = X.shape[1]
        Xp = (X - self.mean_) @ self.components_.T
        if self.cv is None:
            self.ridge_ = RidgeGCV(self.alphas, self.alpha_per_target, self.fit_intercept,
                                   self.backend, self.dtype, self.device)
        else:
            self.ridge_ = KFoldRidge(self.alphas, n_splits=int(self.cv),
                                     alpha_per_target=self.alpha_per_target,
                                     fit_intercept=self.fit_intercept, backend=self.backend,
                                     dtype=self.dtype, device=self.device)
        self.ridge_.fit(Xp, y)
        self.alpha_ = self.ridge_.alpha_
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "components_")
        X = _check_X(X)
        return (X - self.mean_) @ self.components_.T

    def predict(self, X: Any) -> np.ndarray:
        return self.ridge_.predict(self.transform(X))


class PLSRegression(RegressorMixin, BaseEstimator):
    """Partial least squares, Brain-Score's baseline: 25 components, no scaling.

    A thin wrapper of ``sklearn.cross_decomposition.PLSRegression`` (same results);
    ``n_components`` is capped at ``n_features`` (recorded in ``n_components_``).
    """

    def __init__(self, n_components: int = 25, scale: bool = False, max_iter: int = 500,
                 tol: float = 1e-6) -> None:
        self.n_components = n_components
        self.scale = scale
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: Any, y: Any) -> "PLSRegression":
        from sklearn.cross_decomposition import PLSRegression as _PLS

        X = _check_X(X)
        _check_Y(y, X.shape[0])
        _check_n_components(self.n_components)
        self.n_components_ = int(min(self.n_components, X.shape[1]))
        self.pls_ = _PLS(n_components=self.n_components_, scale=self.scale,
                         max_iter=self.max_iter, tol=self.tol).fit(X, y)
        self.coef_ = self.pls_.coef_
        self.intercept_ = self.pls_.intercept_
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "pls_")
        return self.pls_.predict(_check_X(X))

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "pls_")
        return self.pls_.transform(_check_X(X))


class RidgeClassifierLOO(ClassifierMixin, BaseEstimator):
    """Ridge classifier with one alpha chosen by exact leave-one-out (decoding, 001).

    Targets are {-1, +1} one-vs-all codes (one column for two classes), as
    ``sklearn.linear_model.RidgeClassifierCV``, whose alpha, coefficients and
    decisions it reproduces.
    """

    def __init__(self, alphas: Any = None, fit_intercept: bool = True, backend: str = "numpy",
                 dtype: str = "float64", device: str | None = None, mode: str = "auto") -> None:
        self.alphas = alphas
        self.fit_intercept = fit_intercept
        self.backend = backend
        self.dtype = dtype
        self.device = device
        self.mode = mode

    def fit(self, X: Any, y: Any) -> "RidgeClassifierLOO":
        from sklearn.preprocessing import LabelBinarizer

        X = _check_X(X)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise MappingInputError(f"y must be 1-D with {X.shape[0]} labels, got shape {y.shape}")
        lb = LabelBinarizer(pos_label=1, neg_label=-1)
        Y = lb.fit_transform(y).astype(np.float64)
        if lb.classes_.size < 2:
            raise MappingInputError(f"need at least 2 classes, got {lb.classes_.tolist()}")
        solver = GCVSolver(X, self.alphas, self.fit_intercept, self.backend, self.dtype,
                           self.device, self.mode)
        res = solver.loo(Y, alpha_per_target=False, return_predictions=True, return_coef=True)
        self.classes_ = lb.classes_
        self.alpha_ = float(res.alpha[0])
        self.alphas_ = solver.alphas
        # shapes as scikit-learn's RidgeClassifierCV: coef_ [p] and intercept_ [1] for 2 classes
        self.coef_ = res.coef.T[0] if Y.shape[1] == 1 else res.coef.T
        self.intercept_ = res.intercept if self.fit_intercept else np.zeros(Y.shape[1])
        self.best_score_ = float(-res.loo_mse.mean())
        self.loo_decision_ = res.loo_predictions
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = _check_X(X)
        if self.coef_.ndim == 1:
            return X @ self.coef_ + self.intercept_[0]
        return X @ self.coef_.T + self.intercept_

    def predict(self, X: Any) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]
