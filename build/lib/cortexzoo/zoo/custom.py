"""User architectures addressable as ``custom:NAME@WEIGHTS``: the registry of names.

Kept apart from :mod:`cortexzoo.zoo.registry` so that spec parsing and weight lookup
can resolve custom names without importing the loaders (no import circle).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from torch import nn

from cortexzoo.zoo.preprocess import PreprocessConfig, default_config

__all__ = ["CustomModel", "register_model", "custom_names", "resolve_custom", "on_change"]

#: Called after every registration (the registry drops its layer caches).
_ON_CHANGE: list[Callable[[], None]] = []


def on_change(fn: Callable[[], None]) -> None:
    """Call ``fn`` whenever a custom model is registered."""
    _ON_CHANGE.append(fn)


@dataclass(frozen=True)
class CustomModel:
    """A user architecture addressable as ``custom:NAME@WEIGHTS``.

    Attributes
    ----------
    build : callable () -> nn.Module
        Builds the architecture with its own init (seeded by the caller).
    preprocess : PreprocessConfig
    trained_weights : str or None
        State-dict file used for ``@trained``.
    """

    build: Callable[[], nn.Module]
    preprocess: PreprocessConfig
    trained_weights: str | None = None


_CUSTOM: dict[str, CustomModel] = {}


def register_model(
    name: str,
    build: Callable[[], nn.Module],
    preprocess: PreprocessConfig | None = None,
    trained_weights: str | None = None,
    overwrite: bool = False,
) -> None:
    """Make ``custom:NAME`` loadable in this process.

    Registration is per process: Ray workers must import the registering module too,
    or use the import-path form ``custom:pkg.module.factory`` which needs no registration.
    """
    if not name or "@" in name or ":" in name:
        raise ValueError(f"bad custom model name {name!r} (no '@' or ':')")
    if name in _CUSTOM and not overwrite:
        raise ValueError(f"custom model {name!r} is already registered (pass overwrite=True)")
    _CUSTOM[name] = CustomModel(build, preprocess or default_config(), trained_weights)
    for fn in _ON_CHANGE:
        fn()


def custom_names() -> frozenset[str]:
    """Names registered with :func:`register_model`."""
    return frozenset(_CUSTOM)


def resolve_custom(name: str) -> CustomModel:
    """A registered custom model, or one given as import path ``pkg.module.factory``.

    The factory returns an ``nn.Module``; its ``preprocess_config`` attribute (a
    PreprocessConfig) is used when present, else ImageNet defaults.
    """
    if name in _CUSTOM:
        return _CUSTOM[name]
    mod_name, dot, attr = name.rpartition(".")
    if not dot:
        raise KeyError(name)
    factory = getattr(importlib.import_module(mod_name), attr)
    if not callable(factory):
        raise TypeError(f"{name} is not callable")
    cfg = getattr(factory, "preprocess_config", None)
    return CustomModel(factory, cfg if isinstance(cfg, PreprocessConfig) else default_config())
