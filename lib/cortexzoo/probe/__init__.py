"""Probing digital twins (paper 004, SCIENCE.md section 9): linear probes, unit tuning and
eigenspectra of frozen twins, across the twin family, on Ray.

Modules: :mod:`.config` (settings), :mod:`.linear` (logistic probes), :mod:`.extract`
(frozen features), :mod:`.tasks` (orientation, contrast and motion probes),
:mod:`.tuning` (latent-unit tuning), :mod:`.geometry` (eigenspectra, the neural cvPCA
reference), :mod:`.run` (one Ray task per (twin, family), resumable), :mod:`.files`
(layout under the results URI), :mod:`.cross_model` (the cross-model table),
:mod:`.plots`. The stimuli are in :mod:`cortexzoo.data.probe_stimuli`, the math in
:mod:`cortexzoo.mapping.tuning` and :mod:`cortexzoo.mapping.eigenspectrum`.
Names are imported lazily so that ``import cortexzoo.probe`` does not import torch.
"""
from __future__ import annotations

from ..core.lazy import lazy_exports


_EXPORTS = {
    "FAMILIES": "config", "ProbeConfig": "config", "ProbeConfigError": "config",
    "fit_logistic": "linear", "fit_probe": "linear", "normalized_auc": "linear",
    "FeatureExtractor": "extract",
    "orientation_task": "tasks", "contrast_task": "tasks", "motion_task": "tasks",
    "tuning_task": "tuning", "eigenspectrum_task": "geometry",
    "probe_family": "run", "run_unit": "run", "ProbeFailed": "run",
    "build_cross_model": "cross_model", "cross_model_stats": "cross_model",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
