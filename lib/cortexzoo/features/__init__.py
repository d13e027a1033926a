"""Feature extraction: hooks, on-the-fly reductions, the Ray Data pipeline, the feature
cache and a differentiable path. Names are imported lazily: the cache (used by scoring
tasks) needs neither torch nor the model zoo."""
from __future__ import annotations

from ..core.lazy import lazy_exports


_EXPORTS = {"FeatureExtractor": "extract", "LayerFeatures": "pipeline", "extract_local": "pipeline",
            "extract_ray": "pipeline", "extract_to_cache": "pipeline", "DEFAULT_K": "reduce",
            "LayerReducer": "reduce", "ReductionConfig": "reduce", "layer_seed": "reduce",
            "srp_matrix": "reduce", "FeatureCache": "cache", "LayerForward": "differentiable"}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
