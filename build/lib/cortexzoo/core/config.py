"""Config classes from mappings and YAML: one rule for every config of the package.

A config is a dataclass. Building one from a mapping rejects unknown keys, naming them
and the known ones, so that a typo in a YAML file (``widht: 512``) is an error rather
than a silently ignored setting; the dataclass' own ``__post_init__`` checks values.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["config_from_mapping", "read_yaml_mapping"]

T = TypeVar("T")


def config_from_mapping(cls: type[T], d: Any, *, what: str = "key(s)", where: str | None = None,
                        error: type[Exception] = ValueError) -> T:
    """``cls(**d)`` for a dataclass ``cls``; unknown keys raise ``error``.

    The message reads ``[where: ]unknown <what> [...]; known: [...]``.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(d, Mapping):
        raise error(f"{prefix}expected a mapping of settings, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(k) for k in d if k not in known)
    if unknown:
        raise error(f"{prefix}unknown {what} {unknown}; known: {sorted(known)}")
    return cls(**dict(d))


def read_yaml_mapping(uri: str, *, error: type[Exception] = ValueError,
                      what: str = "config") -> dict[str, Any]:
    """The YAML mapping at ``uri`` (local path or any fsspec URI); an empty file is ``{}``.

    Raises ``error`` naming the file when it is missing, not YAML, or not a mapping."""
    import yaml

    from .uri import read_bytes

    try:
        text = read_bytes(uri).decode("utf-8")
    except FileNotFoundError:
        raise error(f"{uri}: no such {what} file") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise error(f"{uri}: not a YAML {what} file ({exc})") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{uri}: not valid YAML ({exc})") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise error(f"{uri}: a {what} is a mapping of keys, got {type(doc).__name__}")
    return doc
