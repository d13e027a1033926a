"""The feature cache: reduced features of (model, layer) on one stimulus set, kept in a
results store so that a scan killed while scoring does not extract again, and so that
any stage (scan, decoding, control) can reuse what another extracted.

The cache works through any object with ``get_array(relpath)`` and
``put_array(relpath, array)`` (a :class:`cortexzoo.store.ResultStore`), so this stage
does not import the store. What a cached array depends on, and therefore its key, is
described in :func:`cortexzoo.core.cache_key.features_key`.
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..core.cache_key import features_key
from .reduce import ReductionConfig

__all__ = ["FeatureCache", "FEATURES_VERSION"]

#: Part of every feature cache key: bump when extraction changes the numbers.
FEATURES_VERSION = "2"


class ArrayStore(Protocol):
    def get_array(self, relpath: str) -> np.ndarray | None: ...
    def put_array(self, relpath: str, arr: np.ndarray) -> Any: ...


class FeatureCache:
    """Reduced features of one stimulus set (identified by ``dataset_fingerprint``, with
    ``n_stimuli`` rows), stored under ``features/`` of ``store``."""

    def __init__(self, store: ArrayStore, dataset_fingerprint: str, n_stimuli: int):
        self.store, self.fingerprint, self.n_stimuli = store, dataset_fingerprint, int(n_stimuli)

    def path(self, model_id: str, layer: str, reduction: ReductionConfig,
             preprocessing: dict[str, Any]) -> str:
        key = features_key(self.fingerprint, model_id, layer, preprocessing, reduction,
                           FEATURES_VERSION)
        return f"features/{key}.npy"

    def get(self, model_id: str, layer: str, reduction: ReductionConfig,
            preprocessing: dict[str, Any]) -> np.ndarray | None:
        """The cached array, or None (also for an array of the wrong length)."""
        arr = self.store.get_array(self.path(model_id, layer, reduction, preprocessing))
        if arr is None or arr.ndim != 2 or arr.shape[0] != self.n_stimuli:
            return None
        return arr

    def put(self, model_id: str, layer: str, reduction: ReductionConfig,
            preprocessing: dict[str, Any], features: np.ndarray) -> None:
        self.store.put_array(self.path(model_id, layer, reduction, preprocessing), features)
