"""Mapping feature spaces to neural responses (SCIENCE.md sections 2 and 4).

Encoding models with a scikit-learn face (exact-LOO ridge, k-fold ridge, PCA-ridge,
PLS, LOO ridge classifier) over backend-agnostic solvers (numpy or torch, CPU or CUDA),
per-neuroid metrics, RSA, reliability / ceilings, statistics across models and the
decoding math of paper 001 (2AFC accuracy, a batched leave-one-out ridge classifier,
matched unit counts, the log law; ``decode.py``, numpy only).

Names are imported lazily: ``cortexzoo.mapping.metrics`` (and ``ceiled``) cost numpy
only, and scikit-learn is imported with the estimators that need it.
"""
from __future__ import annotations

from ..core.lazy import lazy_exports


_EXPORTS = {
    **{n: "ceilings" for n in ("ceiled", "inter_animal_ceiling", "population_ceilings", "rdm_split_half_reliability",
                               "spearman_brown", "split_half_reliability")},
    **{n: "estimators" for n in ("GCVResult", "GCVSolver", "KFoldRidge", "MappingInputError",
                                 "PCARidge", "PLSRegression", "RidgeClassifierLOO",
                                 "RidgeGCV")},
    **{n: "metrics" for n in ("aggregate", "explained_variance", "pearson_r",
                              "neuroid_metrics", "chunked_pearson", "overall_pearson")},
    **{n: "rsa" for n in ("cka", "compare_rdms", "rdm", "rdm_ceiling", "score_rdms",
                          "upper_triangle", "rdm_pearson", "RDMFactor")},
    "default_alphas": "solvers",
    **{n: "decode" for n in ("RidgeClassifierFit", "fit_ridge_classifier", "log_fit", "log_law",
                             "matched_units", "two_afc")},
    **{n: "stats" for n in ("PairedTTest", "TwoSampleTTest", "bootstrap_ci", "friedman_test",
                            "hedges_correction", "paired_ttest", "spearman_agreement",
                            "two_sample_ttest")},
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
