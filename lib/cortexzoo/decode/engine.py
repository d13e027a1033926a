"""Decoding one population at one unit count over every split: the unit of work.

A unit is (population, k). Its numbers: for each split ``s`` and draw ``d``, ``k`` units
(or sites) drawn uniformly without replacement from the population (a generator seeded
by the run's seed, the population's key and k, so a unit's draws do not depend on which
other units run, or where), features standardized on the split's training images, the
ridge classifier with alpha by leave-one-out (:func:`cortexzoo.mapping.decode.fit_ridge_classifier`,
all the unit's (split, draw) problems batched), decision values for the held-out and
out-of-domain images, and the mean 2AFC accuracy per domain. A unit's score file is
written by whichever process ran it (a Ray task on any node, or the driver), and its
existence marks the unit done.
"""
from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import numpy as np

from ..mapping.decode import fit_ridge_classifier, two_afc
from .splits import Splits

__all__ = ["decode_population", "unit_rows", "run_unit", "UnitRunner", "draw_seed"]

log = logging.getLogger("cortexzoo")

METHOD = "decode_2afc"
METRIC = "acc_2afc"


def draw_seed(seed: int, population_key: str, k: int) -> np.random.SeedSequence:
    h = hashlib.sha256(f"{seed}|{population_key}|{k}".encode()).digest()
    return np.random.SeedSequence([int.from_bytes(h[i:i + 4], "little") for i in range(0, 16, 4)])


def decode_population(X: np.ndarray, splits: Splits, k: int, draws: int, seed: int,
                      population_key: str, alphas: Any = None,
                      budget_bytes: int = 96 << 20, timings: dict | None = None,
                      return_units: bool = False) -> dict:
    """Accuracies of one population at ``k`` units over every split and draw.

    Returns ``{"acc": [S, D, n_domains], "alpha": [S, D], "draws": D}``; ``D = 1`` when
    ``k`` is the whole population (every draw would be the same). ``return_units`` adds
    ``"units"`` [S, D, k], the units each problem used. ``timings`` (a dict) accumulates
    seconds spent gathering features, fitting, deciding and scoring."""
    X = np.asarray(X)
    n, p = X.shape
    if not 1 <= k <= p:
        raise ValueError(f"k={k} units requested from a population of {p}")
    D = 1 if k == p else int(draws)
    S = splits.n_splits
    rng = np.random.default_rng(draw_seed(seed, population_key, k))
    C = len(splits.classes)
    nd = len(splits.domains)
    onehot = np.zeros((splits.test.shape[1], nd))
    onehot[np.arange(onehot.shape[0]), splits.test_domain] = 1.0
    onehot /= onehot.sum(0, keepdims=True)
    acc = np.empty((S * D, nd))
    alpha = np.empty(S * D)
    units = np.empty((S * D, k), dtype=np.int64) if return_units else None
    s_of = np.repeat(np.arange(S), D)
    rows_per = splits.train.shape[1] + splits.test.shape[1]
    step = max(1, int(budget_bytes // (8 * rows_per * k * 3)))
    t = timings if timings is not None else {}
    for b0 in range(0, S * D, step):
        sl = slice(b0, min(S * D, b0 + step))
        B = sl.stop - sl.start
        if k == p:
            c = np.broadcast_to(np.arange(p), (B, p))
        else:  # drawn in (split, draw) order, chunk after chunk: the same draws for any step
            c = np.stack([np.sort(rng.choice(p, k, replace=False)) for _ in range(B)])
        if units is not None:
            units[sl] = c
        t0 = time.perf_counter()
        tr_rows = splits.train[s_of[sl]]
        te_rows = splits.test[s_of[sl]]
        Xtr = X[tr_rows[:, :, None], c[:, None, :]].astype(np.float64)
        Xte = X[te_rows[:, :, None], c[:, None, :]].astype(np.float64)
        t1 = time.perf_counter()
        fit = fit_ridge_classifier(Xtr, splits.labels[tr_rows], C, alphas)
        t2 = time.perf_counter()
        scores = fit.decision_function(Xte)
        t3 = time.perf_counter()
        acc[sl] = two_afc(scores, splits.labels[te_rows]) @ onehot
        alpha[sl] = fit.alpha
        t4 = time.perf_counter()
        for name, dt in (("gather", t1 - t0), ("fit", t2 - t1), ("decide", t3 - t2), ("2afc", t4 - t3)):
            t[name] = t.get(name, 0.0) + dt
    out = {"acc": acc.reshape(S, D, nd), "alpha": alpha.reshape(S, D), "draws": D}
    if units is not None:
        out["units"] = units.reshape(S, D, k)
    return out


def unit_rows(res: dict, splits: Splits, k: int, population_size: int) -> list[dict]:
    """Score rows of one unit: one per domain (the training domain's held-out images first)."""
    acc = res["acc"]
    S, D, _ = acc.shape
    sizes = splits.block_sizes()
    rows = []
    for j, domain in enumerate(splits.domains):
        a = acc[:, :, j].ravel()
        rows.append({"domain": domain, "domain_role": "in_domain" if j == 0 else "out_of_domain",
                     "value": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
                     "k_units": int(k), "population_size": int(population_size),
                     "split_count": int(S), "n_draws": int(D), "n_stimuli": int(sizes[j]),
                     "alpha_median": float(np.median(res["alpha"]))})
    return rows


def run_unit(X: np.ndarray, splits: Splits, k: int, draws: int, seed: int, population: dict,
             alphas: Any, store, unit_key: str, common: dict) -> dict:
    """Decode one unit and write its score file; returns a short summary."""
    from ..store import make_score_rows

    t0 = time.time()
    res = decode_population(X, splits, k, draws, seed, population["key"], alphas)
    rows = unit_rows(res, splits, k, population["size"])
    table = make_score_rows(common, rows)
    store.write_scores(table, unit_key)
    return {"unit_key": unit_key, "population": population["name"], "k": int(k),
            "seconds": time.time() - t0, "in_domain": rows[0]["value"]}


class UnitRunner:
    """Runs units as they are submitted: in this process (``engine="local"``, at once), or
    as Ray tasks (one per unit, 1 CPU each, each writing its own score file), which run
    while the driver goes on (extracting the next model's features); :meth:`wait`
    collects every submitted unit and re-raises a failed one's error."""

    def __init__(self, engine: str, splits: Splits, draws: int, seed: int, alphas: Any, store,
                 progress: bool = True, address: str | None = None):
        from ..core.progress import Progress

        self.engine, self.splits, self.draws, self.seed = engine, splits, draws, seed
        self.alphas, self.store = alphas, store
        self.results: list[dict] = []
        self._pending: list = []
        self._bar = Progress(None, "decoding units", unit="unit", enabled=progress)
        self._ray = self._task = self._splits_ref = None
        if engine == "ray":
            from ..core.raysetup import remote_task

            # decoding is small ridge problems on CPUs: no GPU asked for
            self._ray, self._task = remote_task(run_unit, address, gpus=0)
            self._splits_ref = self._ray.put(splits)

    def put(self, X: np.ndarray):
        """What a job's ``X`` should be: the array, or its Ray object ref (put once)."""
        return self._ray.put(X) if self._ray is not None else X

    def submit(self, jobs: list[dict]) -> None:
        """``jobs``: dicts with ``X`` (from :meth:`put`), ``k``, ``population``, ``unit_key``,
        ``common``."""
        for j in jobs:
            args = (j["k"], self.draws, self.seed, j["population"], self.alphas, self.store,
                    j["unit_key"], j["common"])
            if self._ray is None:
                self._done(run_unit(j["X"], self.splits, *args))
            else:
                self._pending.append(self._task.remote(j["X"], self._splits_ref, *args))

    def _done(self, r: dict) -> None:
        self.results.append(r)
        self._bar.update(1, postfix=f"{r['population']} k={r['k']}")

    def wait(self) -> list[dict]:
        while self._pending:
            ready, self._pending = self._ray.wait(self._pending, num_returns=1)
            for ref in ready:
                self._done(self._ray.get(ref))
        return self.results

    def close(self) -> None:
        self._bar.close()
