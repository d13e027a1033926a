"""Fine-tuning backbones + decoders to predict neuroids (paper 000, SCIENCE.md §5),
pixel baselines, and Ray Tune + Optuna tuning campaigns.

>>> from cortexzoo.training import load_preset, run_finetune   # doctest: +SKIP
>>> run_finetune("s3://bucket/majaj", load_preset("resnet34-it"), "s3://bucket/results")  # doctest: +SKIP

Heavy pieces (torch, Ray) are imported lazily by the submodules that need them.
"""
from ..core.lazy import lazy_exports
from .presets import PRESETS, SHALLOW_CNN, ConfigError, FinetuneConfig, list_presets, load_preset

__all__ = [
    "PRESETS", "SHALLOW_CNN", "ConfigError", "FinetuneConfig", "list_presets", "load_preset",
    "run_finetune", "train_network", "run_tune", "load_space", "SpaceError", "make_splits",
    "Splits", "run_pixel_baselines", "finetune_leaderboard", "build_network",
]

# lazy: importing the package must not pull in torch or Ray
_EXPORTS = {"run_finetune": "finetune", "train_network": "finetune", "run_tune": "tune",
            "load_space": "space", "SpaceError": "space", "make_splits": "loaders",
            "Splits": "loaders", "run_pixel_baselines": "baselines",
            "finetune_leaderboard": "leaderboard", "build_network": "networks"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
