"""Exceptions of the data stage (kept apart so that images.py and dataset.py share them)."""
from __future__ import annotations

from collections.abc import Iterable


class DatasetError(ValueError):
    """A dataset folder or its content is malformed; the message names the offending items."""


class ImageDecodeError(DatasetError):
    """An image file could not be decoded (corrupt, truncated or not an image)."""


def format_items(items: Iterable[object], limit: int = 10) -> str:
    """Quote at most `limit` items, then say how many more there are."""
    items = list(items)
    shown = ", ".join(repr(str(x)) if not isinstance(x, (int,)) else str(x) for x in items[:limit])
    if len(items) > limit:
        shown += f" ... and {len(items) - limit} more"
    return shown
