"""Where the probe battery keeps things under a results URI, and small I/O helpers.

Layout (all under ``OUT/``)::

    twins/best/<encoder>-seed<k>.pt          the exported twins (``twins train``)
    scores/probe-<pair>-<family>.parquet     score rows of a unit; its completion mark
    probes/<table>/<pair>.parquet            per-twin tables: orientation, contrast,
                                             motion (probe curves), tuning (one row per
                                             unit), tuning_curves, eigenspectrum
    probes/eigenspectrum/neural-cvpca.parquet  cvPCA spectra of sessions with repeats
    probes/timings/<pair>-<family>.json      where a unit's time went
    probes/cross_model.parquet               one row per (architecture, seed)
    probes/cross_model_stats.parquet         neural prediction vs each endpoint
    probes/plots/*.png                       the figures
"""
from __future__ import annotations

import io
from typing import Any

import pandas as pd

__all__ = ["unit_key", "parse_pair", "list_twins", "parquet_bytes", "read_tables", "NEURAL_UNIT"]

#: The unit of the neural cvPCA reference (sessions with repeats).
NEURAL_UNIT = "probe-neural-cvpca"


def unit_key(pair: str, family: str) -> str:
    """``probe-<encoder>-seed<k>-<family>``: the unit's scores file name."""
    return f"probe-{pair}-{family}"


def parse_pair(pair: str) -> tuple[str, int]:
    """``resnet18-seed2`` -> ``("resnet18", 2)``."""
    enc, _, seed = pair.rpartition("-seed")
    if not enc or not seed.isdigit():
        raise ValueError(f"twin file {pair!r}.pt is not named <encoder>-seed<k>.pt")
    return enc, int(seed)


def list_twins(store: Any) -> list[str]:
    """Pair keys of the exported twins under ``OUT/twins/best/`` (sorted)."""
    from ..twins.evaluate import trained_twins

    return trained_twins(store)


def parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def read_tables(store: Any, name: str) -> pd.DataFrame:
    """Every ``probes/<name>/*.parquet`` concatenated (empty when there are none)."""
    parts = []
    for b in sorted(store._list(f"probes/{name}")):
        if not b.endswith(".parquet"):
            continue
        data = store.get_bytes(f"probes/{name}/{b}")
        if data is not None:
            parts.append(pd.read_parquet(io.BytesIO(data)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
