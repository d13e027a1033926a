"""Errors of the results store; each names the URI or file it is about."""
from __future__ import annotations

from .retry import StoreUnavailableError

__all__ = ["ScoreSchemaError", "CorruptFileError", "StoreNotFoundError", "StoreAccessError",
           "StoreUnavailableError"]


class ScoreSchemaError(ValueError):
    """A score table lacks required columns or has columns of the wrong dtype."""


class CorruptFileError(ValueError):
    """A stored file cannot be parsed (truncated or not what its name says)."""


class StoreNotFoundError(FileNotFoundError):
    """The results location cannot exist (e.g. the bucket is missing)."""


class StoreAccessError(PermissionError):
    """The store refused the credentials or the permission (403, bad or missing keys).

    Raised at once (never retried); the message names the URI and what to check."""
