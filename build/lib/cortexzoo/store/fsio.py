"""Retrying, atomic file I/O under one root URI (local folder, ``s3://``, ``gs://``).

:class:`StoreIO` is the plumbing of the results store: every read, write, listing and
existence check goes through :meth:`StoreIO._io`, which retries transient errors of a
remote store and turns refused credentials and missing buckets into errors that name
the URI. :class:`cortexzoo.store.ResultStore` adds scores and manifests on top.
"""
from __future__ import annotations

import io
import json
import os
import uuid
from typing import Any

import numpy as np
from fsspec.implementations.local import LocalFileSystem

from ..core.uri import join, protocol_of, url_to_fs
from .errors import CorruptFileError, StoreAccessError, StoreNotFoundError
from .provenance import json_default
from .retry import (AUTH, NOT_FOUND, TRANSIENT, RetryPolicy, RetryStats, StoreUnavailableError,
                    call_with_retry, classify, error_name)

__all__ = ["StoreIO"]


class StoreIO:
    """Files under one root URI, read and written with retries and atomically.

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

    **Atomicity.** Every file is replaced atomically (rename locally, one PUT on object
    stores), so a reader sees a file whole or not at all, and listing caches are dropped
    before every listing, so files written by other processes are seen.

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
        return f"{type(self).__name__}({self.uri!r})"

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
        return self.put_bytes(relpath, json.dumps(obj, indent=2, default=json_default).encode("utf-8"))

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

