"""Digital twins of mouse V1 (SCIENCE.md section 8): encoder -> GRU -> per-animal readout.

Modules: :mod:`.encoders` (the eight per-frame encoders), :mod:`.model` (the twin, its
config and loss), :mod:`.train` (the Ray Train loop and the family driver),
:mod:`.evaluate` (chunked/overall correlation scores), :mod:`.plots`, :mod:`.cli`.
Names are imported lazily so that ``import cortexzoo.twins`` does not import torch.
"""
from __future__ import annotations

from ..core.lazy import lazy_exports


_EXPORTS = {
    "ENCODERS": "encoders", "build_encoder": "encoders",
    "Twin": "model", "TwinConfig": "model", "poisson_loss": "model", "twin_loss": "model",
    "TwinsRunConfig": "train", "train_family": "train", "fit_local": "train",
    "train_loop_per_worker": "train", "load_twin": "train",
    "evaluate_family": "evaluate", "plot_twins": "plots",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
