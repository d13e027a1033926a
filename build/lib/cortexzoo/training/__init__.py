"""Fine-tuning backbones + decoders to predict neuroids (paper 000, SCIENCE.md §5),
pixel baselines, and Ray Tune + Optuna tuning campaigns.

>>> from cortexzoo.training import load_preset, run_finetune   # doctest: +SKIP
>>> run_finetune("s3://bucket/majaj", load_preset("resnet34-it"), "s3://bucket/results")  # doctest: +SKIP

Heavy pieces (torch, Ray) are imported lazily by the submodules that need them.
"""
from .presets import PRESETS, SHALLOW_CNN, ConfigError, FinetuneConfig, list_presets, load_preset

__all__ = [
    "PRESETS", "SHALLOW_CNN", "ConfigError", "FinetuneConfig", "list_presets", "load_preset",
    "run_finetune", "train_network", "run_tune", "load_space", "SpaceError", "make_splits",
    "Splits", "run_pixel_baselines", "finetune_leaderboard", "build_network",
]


def __getattr__(name: str):
    # lazy: importing the package must not pull in torch or Ray
    if name in ("run_finetune", "train_network"):
        from . import finetune
        return getattr(finetune, name)
    if name == "run_tune":
        from .tune import run_tune
        return run_tune
    if name in ("load_space", "SpaceError"):
        from . import space
        return getattr(space, name)
    if name in ("make_splits", "Splits"):
        from . import loaders
        return getattr(loaders, name)
    if name == "run_pixel_baselines":
        from .baselines import run_pixel_baselines
        return run_pixel_baselines
    if name == "finetune_leaderboard":
        from .leaderboard import finetune_leaderboard
        return finetune_leaderboard
    if name == "build_network":
        from .networks import build_network
        return build_network
    raise AttributeError(f"module 'cortexzoo.training' has no attribute {name!r}")
