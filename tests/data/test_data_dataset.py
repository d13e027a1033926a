"""Dataset folder: write/load round trips (local and s3), validation errors, fingerprint."""
from __future__ import annotations

import io
import os
import re

import fsspec
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cortexzoo.data import DatasetError, NeuralDataset, load_dataset, validate_dataset, write_dataset

N_STIM, N_REP, N_NEU = 6, 3, 4


def parts(seed: int = 0, n_stim: int = N_STIM, n_neu: int = N_NEU) -> dict:
    """Everything write_dataset needs, built by hand."""
    rng = np.random.default_rng(seed)
    arrays = {f"im{i}.png": rng.integers(0, 256, size=(8, 10, 3), dtype=np.uint8)
              for i in range(n_stim)}
    resp = rng.poisson(5.0, size=(n_stim, N_REP, n_neu)).astype(np.float32)
    resp[0, 2, :] = np.nan  # a missing repetition
    return dict(
        meta={"name": "toy", "description": "d", "source": "hand", "license": "CC0-1.0",
              "response_unit": "spikes", "extra": {"k": [1, 2]}},
        stimuli=pd.DataFrame({"stimulus_id": [f"s{i}" for i in range(n_stim)],
                              "image": list(arrays),
                              "category": ["a", "b"] * (n_stim // 2)}),
        neuroids=pd.DataFrame({"neuroid_id": [f"n{j}" for j in range(n_neu)],
                               "subject": ["m1"] * (n_neu // 2) + ["m2"] * (n_neu - n_neu // 2),
                               "region": ["V4", "IT"] * (n_neu // 2)}),
        responses=resp,
        images=arrays,
    )


def rdm_parts(n_stim: int = N_STIM) -> dict:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, n_stim, 7))
    rdms = np.stack([1 - np.corrcoef(xi) for xi in x])
    table = pd.DataFrame({"rdm_id": ["r0", "r1"], "subject": ["m1", "m2"],
                          "region": ["V4", "V4"], "measure": ["1-pearson"] * 2})
    return dict(rdms=rdms, rdm_table=table)


def in_memory(**over) -> NeuralDataset:
    p = parts()
    p.pop("images")
    p.update(over)
    return NeuralDataset(uri="/nonexistent", meta=p["meta"], stimuli=p["stimuli"],
                         neuroids=p["neuroids"], responses=p["responses"],
                         rdms=p.get("rdms"), rdm_table=p.get("rdm_table"))


def check_roundtrip(uri: str, with_rdms: bool) -> None:
    p = parts()
    extra = rdm_parts() if with_rdms else {}
    out = write_dataset(uri, **p, **extra)
    ds = load_dataset(out)
    assert ds.meta == p["meta"]
    exp_stim = p["stimuli"].copy()
    exp_stim["image"] = "images/" + exp_stim["image"]  # bare names are placed under images/
    pd.testing.assert_frame_equal(ds.stimuli, exp_stim, check_dtype=False)
    pd.testing.assert_frame_equal(ds.neuroids, p["neuroids"], check_dtype=False)
    assert ds.responses.dtype == np.float32
    np.testing.assert_array_equal(ds.responses, p["responses"])  # NaN positions included
    if with_rdms:
        np.testing.assert_array_equal(ds.rdms, extra["rdms"])
        pd.testing.assert_frame_equal(ds.rdm_table, extra["rdm_table"], check_dtype=False)
    else:
        assert ds.rdms is None and ds.rdm_table is None
    # images: PNG is lossless, so the decoded pixels are the arrays we gave
    for i, arr in enumerate(p["images"].values()):
        np.testing.assert_array_equal(np.asarray(ds.read_image(i)), arr)
    assert ds.image_uri(2).endswith("/images/im2.png")
    with fsspec.open(ds.image_uri(3), "rb") as f:
        assert ds.read_image_bytes(3) == f.read()
    # derived quantities, computed independently
    r = p["responses"].astype(np.float64)
    expected_mean = np.stack([[r[s, ~np.isnan(r[s, :, j]), j].mean() for j in range(N_NEU)]
                              for s in range(N_STIM)])
    np.testing.assert_allclose(ds.mean_responses(), expected_mean)
    assert ds.mean_responses().dtype == np.float64
    assert ds.regions == ["IT", "V4"]
    np.testing.assert_array_equal(ds.region_index("V4"), [0, 2])
    np.testing.assert_array_equal(ds.region_index("IT"), [1, 3])
    assert (ds.name, ds.n_stimuli, ds.n_neuroids) == ("toy", N_STIM, N_NEU)


def test_roundtrip_local(tmp_path):
    check_roundtrip(str(tmp_path / "ds"), with_rdms=False)


def test_roundtrip_local_file_uri_with_rdms(tmp_path):
    check_roundtrip("file://" + str(tmp_path / "ds"), with_rdms=True)


def test_roundtrip_s3(s3_bucket):
    check_roundtrip(f"{s3_bucket}/some/prefix/ds", with_rdms=True)


def test_roundtrip_gcs(gcs_bucket):
    check_roundtrip(f"{gcs_bucket}/some/prefix/ds", with_rdms=True)


def test_rdm_only_dataset(tmp_path):
    p = parts()
    # an RDM-only dataset still has a neuroid table, which may be empty
    out = write_dataset(str(tmp_path / "r"), meta=p["meta"], stimuli=p["stimuli"],
                        neuroids=p["neuroids"].iloc[:0], responses=None, images=p["images"],
                        **rdm_parts())
    ds = load_dataset(out)
    assert ds.responses is None and ds.rdms.shape == (2, N_STIM, N_STIM)
    assert ds.n_neuroids == 0 and ds.regions == ["V4"]  # regions of the RDMs
    with pytest.raises(DatasetError, match="no responses"):
        ds.mean_responses()


def test_absolute_image_uris_and_bytes_images(tmp_path):
    ext = tmp_path / "external"
    ext.mkdir()
    p = parts()
    raw = {}
    for name, arr in p["images"].items():
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        raw[name] = buf.getvalue()
        (ext / name).write_bytes(raw[name])
    stim = p["stimuli"].copy()
    stim["image"] = [str(ext / n) if i % 2 else "file://" + str(ext / n)
                     for i, n in enumerate(stim["image"])]
    out = write_dataset(str(tmp_path / "ds"), meta=p["meta"], stimuli=stim,
                        neuroids=p["neuroids"], responses=p["responses"])
    ds = load_dataset(out)
    assert ds.image_uri(1) == str(ext / "im1.png")
    assert ds.read_image_bytes(1) == raw["im1.png"]
    np.testing.assert_array_equal(np.asarray(ds.read_image(0)), p["images"]["im0.png"])
    np.testing.assert_array_equal(ds.image_sizes(), [len(b) for b in raw.values()])
    os.remove(ext / "im3.png")
    with pytest.raises(DatasetError, match=r"missing: 's3 \(.*im3.png\)'"):
        load_dataset(out)
    # bytes given to write_dataset are stored unchanged
    out2 = write_dataset(str(tmp_path / "ds2"), **{**parts(), "images": raw})
    assert load_dataset(out2).read_image_bytes(4) == raw["im4.png"]


def test_subset(tmp_path):
    ds = load_dataset(write_dataset(str(tmp_path / "ds"), **parts(), **rdm_parts()))
    sub = ds.subset([4, 1])
    assert sub.stimuli["stimulus_id"].tolist() == ["s4", "s1"]
    np.testing.assert_array_equal(sub.responses, ds.responses[[4, 1]])
    np.testing.assert_array_equal(sub.rdms[0], ds.rdms[0][np.ix_([4, 1], [4, 1])])
    np.testing.assert_array_equal(np.asarray(sub.read_image(0)), np.asarray(ds.read_image(4)))
    validate_dataset(sub)
    assert sub.fingerprint() != ds.fingerprint()
    with pytest.raises(DatasetError, match="out of range"):
        ds.subset([0, 99])


# ------------------------------------------------------------------------------- errors
def dup_stimuli():
    s = parts()["stimuli"]
    s.loc[3, "stimulus_id"] = "s1"
    s.loc[5, "stimulus_id"] = "s1"
    return in_memory(stimuli=s)


def dup_neuroids():
    n = parts()["neuroids"]
    n.loc[2, "neuroid_id"] = "n0"
    return in_memory(neuroids=n)


def all_nan_neuroid():
    r = parts()["responses"]
    r[:, :, 2] = np.nan
    return in_memory(responses=r)


def all_nan_stimulus():
    r = parts()["responses"]
    r[4] = np.nan
    return in_memory(responses=r)


def escaping_image():
    s = parts()["stimuli"]
    s.loc[2, "image"] = "images/../../secret.png"
    return in_memory(stimuli=s)


def missing_column():
    return in_memory(neuroids=parts()["neuroids"].drop(columns=["region"]))


def null_region():
    n = parts()["neuroids"]
    n.loc[1, "region"] = None
    return in_memory(neuroids=n)


def infinite():
    r = parts()["responses"]
    r[1, 0, 3] = np.inf
    return in_memory(responses=r)


@pytest.mark.parametrize("make, expected", [
    (dup_stimuli, [r"duplicate stimulus_id", r"'s1'"]),
    (dup_neuroids, [r"duplicate neuroid_id", r"'n0'"]),
    (lambda: in_memory(responses=np.zeros((N_STIM + 1, N_REP, N_NEU), np.float32)),
     [r"shape mismatch", r"expected .*n_stimuli=6.*n_neuroids=4", r"got \(7, 3, 4\)"]),
    (lambda: in_memory(responses=np.zeros((N_STIM, N_NEU - 1), np.float32)),
     [r"shape mismatch|3-D", r"\(6, 3\)"]),
    (lambda: in_memory(responses=np.zeros((N_STIM, N_NEU), np.float32)),
     [r"must be 3-D", r"ndim 2"]),
    (lambda: in_memory(responses=np.zeros((N_STIM, N_REP, N_NEU), np.int64)),
     [r"floating point"]),
    (all_nan_neuroid, [r"no valid response \(all NaN\)", r"'n2'"]),
    (all_nan_stimulus, [r"stimulus\(es\) have no valid response", r"'s4'"]),
    (escaping_image, [r"escape the dataset folder", r"s2 \(images/../../secret.png\)"]),
    (missing_column, [r"neuroids.parquet lacks required column", r"'region'"]),
    (null_region, [r"'region' is empty", r"rows 1"]),
    (infinite, [r"infinite", r"'n3'"]),
    (lambda: in_memory(meta={"description": "no name"}), [r"non-empty string 'name'"]),
    (lambda: in_memory(stimuli=parts()["stimuli"].drop(columns=["image"])),
     [r"stimuli.parquet lacks required column", r"'image'"]),
    (lambda: in_memory(neuroids=parts()["neuroids"].iloc[:0]), [r"neuroids.parquet has no rows"]),
    (lambda: in_memory(responses=None), [r"neither responses.npy nor rdms.npy"]),
    (lambda: in_memory(**rdm_parts(N_STIM - 1)),
     [r"rdms shape mismatch", r"expected .*\(2, 6, 6\)", r"got \(2, 5, 5\)"]),
    (lambda: in_memory(rdms=rdm_parts()["rdms"]), [r"rdms.parquet .* is missing"]),
    (lambda: in_memory(rdms=rdm_parts()["rdms"][:, :, :, None], rdm_table=rdm_parts()["rdm_table"]),
     [r"rdms must be 3-D"]),
    (lambda: in_memory(rdms=rdm_parts()["rdms"] + np.triu(np.ones((N_STIM, N_STIM)))[None] *
                       np.array([0, 1])[:, None, None], rdm_table=rdm_parts()["rdm_table"]),
     [r"not symmetric", r"'r1'"]),
])
def test_validation_errors(make, expected):
    ds = make()
    with pytest.raises(DatasetError) as err:
        validate_dataset(ds, check_images=False)
    msg = str(err.value)
    for pattern in expected:
        assert re.search(pattern, msg), (pattern, msg)


def test_all_problems_reported_and_long_lists_truncated():
    s = parts(n_stim=30)["stimuli"]
    s["stimulus_id"] = ["dup"] * 2 + [f"x{i // 2}" for i in range(28)]  # 15 duplicated ids
    r = np.zeros((30, N_REP, N_NEU + 1), np.float32)
    ds = in_memory(stimuli=s, responses=r)
    with pytest.raises(DatasetError) as err:
        validate_dataset(ds, check_images=False)
    msg = str(err.value)
    assert "15 duplicate stimulus_id(s)" in msg and "... and 5 more" in msg
    assert "'dup'" in msg and "'x9'" not in msg  # the first 10 are named, not the rest
    assert "got (30, 3, 5)" in msg  # a second, independent problem in the same message


def test_partially_missing_cells_warn(recwarn):
    r = parts()["responses"]
    r[2, :, 1] = np.nan  # stimulus s2 never recorded for neuroid n1
    ds = in_memory(responses=r)
    with pytest.warns(UserWarning, match="1 \\(stimulus, neuroid\\) pair"):
        validate_dataset(ds, check_images=False)
    assert np.isnan(ds.mean_responses()[2, 1])


def test_write_rejects_before_writing(tmp_path):
    p = parts()
    p["stimuli"].loc[1, "stimulus_id"] = "s0"
    with pytest.raises(DatasetError, match="'s0'"):
        write_dataset(str(tmp_path / "bad"), **p)
    assert not (tmp_path / "bad" / "dataset.json").exists()
    with pytest.raises(DatasetError, match="relative paths inside images/: '../x.png'"):
        write_dataset(str(tmp_path / "bad2"), **{**parts(), "images": {"../x.png": b"x"}})


def test_write_refuses_overwrite(tmp_path):
    out = write_dataset(str(tmp_path / "ds"), **parts())
    with pytest.raises(DatasetError, match="already exists"):
        write_dataset(out, **parts())
    write_dataset(out, **parts(seed=1), overwrite=True)
    np.testing.assert_array_equal(load_dataset(out).responses, parts(seed=1)["responses"])


def test_missing_files_and_images_named(tmp_path):
    out = write_dataset(str(tmp_path / "ds"), **parts())
    os.remove(os.path.join(out, "images", "im4.png"))
    os.remove(os.path.join(out, "images", "im1.png"))
    with pytest.raises(DatasetError, match=r"2 image file\(s\) missing: 's1 \(images/im1.png\)', "
                                           r"'s4 \(images/im4.png\)'"):
        load_dataset(out)
    load_dataset(out, validate=False)  # loading without validation still works
    os.remove(os.path.join(out, "neuroids.parquet"))
    with pytest.raises(DatasetError, match="lacks required file.*'neuroids.parquet'"):
        load_dataset(out)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(str(tmp_path / "nothing"))


def test_missing_image_on_s3_checked_in_bulk(s3_bucket):
    import boto3

    out = write_dataset(f"{s3_bucket}/ds", **parts(n_stim=20))
    fs = fsspec.filesystem("s3")  # the cached instance that load_dataset also gets
    ds = load_dataset(out)  # valid; fills fsspec's listing caches
    # deleted behind fsspec's back (another process): cached listings must not hide it
    boto3.client("s3").delete_object(Bucket=s3_bucket[5:], Key="ds/images/im7.png")
    requests = []

    def count(request, **kwargs):
        requests.append(request.url)

    fs.s3.meta.events.register("before-send.s3", count)  # every HTTP request to S3
    try:
        with pytest.raises(DatasetError,
                           match=r"1 image file\(s\) missing: 's7 \(images/im7.png\)'"):
            validate_dataset(ds)
        assert 1 <= len(requests) <= 2, f"{requests}: existence must be checked in bulk"
        fs.invalidate_cache()
        n = len(requests)
        fs.info(f"{out}/images/im1.png")  # the counter does see a per-file request
        assert len(requests) > n
    finally:
        fs.s3.meta.events.unregister("before-send.s3", count)


# ------------------------------------------------------------------------------- fingerprint
def test_fingerprint(tmp_path):
    a = write_dataset(str(tmp_path / "a"), **parts())
    b = write_dataset(str(tmp_path / "b"), **parts())
    fa = load_dataset(a).fingerprint()
    assert len(fa) == 64 and int(fa, 16) >= 0
    assert load_dataset(a).fingerprint() == fa  # stable across loads
    assert load_dataset(b).fingerprint() == fa  # same content elsewhere: same fingerprint

    ds = load_dataset(a)
    ds.meta["description"] = "renamed"  # dataset.json is not part of the fingerprint
    assert ds.fingerprint() == fa
    ds.responses[3, 1, 2] += 1.0
    assert ds.fingerprint() != fa
    ds.responses[3, 1, 2] -= 1.0
    assert ds.fingerprint() == fa

    ds.stimuli.loc[0, "category"] = "zzz"
    assert ds.fingerprint() != fa
    ds = load_dataset(a)
    ds.neuroids.loc[0, "subject"] = "other"
    assert ds.fingerprint() != fa

    # an image file whose size changes
    img = os.path.join(a, "images", "im2.png")
    with open(img, "ab") as f:
        f.write(b"\0")
    assert load_dataset(a, validate=False).fingerprint() != fa

    # rdms count
    c = write_dataset(str(tmp_path / "c"), **parts(), **rdm_parts())
    assert load_dataset(c).fingerprint() != fa


def test_relative_local_path_becomes_absolute_and_pickles(tmp_path, monkeypatch):
    import pickle

    monkeypatch.chdir(tmp_path)
    out = write_dataset("rel/ds/", **parts())
    assert out == str(tmp_path / "rel" / "ds")
    ds = load_dataset("rel/ds")
    assert ds.uri == out and ds.image_uri(0) == f"{out}/images/im0.png"
    ds.fingerprint()  # populates the cached filesystem handle
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone.responses, ds.responses)
    assert clone.fingerprint() == ds.fingerprint()


def test_folder_written_by_hand_with_numpy_and_pandas(tmp_path):
    import json

    root = tmp_path / "my_dataset"
    (root / "images").mkdir(parents=True)
    p = parts()
    for name, arr in p["images"].items():
        Image.fromarray(arr).save(root / "images" / name)
    stim = p["stimuli"].assign(image=["images/" + n for n in p["images"]])
    stim.to_parquet(root / "stimuli.parquet", index=False)
    p["neuroids"].to_parquet(root / "neuroids.parquet", index=False)
    np.save(root / "responses.npy", p["responses"])
    (root / "dataset.json").write_text(json.dumps(p["meta"]))
    ds = load_dataset(str(root))
    np.testing.assert_array_equal(ds.responses, p["responses"])
    np.testing.assert_array_equal(np.asarray(ds.read_image(5)), p["images"]["im5.png"])
    # the same content written by write_dataset has the same fingerprint
    assert ds.fingerprint() == load_dataset(write_dataset(str(tmp_path / "w"), **p)).fingerprint()


def test_write_with_unresolved_image_and_corrupt_image(tmp_path):
    from cortexzoo.data import ImageDecodeError

    p = parts()
    p["images"].pop("im3.png")  # the table still names it
    with pytest.raises(DatasetError, match=r"1 image file\(s\) missing: 's3 \(im3.png\)'"):
        write_dataset(str(tmp_path / "ds"), **p)
    out = write_dataset(str(tmp_path / "ok"), **parts())
    with open(os.path.join(out, "images", "im2.png"), "r+b") as f:
        f.truncate(30)
    ds = load_dataset(out)
    with pytest.raises(ImageDecodeError, match=r"ok/images/im2.png"):
        ds.read_image(2)
