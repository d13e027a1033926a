"""ResultStore on a local folder and on S3 (a real moto server on loopback)."""
from __future__ import annotations

import os
import pickle
import re
import time

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

import cortexzoo
from cortexzoo.store import (
    OPTIONAL_COLUMNS,
    SCORE_COLUMNS,
    SCORE_DTYPES,
    CorruptFileError,
    ResultStore,
    ScoreSchemaError,
    StoreNotFoundError,
    build_manifest,
    make_score_rows,
    safe_key,
)
from cortexzoo.store import fsio as fsio_mod
from cortexzoo.store import results as results_mod

ALL_COLUMNS = SCORE_COLUMNS + OPTIONAL_COLUMNS


@pytest.fixture(params=["local", "s3", "gs"])
def uri(request, tmp_path):
    """A fresh results URI: a local folder, s3://bucket/prefix or gs://bucket/prefix."""
    if request.param == "local":
        return str(tmp_path / "results")
    bucket = request.getfixturevalue({"s3": "s3_bucket", "gs": "gcs_bucket"}[request.param])
    return bucket + "/runs/exp1"


def unit_frame(model: str, layer: str, values, *, unit_key: str,
               k_units=None, best_layer=None) -> pd.DataFrame:
    """A score table in canonical form, built by hand (not through the store)."""
    n = len(values)
    ceiling = np.array([0.5, 0.8, 0.9, 0.4][:n])
    values = np.asarray(values, dtype="float64")
    ts = pd.Timestamp("2026-11-22 01:02:03.123456", tz="UTC")
    return pd.DataFrame({
        "run_id": ["run1"] * n,
        "dataset": ["cowley"] * n,
        "region": ["V4", "IT", "V4", "IT"][:n],
        "model": [model] * n,
        "source": ["torchvision"] * n,
        "weights": ["trained"] * n,
        "layer": [layer] * n,
        "relative_depth": np.full(n, 0.25),
        "reduction": ["srp"] * n,
        "method": ["ridge_gcv"] * n,
        "metric": ["pearson_r"] * n,
        "value": values,
        "ceiling": ceiling,
        "ceiled_value": values / ceiling,
        "n_neuroids": np.arange(10, 10 + n, dtype="int64"),
        "n_stimuli": np.full(n, 300, dtype="int64"),
        "split": ["test"] * n,
        "seed": np.full(n, 7, dtype="int64"),
        "code_version": ["0.1.0"] * n,
        "created_at": pd.Series([ts] * n, dtype="datetime64[ns, UTC]"),
        "unit_key": [unit_key] * n,
        "alpha": np.full(n, 10.0),
        "alpha_median": np.full(n, 100.0),
        "best_layer": pd.Series([best_layer] * n, dtype=SCORE_DTYPES["best_layer"]),
        "k_units": pd.array([k_units] * n, dtype="Int64"),
        "domain": pd.Series([None] * n, dtype=SCORE_DTYPES["domain"]),
        # the other optional columns, null (typed as the schema says)
        **{c: pd.Series([None] * n, dtype=SCORE_DTYPES[c]) for c in OPTIONAL_COLUMNS
           if c not in ("unit_key", "alpha", "alpha_median", "best_layer", "k_units", "domain")},
    }, columns=ALL_COLUMNS)


def sort_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["model", "layer", "region"]).reset_index(drop=True)


def two_units():
    a = unit_frame("alexnet", "features.3", [0.1, 0.2], unit_key="ua", k_units=5)
    b = unit_frame("resnet18", "layer1.0", [0.3, 0.4, 0.5], unit_key="ub", best_layer="layer1.0")
    return a, b


def test_round_trip_two_units(uri):
    store = ResultStore(uri)
    a, b = two_units()
    out_a = store.write_scores(a.drop(columns="unit_key"), "ua")
    store.write_scores(b, "ub")
    assert out_a.endswith("/scores/ua.parquet") and out_a.startswith(uri)
    expected = sort_rows(pd.concat([a, b], ignore_index=True))
    got = store.read_scores()
    assert list(got.columns) == ALL_COLUMNS
    pdt.assert_frame_equal(sort_rows(got), expected)
    assert str(got["created_at"].dtype) == "datetime64[ns, UTC]"
    assert got["n_neuroids"].dtype == np.int64 and got["value"].dtype == np.float64
    assert store.completed_units() == {"ua", "ub"}
    assert store.has_unit("ua") and store.has_unit("ub") and not store.has_unit("uc")


def test_plain_pandas_reads_the_scores_folder(uri):
    store = ResultStore(uri)
    a, b = two_units()
    store.write_scores(a, "ua")
    store.write_scores(b, "ub")
    # on gs://, through gcsfs: pyarrow's own GCS client (pandas' first choice) knows no emulator
    got = pd.read_parquet(uri + "/scores/", storage_options={} if uri.startswith("gs://") else None)
    expected = sort_rows(pd.concat([a, b], ignore_index=True))
    pdt.assert_frame_equal(sort_rows(got[ALL_COLUMNS]), expected, check_dtype=False)
    assert len(got) == 5
    assert set(got["unit_key"]) == {"ua", "ub"}
    np.testing.assert_allclose(sorted(got["value"]), [0.1, 0.2, 0.3, 0.4, 0.5])


def test_rewrite_is_idempotent(uri):
    store = ResultStore(uri)
    a, b = two_units()
    store.write_scores(a, "ua")
    store.write_scores(b, "ub")
    a2 = a.copy()
    a2["value"] = [0.9, 0.8]
    store.write_scores(a2, "ua")
    store.write_scores(a2, "ua")
    got = store.read_scores()
    assert len(got) == 5
    np.testing.assert_allclose(sorted(got.loc[got.model == "alexnet", "value"]), [0.8, 0.9])
    assert store.completed_units() == {"ua", "ub"}


def test_failed_serialization_writes_nothing(uri, monkeypatch):
    store = ResultStore(uri)
    a, b = two_units()
    store.write_scores(a, "ua")

    def boom(df):
        raise RuntimeError("serializer died midway")

    monkeypatch.setattr(results_mod, "scores_to_parquet_bytes", boom)
    with pytest.raises(RuntimeError, match="midway"):
        store.write_scores(b, "ub")
    with pytest.raises(RuntimeError, match="midway"):
        store.write_scores(a.assign(value=[5.0, 6.0]), "ua")
    monkeypatch.undo()
    assert store.completed_units() == {"ua"}
    assert not store.has_unit("ub")
    # the old content of the unit survived the failed rewrite
    np.testing.assert_allclose(sorted(store.read_scores()["value"]), [0.1, 0.2])
    fs, path = store.fs, store.root
    names = [n.rsplit("/", 1)[-1] for n in fs.ls(path + "/scores", detail=False)]
    assert names == ["ua.parquet"]


def test_local_write_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    store = ResultStore(str(tmp_path))
    a, _ = two_units()

    def bad_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(fsio_mod.os, "replace", bad_replace)
    with pytest.raises(OSError, match="disk gone"):
        store.write_scores(a, "ua")
    monkeypatch.undo()
    assert os.listdir(tmp_path / "scores") == []
    assert store.completed_units() == set()


def test_validation_names_missing_columns_and_writes_nothing(uri):
    store = ResultStore(uri)
    a, _ = two_units()
    with pytest.raises(ScoreSchemaError, match=r"missing required columns: \['ceiling', 'seed'\]"):
        store.write_scores(a.drop(columns=["seed", "ceiling"]), "ua")
    bad = a.copy()
    bad["value"] = ["high", "low"]
    with pytest.raises(ScoreSchemaError, match="'value' must be numeric"):
        store.write_scores(bad, "ua")
    bad = a.copy()
    bad["n_stimuli"] = [300.5, 300.0]
    with pytest.raises(ScoreSchemaError, match="'n_stimuli' must hold integers"):
        store.write_scores(bad, "ua")
    bad = a.copy()
    bad["model"] = [None, "alexnet"]
    with pytest.raises(ScoreSchemaError, match="'model' may not be null"):
        store.write_scores(bad, "ua")
    with pytest.raises(ValueError, match="unit_key holds 'ua'"):
        store.write_scores(a, "other")
    assert store.completed_units() == set()


def test_validation_coerces_benign_dtypes(tmp_path):
    store = ResultStore(str(tmp_path))
    a, _ = two_units()
    loose = a.copy()
    loose["n_neuroids"] = loose["n_neuroids"].astype("float64")  # integral floats
    loose["relative_depth"] = [0, 1]                             # ints for a float column
    loose["created_at"] = pd.Timestamp("2026-11-22 01:02:03.123456")  # naive = UTC
    store.write_scores(loose, "ua")
    got = store.read_scores()
    want = a.assign(relative_depth=[0.0, 1.0])
    pdt.assert_frame_equal(got, want)


@pytest.mark.parametrize("key", ["../x", ".hidden", "_meta", "a/b", "", "a b", "x" * 201])
def test_unsafe_unit_keys_rejected(tmp_path, key):
    a, _ = two_units()
    with pytest.raises(ValueError, match="not a safe key"):
        ResultStore(str(tmp_path)).write_scores(a.drop(columns="unit_key"), key)


def test_corrupt_scores_file_is_named(uri):
    store = ResultStore(uri)
    a, b = two_units()
    store.write_scores(a, "ua")
    store.write_scores(b, "ub")
    path = store.root + "/scores/ub.parquet"
    data = store.fs.cat_file(path)
    store.fs.pipe_file(path, data[: len(data) // 2])  # truncate
    with pytest.raises(CorruptFileError, match=re.escape(uri + "/scores/ub.parquet")):
        store.read_scores()


def test_read_filters_columns_and_empty(uri):
    store = ResultStore(uri)
    empty = store.read_scores()
    assert list(empty.columns) == ALL_COLUMNS and len(empty) == 0
    assert str(empty["created_at"].dtype) == "datetime64[ns, UTC]"
    assert store.completed_units() == set()
    a, b = two_units()
    store.write_scores(a, "ua")
    store.write_scores(b, "ub")
    got = store.read_scores(columns=["model", "value"], filters=[("model", "==", "resnet18")])
    assert list(got.columns) == ["model", "value"]
    np.testing.assert_allclose(sorted(got["value"]), [0.3, 0.4, 0.5])
    with pytest.raises(ValueError, match="unknown columns"):
        store.read_scores(columns=["nope"])
    # a unit without rows still counts as completed and reads as nothing
    store.write_scores(make_score_rows({"run_id": "r"}, []), "uempty")
    assert store.completed_units() == {"ua", "ub", "uempty"}
    assert len(store.read_scores()) == 5


def test_extra_columns_unify_across_units(tmp_path):
    store = ResultStore(str(tmp_path))
    a, b = two_units()
    store.write_scores(a.assign(fold_std=[0.01, 0.02]), "ua")
    store.write_scores(b, "ub")
    got = store.read_scores().sort_values("value")
    assert list(got.columns) == ALL_COLUMNS + ["fold_std"]
    np.testing.assert_allclose(got["fold_std"], [0.01, 0.02, np.nan, np.nan, np.nan])


def test_make_score_rows_fills_ceiled_created_and_version():
    before = pd.Timestamp.now(tz="UTC")
    common = dict(run_id="r", dataset="d", region="V4", model="m", source="timm",
                  weights="random", layer="blocks.1", relative_depth=0.5, reduction="pca",
                  method="ridge_gcv", n_neuroids=3, n_stimuli=40, split="cv5", seed=0)
    df = make_score_rows(common, [
        dict(metric="pearson_r", value=0.3, ceiling=0.6),
        dict(metric="ev", value=0.2, ceiling=0.0),
        dict(metric="rsa", value=0.1, ceiling=0.5, ceiled_value=0.7),
        dict(metric="x", value=0.4, ceiling=None, alpha=3.0, k_units=12),
        dict(metric="neg", value=0.3, ceiling=-0.03),
    ])
    # value / ceiling by one rule: a given ceiled_value is recomputed, and a ceiling that
    # is missing, zero or negative gives NaN (never a division)
    np.testing.assert_allclose(df["ceiled_value"], [0.5, np.nan, 0.2, np.nan, np.nan])
    assert (df["created_at"] >= before).all()
    assert str(df["created_at"].dtype) == "datetime64[ns, UTC]"
    assert df["code_version"].str.startswith(cortexzoo.__version__).all()
    assert df["k_units"].tolist()[3] == 12 and pd.isna(df["k_units"].tolist()[0])
    assert list(df.columns) == ALL_COLUMNS
    with pytest.raises(ScoreSchemaError, match=r"missing required columns: \['region'\]"):
        make_score_rows({k: v for k, v in common.items() if k != "region"},
                        [dict(metric="r", value=0.1, ceiling=0.5)])


def test_manifest_scrubs_secrets(uri):
    store = ResultStore(uri)
    config = {
        "model": "resnet18",
        "aws_secret_access_key": "SUPERSECRET1",
        "storage": {"AWS_ACCESS_KEY_ID": "SUPERSECRET2", "endpoint": "http://127.0.0.1:9000",
                    "credentials": {"user": "SUPERSECRET3"}},
        "db_password": "SUPERSECRET4",
        "hf-token": "SUPERSECRET5",
        "workers": [{"api_key": "SUPERSECRET6", "n": 2}],
        "mirror": "https://alice:SUPERSECRET7@example.org/data",
        "monkey": "key words are fine",
    }
    m = build_manifest("run-1", config, dataset_fingerprint="abc123",
                       started_at=pd.Timestamp("2026-11-22T01:00:00Z"))
    out = store.write_manifest("run-1", m)
    assert out.endswith("/manifest/run-1.json")
    raw = store.get_bytes("manifest/run-1.json")
    assert b"SUPERSECRET" not in raw
    (doc,) = store.read_manifests()
    assert doc["config"]["model"] == "resnet18"
    assert doc["config"]["storage"]["endpoint"] == "http://127.0.0.1:9000"
    assert doc["config"]["workers"][0]["n"] == 2
    assert doc["config"]["monkey"] == "key words are fine"
    assert doc["config"]["aws_secret_access_key"] == "<redacted>"
    assert doc["config"]["mirror"] == "https://<redacted>@example.org/data"
    assert doc["dataset_fingerprint"] == "abc123"
    assert doc["started_at"].startswith("2026-11-22T01:00:00")
    assert doc["versions"]["numpy"] == np.__version__
    assert doc["versions"]["cortexzoo"] == cortexzoo.__version__
    assert set(doc["versions"]) >= {"python", "torch", "torchvision", "timm", "ray", "sklearn"}
    assert doc["run_id"] == "run-1" and doc["host"]
    # a second run adds a second manifest
    store.write_manifest("run-2", {"config": {"token": "SUPERSECRET8"}})
    docs = store.read_manifests()
    assert [d["run_id"] for d in docs] == ["run-1", "run-2"]
    assert docs[1]["config"]["token"] == "<redacted>"


def test_arrays_bytes_json(uri):
    store = ResultStore(uri)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5)).astype("float32")
    rel = ResultStore.feature_path(safe_key("alexnet", "features.3", "srp"), "X")
    assert rel.startswith("features/") and rel.endswith("/X.npy")
    assert store.get_array(rel) is None and not store.exists(rel)
    store.put_array(rel, x)
    y = store.get_array(rel)
    assert y.dtype == np.float32 and np.array_equal(x, y)
    assert store.exists(rel)
    with pytest.raises(ValueError, match="object array"):
        store.put_array("features/k/o.npy", np.array([{"a": 1}], dtype=object))
    store.put_bytes("misc/blob.bin", b"\x00\x01")
    assert store.get_bytes("misc/blob.bin") == b"\x00\x01"
    store.put_bytes("misc/gone.bin", b"x")
    assert store.delete("misc/gone.bin") and not store.exists("misc/gone.bin")
    assert store.get_bytes("misc/gone.bin") is None
    assert not store.delete("misc/gone.bin")   # nothing there: not an error
    assert store.get_bytes("misc/blob.bin") == b"\x00\x01"
    store.put_json("misc/a.json", {"a": np.int64(3), "b": [1.5]})
    assert store.get_json("misc/a.json") == {"a": 3, "b": [1.5]}
    assert store.get_json("misc/none.json") is None
    store.put_bytes("misc/bad.npy", b"not an array")
    with pytest.raises(CorruptFileError, match="misc/bad.npy"):
        store.get_array("misc/bad.npy")
    for bad in ("../x", "/abs", "a//b", "a/./b"):
        with pytest.raises(ValueError):
            store.put_bytes(bad, b"x")


def test_store_pickles(uri):
    store = ResultStore(uri)
    a, _ = two_units()
    store.write_scores(a, "ua")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.uri == store.uri and clone.completed_units() == {"ua"}


def test_missing_bucket_fails_fast_naming_uri(s3_server):
    uri = "s3://cz-no-such-bucket-4242/prefix"
    store = ResultStore(uri)
    a, _ = two_units()
    t0 = time.monotonic()
    with pytest.raises(StoreNotFoundError, match=re.escape(uri)):
        store.write_scores(a, "ua")
    with pytest.raises(StoreNotFoundError, match=re.escape(uri)):
        store.completed_units()
    with pytest.raises(StoreNotFoundError, match=re.escape(uri)):
        store.has_unit("ua")
    with pytest.raises(StoreNotFoundError, match=re.escape(uri)):
        store.read_scores()
    assert time.monotonic() - t0 < 10


def test_safe_key():
    k = safe_key("resnet18", "layer1.0/conv1", 3)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,199}", k)
    assert k.startswith("resnet18__layer1.0-conv1__3__")
    assert k == safe_key("resnet18", "layer1.0/conv1", "3")  # parts compared as strings
    # parts that sanitize to the same prefix still get distinct keys
    keys = {safe_key("m", "a/b"), safe_key("m", "a-b"), safe_key("m", "a b"), safe_key("m", "a?b"),
            safe_key("m/a", "b"), safe_key("ma", "b"), safe_key("m", "ab")}
    assert len(keys) == 7
    long = safe_key("x" * 500, "y" * 500)
    assert len(long) <= 200 and re.fullmatch(r"[A-Za-z0-9._\-]+", long)
    assert re.fullmatch(r"[0-9a-f]{12}", safe_key("///"))
    with pytest.raises(ValueError):
        safe_key()


def test_forget_units_removes_them_from_parts_and_keeps_the_rest(uri):
    store = ResultStore(uri)
    for i in range(4):
        store.write_scores(unit_frame("m", "l1", [0.1 * i, 0.1 * i + 0.01], unit_key=f"u{i}"), f"u{i}")
    store.compact(units=["u0", "u1", "u2"], run_id="r1")  # u3 keeps its own file
    # a unit file overrides its part, then lands in a newer part
    store.write_scores(unit_frame("m", "l1", [0.9, 0.91], unit_key="u1"), "u1")
    store.compact(units=["u1"], run_id="r2")
    before = store.read_scores()
    first = before.groupby("unit_key", observed=True)["value"].first()
    np.testing.assert_allclose(first.loc[["u0", "u1", "u2", "u3"]], [0.0, 0.9, 0.2, 0.3])
    assert store.forget_units(["u0", "u3", "nope"]) == 2
    after = store.read_scores()
    assert sorted(after["unit_key"].unique()) == ["u1", "u2"]
    # every other unit keeps its own rows, from the same winner as before
    for k in ("u1", "u2"):
        pd.testing.assert_frame_equal(before[before["unit_key"] == k].reset_index(drop=True),
                                      after[after["unit_key"] == k].reset_index(drop=True))
    assert store.completed_units() == {"u1", "u2"}
    with pytest.raises(ValueError, match="unit_key"):
        store.forget_units(["../x"])
