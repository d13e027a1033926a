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


def test_portable_options():
    from cortexzoo.store import portable_options

    env = {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_ACCESS_KEY_ID": "k",
           "AWS_SECRET_ACCESS_KEY": "s", "STORAGE_EMULATOR_HOST": "127.0.0.1:4443"}
    assert portable_options("s3://b/x", env) == {"endpoint_url": "http://minio:9000",
                                                 "key": "k", "secret": "s"}
    assert portable_options("gs://b/x", env) == {"endpoint_url": "http://127.0.0.1:4443",
                                                 "token": "anon"}
    assert portable_options("gs://b/x", {"STORAGE_EMULATOR_HOST": "default"}) == {}
    assert portable_options("gs://b/x", {}) == {}
    assert portable_options("s3://b/x", {"AWS_ACCESS_KEY_ID": "k"}) == {}  # no half keys
    assert portable_options("/tmp/x", env) == {}


def test_gcs_filesystem_survives_a_pickle_into_a_bare_environment(gcs_bucket, monkeypatch):
    """What Ray does with Train/Tune storage: the filesystem is rebuilt in a process
    whose environment lacks STORAGE_EMULATOR_HOST; it must still reach the same store."""
    import pickle

    from cortexzoo.store import portable_pyarrow_fs

    uri = gcs_bucket + "/ray"
    pa_fs, path = portable_pyarrow_fs(uri)
    blob = pickle.dumps(pa_fs)
    fs = pa_fs.handler.fs
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    type(fs).clear_instance_cache()  # as in a fresh process: no instance answers for it
    clone = pickle.loads(blob)
    with clone.open_output_stream(path + "/x.bin") as f:
        f.write(b"\x00\x01written by the clone")
    assert fs.cat_file(path + "/x.bin") == b"\x00\x01written by the clone"
