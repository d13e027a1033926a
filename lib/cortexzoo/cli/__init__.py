"""The ``cortexzoo`` command: every verb's argparse parser and handler.

One module per verb family (``scan``, ``zoo``, ``data``, ``report``/``results``,
``finetune``/``tune``, ``twins``, ``decode``, ``control``); each has
``register(subparsers)``. Building the parser imports no stage of the pipeline: handlers
import what they run when called.
Library folders hold no argparse; ``jobs/*.py`` call :func:`main`.
"""
from __future__ import annotations

import argparse
import logging
import sys

from . import control, data, decode, report, scan, training, twins, zoo

__all__ = ["build_parser", "main"]

log = logging.getLogger("cortexzoo")


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cortexzoo", description="Find out which deep networks "
                                "are most brain-like, at cluster scale.")
    p.add_argument("--debug", action="store_true",
                   help="show the full traceback of an error (default: one line)")
    sub = p.add_subparsers(dest="cmd", required=True)
    for verb in (scan, zoo, data, report, training, twins, decode, control):
        verb.register(sub)
    return p


def user_error(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix (bad input, a path or bucket
    that does not exist, refused or missing credentials, an unreachable store, weights
    that cannot be fetched), None for anything else (a bug: it keeps its traceback)."""
    from ..store.retry import AUTH, classify

    if isinstance(exc, (ValueError, FileNotFoundError, PermissionError, NotADirectoryError,
                        IsADirectoryError, FileExistsError)):
        return str(exc)
    name = type(exc).__name__
    if name in ("StoreUnavailableError", "WeightsUnavailableError", "TrainingFailed"):
        return str(exc)
    if name in ("NoCredentialsError", "PartialCredentialsError", "NoRegionError") or (
            isinstance(exc, OSError) and classify(exc) == AUTH):
        return (f"{exc} (check the storage credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE or an instance role for s3://; application-default credentials "
                "for gs://)")
    return None


def main(argv: list[str] | None = None) -> int:
    from ..core.raysetup import setup_env

    setup_env()
    args = build_parser().parse_args(argv)
    _setup_logging(getattr(args, "quiet", False))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - sorted below: user errors get one line
        msg = user_error(e)
        if msg is None or args.debug:
            raise
        print(f"error: {msg.strip()}", file=sys.stderr)
        print("(run with --debug for the traceback)", file=sys.stderr)
        return 2
