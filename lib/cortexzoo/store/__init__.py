"""Results on any fsspec URI (local folder, ``s3://bucket/prefix`` or ``gs://bucket/prefix``).

``scores/<unit_key>.parquet`` (one Parquet dataset, one file per work unit),
``manifest/<run_id>.json`` and an optional ``features/<cache_key>/`` array cache.
Remote calls are retried on transient errors (:mod:`cortexzoo.store.retry`);
concurrent writers are safe (see :class:`ResultStore`).
See :mod:`cortexzoo.store.results` for the layout and the score dtypes.
"""
from .results import (
    COLUMN_KINDS,
    OPTIONAL_COLUMNS,
    SCORE_COLUMNS,
    SCORE_DTYPES,
    CorruptFileError,
    ResultStore,
    ScoreSchemaError,
    StoreAccessError,
    StoreNotFoundError,
    build_manifest,
    code_version,
    empty_scores,
    make_score_rows,
    package_versions,
    safe_key,
    scrub_secrets,
    validate_scores,
)
from .retry import RetryPolicy, StoreUnavailableError, classify
from .uri import (delete_checkpoint_dirs, is_remote, join, portable_options,
                  portable_pyarrow_fs, protocol_of, url_to_fs)

__all__ = [
    "COLUMN_KINDS", "OPTIONAL_COLUMNS", "SCORE_COLUMNS", "SCORE_DTYPES",
    "CorruptFileError", "ResultStore", "ScoreSchemaError", "StoreNotFoundError",
    "StoreAccessError", "StoreUnavailableError", "RetryPolicy", "classify",
    "build_manifest", "code_version", "empty_scores", "make_score_rows",
    "package_versions", "safe_key", "scrub_secrets", "validate_scores",
    "is_remote", "join", "portable_options", "portable_pyarrow_fs", "protocol_of", "url_to_fs",
    "delete_checkpoint_dirs",
]
