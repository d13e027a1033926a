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
import pyarrow.dataset as pads

from ..store import COLUMN_KINDS, CorruptFileError, empty_scores, url_to_fs
from ..store.schema import canonical_dtypes
from .tables import best_layers, leaderboard

__all__ = ["QueryError", "query_scores", "format_results", "glob_to_regex",
           "scores_files"]

#: Columns the leaderboard (and therefore ``top``) needs.
_BOARD_COLUMNS = ["region", "model", "source", "weights", "layer", "relative_depth", "method",
                  "metric", "value", "ceiling", "ceiled_value", "n_neuroids"]
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


def _filter_expression(region=None, model=None, method=None, metric=None) -> pc.Expression | None:
    """One conjunction; equality/isin terms let the scanner prune row groups by statistics."""
    terms = []
    for col, val in (("region", region), ("method", method), ("metric", metric)):
        vals = _as_list(val)
        if vals:
            terms.append(pc.field(col) == vals[0] if len(vals) == 1
                         else pc.field(col).isin(vals))
    globs = _as_list(model)
    if globs:
        parts = []
        for g in globs:
            if any(ch in g for ch in "*?["):
                parts.append(pc.match_substring_regex(pc.field("model"), glob_to_regex(g)))
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


def scores_files(uri: str, **storage_options: Any) -> tuple[Any, list[str]]:
    """``(fs, paths)`` of the Parquet files under ``uri/scores/``; temporary (``.tmp-*``)
    and hidden files are skipped. A missing folder gives no files."""
    fs, root = url_to_fs(str(uri), **storage_options)
    base = root.rstrip("/") + "/scores"
    fs.invalidate_cache(base)
    try:
        names = fs.ls(base, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return fs, []
    paths = []
    for p in names:
        name = p.rstrip("/").rsplit("/", 1)[-1]
        if name.endswith(".parquet") and not name.startswith((".", "_")):
            paths.append(p)
    return fs, sorted(paths)


def _rank_top(df: pd.DataFrame, top: int, method: str | None, metric: str | None) -> pd.DataFrame:
    """Top ``top`` models per region: the leaderboard (both methods), or, with a
    method, that method's best layer per model ranked by its (ceiled) score."""
    if method is None:
        board = leaderboard(df)
        return board[board["rank"] <= top].reset_index(drop=True)
    parts = []
    for m in _as_list(method):
        b = best_layers(df, m, metric)
        if b.empty:
            continue
        b = b.copy()
        b.insert(0, "method", m)
        b["score"] = b["ceiled_value"].where(b["ceiled_value"].notna(), b["value"]).astype(float)
        parts.append(b)
    if not parts:
        return pd.DataFrame(columns=["region", "rank", "method", "model", "score"])
    b = pd.concat(parts, ignore_index=True)
    b = b.sort_values(["method", "region", "score"], ascending=[True, True, False])
    b["rank"] = b.groupby(["method", "region"]).cumcount() + 1
    b = b[b["rank"] <= top]
    first = ["region", "rank", "method", "model", "score"]
    return b[first + [c for c in b.columns if c not in first]].reset_index(drop=True)


def query_scores(uri: str, region: str | Sequence[str] | None = None,
                 model: str | Sequence[str] | None = None,
                 method: str | Sequence[str] | None = None,
                 metric: str | Sequence[str] | None = None,
                 top: int | None = None, columns: Sequence[str] | None = None,
                 **storage_options: Any) -> pd.DataFrame:
    """Rows of ``uri/scores/`` that match, reading only what is needed.

    Parameters
    ----------
    uri : str
        Results URI (local folder or ``s3://bucket/prefix``).
    region, method, metric : str or list of str, optional
        Exact values (a list means any of them).
    model : str or list of str, optional
        Shell globs on the model name (``"timm:resnet*"``, ``"*@random"``).
    top : int, optional
        Keep the best ``top`` models per region. Without ``method``: leaderboard rows
        (:func:`cortexzoo.report.leaderboard`, best layer per model and method, overall
        score = mean of ridge and RSA). With ``method`` (and optionally ``metric``):
        :func:`cortexzoo.report.best_layers` rows ranked by that method's score.
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
    fs, paths = scores_files(uri, **storage_options)
    known = set(COLUMN_KINDS)
    if want is not None and not paths:
        unknown = [c for c in want if c not in known]
        if unknown:
            raise QueryError(f"unknown columns {unknown}; known: {sorted(known)}")
    expr = _filter_expression(region, model, method, metric)
    if not paths:
        df = empty_scores(want)
    else:
        try:
            dataset = pads.dataset(paths, filesystem=fs, format="parquet")
        except (pa.ArrowInvalid, OSError) as exc:
            raise CorruptFileError(f"a scores file under {uri} is corrupt or truncated ({exc}); "
                                   "delete it to recompute that unit") from exc
        names = dataset.schema.names
        if want is not None:
            unknown = [c for c in want if c not in names]
            if unknown:
                raise QueryError(f"unknown columns {unknown}; stored: {names}")
        try:
            table = dataset.to_table(columns=want, filter=expr)
        except (pa.ArrowInvalid, OSError) as exc:
            raise CorruptFileError(f"reading scores under {uri} failed: a file is corrupt or "
                                   f"truncated ({exc})") from exc
        df = canonical_dtypes(table.to_pandas())
    if top is not None:
        return _rank_top(df, top, method, metric)
    return df.reset_index(drop=True)


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
