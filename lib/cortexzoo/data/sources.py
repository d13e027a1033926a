"""What the importers share: opening source files by path or URI (fsspec), their
provenance (size and SHA-256, streamed), and the target folder's pre-flight check."""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager

import fsspec

from ..core.progress import Progress
from ..core.uri import normalize_uri, url_to_fs
from .errors import DatasetError

__all__ = ["DIGEST_MAX_BYTES", "check_target", "file_info", "is_local", "open_source",
           "parse_window", "source_path"]

#: Files larger than this are described by size (and ETag / modification time) only: the
#: SHA-256 of NSD's 40 GB image brick would cost a full read.
DIGEST_MAX_BYTES = 4 << 30


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def source_path(uri: str) -> str:
    """A source given by path or URI, made absolute (URIs unchanged)."""
    if not isinstance(uri, str) or not uri:
        raise DatasetError(f"a source file must be a path or URI, got {uri!r}")
    return normalize_uri(uri)


@contextmanager
def open_source(uri: str, what: str, block_size: int = 4 << 20):
    """A readable binary file object for ``uri`` (local or any fsspec URL); a missing
    file is a DatasetError naming ``what`` it should have been."""
    fs, path = url_to_fs(uri)
    try:
        f = fs.open(path, "rb", block_size=block_size) if not is_local(uri) else fs.open(path, "rb")
    except FileNotFoundError:
        raise DatasetError(f"{what} {uri!r} does not exist") from None
    except IsADirectoryError:
        raise DatasetError(f"{what} {uri!r} is a folder, not a file") from None
    try:
        yield f
    finally:
        f.close()


def file_info(uri: str, digest: bool = True, max_bytes: int = DIGEST_MAX_BYTES,
              progress: bool = False) -> dict:
    """Provenance of one source file: its URI, size, and SHA-256 (streamed in 8 MB blocks;
    skipped, with the reason, past ``max_bytes`` or when ``digest`` is False), plus the
    ETag or modification time the filesystem reports."""
    fs, path = url_to_fs(uri)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise DatasetError(f"source file {uri!r} does not exist") from None
    size = int(info.get("size") or 0)
    out = {"uri": uri, "bytes": size}
    for k in ("ETag", "etag", "mtime", "LastModified", "last_modified"):
        if info.get(k) is not None:
            out[k.lower()] = str(info[k]).strip('"')
            break
    if not digest:
        out["sha256"], out["sha256_skipped"] = None, "digests turned off"
        return out
    if size > max_bytes:
        out["sha256"] = None
        out["sha256_skipped"] = f"{size} bytes > the {max_bytes}-byte digest limit"
        return out
    h = hashlib.sha256()
    with fs.open(path, "rb", block_size=8 << 20) as f, \
            Progress(size, f"sha256 {os.path.basename(path)}", unit="B",
                     enabled=progress and size > (256 << 20)) as bar:
        while True:
            block = f.read(8 << 20)
            if not block:
                break
            h.update(block)
            bar.update(len(block))
    out["sha256"] = h.hexdigest()
    return out


def check_target(out_uri: str, overwrite: bool) -> str:
    """``out_uri`` normalized; a DatasetError before any work when a dataset is already
    there and ``overwrite`` is False."""
    out_uri = normalize_uri(out_uri)
    fs, root = fsspec.core.url_to_fs(out_uri)
    if not overwrite and fs.exists(root.rstrip("/") + "/dataset.json"):
        raise DatasetError(f"a dataset already exists at {out_uri!r}; pass overwrite=True "
                           "(--overwrite)")
    return out_uri


def parse_window(text: "str | tuple | list", what: str = "window") -> tuple[float, float]:
    """``"70,170"`` (or a pair) -> (70.0, 170.0), checked start < end."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace(":", ",").split(",")]
    else:
        parts = list(text)
    try:
        lo, hi = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise DatasetError(f"{what} must be two numbers START,END; got {text!r}") from None
    if not lo < hi:
        raise DatasetError(f"{what} must have START < END; got {text!r}")
    return lo, hi
