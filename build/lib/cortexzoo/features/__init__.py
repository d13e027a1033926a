"""Feature extraction: hooks, on-the-fly reductions, and the Ray Data pipeline."""
from .extract import FeatureExtractor
from .pipeline import LayerFeatures, extract_local, extract_ray
from .reduce import DEFAULT_K, LayerReducer, ReductionConfig, layer_seed, srp_matrix

__all__ = ["DEFAULT_K", "FeatureExtractor", "LayerFeatures", "LayerReducer", "ReductionConfig",
           "extract_local", "extract_ray", "layer_seed", "srp_matrix"]
