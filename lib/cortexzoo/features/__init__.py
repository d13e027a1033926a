"""Feature extraction: hooks, on-the-fly reductions, the Ray Data pipeline, the feature
cache and a differentiable path. Names are imported lazily: the cache (used by scoring
tasks) needs neither torch nor the model zoo."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"FeatureExtractor": "extract", "LayerFeatures": "pipeline", "extract_local": "pipeline",
            "extract_ray": "pipeline", "extract_to_cache": "pipeline", "DEFAULT_K": "reduce",
            "LayerReducer": "reduce", "ReductionConfig": "reduce", "layer_seed": "reduce",
            "srp_matrix": "reduce", "FeatureCache": "cache", "LayerForward": "differentiable"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
