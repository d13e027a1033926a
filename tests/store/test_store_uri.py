"""URI helpers: join/is_remote/url_to_fs on local paths and s3."""
from __future__ import annotations

import pytest
from fsspec.implementations.local import LocalFileSystem

from cortexzoo.store import is_remote, join, url_to_fs


@pytest.mark.parametrize("uri, parts, want", [
    ("s3://b", ("scores",), "s3://b/scores"),
    ("s3://b/", ("/scores/", "x.parquet"), "s3://b/scores/x.parquet"),
    ("s3://b/pre/fix//", ("scores", "", "a/b.npy"), "s3://b/pre/fix/scores/a/b.npy"),
    ("/tmp/res/", ("scores",), "/tmp/res/scores"),
    ("res", ("scores", "u.parquet"), "res/scores/u.parquet"),
    ("/", ("scores",), "/scores"),
    ("file:///tmp/res", ("scores",), "file:///tmp/res/scores"),
    ("file:///tmp/res/", ("/scores",), "file:///tmp/res/scores"),
    ("memory://", ("x",), "memory://x"),
    ("s3://b/p", (), "s3://b/p"),
])
def test_join(uri, parts, want):
    assert join(uri, *parts) == want


def test_join_rejects_empty():
    with pytest.raises(ValueError):
        join("", "x")


def test_is_remote():
    assert is_remote("s3://bucket/x")
    assert is_remote("gs://bucket")
    assert not is_remote("/tmp/x")
    assert not is_remote("relative/dir")
    assert not is_remote("file:///tmp/x")


def test_url_to_fs_local_and_s3(tmp_path):
    fs, path = url_to_fs(str(tmp_path))
    assert isinstance(fs, LocalFileSystem)
    assert path == str(tmp_path)
    fs, path = url_to_fs("s3://some-bucket/pre/fix")
    assert "s3" in fs.protocol
    assert path == "some-bucket/pre/fix"
