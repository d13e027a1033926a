"""Mapping feature spaces to neural responses (SCIENCE.md sections 2 and 4).

Encoding models with a scikit-learn face (exact-LOO ridge, k-fold ridge, PCA-ridge,
PLS, LOO ridge classifier) over backend-agnostic solvers (numpy or torch, CPU or CUDA),
per-neuroid metrics, RSA, reliability / ceilings and statistics across models.
"""
from .ceilings import (ceiled, inter_animal_ceiling, rdm_split_half_reliability, spearman_brown,
                       split_half_reliability)
from .estimators import (GCVResult, GCVSolver, KFoldRidge, MappingInputError, PCARidge,
                         PLSRegression, RidgeClassifierLOO, RidgeGCV)
from .metrics import aggregate, explained_variance, pearson_r
from .rsa import cka, compare_rdms, rdm, rdm_ceiling, score_rdms, upper_triangle
from .solvers import default_alphas
from .stats import (PairedTTest, TwoSampleTTest, bootstrap_ci, friedman_test, hedges_correction,
                    paired_ttest, spearman_agreement, two_sample_ttest)

__all__ = [
    "RidgeGCV", "GCVSolver", "GCVResult", "KFoldRidge", "PCARidge", "PLSRegression",
    "RidgeClassifierLOO", "MappingInputError", "default_alphas",
    "pearson_r", "explained_variance", "aggregate",
    "rdm", "compare_rdms", "score_rdms", "rdm_ceiling", "cka", "upper_triangle",
    "split_half_reliability", "rdm_split_half_reliability", "inter_animal_ceiling", "ceiled",
    "spearman_brown",
    "paired_ttest", "two_sample_ttest", "spearman_agreement", "bootstrap_ci", "friedman_test",
    "hedges_correction", "PairedTTest", "TwoSampleTTest",
]
