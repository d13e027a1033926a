"""URIs: one code path for local folders and object stores (``s3://``, ``gs://``).

Every stage that names a file by URI (dataset folders, sessions, results, configs)
uses these helpers; nothing else in the package parses or joins URIs.

Everything goes through fsspec, so any protocol with an installed fsspec
implementation works; ``s3://`` (s3fs), ``gs://`` (gcsfs) and local paths are the
tested ones.
"""
from __future__ import annotations

import io
import os
import re
from typing import Any, Mapping

import fsspec
import fsspec.core

__all__ = ["url_to_fs", "join", "is_remote", "protocol_of", "portable_options",
           "portable_pyarrow_fs", "normalize_uri", "read_bytes", "write_bytes", "npy_bytes",
           "read_npy"]

_PROTO_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://(.*)$", re.DOTALL)
_LOCAL_PROTOCOLS = {"file", "local"}


def protocol_of(uri: str) -> str:
    """Return the protocol of ``uri`` (``"file"`` for plain paths)."""
    m = _PROTO_RE.match(str(uri))
    return m.group(1).lower() if m else "file"


def is_remote(uri: str) -> bool:
    """True when ``uri`` names anything but the local filesystem (e.g. ``s3://``)."""
    return protocol_of(uri) not in _LOCAL_PROTOCOLS


def url_to_fs(uri: str, **storage_options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(filesystem, path)`` for ``uri``; a thin wrapper over fsspec.

    ``path`` is what the filesystem's own methods take (``bucket/key`` for s3,
    an absolute path for local folders).
    """
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"a URI must be a non-empty string, got {uri!r}")
    return fsspec.core.url_to_fs(uri, **storage_options)


def join(uri: str, *parts: str) -> str:
    """Join ``parts`` onto ``uri`` with single ``/`` separators.

    Works for ``s3://bucket/prefix``, ``file:///x`` and plain local paths;
    empty parts are skipped and leading/trailing slashes of parts are dropped
    (``join("s3://b/", "/scores/", "x.parquet") == "s3://b/scores/x.parquet"``).
    """
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"a URI must be a non-empty string, got {uri!r}")
    clean = [str(p).strip("/") for p in parts]
    clean = [p for p in clean if p]
    if not clean:
        return uri
    tail = "/".join(clean)
    m = _PROTO_RE.match(uri)
    if m:
        proto, rest = m.group(1), m.group(2)
        if proto.lower() in _LOCAL_PROTOCOLS and rest.startswith("/"):
            # file:///abs/path: keep the root slash
            rest = "/" + rest.strip("/")
            return f"{proto}://{rest.rstrip('/')}/{tail}" if rest != "/" else f"{proto}:///{tail}"
        rest = rest.rstrip("/")
        return f"{proto}://{rest}/{tail}" if rest else f"{proto}://{tail}"
    base = uri.rstrip("/")
    if not base:  # the filesystem root "/"
        return "/" + tail
    return f"{base}/{tail}"


def portable_options(uri: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Storage options that make ``uri``'s filesystem independent of the environment of
    the process that unpickles it.

    A filesystem handed to Ray (Train and Tune storage) is rebuilt from its pickle in
    the controller and workers, whose environment may lack this process's endpoint
    settings: ``AWS_ENDPOINT_URL`` and keys for s3://, ``STORAGE_EMULATOR_HOST`` for gs://.
    Credentials found otherwise (profiles, instance roles, service accounts) are left to
    each process.
    """
    env = os.environ if env is None else env
    proto = protocol_of(uri)
    opts: dict[str, Any] = {}
    if proto in ("s3", "s3a"):
        if env.get("AWS_ENDPOINT_URL"):
            opts["endpoint_url"] = env["AWS_ENDPOINT_URL"]
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            opts["key"], opts["secret"] = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    elif proto in ("gs", "gcs"):
        host = env.get("STORAGE_EMULATOR_HOST", "")
        if host and host != "default":
            opts["endpoint_url"] = host if host.startswith(("http://", "https://")) else "http://" + host
            opts["token"] = "anon"  # an emulator takes none; skips probing for credentials
    return opts


def portable_pyarrow_fs(uri: str) -> tuple[Any, str]:
    """``(pyarrow filesystem, path)`` for Ray Train / Tune storage at a remote ``uri``:
    the fsspec filesystem the store uses, with :func:`portable_options`, wrapped for
    pyarrow (pyarrow's own GCS client, for one, ignores STORAGE_EMULATOR_HOST)."""
    import pyarrow.fs as pafs

    fs, path = url_to_fs(uri, **portable_options(uri))
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def normalize_uri(uri: "str | os.PathLike") -> str:
    """Local paths become absolute (``~`` expanded), so that a URI handed to another
    process (a Ray worker runs in its own directory) still names the same file; URIs
    with a scheme are kept. Trailing slashes are dropped."""
    uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"a URI must be a non-empty string, got {uri!r}")
    if "://" not in uri:
        uri = os.path.abspath(os.path.expanduser(uri))
    return uri.rstrip("/") or uri


def read_bytes(uri: str) -> bytes:
    """The bytes of the file at ``uri`` (FileNotFoundError when there is none)."""
    fs, path = url_to_fs(uri)
    return fs.cat_file(path)


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri``, creating local parent folders (object stores have none,
    and s3fs's makedirs would create buckets)."""
    from fsspec.implementations.local import LocalFileSystem

    fs, path = url_to_fs(uri)
    if isinstance(fs, LocalFileSystem):
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, data)


def npy_bytes(arr: Any) -> bytes:
    """``arr`` as ``.npy`` bytes (no pickles)."""
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def read_npy(data: bytes) -> Any:
    """A ``.npy`` array from bytes, never unpickling."""
    import numpy as np

    return np.load(io.BytesIO(data), allow_pickle=False)
