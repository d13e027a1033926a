"""Results on any fsspec URI: score tables, run manifests and a feature cache.

Layout under a results URI (a local folder or ``s3://bucket/prefix``)::

    scores/<unit_key>.parquet     one file per work unit; together a Parquet dataset
    manifest/<run_id>.json        config, package versions, host, times (secrets scrubbed)
    features/<cache_key>/...      optional cache of reduced feature arrays (.npy)

A unit is complete exactly when its scores file exists. Every write is atomic:
locally a temporary file (``.tmp-*``, which Parquet readers skip) is renamed over
the target; on object stores the complete bytes go up in one PUT.

Score dtypes (stable, so that files of different units concatenate):

=================  ================================  =======================
kind               columns                           pandas / arrow
=================  ================================  =======================
string             run_id dataset region model       str (pandas>=3) or
                                                     object (pandas 2) / string
                   source weights layer reduction
                   method metric split code_version
                   unit_key best_layer domain
float              relative_depth value ceiling      float64 / double
                   ceiled_value alpha alpha_median
int (no nulls)     n_neuroids n_stimuli seed         int64 / int64
int (nullable)     k_units                           Int64 / int64
timestamp          created_at                        datetime64[ns, UTC]
=================  ================================  =======================

Every file carries all of ``SCORE_COLUMNS`` and ``OPTIONAL_COLUMNS`` (null where
unused), so ``pandas.read_parquet(uri + "/scores/")`` sees one schema. Further
method-specific columns are allowed; :meth:`ResultStore.read_scores` unifies them
across files, while a plain ``pandas.read_parquet`` of the folder takes the schema
of one file and may drop columns that file lacks.
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import importlib.metadata
import io
import json
import numbers
import os
import platform
import re
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from .retry import (
    AUTH,
    NOT_FOUND,
    TRANSIENT,
    RetryPolicy,
    RetryStats,
    StoreUnavailableError,
    call_with_retry,
    classify,
    error_name,
)
from .uri import is_remote, join, protocol_of, url_to_fs

__all__ = [
    "SCORE_COLUMNS",
    "OPTIONAL_COLUMNS",
    "COLUMN_KINDS",
    "SCORE_DTYPES",
    "ResultStore",
    "ScoreSchemaError",
    "CorruptFileError",
    "StoreNotFoundError",
    "StoreAccessError",
    "StoreUnavailableError",
    "RetryPolicy",
    "make_score_rows",
    "validate_scores",
    "empty_scores",
    "safe_key",
    "scrub_secrets",
    "code_version",
    "package_versions",
    "build_manifest",
]

# --------------------------------------------------------------------------- schema

#: Columns every score row carries (SCIENCE.md section 10), in file order.
SCORE_COLUMNS: list[str] = [
    "run_id", "dataset", "region", "model", "source", "weights", "layer",
    "relative_depth", "reduction", "method", "metric", "value", "ceiling",
    "ceiled_value", "n_neuroids", "n_stimuli", "split", "seed", "code_version",
    "created_at",
]

#: Method-specific columns; always present in files (null where unused).
OPTIONAL_COLUMNS: list[str] = [
    "unit_key", "alpha", "alpha_median", "best_layer", "k_units", "domain",
]

#: Kind of each known column: str, float, int (no nulls), Int (nullable int), timestamp.
COLUMN_KINDS: dict[str, str] = {
    **{c: "str" for c in ("run_id", "dataset", "region", "model", "source", "weights",
                          "layer", "reduction", "method", "metric", "split",
                          "code_version", "unit_key", "best_layer", "domain")},
    **{c: "float" for c in ("relative_depth", "value", "ceiling", "ceiled_value",
                            "alpha", "alpha_median")},
    **{c: "int" for c in ("n_neuroids", "n_stimuli", "seed")},
    "k_units": "Int",
    "created_at": "timestamp",
}

#: String columns that identify a score and therefore may not be null.
_NOT_NULL_STR = {"run_id", "dataset", "region", "model", "method", "metric", "code_version"}

#: The pandas default for text: ``str`` (StringDtype, NaN for missing) with
#: pandas >= 3, ``object`` before; Parquet readers produce the same.
_STR_DTYPE = pd.Series(["a"]).dtype

_PANDAS_DTYPE = {"str": _STR_DTYPE, "float": "float64", "int": "int64", "Int": "Int64",
                 "timestamp": "datetime64[ns, UTC]"}
_ARROW_TYPE = {"str": pa.string(), "float": pa.float64(), "int": pa.int64(),
               "Int": pa.int64(), "timestamp": pa.timestamp("ns", tz="UTC")}

#: pandas dtype of each known column.
SCORE_DTYPES: dict[str, Any] = {c: _PANDAS_DTYPE[k] for c, k in COLUMN_KINDS.items()}

_ALL_KNOWN = SCORE_COLUMNS + OPTIONAL_COLUMNS
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,199}$")
_SCORES, _MANIFEST, _FEATURES = "scores", "manifest", "features"
_PARQUET_SUFFIX = ".parquet"


class ScoreSchemaError(ValueError):
    """A score table lacks required columns or has columns of the wrong dtype."""


class CorruptFileError(ValueError):
    """A stored file cannot be parsed (truncated or not what its name says)."""


class StoreNotFoundError(FileNotFoundError):
    """The results location cannot exist (e.g. the bucket is missing)."""


class StoreAccessError(PermissionError):
    """The store refused the credentials or the permission (403, bad or missing keys).

    Raised at once (never retried); the message names the URI and what to check."""


# ------------------------------------------------------------------- validation


def _is_null(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, float) and v != v


def _first_bad(values: Iterable[Any], ok) -> Any:
    for v in values:
        if not _is_null(v) and not ok(v):
            return v
    return None


def _coerce_column(name: str, s: pd.Series, kind: str) -> tuple[pd.Series | None, str | None]:
    """Return (coerced series, None) or (None, problem description)."""
    dt = s.dtype
    if kind == "str":
        if isinstance(dt, pd.CategoricalDtype):
            s = s.astype(object)
            dt = s.dtype
        if pd.api.types.is_string_dtype(dt) or dt == object:
            bad = _first_bad(s.tolist(), lambda v: isinstance(v, str))
            if bad is not None:
                return None, f"{name!r} must hold strings, found {bad!r} ({type(bad).__name__})"
            if _STR_DTYPE == object:
                out = s.astype(object).where(s.notna(), None)
            else:
                out = s.astype(_STR_DTYPE)
            if name in _NOT_NULL_STR and out.isna().any():
                return None, f"{name!r} may not be null (row {int(np.flatnonzero(out.isna())[0])})"
            return out, None
        return None, f"{name!r} must be a string column, got dtype {dt}"
    if kind == "timestamp":
        try:
            if pd.api.types.is_datetime64_any_dtype(dt):
                out = s
            elif dt == object:
                bad = _first_bad(s.tolist(), lambda v: isinstance(v, (_dt.datetime, pd.Timestamp, str)))
                if bad is not None:
                    return None, f"{name!r} must hold timestamps, found {bad!r}"
                out = pd.to_datetime(s, utc=True)
            else:
                return None, f"{name!r} must be a timestamp column, got dtype {dt}"
            out = out.dt.tz_localize("UTC") if out.dt.tz is None else out.dt.tz_convert("UTC")
            out = out.astype("datetime64[ns, UTC]")
        except (ValueError, TypeError) as exc:
            return None, f"{name!r} cannot be read as UTC timestamps ({exc})"
        if out.isna().any():
            return None, f"{name!r} may not be null"
        return out, None
    # numeric kinds
    if pd.api.types.is_bool_dtype(dt):
        return None, f"{name!r} must be numeric, got dtype bool"
    if dt == object:
        bad = _first_bad(s.tolist(), lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool))
        if bad is not None:
            return None, f"{name!r} must be numeric, found {bad!r} ({type(bad).__name__})"
        s = pd.to_numeric(s.where(s.notna(), np.nan), errors="coerce")
        dt = s.dtype
    elif not pd.api.types.is_numeric_dtype(dt):
        return None, f"{name!r} must be numeric, got dtype {dt}"
    if kind == "float":
        return s.astype("float64"), None
    f = s.astype("float64")
    nulls = f.isna().to_numpy()
    vals = f.to_numpy()[~nulls]
    if not np.all(np.isfinite(vals)) or not np.all(vals == np.round(vals)):
        bad = vals[~(np.isfinite(vals) & (vals == np.round(vals)))][0]
        return None, f"{name!r} must hold integers, found {bad!r}"
    if kind == "int":
        if nulls.any():
            return None, f"{name!r} may not be null (row {int(np.flatnonzero(nulls)[0])})"
        if pd.api.types.is_integer_dtype(dt):
            return s.astype("int64"), None
        return f.astype("int64"), None
    return (s if pd.api.types.is_integer_dtype(dt) else f).astype("Int64"), None


def validate_scores(df: pd.DataFrame) -> pd.DataFrame:
    """Check ``df`` against the score schema and return a canonical copy.

    Benign differences are coerced (int -> float64, integral floats -> int64,
    naive timestamps -> UTC); missing optional columns are added as nulls; the
    columns are ordered ``SCORE_COLUMNS + OPTIONAL_COLUMNS + extras``.

    Raises
    ------
    ScoreSchemaError
        Naming every missing required column and every column of a bad dtype.
    """
    if not isinstance(df, pd.DataFrame):
        raise ScoreSchemaError(f"scores must be a pandas DataFrame, got {type(df).__name__}")
    problems: list[str] = []
    cols = list(df.columns)
    bad_names = [c for c in cols if not isinstance(c, str)]
    if bad_names:
        problems.append(f"column names must be strings: {bad_names!r}")
    dups = sorted({c for c in cols if cols.count(c) > 1}, key=str)
    if dups:
        problems.append(f"duplicate columns: {dups!r}")
    missing = [c for c in SCORE_COLUMNS if c not in df.columns]
    if missing:
        problems.append(f"missing required columns: {missing}")
    if problems:
        raise ScoreSchemaError("invalid score table: " + "; ".join(problems))
    df = df.reset_index(drop=True)
    out: dict[str, pd.Series] = {}
    for c in _ALL_KNOWN:
        if c not in df.columns:
            out[c] = pd.Series([None] * len(df), dtype=SCORE_DTYPES[c])
            continue
        s, problem = _coerce_column(c, df[c], COLUMN_KINDS[c])
        if problem:
            problems.append(problem)
        else:
            out[c] = s
    extras = [c for c in df.columns if c not in COLUMN_KINDS]
    for c in extras:
        try:
            pa.Array.from_pandas(df[c])
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            problems.append(f"extra column {c!r} cannot be stored in Parquet ({exc})")
        else:
            out[c] = df[c]
    if problems:
        raise ScoreSchemaError("invalid score table: " + "; ".join(problems))
    return pd.DataFrame(out, columns=_ALL_KNOWN + extras)


def _arrow_schema(df: pd.DataFrame) -> pa.Schema:
    fields = []
    for c in df.columns:
        if c in COLUMN_KINDS:
            fields.append(pa.field(c, _ARROW_TYPE[COLUMN_KINDS[c]]))
        else:
            fields.append(pa.field(c, pa.Array.from_pandas(df[c]).type))
    return pa.schema(fields)


def _scores_to_parquet_bytes(df: pd.DataFrame) -> bytes:
    """Serialize a canonical score table to Parquet bytes (in memory)."""
    table = pa.Table.from_pandas(df, schema=_arrow_schema(df), preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def empty_scores(columns: Sequence[str] | None = None) -> pd.DataFrame:
    """An empty score table with the schema's columns and dtypes."""
    cols = list(columns) if columns is not None else list(_ALL_KNOWN)
    return pd.DataFrame({c: pd.Series([], dtype=SCORE_DTYPES.get(c, "object")) for c in cols},
                        columns=cols)


def _canonical_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """Bring known columns read back from Parquet to their documented dtypes."""
    for c in df.columns:
        if c not in COLUMN_KINDS:
            continue
        want = SCORE_DTYPES[c]
        if df[c].dtype != want:
            df[c] = df[c].astype(want)
    return df


# ---------------------------------------------------------------- keys & versions


def safe_key(*parts: Any) -> str:
    """A filesystem- and S3-safe key for a work unit or cache entry.

    The key is a readable prefix built from ``parts`` plus the first 12 hex
    digits of the sha1 of all parts, so distinct parts give distinct keys even
    where sanitizing makes the prefixes equal. Parts are compared as strings
    (``safe_key("m", 3) == safe_key("m", "3")``).

    Examples
    --------
    >>> safe_key("resnet18", "layer1.0/conv1")[:24]
    'resnet18__layer1.0-conv1'
    """
    if not parts:
        raise ValueError("safe_key needs at least one part")
    strs = [str(p) for p in parts]
    digest = hashlib.sha1(json.dumps(strs).encode("utf-8")).hexdigest()[:12]
    cleaned = [re.sub(r"[^A-Za-z0-9._\-]+", "-", p).strip("._-") for p in strs]
    prefix = "__".join(p for p in cleaned if p)[:120].rstrip("._-")
    return f"{prefix}__{digest}" if prefix else digest


def _check_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(
            f"{what} {key!r} is not a safe key: use 1-200 characters from [A-Za-z0-9._-], "
            "starting with a letter or digit (build one with cortexzoo.store.safe_key)")
    return key


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``cortexzoo.__version__`` plus the git short sha when available (cached).

    ``CORTEXZOO_CODE_VERSION`` in the environment overrides it, so a driver can
    hand its version to workers that run outside a git checkout.
    """
    env = os.environ.get("CORTEXZOO_CODE_VERSION")
    if env:
        return env
    from cortexzoo import __version__

    try:
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                             cwd=os.path.dirname(os.path.abspath(__file__)),
                             capture_output=True, text=True, timeout=2)
        sha = res.stdout.strip() if res.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+g{sha}" if re.fullmatch(r"[0-9a-f]{4,40}", sha) else __version__


_VERSIONED = ("torch", "torchvision", "timm", "ray", "numpy", "scikit-learn", "scipy",
              "pandas", "pyarrow", "fsspec", "s3fs")


def package_versions() -> dict[str, str | None]:
    """Versions of python and the packages a score depends on (None if absent)."""
    from cortexzoo import __version__

    out: dict[str, str | None] = {"python": platform.python_version(), "cortexzoo": __version__}
    for name in _VERSIONED:
        try:
            v: str | None = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            v = None
        out["sklearn" if name == "scikit-learn" else name] = v
    return out


def make_score_rows(common: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a validated score table from shared fields and per-row fields.

    Each row is ``{**common, **row}``. Filled in when missing (or null):
    ``created_at`` (now, UTC, one stamp for the batch), ``code_version``
    (:func:`code_version`) and ``ceiled_value`` (``value / ceiling``; NaN where
    the ceiling is missing, zero or non-finite; the ``ceiling`` column holds the
    denominator, e.g. sqrt(reliability) for correlations, SCIENCE.md section 2).

    Raises
    ------
    ScoreSchemaError
        When required columns are missing or of the wrong type.
    """
    if isinstance(rows, Mapping):
        raise ValueError("rows must be a sequence of dicts, got a single dict")
    if len(rows) == 0:  # an empty unit is still a completed unit
        return empty_scores()
    df = pd.DataFrame.from_records([{**common, **r} for r in rows])
    n = len(df)
    if "created_at" not in df.columns or df["created_at"].isna().all():
        df["created_at"] = pd.Series([pd.Timestamp.now(tz="UTC")] * n, dtype="datetime64[ns, UTC]")
    if "code_version" not in df.columns:
        df["code_version"] = code_version()
    else:
        df["code_version"] = df["code_version"].where(df["code_version"].notna(), code_version())
    if "value" in df.columns and "ceiling" in df.columns:
        value = pd.to_numeric(df["value"], errors="coerce").astype("float64")
        ceiling = pd.to_numeric(df["ceiling"], errors="coerce").astype("float64")
        ok = np.isfinite(ceiling) & (ceiling != 0)
        ceiled = (value / ceiling.where(ok)).astype("float64")
        if "ceiled_value" not in df.columns:
            df["ceiled_value"] = ceiled
        else:
            cur = pd.to_numeric(df["ceiled_value"], errors="coerce").astype("float64")
            df["ceiled_value"] = cur.where(cur.notna(), ceiled)
    elif "ceiled_value" not in df.columns and "value" in df.columns:
        df["ceiled_value"] = np.nan
    return validate_scores(df)


# ------------------------------------------------------------------ manifests

_SECRET_KEY_RE = re.compile(
    r"(secret|passw(or)?d|token|key_?id|access_?key|credential|private_?key|api_?key|authorization)",
    re.IGNORECASE)
_URL_USERINFO_RE = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*://)[^/@\s]+@")
REDACTED = "<redacted>"


def scrub_secrets(obj: Any) -> Any:
    """Return a copy of ``obj`` with secrets redacted.

    Values under keys matching secret/password/token/key_id/access_key/
    credentials/private_key/api_key/authorization (any case, ``-`` or ``_``)
    become ``"<redacted>"``, at any depth; ``user:pass@`` in URLs is redacted too.
    """
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if isinstance(k, str) and _SECRET_KEY_RE.search(k.replace("-", "_")):
                out[k] = REDACTED
            else:
                out[k] = scrub_secrets(v)
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [scrub_secrets(v) for v in obj]
    if isinstance(obj, str):
        return _URL_USERINFO_RE.sub(lambda m: m.group(1) + REDACTED + "@", obj)
    return obj


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (_dt.datetime, _dt.date, pd.Timestamp)):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def build_manifest(run_id: str, config: Mapping[str, Any], *,
                   dataset_fingerprint: str | None = None,
                   started_at: Any = None, ended_at: Any = None,
                   **extra: Any) -> dict[str, Any]:
    """A run manifest: config, package versions, host, code version and times.

    Secrets are scrubbed when it is written (:meth:`ResultStore.write_manifest`).
    """
    return {
        "run_id": run_id,
        "config": dict(config),
        "dataset_fingerprint": dataset_fingerprint,
        "versions": package_versions(),
        "code_version": code_version(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "started_at": started_at,
        "ended_at": ended_at,
        **extra,
    }


# ---------------------------------------------------------------------- store


class ResultStore:
    """Scores, manifests and cached arrays under one results URI.

    Parameters
    ----------
    uri : str
        A local folder or an fsspec URI such as ``s3://bucket/prefix``.
    retry : RetryPolicy, optional
        How transient errors of a remote store are retried (default: from the
        ``CORTEXZOO_S3_RETRY*`` environment variables, see :mod:`cortexzoo.store.retry`).
    **storage_options
        Passed to fsspec (e.g. ``endpoint_url``); never written anywhere.

    Notes
    -----
    **Failures.** On a remote store every read, write, listing and existence check
    is retried on transient errors (5xx, throttling, timeouts, dropped connections)
    with exponential backoff and jitter, bounded in tries and time; the library's
    own retry loops (s3fs, botocore) are turned off for the store's filesystem
    unless ``retries``/``config_kwargs`` are given, so that the bound holds and
    every retry is counted (:meth:`retry_stats`). gcsfs's own loop (6 tries, about
    30 s per request) cannot be turned off per filesystem; on ``gs://`` the store
    counts and retries what outlasts it. Permanent errors are raised on
    the first try with the URI in the message: :class:`StoreAccessError` (403, bad
    or missing credentials), :class:`StoreNotFoundError` (no such bucket). When
    retries run out, :class:`StoreUnavailableError`; an unreachable endpoint counts
    as transient and, with the default policy, gives up after under a minute of
    backoff (at most ``deadline``, 180 s). A failed call never removes or alters a
    file written before it.

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

    def __init__(self, uri: str | os.PathLike, *, retry: RetryPolicy | None = None,
                 **storage_options: Any) -> None:
        uri = os.fspath(uri)
        if not isinstance(uri, str) or not uri.strip():
            raise ValueError(f"results URI must be a non-empty string, got {uri!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ValueError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        self.uri = uri.rstrip("/") if uri.rstrip("/") and not uri.endswith("://") else uri
        self._storage_options = dict(storage_options)
        self.retry_policy = retry or RetryPolicy.from_env()
        self._stats = RetryStats()
        self._fs = None
        self._root: str | None = None
        self._bucket_ok = False

    # pickling: only the URI, options and policy travel; the filesystem is rebuilt lazily
    def __getstate__(self) -> dict[str, Any]:
        return {"uri": self.uri, "_storage_options": self._storage_options,
                "retry_policy": self.retry_policy}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["uri"], retry=state.get("retry_policy"), **state["_storage_options"])

    def __repr__(self) -> str:
        return f"ResultStore({self.uri!r})"

    def retry_stats(self) -> dict[str, Any]:
        """What this store object retried so far (all threads together):
        ``retries`` (tries repeated), ``operations_retried``, ``recovered`` (retried,
        then succeeded), ``gave_up`` (failed on a transient error, out of retries)
        and ``by_error`` (transient errors seen, by S3 code or type)."""
        return self._stats.as_dict()

    # ------------------------------------------------------------- plumbing
    def _fs_options(self) -> dict[str, Any]:
        opts = dict(self._storage_options)
        if protocol_of(self.uri) in ("s3", "s3a"):
            # The store retries itself (bounded, counted); nested retry loops in s3fs
            # (5 tries) and botocore (5 more each) would multiply into minutes.
            # A private instance, so that turning s3fs's loop off touches no one else's.
            opts.setdefault("skip_instance_cache", True)
            ck = dict(opts.get("config_kwargs") or {})
            ck.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
            opts["config_kwargs"] = ck
        return opts

    @property
    def fs(self):
        """The fsspec filesystem (created on first use)."""
        if self._fs is None:
            fs, self._root = url_to_fs(self.uri, **self._fs_options())
            if protocol_of(self.uri) in ("s3", "s3a") and hasattr(fs, "retries"):
                fs.retries = 1  # s3fs: one try per call; the store's own loop retries
            self._fs = fs
        return self._fs

    @property
    def root(self) -> str:
        """The store's root as a path of :attr:`fs`."""
        self.fs
        return self._root.rstrip("/") or self._root

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/")] + [p.strip("/") for p in parts if p])

    def uri_of(self, *parts: str) -> str:
        """The full URI of ``parts`` under the store."""
        return join(self.uri, *parts)

    @staticmethod
    def _relpath(relpath: str) -> str:
        if not isinstance(relpath, str) or not relpath or relpath.startswith("/") or "\\" in relpath:
            raise ValueError(f"relpath must be a relative path with '/' separators, got {relpath!r}")
        segs = relpath.split("/")
        if any(s in ("", ".", "..") for s in segs):
            raise ValueError(f"relpath {relpath!r} has an empty, '.' or '..' segment")
        return relpath

    def _bucket(self) -> str | None:
        if self.is_local or protocol_of(self.uri) not in ("s3", "s3a", "gs", "gcs", "az", "abfs"):
            return None
        return self.root.split("/", 1)[0]

    def _endpoint(self) -> str:
        if protocol_of(self.uri) in ("gs", "gcs"):
            ep = self._storage_options.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST")
            return f"endpoint {ep}" if ep else "the project that owns the bucket"
        ep = (self._storage_options.get("endpoint_url")
              or (self._storage_options.get("client_kwargs") or {}).get("endpoint_url")
              or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
        return f"endpoint {ep}" if ep else "the default AWS endpoint (set AWS_ENDPOINT_URL for another)"

    def _access_error(self, exc: BaseException, action: str, path: str) -> StoreAccessError:
        name = error_name(exc)
        if self.is_local:
            return StoreAccessError(
                f"results URI {self.uri!r}: {action} {self._display(path)} was refused ({exc}); "
                "check the folder's permissions")
        bucket = self._bucket()
        if protocol_of(self.uri) in ("gs", "gcs"):
            creds = ("`gcloud auth application-default login`, GOOGLE_APPLICATION_CREDENTIALS "
                     "or the VM's service account with a Storage Object Admin role")
        else:
            creds = ("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the "
                     "instance role")
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return StoreAccessError(
            f"results URI {self.uri!r}: {action} {self._display(path)} was refused ({name}: {first}). "
            f"Check the credentials ({creds}), that they may list, read and write bucket "
            f"{bucket!r}, and {self._endpoint()}")

    def _io(self, action: str, path: str, fn):
        """Run one filesystem call: retried on transient errors (remote stores only),
        an auth error turned into :class:`StoreAccessError` naming the URI."""
        try:
            if self.is_local:
                return fn()
            return call_with_retry(fn, policy=self.retry_policy, stats=self._stats,
                                   what=f"{action} {self._display(path)}")
        except StoreUnavailableError:
            raise
        except StoreAccessError:
            raise
        except Exception as exc:
            if classify(exc) == AUTH:
                raise self._access_error(exc, action, path) from exc
            raise

    def _check_bucket(self) -> None:
        """Raise StoreNotFoundError (naming the URI) if the bucket does not exist,
        StoreAccessError if the credentials are refused."""
        if self._bucket_ok:
            return
        bucket = self._bucket()
        if bucket is None:
            self._bucket_ok = True
            return
        missing = StoreNotFoundError(
            f"results URI {self.uri!r}: bucket {bucket!r} does not exist (or is not visible "
            f"with the current credentials); check the bucket name, the region and "
            f"{self._endpoint()}, or create the bucket")
        fs = self.fs
        if hasattr(fs, "call_s3"):
            # s3fs's exists() answers False on any error (503, 403): ask directly.
            try:
                self._io("checking bucket", bucket, lambda: fs.call_s3("head_bucket", Bucket=bucket))
            except FileNotFoundError as exc:
                raise missing from exc
            except OSError as exc:
                if classify(exc) == NOT_FOUND:
                    raise missing from exc
                raise
        elif protocol_of(self.uri) in ("gs", "gcs") and hasattr(fs, "call"):
            # gcsfs's exists() lists the bucket when GET on it is refused, and an empty
            # bucket then looks missing; GCS answers 404 for a missing bucket whoever asks
            try:
                self._io("checking bucket", bucket,
                         lambda: fs.call("GET", "b/{}", bucket, json_out=True))
            except FileNotFoundError as exc:
                raise missing from exc
            except StoreAccessError:
                pass  # it exists; the role covers objects only (e.g. storage.objectAdmin)
        else:
            def probe() -> bool:
                fs.invalidate_cache(bucket)
                return fs.exists(bucket)

            if not self._io("checking bucket", bucket, probe):
                raise missing
        self._bucket_ok = True

    def _translate(self, exc: BaseException, action: str, path: str) -> BaseException:
        """Turn a filesystem error into one that names the URI."""
        if isinstance(exc, (StoreAccessError, StoreNotFoundError, StoreUnavailableError)):
            return exc
        kind = classify(exc)
        if isinstance(exc, FileNotFoundError) or kind == NOT_FOUND:
            self._check_bucket()  # raises StoreNotFoundError when the bucket is missing
            return FileNotFoundError(f"{action} {self._display(path)} failed: not found ({exc})")
        if kind == AUTH:
            return self._access_error(exc, action, path)
        return exc

    def _display(self, path: str) -> str:
        if path != self.root and self.root.startswith(path.rstrip("/") + "/"):
            return f"{protocol_of(self.uri)}://{path}"  # the bucket itself
        rel = path[len(self.root):].lstrip("/") if path.startswith(self.root) else path
        return self.uri_of(rel) if rel else self.uri

    def _write_atomic(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` so that readers see all of it or nothing."""
        if self.is_local:
            d = os.path.dirname(path)
            tmp = os.path.join(d, f".tmp-{os.path.basename(path)}-{uuid.uuid4().hex}")
            try:
                os.makedirs(d, exist_ok=True)
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except PermissionError as exc:
                self._unlink_quietly(tmp)
                raise self._access_error(exc, "writing", path) from exc
            except BaseException:
                self._unlink_quietly(tmp)
                raise
            return

        def put() -> None:
            # object stores: one PUT of the complete bytes is atomic; a PUT repeated
            # after a lost answer writes the same bytes again (idempotent)
            self.fs.pipe_file(path, data)

        try:
            self._io("writing", path, put)
        except (FileNotFoundError, PermissionError) as exc:
            raise self._translate(exc, "writing", path) from exc
        self.fs.invalidate_cache(path)

    @staticmethod
    def _unlink_quietly(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def _list(self, sub: str) -> list[str]:
        """Base names directly under ``sub`` (one listing call; [] if absent)."""
        p = self._path(sub)

        def ls() -> list[str]:
            self.fs.invalidate_cache(p)
            return self.fs.ls(p, detail=False)

        try:
            names = self._io("listing", p, ls)
        except (FileNotFoundError, NotADirectoryError):
            self._check_bucket()
            return []
        out = []
        for n in names:
            base = n.rstrip("/").rsplit("/", 1)[-1]
            if base and not base.startswith((".", "_")):
                out.append(base)
        return sorted(out)

    def _exists(self, path: str) -> bool:
        def probe() -> bool:
            self.fs.invalidate_cache(path)
            return self.fs.exists(path)

        if self._io("checking", path, probe):
            return True
        self._check_bucket()
        return False

    def _cat_many(self, paths: list[str]) -> dict[str, bytes]:
        """Fetch many files (concurrently on object stores); only the files that
        failed on a transient error are fetched again."""
        if not paths:
            return {}
        out: dict[str, bytes] = {}
        pending = list(paths)

        def fetch() -> None:
            got = self.fs.cat(list(pending), on_error="return")
            if not isinstance(got, dict):  # a single path comes back bare
                got = {pending[0]: got}
            transient = None
            for p in list(pending):
                v = got.get(p, got.get(self.fs._strip_protocol(p)))
                if isinstance(v, BaseException):
                    if classify(v) == TRANSIENT:
                        transient = transient or v
                        continue
                    raise self._translate(v, "reading", p) from v
                if v is None:
                    raise FileNotFoundError(f"reading {self._display(p)} failed: not returned")
                out[p] = v
                pending.remove(p)
            if transient is not None:
                raise transient

        if len(paths) == 1:
            self._io("reading", paths[0], fetch)
        else:
            parent = paths[0].rsplit("/", 1)[0]
            self._io(f"reading {len(paths)} files under", parent, fetch)
        return {p: out[p] for p in paths}

    # ---------------------------------------------------------------- scores
    def scores_uri(self) -> str:
        """URI of the scores dataset (readable with ``pandas.read_parquet``)."""
        return self.uri_of(_SCORES) + "/"

    def _unit_path(self, unit_key: str) -> str:
        return self._path(_SCORES, _check_key(unit_key, "unit_key") + _PARQUET_SUFFIX)

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
        data = _scores_to_parquet_bytes(canon)
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
        return _canonical_dtypes(table.to_pandas())

    # ------------------------------------------------------------- manifests
    def write_manifest(self, run_id: str, manifest: Mapping[str, Any]) -> str:
        """Write ``manifest/<run_id>.json`` with secrets scrubbed; returns its URI.

        ``run_id``, ``host``, ``code_version``, ``versions`` and ``written_at``
        are added when absent (see :func:`build_manifest` for a full one).
        """
        _check_key(run_id, "run_id")
        if not isinstance(manifest, Mapping):
            raise ValueError(f"manifest must be a mapping, got {type(manifest).__name__}")
        doc = dict(scrub_secrets(manifest))
        doc.setdefault("run_id", run_id)
        doc.setdefault("host", socket.gethostname())
        doc.setdefault("code_version", code_version())
        doc.setdefault("versions", package_versions())
        doc["written_at"] = _now_iso()
        path = self._path(_MANIFEST, f"{run_id}.json")
        self._write_atomic(path, json.dumps(doc, indent=2, default=_json_default).encode("utf-8"))
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

    def _parse_json(self, data: bytes, path: str) -> Any:
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptFileError(f"{self._display(path)} is not valid JSON ({exc})") from exc

    # --------------------------------------------------------- generic files
    def exists(self, relpath: str) -> bool:
        """True when ``relpath`` (relative to the store root) exists."""
        return self._exists(self._path(self._relpath(relpath)))

    def put_bytes(self, relpath: str, data: bytes) -> str:
        """Write ``data`` atomically at ``relpath``; returns its URI."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"data must be bytes, got {type(data).__name__}")
        path = self._path(self._relpath(relpath))
        self._write_atomic(path, bytes(data))
        return self._display(path)

    def delete(self, relpath: str) -> bool:
        """Remove the file at ``relpath``; False when there was none."""
        path = self._path(self._relpath(relpath))
        if not self._exists(path):   # object stores delete a missing key without a word
            return False
        try:
            self._io("deleting", path, lambda: self.fs.rm_file(path))
        except FileNotFoundError:
            return False
        return True

    def get_bytes(self, relpath: str) -> bytes | None:
        """The bytes at ``relpath``, or None when it does not exist."""
        path = self._path(self._relpath(relpath))
        try:
            return self._io("reading", path, lambda: self.fs.cat_file(path))
        except (FileNotFoundError, IsADirectoryError):
            self._check_bucket()
            return None

    def put_json(self, relpath: str, obj: Any) -> str:
        """Write ``obj`` as JSON (atomic); returns its URI."""
        return self.put_bytes(relpath, json.dumps(obj, indent=2, default=_json_default).encode("utf-8"))

    def get_json(self, relpath: str) -> Any:
        """Parsed JSON at ``relpath``, or None when it does not exist."""
        data = self.get_bytes(relpath)
        return None if data is None else self._parse_json(data, self._path(relpath))

    def put_array(self, relpath: str, arr: np.ndarray) -> str:
        """Write ``arr`` as ``.npy`` (no pickles) atomically; returns its URI.

        Meant for ``features/<cache_key>/<name>.npy`` (see :meth:`feature_path`).
        """
        arr = np.asarray(arr)
        if arr.dtype.hasobject:
            raise ValueError(f"cannot cache an object array at {relpath!r}; use a numeric dtype")
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        return self.put_bytes(relpath, buf.getvalue())

    def get_array(self, relpath: str) -> np.ndarray | None:
        """The array at ``relpath``, or None when it does not exist."""
        data = self.get_bytes(relpath)
        if data is None:
            return None
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise CorruptFileError(f"{self._display(self._path(relpath))} is not a valid .npy file ({exc})") from exc

    @staticmethod
    def feature_path(cache_key: str, name: str) -> str:
        """``features/<cache_key>/<name>.npy`` (both keys checked to be safe)."""
        _check_key(cache_key, "cache_key")
        _check_key(name, "array name")
        return f"{_FEATURES}/{cache_key}/{name}.npy"
