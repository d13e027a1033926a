"""The feature cache: reduced features of (model, layer) on one stimulus set, kept in a
results store, so that a scan killed while scoring does not extract again, and so that
any stage (scan, decoding, control) can reuse what another extracted.

Layout, per (stimulus set, model, weights, layer, presentation, reduction)::

    features/<key>/<chunk>.npz     rows ``idx`` of the stimulus set and their features
    features/<key>/index.json      {"n": n_stimuli, "blocks": [chunk, ...]}

Model actors write blocks as they go (a chunk of stimuli per block, named by the chunk's
row indices), so no process ever gathers a layer for all stimuli while extracting; the
driver writes ``index.json`` once every stimulus is covered, which marks the features
complete. A block left by a killed run and not listed is ignored (and overwritten by
the same chunk, under the same name). A reader assembles one layer at a time.

The cache works through any object with ``put_bytes``, ``get_bytes``, ``put_json`` and
``get_json`` (a :class:`cortexzoo.store.ResultStore`), so this stage does not import the
store. What a cached array depends on, and therefore its key, is described in
:func:`cortexzoo.core.cache_key.features_key`.
"""
from __future__ import annotations

import hashlib
import io
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..core.cache_key import features_key

if TYPE_CHECKING:  # a scoring task reads the cache without importing torch
    from .reduce import ReductionConfig

__all__ = ["FeatureCache", "FEATURES_VERSION", "chunk_name"]

#: Part of every feature cache key: bump when extraction changes the numbers.
FEATURES_VERSION = "3"  # 3: blocks per chunk of stimuli


class BlobStore(Protocol):
    def get_bytes(self, relpath: str) -> bytes | None: ...
    def put_bytes(self, relpath: str, data: bytes) -> Any: ...
    def get_json(self, relpath: str) -> Any: ...
    def put_json(self, relpath: str, obj: Any) -> Any: ...


def chunk_name(idx: np.ndarray) -> str:
    """The name of the block of rows ``idx``: the same rows, the same name."""
    return "c" + hashlib.sha1(np.ascontiguousarray(idx, dtype=np.int64).tobytes()).hexdigest()[:16]


class FeatureCache:
    """Reduced features of one stimulus set (identified by ``dataset_fingerprint``, with
    ``n_stimuli`` rows), stored under ``features/`` of ``store``. Cheap to pickle (Ray
    actors and tasks get it)."""

    def __init__(self, store: BlobStore, dataset_fingerprint: str, n_stimuli: int):
        self.store, self.fingerprint, self.n_stimuli = store, dataset_fingerprint, int(n_stimuli)

    def key(self, model_id: str, layer: str, reduction: "ReductionConfig",
            preprocessing: dict[str, Any]) -> str:
        return features_key(self.fingerprint, model_id, layer, preprocessing, reduction,
                            FEATURES_VERSION)

    # ---------------------------------------------------------------- blocks
    def put_block(self, key: str, idx: np.ndarray, features: np.ndarray) -> str:
        """Write the features of rows ``idx`` (atomically); returns the block's name."""
        idx = np.asarray(idx, dtype=np.int64)
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[0] != idx.size:
            raise ValueError(f"block of {idx.size} rows got features of shape {features.shape}")
        name = chunk_name(idx)
        buf = io.BytesIO()
        np.savez(buf, idx=idx, features=features)
        self.store.put_bytes(f"features/{key}/{name}.npz", buf.getvalue())
        return name

    def complete(self, key: str, blocks: list[str]) -> None:
        """Mark ``key`` complete: its listed blocks cover every stimulus."""
        self.store.put_json(f"features/{key}/index.json",
                            {"n": self.n_stimuli, "blocks": sorted(set(blocks))})

    def has(self, key: str) -> bool:
        index = self.store.get_json(f"features/{key}/index.json")
        return bool(index) and index.get("n") == self.n_stimuli

    def read(self, key: str) -> np.ndarray | None:
        """The features ``[n_stimuli, k]`` of a complete key (float32), or None. A listed
        block that is missing or does not cover the stimuli makes it None (recomputed)."""
        index = self.store.get_json(f"features/{key}/index.json")
        if not index or index.get("n") != self.n_stimuli:
            return None
        out = None
        seen = np.zeros(self.n_stimuli, dtype=bool)
        for name in index["blocks"]:
            data = self.store.get_bytes(f"features/{key}/{name}.npz")
            if data is None:
                return None
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                idx, feats = z["idx"], z["features"]
            if out is None:
                out = np.empty((self.n_stimuli, feats.shape[1]), dtype=np.float32)
            if idx.size and (idx.min() < 0 or idx.max() >= self.n_stimuli):
                return None
            out[idx] = feats
            seen[idx] = True
        return out if out is not None and seen.all() else None

    # ---------------------------------------------------- whole layers (one process)
    def get(self, model_id: str, layer: str, reduction: "ReductionConfig",
            preprocessing: dict[str, Any]) -> np.ndarray | None:
        """The cached array, or None."""
        return self.read(self.key(model_id, layer, reduction, preprocessing))

    def put(self, model_id: str, layer: str, reduction: "ReductionConfig",
            preprocessing: dict[str, Any], features: np.ndarray) -> None:
        """Cache a whole layer (one block) and mark it complete."""
        key = self.key(model_id, layer, reduction, preprocessing)
        features = np.asarray(features)
        name = self.put_block(key, np.arange(self.n_stimuli), features)
        self.complete(key, [name])
