"""The score table: its columns, their dtypes, validation and coercion.

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
import io
import numbers
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import ScoreSchemaError
from .provenance import code_version

__all__ = ["SCORE_COLUMNS", "OPTIONAL_COLUMNS", "COLUMN_KINDS", "SCORE_DTYPES",
           "NEUROID_COLUMNS", "neuroid_table",
           "validate_scores", "empty_scores", "make_score_rows", "canonical_dtypes",
           "scores_to_parquet_bytes"]

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
    "unit_key", "scan_key", "alpha", "alpha_median", "best_layer", "k_units", "domain",
    "stimulus", "preprocessing", "ceiling_source", "ci_low", "ci_high", "weights_id", "solver",
]

#: Kind of each known column: str, float, int (no nulls), Int (nullable int), timestamp.
COLUMN_KINDS: dict[str, str] = {
    **{c: "str" for c in ("run_id", "dataset", "region", "model", "source", "weights",
                          "layer", "reduction", "method", "metric", "split",
                          "code_version", "unit_key", "scan_key", "best_layer", "domain",
                          "stimulus", "preprocessing", "ceiling_source", "weights_id",
                          "solver")},
    **{c: "float" for c in ("relative_depth", "value", "ceiling", "ceiled_value",
                            "alpha", "alpha_median", "ci_low", "ci_high")},
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


def scores_to_parquet_bytes(df: pd.DataFrame) -> bytes:
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


def canonical_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """Bring known columns read back from Parquet to their documented dtypes."""
    for c in df.columns:
        if c not in COLUMN_KINDS:
            continue
        want = SCORE_DTYPES[c]
        if df[c].dtype != want:
            df[c] = df[c].astype(want)
    return df



def make_score_rows(common: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a validated score table from shared fields and per-row fields.

    Each row is ``{**common, **row}``. Filled in when missing (or null):
    ``created_at`` (now, UTC, one stamp for the batch), ``code_version``
    (:func:`code_version`). ``ceiled_value`` is always computed here as ``value /
    ceiling`` (:func:`cortexzoo.mapping.ceiled`, kind "ratio"): NaN where the ceiling
    is missing, zero, negative or not finite. The ``ceiling`` column holds the
    denominator, e.g. sqrt(reliability) for correlations (SCIENCE.md section 2).

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
    # ceiled_value is always value / ceiling by the one rule of mapping.ceiled: NaN where
    # the ceiling is missing, zero or negative (a given ceiled_value is not trusted)
    from ..mapping.ceilings import ceiled

    if "value" in df.columns:
        value = pd.to_numeric(df["value"], errors="coerce").astype("float64")
        ceiling = (pd.to_numeric(df["ceiling"], errors="coerce").astype("float64")
                   if "ceiling" in df.columns else pd.Series(np.nan, index=df.index))
        df["ceiled_value"] = np.asarray(ceiled(value.to_numpy(), ceiling.to_numpy(), "ratio"),
                                        dtype=np.float64).reshape(-1)
    return validate_scores(df)




# --------------------------------------------------------------- per-neuroid scores

#: Columns of ``neuroid_scores/``: one row per (model, layer, neuroid, metric). Strings
#: are dictionary-encoded (categoricals in pandas) and values float32: the curated zoo on
#: 1000 neuroids is about 200 M rows.
NEUROID_COLUMNS: dict[str, Any] = {
    **{c: pa.dictionary(pa.int32(), pa.string()) for c in
       ("run_id", "dataset", "scan_key", "unit_key", "model", "layer", "region", "neuroid_id",
        "subject", "metric")},
    "value": pa.float32(),
    "ceiling": pa.float32(),
}


def neuroid_table(df: pd.DataFrame) -> pa.Table:
    """A per-neuroid table in the stored schema; raises ScoreSchemaError naming what is
    missing or not storable."""
    missing = [c for c in NEUROID_COLUMNS if c not in df.columns]
    if missing:
        raise ScoreSchemaError(f"invalid per-neuroid table: missing columns {missing}")
    arrays = []
    for c, typ in NEUROID_COLUMNS.items():
        col = df[c]
        try:
            if pa.types.is_dictionary(typ):
                if col.isna().any():
                    raise ScoreSchemaError(f"invalid per-neuroid table: column {c!r} has nulls")
                arrays.append(pa.array(col.astype(str).to_numpy(dtype=object)).dictionary_encode()
                              .cast(typ))
            else:
                arrays.append(pa.array(pd.to_numeric(col).to_numpy(np.float32), type=typ))
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError) as exc:
            if isinstance(exc, ScoreSchemaError):
                raise
            raise ScoreSchemaError(f"invalid per-neuroid table: column {c!r}: {exc}") from exc
    return pa.Table.from_arrays(arrays, schema=pa.schema(list(NEUROID_COLUMNS.items())))
