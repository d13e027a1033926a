"""Parametric control (paper 002, SCIENCE.md section 7): images synthesized along the
encoding axes a scan saved (``cortexzoo scan --save-encoders``), and how well recorded or
oracle-predicted responses follow them.

- :mod:`.fourier` the decorrelated Fourier image parameterization and its inverse;
  :mod:`.augment` differentiable jitter, zoom and rotation;
- :mod:`.site_model` a saved encoder as a differentiable pixels -> site predictions path
  (the scan's presentation, normalization, network, reduction and readout);
- :mod:`.synth` feature accentuation sweeps and controversial pairs;
- :mod:`.run` the runs, one Ray task per (site, seed), resumable per sweep;
  :mod:`.seeds` seed images; :mod:`.outputs` and :mod:`.plots` the folder they write;
- :mod:`.score` control scores against recordings or an oracle.
"""
from .run import ControlConfig, ControlResult, run_control
from .score import ScoreResult, run_score
from .synth import SynthConfig

__all__ = ["ControlConfig", "ControlResult", "ScoreResult", "SynthConfig", "run_control",
           "run_score"]
