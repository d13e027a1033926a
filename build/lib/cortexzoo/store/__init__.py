"""Results on any fsspec URI (local folder, ``s3://bucket/prefix`` or ``gs://bucket/prefix``).

``scores/`` (a Parquet dataset), ``manifest/<run_id>.json`` and an optional
``features/<cache_key>/`` array cache. Remote calls are retried on transient errors
(:mod:`cortexzoo.store.retry`); concurrent writers are safe (see :class:`ResultStore`).
The modules: :mod:`~cortexzoo.store.schema` (score columns and dtypes),
:mod:`~cortexzoo.store.fsio` (retrying atomic I/O), :mod:`~cortexzoo.store.results`
(scores and manifests), :mod:`~cortexzoo.store.provenance` (versions, manifests, secret
scrubbing), :mod:`~cortexzoo.store.checkpoints` (Ray checkpoint folders).
"""
from ..core.cache_key import safe_key
from ..core.uri import (is_remote, join, portable_options, portable_pyarrow_fs, protocol_of,
                        url_to_fs)
from .checkpoints import delete_checkpoint_dirs
from .errors import (CorruptFileError, ScoreSchemaError, StoreAccessError, StoreNotFoundError,
                     StoreUnavailableError)
from .provenance import build_manifest, code_version, package_versions, scrub_secrets
from .results import ResultStore
from .retry import RetryPolicy, classify
from .schema import (COLUMN_KINDS, OPTIONAL_COLUMNS, SCORE_COLUMNS, SCORE_DTYPES, empty_scores,
                     make_score_rows, validate_scores)

__all__ = [
    "COLUMN_KINDS", "OPTIONAL_COLUMNS", "SCORE_COLUMNS", "SCORE_DTYPES",
    "CorruptFileError", "ResultStore", "ScoreSchemaError", "StoreNotFoundError",
    "StoreAccessError", "StoreUnavailableError", "RetryPolicy", "classify",
    "build_manifest", "code_version", "empty_scores", "make_score_rows",
    "package_versions", "safe_key", "scrub_secrets", "validate_scores",
    "is_remote", "join", "portable_options", "portable_pyarrow_fs", "protocol_of", "url_to_fs",
    "delete_checkpoint_dirs",
]
