"""The results store: score tables and run manifests under one results URI.

Layout under a results URI (a local folder, ``s3://bucket/prefix`` or ``gs://...``)::

    scores/<unit_key>.parquet          a work unit's rows, while its run is going
    scores/part-<run>-<i>.parquet      a finished run's units, compacted into few files
    neuroid_scores/...                 per-neuroid rows, the same two kinds of files
    manifest/<run_id>.json             config, package versions, host, times (secrets scrubbed)
    features/<cache_key>.npy           optional cache of reduced feature arrays

A unit is complete exactly when its rows are in the store: in its own file, written
atomically (locally a temporary ``.tmp-*`` file renamed over the target; on object
stores one PUT of the complete bytes), or in a compacted part. At the end of a run,
:meth:`ResultStore.compact` writes the run's units into a few large part files and
only then deletes their unit files; a reader takes each unit's rows from exactly one
file (its own file when it has one, else the newest part holding it), so a run killed
during compaction loses and duplicates nothing. Old stores (one file per unit) read
as before. The score schema is in :mod:`cortexzoo.store.schema`; the I/O (retries,
atomic writes) in :mod:`cortexzoo.store.fsio`.
"""
from __future__ import annotations

import io
import json
import logging
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..core.cache_key import check_key
from .errors import CorruptFileError
from .fsio import StoreIO
from .provenance import code_version, json_default, now_iso, package_versions, scrub_secrets
from .schema import (NEUROID_COLUMNS, _ALL_KNOWN, canonical_dtypes, empty_scores,
                     neuroid_table, scores_to_parquet_bytes, validate_scores)

__all__ = ["ResultStore", "UnitSources", "PART_PREFIX"]

log = logging.getLogger("cortexzoo")

_SCORES, _NEUROIDS, _MANIFEST, _FEATURES = "scores", "neuroid_scores", "manifest", "features"
_PARQUET_SUFFIX = ".parquet"
#: Compacted files start with this; no unit key may.
PART_PREFIX = "part-"
#: Rows per compacted part file.
PART_ROWS = 1_000_000


def _table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _part_tag(run_id: str | None) -> str:
    """Part files sort in time order (the newest part holding a unit wins it)."""
    now = time.time()
    return (time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{now % 1:.6f}"[1:]
            + "-" + re.sub(r"[^A-Za-z0-9_-]", "-", run_id or "run")[:60]
            + "-" + uuid.uuid4().hex[:6])


@dataclass
class UnitSources:
    """Where each unit's rows live in one folder (``scores/`` or ``neuroid_scores/``).

    ``files`` maps a unit key to its own file; ``parts`` maps a part file to the unit
    keys it holds; ``take`` maps every file to read to the unit keys to take from it
    (None: all), so that every unit comes from exactly one file; ``corrupt`` lists the
    files that cannot be parsed."""

    files: dict[str, str] = field(default_factory=dict)
    parts: dict[str, set[str]] = field(default_factory=dict)
    corrupt: list[str] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def units(self) -> set[str]:
        return set(self.files) | set().union(*self.parts.values()) if self.parts else set(self.files)

    @property
    def take(self) -> dict[str, set[str] | None]:
        out: dict[str, set[str] | None] = {name: None for name in self.files.values()}
        claimed = set(self.files)
        for part in sorted(self.parts, reverse=True):  # the newest part wins a unit
            mine = self.parts[part] - claimed
            claimed |= mine
            if mine:
                out[part] = mine if mine != self.parts[part] else None
        return out


class ResultStore(StoreIO):
    """Scores, manifests and cached arrays under one results URI (a local folder or an
    fsspec URI such as ``s3://bucket/prefix``); ``retry`` and ``**storage_options`` as
    for :class:`~cortexzoo.store.fsio.StoreIO`, which says how failures are retried.

    **Concurrency.** Any number of processes may write to the same URI at once.
    Every file is replaced atomically, so a reader sees a file whole or not at all. A
    unit's rows are written as one file named by its unit key, so two writers of
    *different* units never touch each other's rows, and two writers of the *same* unit
    cannot duplicate rows: the last complete write wins, whole (with the same settings
    both write the same numbers, so a rerun is idempotent). Compaction moves units into
    part files without a moment where a unit is missing; :meth:`read_scores` returns
    every unit's rows exactly once. Listing caches are dropped before every listing, so
    units written by other processes are seen.

    The store is cheap to pickle (only the URI, options and retry policy travel),
    so it can be handed to Ray tasks.
    """

    # ---------------------------------------------------------------- scores
    def scores_uri(self) -> str:
        """URI of the scores dataset (readable with ``pandas.read_parquet``)."""
        return self.uri_of(_SCORES) + "/"

    def _unit_path(self, unit_key: str, folder: str = _SCORES) -> str:
        check_key(unit_key, "unit_key")
        if unit_key.startswith(PART_PREFIX):
            raise ValueError(f"unit_key {unit_key!r} may not start with {PART_PREFIX!r} "
                             "(reserved for compacted files)")
        return self._path(folder, unit_key + _PARQUET_SUFFIX)

    def write_scores(self, df: pd.DataFrame, unit_key: str,
                     neuroids: pd.DataFrame | None = None) -> str:
        """Validate ``df`` and write it atomically as the unit ``unit_key``.

        ``neuroids``: the unit's per-neuroid rows (columns of
        :data:`~cortexzoo.store.schema.NEUROID_COLUMNS` but ``unit_key``), written
        first, so that a unit that counts as done has both. Rewriting a unit replaces
        its files (idempotent). Nothing is written when validation fails.

        Returns
        -------
        str
            The URI of the written scores file.

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
        if neuroids is not None and len(neuroids):
            nb = _table_bytes(neuroid_table(neuroids.assign(unit_key=unit_key)))
            self._write_atomic(self._unit_path(unit_key, _NEUROIDS), nb)
        self._write_atomic(path, data)
        return self._display(path)

    def has_unit(self, unit_key: str) -> bool:
        """True when the unit's rows are in the store."""
        return (self._exists(self._unit_path(unit_key))
                or unit_key in self.completed_units(verify=False))

    def _sources(self, folder: str, verify: bool = False, fetch: bool = False) -> UnitSources:
        """The unit files and part files of ``folder``: part files' unit keys are read
        from their ``unit_key`` column; with ``verify`` every unit file is parsed too
        (a truncated file is not a done unit); ``fetch`` keeps the bytes read."""
        names = [b for b in self._list(folder) if b.endswith(_PARQUET_SUFFIX)]
        src = UnitSources()
        parts = [b for b in names if b.startswith(PART_PREFIX)]
        units = [b for b in names if not b.startswith(PART_PREFIX)]
        need = parts + (units if (verify or fetch) else [])
        blobs = self._cat_many([self._path(folder, b) for b in need])
        for b in units:
            key = b[:-len(_PARQUET_SUFFIX)]
            if b in need:
                data = blobs[self._path(folder, b)]
                try:
                    pq.read_metadata(pa.BufferReader(data))
                except (pa.ArrowException, OSError, ValueError):
                    src.corrupt.append(b)
                    continue
                if fetch:
                    src.blobs[b] = data
            src.files[key] = b
        for b in parts:
            data = blobs[self._path(folder, b)]
            try:
                keys = pq.read_table(pa.BufferReader(data), columns=["unit_key"]).column(0)
                src.parts[b] = set(keys.to_pylist()) if keys.null_count == 0 else set()
            except (pa.ArrowException, OSError, ValueError, KeyError):
                src.corrupt.append(b)
                continue
            if fetch:
                src.blobs[b] = data
        return src

    def completed_units(self, verify: bool = True) -> set[str]:
        """Unit keys whose rows are in the store. With ``verify`` (default) every unit
        file is parsed, and a corrupt or truncated one does not count (a warning names
        it), so that a resumed run redoes that unit."""
        src = self._sources(_SCORES, verify=verify)
        for b in src.corrupt:
            log.warning("scores file %s is corrupt or truncated; its unit will be redone",
                        self._display(self._path(_SCORES, b)))
        return src.units

    def _read_folder(self, folder: str, empty, columns: Sequence[str] | None, filters: Any,
                     known: Iterable[str]) -> pa.Table | None:
        src = self._sources(folder, fetch=True)
        if src.corrupt:
            p = self._path(folder, src.corrupt[0])
            raise CorruptFileError(f"{folder} file {self._display(p)} is corrupt or truncated; "
                                   "delete it to recompute its units")
        take = src.take
        if not take:
            if columns is not None:
                unknown = [c for c in columns if c not in known]
                if unknown:
                    raise ValueError(f"unknown columns {unknown}; known: {list(known)}")
            return None
        tables = []
        for name in sorted(take):
            try:
                t = pq.read_table(pa.BufferReader(src.blobs[name]))
            except (pa.ArrowException, OSError, ValueError) as exc:
                p = self._path(folder, name)
                raise CorruptFileError(f"{folder} file {self._display(p)} is corrupt or truncated "
                                       f"({exc}); delete it to recompute its units") from exc
            keep = take[name]
            if keep is not None:
                t = t.filter(pc.is_in(t.column("unit_key"), pa.array(sorted(keep))))
            tables.append(t)
        try:
            table = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"files under {self.uri_of(folder)} have incompatible schemas "
                             f"({exc})") from exc
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
        return table

    def read_scores(self, columns: Sequence[str] | None = None,
                    filters: Any = None) -> pd.DataFrame:
        """Every unit's scores, each unit once.

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
        table = self._read_folder(_SCORES, None, columns, filters, _ALL_KNOWN)
        if table is None:
            return empty_scores(columns)
        return canonical_dtypes(table.to_pandas())

    def read_neuroid_scores(self, columns: Sequence[str] | None = None,
                            filters: Any = None) -> pd.DataFrame:
        """Every unit's per-neuroid rows (strings as categoricals, values float32)."""
        table = self._read_folder(_NEUROIDS, None, columns, filters, list(NEUROID_COLUMNS))
        if table is None:
            cols = list(columns) if columns is not None else list(NEUROID_COLUMNS)
            return pd.DataFrame({c: pd.Series([], dtype="category" if c not in ("value", "ceiling")
                                              else "float32") for c in cols})
        return table.to_pandas()

    # -------------------------------------------------------------- compaction
    def compact(self, units: Iterable[str] | None = None, run_id: str | None = None) -> dict:
        """Move unit files into a few large part files, in ``scores/`` and
        ``neuroid_scores/``: first the part files (atomically), then the unit files are
        deleted. ``units``: the unit keys to move (default every unit file); ``run_id``
        names the parts. Corrupt files found are deleted with a warning (their units are
        redone by the next run). Returns ``{"scores": n_units, "neuroid_scores": n_units,
        "parts": n_files}``.

        A kill at any point loses nothing: until a unit's file is deleted its rows are in
        it, and readers take each unit from one file only."""
        want = None if units is None else set(units)
        tag = _part_tag(run_id)
        out = {"parts": 0}
        for folder in (_SCORES, _NEUROIDS):
            src = self._sources(folder, fetch=True)
            keys = sorted(k for k in src.files if want is None or k in want)
            out[folder] = len(keys)
            for b in src.corrupt:
                log.warning("deleting corrupt %s file %s (its units are redone by the next run)",
                            folder, self._display(self._path(folder, b)))
                self.delete(f"{folder}/{b}")
            if len(keys) < 2 and not (keys and src.parts):
                continue  # nothing to gain
            tables = [pq.read_table(pa.BufferReader(src.blobs[src.files[k]])) for k in keys]
            table = pa.concat_tables(tables, promote_options="permissive")
            if folder == _SCORES:  # one schema for every part: the canonical one
                df = validate_scores(canonical_dtypes(table.to_pandas()))
                chunks = [scores_to_parquet_bytes(df.iloc[a:a + PART_ROWS].reset_index(drop=True))
                          for a in range(0, len(df), PART_ROWS)]
            else:
                chunks = [_table_bytes(table.slice(a, PART_ROWS))
                          for a in range(0, table.num_rows, PART_ROWS)]
            for i, data in enumerate(chunks):
                self._write_atomic(self._path(folder, f"{PART_PREFIX}{tag}-{i:03d}{_PARQUET_SUFFIX}"),
                                   data)
                out["parts"] += 1
            for k in keys:
                self.delete(f"{folder}/{src.files[k]}")
        return out

    def forget_units(self, units: Iterable[str]) -> int:
        """Remove the rows of ``units`` from ``scores/`` and ``neuroid_scores/`` so that
        the next run recomputes them, wherever they live: their own files are deleted,
        and a part file holding one is rewritten without it (the new part first, then
        the old one is deleted, so a kill loses no other unit). Returns the number of
        units that were in the store."""
        gone = set(units)
        for k in gone:
            self._unit_path(k)  # a bad key fails before anything is touched
        found = gone & self.completed_units(verify=False)
        for folder in (_SCORES, _NEUROIDS):
            src = self._sources(folder, fetch=True)
            take = src.take
            for part, held in sorted(src.parts.items()):
                if not held & gone:
                    continue
                won = take.get(part, set())
                keep = (held if won is None else won) - gone
                if keep:
                    t = pq.read_table(pa.BufferReader(src.blobs[part]))
                    t = t.filter(pc.is_in(t.column("unit_key"), pa.array(sorted(keep))))
                    # a new name sorts newest, and holds only units this part won
                    name = f"{PART_PREFIX}{_part_tag('forget')}-000{_PARQUET_SUFFIX}"
                    self._write_atomic(self._path(folder, name), _table_bytes(t))
                self.delete(f"{folder}/{part}")
            for k in sorted(gone & set(src.files)):
                self.delete(f"{folder}/{src.files[k]}")
        return len(found)

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
