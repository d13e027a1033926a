"""Lazy package exports: a package's names imported on first use, so that importing one
light module of it (a scoring task reading the feature cache, a Ray Train worker using
the metrics) does not pull in what the package's other modules need (torch, sklearn)."""
from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any],
                                                                Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package whose ``exports`` map a name to the
    submodule that defines it; a package sets ``__getattr__, __dir__ = lazy_exports(
    __name__, {...})`` (PEP 562)."""
    module = importlib.import_module(package)

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(f".{exports[name]}", package), name)
            setattr(module, name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(exports))

    return __getattr__, __dir__
