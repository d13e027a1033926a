"""Linear probes: L2-regularized logistic regression with the penalty chosen on validation.

The objective of :func:`fit_logistic` is the mean cross-entropy plus ``l2 / 2 * |W|^2``
(the intercepts are not penalized): a softmax over ``K`` logits for ``K > 2`` classes, a
single logit (binary cross-entropy) for 2 classes, as in paper 004 A.3. This is
scikit-learn's ``LogisticRegression(C=1 / (l2 * n))`` objective (tested against it). It is
minimized by full-batch L-BFGS with a strong-Wolfe line search in float64 on the
features' device (a GPU when the task has one).

:func:`fit_probe` fits every ``l2`` of a grid (largest first, each warm-started from the
previous solution) and keeps the one with the best validation accuracy (ties: the
lower validation cross-entropy). :func:`normalized_auc` is the area under a curve over
its x range divided by that range (0.5 is a chance-level 2-way curve).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch

__all__ = ["LogisticProbe", "fit_logistic", "fit_probe", "ProbeFit", "accuracy",
           "normalized_auc", "standardize"]


@dataclass
class LogisticProbe:
    """A fitted probe: ``W`` [d, K'] and ``b`` [K'] (K' = 1 for two classes)."""

    W: torch.Tensor
    b: torch.Tensor
    n_classes: int
    l2: float
    n_iter: int = 0

    def logits(self, X: torch.Tensor) -> torch.Tensor:
        return X.to(self.W) @ self.W + self.b

    def predict(self, X: torch.Tensor) -> np.ndarray:
        z = self.logits(X)
        pred = (z[:, 0] > 0).long() if self.n_classes == 2 else z.argmax(dim=1)
        return pred.cpu().numpy()

    def loss(self, X: torch.Tensor, y: torch.Tensor) -> float:
        """Mean cross-entropy (no penalty)."""
        return float(_ce(self.logits(X), y.to(self.W.device), self.n_classes))


def _ce(z: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    if n_classes == 2:
        return torch.nn.functional.binary_cross_entropy_with_logits(z[:, 0], y.to(z.dtype))
    return torch.nn.functional.cross_entropy(z, y)


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """L-BFGS on these small matrices is a long chain of tiny operations: on CPU one
    thread runs them several times faster than a pool that synchronizes at each."""
    if device.type != "cpu":
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _as_tensor(X: Any, device: torch.device | str | None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X)
    return t.to(device=device or t.device, dtype=torch.float64)


def fit_logistic(X: Any, y: Any, n_classes: int, l2: float, *,
                 init: LogisticProbe | None = None, max_iter: int = 300, tol: float = 1e-7,
                 device: torch.device | str | None = None) -> LogisticProbe:
    """Minimize mean cross-entropy + ``l2 / 2 * |W|^2`` over ``W``, ``b``.

    ``X`` [n, d] features, ``y`` [n] integer labels in ``0..n_classes-1``. L-BFGS stops
    after ``max_iter`` iterations, when no gradient entry exceeds ``tol`` or when the
    objective changes by less than ``tol / 1000`` in a step.
    """
    X = _as_tensor(X, device)
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).to(
        device=X.device, dtype=torch.long)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be [n, d] and y [n], got {list(X.shape)} and {list(y.shape)}")
    if n_classes < 2 or int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    k = 1 if n_classes == 2 else n_classes
    if init is not None:
        W = init.W.detach().clone().to(X).requires_grad_(True)
        b = init.b.detach().clone().to(X).requires_grad_(True)
    else:
        W = torch.zeros(X.shape[1], k, dtype=X.dtype, device=X.device, requires_grad=True)
        b = torch.zeros(k, dtype=X.dtype, device=X.device, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=int(max_iter), tolerance_grad=tol,
                            tolerance_change=1e-3 * tol, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _ce(X @ W + b, y, n_classes) + 0.5 * float(l2) * (W * W).sum()
        loss.backward()
        return loss

    with _one_thread(X.device):
        opt.step(closure)
    n_iter = int(opt.state[W].get("n_iter", 0))
    return LogisticProbe(W.detach(), b.detach(), n_classes, float(l2), n_iter)


def accuracy(pred: np.ndarray, y: Any) -> float:
    y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
    return float(np.mean(np.asarray(pred) == y)) if len(y) else float("nan")


@dataclass
class ProbeFit:
    """The chosen probe and the validation scores of every ``l2`` tried."""

    probe: LogisticProbe
    l2: float
    val_accuracy: float
    grid: list[dict[str, float]] = field(default_factory=list)


def fit_probe(X_train: Any, y_train: Any, X_val: Any, y_val: Any, n_classes: int,
              l2_grid: Sequence[float], *, max_iter: int = 300,
              device: torch.device | str | None = None) -> ProbeFit:
    """Fit a probe for each ``l2`` (largest first, warm starts) and keep the best on the
    validation split (accuracy, then cross-entropy)."""
    Xt, Xv = _as_tensor(X_train, device), _as_tensor(X_val, device)
    yt = torch.as_tensor(np.asarray(y_train), device=Xt.device, dtype=torch.long)
    yv = torch.as_tensor(np.asarray(y_val), device=Xv.device, dtype=torch.long)
    best, best_key, grid, prev = None, None, [], None
    for l2 in sorted({float(v) for v in l2_grid}, reverse=True):
        p = fit_logistic(Xt, yt, n_classes, l2, init=prev, max_iter=max_iter)
        with _one_thread(Xv.device):
            acc = accuracy(p.predict(Xv), yv)
            loss = p.loss(Xv, yv)
        grid.append({"l2": l2, "val_accuracy": acc, "val_loss": loss, "n_iter": p.n_iter})
        key = (acc, -loss if np.isfinite(loss) else -np.inf)
        if best_key is None or key > best_key:
            best, best_key = p, key
        prev = p
    return ProbeFit(best, best.l2, best_key[0], grid)


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Each array minus the training mean over the training SD (per feature; an SD of 0
    counts as 1), the statistics estimated once from ``train``."""
    mu = train.mean(axis=0)
    sd = train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return [(a - mu) / sd for a in (train, *others)]


def normalized_auc(x: Any, y: Any) -> float:
    """Trapezoidal area under ``y(x)`` divided by ``x[-1] - x[0]`` (x increasing): the
    curve's mean level over its range (1 for a perfect curve, 0.5 at 2-way chance)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.size < 2 or np.any(np.diff(x) <= 0):
        raise ValueError("normalized_auc needs >= 2 points with increasing x")
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0 / (x[-1] - x[0]))
