"""Query the scores dataset without loading all of it (``cortexzoo results``).

The filters (region, method, metric, model) become one pyarrow expression handed to
the dataset scanner, so row groups whose min/max statistics exclude it are never
decoded, and only the columns asked for are read. ``top=N`` then ranks models with
the leaderboard's logic (best layer per model, SCIENCE.md section 4).
"""
from __future__ import annotations

import json
import re

from typing import Any, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..store import COLUMN_KINDS, CorruptFileError, empty_scores
from ..store.schema import canonical_dtypes
from .tables import best_layers, heldout_layers, leaderboard, scan_label, with_scan

__all__ = ["QueryError", "query_scores", "format_results", "glob_to_regex", "store_listing",
           "read_matching"]

#: Columns the leaderboard (and therefore ``top``) needs.
_BOARD_COLUMNS = ["run_id", "dataset", "scan_key", "region", "model", "source", "weights", "layer",
                  "relative_depth", "method", "metric", "split", "value", "ceiling",
                  "ceiled_value", "n_neuroids"]
_FORMATS = ("table", "csv", "json")


class QueryError(ValueError):
    """A results query that cannot be answered as asked (bad column, format, top...)."""


def glob_to_regex(pattern: str) -> str:
    """Anchored RE2 regex for a shell glob (``*``, ``?``, ``[...]``); fnmatch's own
    translation ends in ``\\Z``, which RE2 (pyarrow) does not know."""
    out, i, n = ["^"], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = pattern.find("]", i + 2 if i + 1 < n and pattern[i + 1] in "!]" else i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                neg = body.startswith("!")
                body = body[1:] if neg else body
                out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    return "".join(out)


def _as_list(v: Any) -> list[str] | None:
    if v is None:
        return None
    vals = [v] if isinstance(v, str) else list(v)
    return [str(x) for x in vals] or None


def _filter_expression(region=None, model=None, method=None, metric=None, dataset=None,
                       run=None) -> pc.Expression | None:
    """One conjunction; equality/isin terms let the scanner prune row groups by statistics."""
    terms = []
    for col, val in (("region", region), ("method", method), ("metric", metric),
                     ("dataset", dataset), ("run_id", run)):
        vals = _as_list(val)
        if vals:
            terms.append(pc.field(col) == vals[0] if len(vals) == 1
                         else pc.field(col).isin(vals))
    globs = _as_list(model)
    if globs:
        parts = []
        for g in globs:
            if any(ch in g for ch in "*?["):
                parts.append(pc.match_substring_regex(pc.field("model").cast(pa.string()),
                                                     glob_to_regex(g)))
            else:  # a plain name: equality, which statistics can prune
                parts.append(pc.field("model") == g)
        expr = parts[0]
        for p in parts[1:]:
            expr = expr | p
        terms.append(expr)
    if not terms:
        return None
    expr = terms[0]
    for t in terms[1:]:
        expr = expr & t
    return expr


def _rank_top(df: pd.DataFrame, top: int, method: str | None, metric: str | None) -> pd.DataFrame:
    """Top ``top`` models per (dataset, scan, region): the leaderboard (both methods,
    held-out layer choice), or, with a method, that method's held-out score (in-sample
    where the scores have no halves)."""
    if method is None:
        board = leaderboard(df)
        return board[board["rank"] <= top].reset_index(drop=True)
    parts = []
    for m in _as_list(method):
        b = heldout_layers(df, m, metric)
        if b.empty:
            b = best_layers(df, m, metric)
            if b.empty:
                continue
            b = b.assign(value=b["ceiled_value"].where(b["scale"] == "ceiled", b["value"]),
                         selection="in-sample")
        else:
            b = b.assign(selection="held-out")
        b = b.copy()
        b.insert(0, "method", m)
        b["score"] = b["value"].astype(float)
        parts.append(b)
    if not parts:
        return pd.DataFrame(columns=["dataset", "scan", "region", "rank", "method", "model", "score"])
    b = pd.concat(parts, ignore_index=True)
    b = b.sort_values(["dataset", "scan", "method", "region", "score"],
                      ascending=[True, True, True, True, False])
    b["rank"] = b.groupby(["dataset", "scan", "method", "region"]).cumcount() + 1
    b = b[b["rank"] <= top]
    first = ["dataset", "scan", "region", "rank", "method", "model", "score"]
    return b[first + [c for c in b.columns if c not in first]].reset_index(drop=True)


def _store(uri: str, **storage_options: Any):
    """The store at ``uri``, which must exist (a typo in a results path is an error,
    not an empty table)."""
    from ..store import ResultStore

    store = ResultStore(str(uri), **storage_options)
    if not store._io("checking", store.root, lambda: store.fs.exists(store.root)):
        store._check_bucket()  # a missing bucket says so
        raise FileNotFoundError(f"results URI {uri!r} does not exist")
    return store


def read_matching(store, folder: str, want: list[str] | None, expr) -> pa.Table | None:
    """The rows of ``folder`` (scores/ or neuroid_scores/) that match ``expr``, each
    unit's rows from exactly one file, reading only the columns in ``want`` (None:
    all). None when the folder holds no file."""
    src = store._sources(folder)
    if src.corrupt:
        raise CorruptFileError(f"{folder} file {store.uri_of(folder, src.corrupt[0])} is corrupt "
                               "or truncated; delete it to recompute its units")
    take = src.take
    if not take:
        return None
    tables = []
    for name in sorted(take):
        path = store._path(folder, name)
        keep = take[name]
        cols = None if want is None else list(dict.fromkeys(want + (["unit_key"] if keep else [])))

        def read(path=path, cols=cols):
            if cols is not None:  # older files may lack newer optional columns
                names = pq.read_schema(path, filesystem=store.fs).names
                cols = [c for c in cols if c in names]
            return pq.read_table(path, filesystem=store.fs, columns=cols, filters=expr)

        try:
            t = store._io("reading", path, read)
        except (pa.ArrowInvalid, OSError, ValueError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise CorruptFileError(f"reading {store.uri_of(folder, name)} failed: corrupt or "
                                   f"truncated ({exc})") from exc
        if keep is not None:
            t = t.filter(pc.is_in(t.column("unit_key"), pa.array(sorted(keep))))
            if want is not None and "unit_key" not in want:
                t = t.drop_columns(["unit_key"])
        tables.append(t)
    return pa.concat_tables(tables, promote_options="permissive")



def query_scores(uri: str, region: str | Sequence[str] | None = None,
                 model: str | Sequence[str] | None = None,
                 method: str | Sequence[str] | None = None,
                 metric: str | Sequence[str] | None = None,
                 top: int | None = None, columns: Sequence[str] | None = None,
                 dataset: str | Sequence[str] | None = None,
                 scan: str | Sequence[str] | None = None,
                 run: str | Sequence[str] | None = None,
                 **storage_options: Any) -> pd.DataFrame:
    """Rows of ``uri/scores/`` that match, reading only what is needed.

    Parameters
    ----------
    uri : str
        Results URI (local folder or ``s3://bucket/prefix``); it must exist.
    region, method, metric, dataset, run : str or list of str, optional
        Exact values (a list means any of them); ``run`` is a run id.
    scan : str or list of str, optional
        A scan configuration: its scan key, a prefix of it, or its label
        (``DATASET--xxxxxxxx``, as ``cortexzoo results --list`` shows).
    model : str or list of str, optional
        Shell globs on the model name (``"timm:resnet*"``, ``"*@random"``).
    top : int, optional
        Keep the best ``top`` models per (dataset, scan, region). Without ``method``:
        leaderboard rows (:func:`cortexzoo.report.leaderboard`). With ``method`` (and
        optionally ``metric``): that method's held-out scores ranked.
    columns : list of str, optional
        Columns to return (default all); ignored with ``top``, whose output has the
        leaderboard's columns.

    Returns
    -------
    pandas.DataFrame
        Store dtypes (as :meth:`ResultStore.read_scores`); empty when nothing matches.

    Raises
    ------
    QueryError
        Unknown columns, ``top`` < 1, or ``metric`` with ``top`` but no ``method``.
    FileNotFoundError
        When ``uri`` does not exist.
    CorruptFileError
        A scores file that has to be read cannot be parsed (named in the message).
    """
    if top is not None:
        if isinstance(top, bool) or int(top) != top or int(top) < 1:
            raise QueryError(f"top must be a positive integer, got {top!r}")
        top = int(top)
        if metric is not None and method is None:
            raise QueryError("top with a metric needs a method (the leaderboard picks "
                             "each method's headline metric itself)")
        want = list(_BOARD_COLUMNS)
    else:
        want = list(columns) if columns is not None else None
    known = set(COLUMN_KINDS)
    if want is not None:
        unknown = [c for c in want if c not in known]
        if unknown:
            raise QueryError(f"unknown columns {unknown}; known: {sorted(known)}")
    store = _store(uri, **storage_options)
    expr = _filter_expression(region, model, method, metric, dataset=dataset, run=run)
    table = read_matching(store, "scores", want, expr)
    df = empty_scores(want) if table is None else canonical_dtypes(table.to_pandas())
    for c in want or []:
        if c not in df.columns:  # an optional column no file has yet
            df[c] = empty_scores([c])[c].reindex(df.index)
    if scan is not None and len(df):
        df = df[_scan_mask(df, _as_list(scan))]
    if top is not None:
        return _rank_top(df, top, method, metric)
    return df.reset_index(drop=True)


def _scan_mask(df: pd.DataFrame, scans: list[str]) -> pd.Series:
    lab = with_scan(df)
    labels = [scan_label(d, s) for d, s in zip(lab["dataset"], lab["scan"])]
    mask = pd.Series(False, index=df.index)
    for s in scans:
        mask |= lab["scan"].str.startswith(s) | pd.Series([x == s for x in labels], index=df.index)
    return mask


def store_listing(uri: str, **storage_options: Any) -> pd.DataFrame:
    """What a results store holds: one row per (dataset, scan configuration, run), with
    the methods, models, layers and score rows it wrote and when (first and last row)."""
    store = _store(uri, **storage_options)
    cols = ["dataset", "scan_key", "run_id", "method", "model", "layer", "created_at"]
    table = read_matching(store, "scores", cols, None)
    out_cols = ["dataset", "scan", "run_id", "methods", "models", "layers", "rows", "first",
                "last"]
    if table is None or table.num_rows == 0:
        return pd.DataFrame(columns=out_cols)
    df = canonical_dtypes(table.to_pandas())
    if "scan_key" not in df.columns:
        df["scan_key"] = None
    df = with_scan(df)
    df["scan"] = [scan_label(d, s) if not s.startswith("run:") else s
                  for d, s in zip(df["dataset"], df["scan"])]
    g = df.groupby(["dataset", "scan", "run_id"], sort=True)
    out = g.agg(methods=("method", lambda s: ",".join(sorted(set(s)))),
                models=("model", "nunique"), layers=("layer", "nunique"),
                rows=("method", "size"), first=("created_at", "min"),
                last=("created_at", "max")).reset_index()
    return out[out_cols]


def format_results(df: pd.DataFrame, fmt: str = "table", digits: int = 4) -> str:
    """Render a query result as an aligned table, CSV or JSON (a list of records)."""
    if fmt not in _FORMATS:
        raise QueryError(f"unknown format {fmt!r}; choose one of {list(_FORMATS)}")
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        # via pandas so timestamps, NaN (null) and numpy scalars serialize cleanly
        return json.dumps(json.loads(df.to_json(orient="records", date_format="iso")), indent=1)
    if df.empty:
        return "(no scores match)"
    show = df.copy()
    for c in show.columns:
        if pd.api.types.is_float_dtype(show[c]):
            show[c] = show[c].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
    return show.to_string(index=False)


def query_neuroid_scores(uri: str, region=None, model=None, metric=None, layer=None,
                         dataset=None, scan=None, run=None, columns=None,
                         **storage_options: Any) -> pd.DataFrame:
    """Rows of ``uri/neuroid_scores/`` that match (one row per model, layer, neuroid and
    metric: ``pearson_r``, ``explained_variance``, ``alpha``), reading only what is needed."""
    store = _store(uri, **storage_options)
    terms = _filter_expression(region, model, None, metric, dataset=dataset, run=run)
    lay = _as_list(layer)
    if lay:
        t = pc.field("layer").isin(lay)
        terms = t if terms is None else terms & t
    if scan is not None:
        scans = _as_list(scan)
        keys = [s.rsplit("--", 1)[-1] for s in scans]
        expr_scan = None
        for k in keys:  # a label's tail or a key prefix; both are substrings of the key
            e = pc.match_substring(pc.field("scan_key").cast(pa.string()), k)
            expr_scan = e if expr_scan is None else expr_scan | e
        terms = expr_scan if terms is None else terms & expr_scan
    table = read_matching(store, "neuroid_scores", list(columns) if columns else None, terms)
    if table is None:
        return pd.DataFrame(columns=list(columns) if columns else
                            ["run_id", "dataset", "scan_key", "unit_key", "model", "layer",
                             "region", "neuroid_id", "subject", "metric", "value", "ceiling"])
    return table.to_pandas()
