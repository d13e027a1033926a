"""Scoring on the workers: one Ray task per (model, layer) unit.

A task reads its layer's reduced features from the feature cache (blocks written by the
model actors), scores them against the dataset's targets (shared once per scan through
the object store), and writes the unit's score and per-neuroid rows to the results
store itself; it returns only the number of rows. So the driver never holds features,
and a model's scoring runs while the next model is extracted. A worker that dies
mid-task loses that unit only: Ray runs the task again (the unit's files are written
atomically, so nothing is half written), and a killed scan resumes from the store.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..store import make_score_rows
from .scoring import score_layer

__all__ = ["write_unit", "score_task", "remote_score", "ScoringPool"]


def write_unit(X: np.ndarray, targets, scoring, store, unit_key: str, common: dict, layer: str,
               depth: float, neuroid_meta: dict) -> int:
    """Score one layer's features and write its unit (scores, per-neuroid rows)."""
    rows, per = score_layer(X, targets, scoring)
    for r in rows:
        r.update(layer=layer, relative_depth=float(depth), unit_key=unit_key)
    table = make_score_rows(common, rows)
    neuroids = None
    if per:
        neuroids = pd.concat([pd.DataFrame(b) for b in per], ignore_index=True).assign(
            layer=layer, **neuroid_meta)
    store.write_scores(table, unit_key, neuroids=neuroids)
    return len(table)


def score_task(targets, cache, feature_key: str, scoring, store, unit_key: str, common: dict,
               layer: str, depth: float, neuroid_meta: dict) -> tuple[int, dict]:
    """A scoring task: the layer's features from the cache, then :func:`write_unit`;
    returns (rows written, seconds spent reading and scoring+writing)."""
    import time

    t0 = time.perf_counter()
    X = cache.read(feature_key)
    if X is None:
        raise RuntimeError(f"the features of layer {layer!r} ({feature_key}) are not complete "
                           "in the feature cache")
    t1 = time.perf_counter()
    rows = write_unit(X, targets, scoring, store, unit_key, common, layer, depth, neuroid_meta)
    return rows, {"read_s": t1 - t0, "score_write_s": time.perf_counter() - t1}


_REMOTE = None


def remote_score(resources: dict, env: dict[str, str]):
    """The Ray remote function of :func:`score_task` with ``resources`` (num_cpus,
    num_gpus) and the workers' environment ``env`` (storage settings)."""
    import ray

    global _REMOTE
    if _REMOTE is None:
        _REMOTE = ray.remote(score_task)
    return _REMOTE.options(**resources, max_retries=3, retry_exceptions=False,
                           runtime_env={"env_vars": env}, name="cortexzoo-score")


class ScoringPool:
    """Scoring tasks kept to at most ``max_inflight`` at a time, fed from a queue by a
    thread of their own (the driver's thread is busy streaming the next model's
    extraction). Few tasks in flight means few worker processes, started once and
    reused: each new Ray worker pays its imports, which on small nodes cost more than the
    scoring itself. ``on_done(key, result or exception)`` is called for every task."""

    def __init__(self, remote, max_inflight: int, on_done, tail_inflight: int | None = None):
        import threading

        self.remote, self.max_inflight, self.on_done = remote, max(1, int(max_inflight)), on_done
        # once extraction is over its resources are free: the last units go wider
        self.tail_inflight = max(self.max_inflight, int(tail_inflight or 0))
        self._queue: list = []
        self._inflight: dict = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="cortexzoo-scoring", daemon=True)
        self._thread.start()

    def submit(self, key, *args) -> None:
        with self._lock:
            self._queue.append((key, args))
        self._wake.set()

    def _run(self) -> None:
        import ray

        while True:
            with self._lock:
                while self._queue and len(self._inflight) < self.max_inflight:
                    key, args = self._queue.pop(0)
                    self._inflight[self.remote.remote(*args)] = key
                refs = list(self._inflight)
                if not refs and not self._queue and self._closed:
                    return
            if not refs:
                self._wake.wait(0.2)
                self._wake.clear()
                continue
            ready, _ = ray.wait(refs, num_returns=1, timeout=0.2)
            for ref in ready:
                with self._lock:
                    key = self._inflight.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - the caller decides what it costs
                    result = e
                self.on_done(key, result)

    def close(self) -> None:
        """No more submissions: wait until every queued and running task has ended."""
        with self._lock:
            self._closed = True
            self.max_inflight = self.tail_inflight
        self._wake.set()
        self._thread.join()

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue) + len(self._inflight)
