"""Small parsing helpers shared by the verbs."""
from __future__ import annotations

__all__ = ["csv_list"]


def csv_list(s: str | None) -> list[str] | None:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; None for None."""
    return [x.strip() for x in s.split(",") if x.strip()] if s is not None else None
