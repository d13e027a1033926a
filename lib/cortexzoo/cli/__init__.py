"""The ``cortexzoo`` command: every verb's argparse parser and handler.

One module per verb family (``scan``, ``zoo``, ``data``, ``report``/``results``,
``finetune``/``tune``, ``twins``, ``decode``); each has ``register(subparsers)``. Building the
parser imports no stage of the pipeline: handlers import what they run when called.
Library folders hold no argparse; ``jobs/*.py`` call :func:`main`.
"""
from __future__ import annotations

import argparse
import logging
import sys

from . import data, decode, report, scan, training, twins, zoo

__all__ = ["build_parser", "main"]

log = logging.getLogger("cortexzoo")


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cortexzoo", description="Find out which deep networks "
                                "are most brain-like, at cluster scale.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for verb in (scan, zoo, data, report, training, twins, decode):
        verb.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from ..core.raysetup import setup_env

    setup_env()
    args = build_parser().parse_args(argv)
    _setup_logging(getattr(args, "quiet", False))
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
