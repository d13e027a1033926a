"""The results store: score tables and run manifests under one results URI.

Layout under a results URI (a local folder, ``s3://bucket/prefix`` or ``gs://...``)::

    scores/<unit_key>.parquet     one file per work unit; together a Parquet dataset
    manifest/<run_id>.json        config, package versions, host, times (secrets scrubbed)
    features/<cache_key>/...      optional cache of reduced feature arrays (.npy)

A unit is complete exactly when its scores file exists. Every write is atomic:
locally a temporary file (``.tmp-*``, which Parquet readers skip) is renamed over
the target; on object stores the complete bytes go up in one PUT. The score schema
is in :mod:`cortexzoo.store.schema`; the I/O (retries, atomic writes) in
:mod:`cortexzoo.store.fsio`.
"""
from __future__ import annotations

import json
import socket
from typing import Any, Mapping, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..core.cache_key import check_key
from .errors import CorruptFileError
from .fsio import StoreIO
from .provenance import code_version, json_default, now_iso, package_versions, scrub_secrets
from .schema import (COLUMN_KINDS, _ALL_KNOWN, canonical_dtypes, empty_scores,
                     scores_to_parquet_bytes, validate_scores)

__all__ = ["ResultStore"]

_SCORES, _MANIFEST, _FEATURES = "scores", "manifest", "features"
_PARQUET_SUFFIX = ".parquet"


class ResultStore(StoreIO):
    """Scores, manifests and cached arrays under one results URI (a local folder or an
    fsspec URI such as ``s3://bucket/prefix``); ``retry`` and ``**storage_options`` as
    for :class:`~cortexzoo.store.fsio.StoreIO`, which says how failures are retried.

    **Concurrency.** Any number of processes may write to the same URI at once.
    Every file is replaced atomically (rename locally, one PUT on object stores),
    so a reader sees a file whole or not at all. A unit's rows live in exactly one
    file, named by its unit key, so two writers of *different* units never touch
    each other's rows, and two writers of the *same* unit cannot duplicate rows:
    the last complete write wins, whole (with the same settings both write the
    same numbers, so a rerun is idempotent). :meth:`read_scores` therefore returns
    every unit's rows exactly once. Listing caches are dropped before every
    listing, so units written by other processes are seen.

    The store is cheap to pickle (only the URI, options and retry policy travel),
    so it can be handed to Ray tasks.
    """

    # ---------------------------------------------------------------- scores
    def scores_uri(self) -> str:
        """URI of the scores dataset (readable with ``pandas.read_parquet``)."""
        return self.uri_of(_SCORES) + "/"

    def _unit_path(self, unit_key: str) -> str:
        return self._path(_SCORES, check_key(unit_key, "unit_key") + _PARQUET_SUFFIX)

    def write_scores(self, df: pd.DataFrame, unit_key: str) -> str:
        """Validate ``df`` and write it atomically as ``scores/<unit_key>.parquet``.

        Rewriting a unit replaces its file (idempotent). The ``unit_key``
        column is filled with ``unit_key``. Nothing is written when validation
        or serialization fails.

        Returns
        -------
        str
            The URI of the written file.

        Raises
        ------
        ScoreSchemaError
            Missing required columns or bad dtypes (before anything is written).
        ValueError
            An unsafe ``unit_key`` or a ``unit_key`` column that disagrees with it.
        """
        path = self._unit_path(unit_key)
        canon = validate_scores(df)
        uk = canon["unit_key"]
        clash = uk.notna() & (uk != unit_key)
        if clash.any():
            raise ValueError(f"column unit_key holds {uk[clash].iloc[0]!r}, but the unit is {unit_key!r}")
        canon["unit_key"] = unit_key
        data = scores_to_parquet_bytes(canon)
        self._write_atomic(path, data)
        return self._display(path)

    def has_unit(self, unit_key: str) -> bool:
        """True when the unit's scores file exists (the unit is complete)."""
        return self._exists(self._unit_path(unit_key))

    def completed_units(self) -> set[str]:
        """Unit keys that have a scores file (one listing call)."""
        n = len(_PARQUET_SUFFIX)
        return {b[:-n] for b in self._list(_SCORES) if b.endswith(_PARQUET_SUFFIX)}

    def read_scores(self, columns: Sequence[str] | None = None,
                    filters: Any = None) -> pd.DataFrame:
        """All units' scores concatenated (in unit-key order).

        Parameters
        ----------
        columns : list of str, optional
            Columns to return (default all).
        filters : pyarrow filter, optional
            DNF list such as ``[("model", "==", "alexnet")]`` or a
            ``pyarrow.compute.Expression``.

        Returns
        -------
        pandas.DataFrame
            Empty, with the schema's columns, when there are no units.

        Raises
        ------
        CorruptFileError
            Naming the file when a scores file cannot be parsed.
        """
        names = [b for b in self._list(_SCORES) if b.endswith(_PARQUET_SUFFIX)]
        if not names:
            if columns is not None:
                unknown = [c for c in columns if c not in COLUMN_KINDS]
                if unknown:
                    raise ValueError(f"unknown columns {unknown}; known: {_ALL_KNOWN}")
            return empty_scores(columns)
        paths = [self._path(_SCORES, b) for b in names]
        blobs = self._cat_many(paths)
        tables = []
        for p in paths:
            try:
                tables.append(pq.read_table(pa.BufferReader(blobs[p])))
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise CorruptFileError(
                    f"scores file {self._display(p)} is corrupt or truncated ({exc}); "
                    "delete it to recompute that unit") from exc
        try:
            table = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"scores files under {self.scores_uri()} have incompatible schemas ({exc})") from exc
        if filters is not None:
            expr = filters if isinstance(filters, pc.Expression) else pq.filters_to_expression(filters)
            try:
                table = table.filter(expr)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, KeyError) as exc:
                raise ValueError(f"bad filters {filters!r}: {exc}") from exc
        if columns is not None:
            unknown = [c for c in columns if c not in table.column_names]
            if unknown:
                raise ValueError(f"unknown columns {unknown}; stored: {table.column_names}")
            table = table.select(list(columns))
        return canonical_dtypes(table.to_pandas())

    # ------------------------------------------------------------- manifests
    def write_manifest(self, run_id: str, manifest: Mapping[str, Any]) -> str:
        """Write ``manifest/<run_id>.json`` with secrets scrubbed; returns its URI.

        ``run_id``, ``host``, ``code_version``, ``versions`` and ``written_at``
        are added when absent (see :func:`build_manifest` for a full one).
        """
        check_key(run_id, "run_id")
        if not isinstance(manifest, Mapping):
            raise ValueError(f"manifest must be a mapping, got {type(manifest).__name__}")
        doc = dict(scrub_secrets(manifest))
        doc.setdefault("run_id", run_id)
        doc.setdefault("host", socket.gethostname())
        doc.setdefault("code_version", code_version())
        doc.setdefault("versions", package_versions())
        doc["written_at"] = now_iso()
        path = self._path(_MANIFEST, f"{run_id}.json")
        self._write_atomic(path, json.dumps(doc, indent=2, default=json_default).encode("utf-8"))
        return self._display(path)

    def read_manifests(self) -> list[dict[str, Any]]:
        """All manifests, in run-id order."""
        names = [b for b in self._list(_MANIFEST) if b.endswith(".json")]
        paths = [self._path(_MANIFEST, b) for b in names]
        blobs = self._cat_many(paths)
        out = []
        for p in paths:
            out.append(self._parse_json(blobs[p], p))
        return out

    @staticmethod
    def feature_path(cache_key: str, name: str) -> str:
        """``features/<cache_key>/<name>.npy`` (both keys checked to be safe)."""
        check_key(cache_key, "cache_key")
        check_key(name, "array name")
        return f"{_FEATURES}/{cache_key}/{name}.npy"
