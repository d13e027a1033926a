"""Images stored as one array (images.npy, or an HDF5 dataset named in dataset.json):
written, validated, fingerprinted, read by index (locally, through s3, and in Ray decode
tasks), and the same pixels as the same images stored as files."""
from __future__ import annotations

import io

import fsspec
import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cortexzoo.data import DatasetError, load_dataset, write_dataset
from cortexzoo.data.arrays import RowSelection, array_ref, open_array, parse_array_ref
from cortexzoo.data.images import decode_crop_batch, read_and_crop, read_images
from cortexzoo.data.validate import check_image_contents

RNG = np.random.default_rng(1)
IMGS = RNG.integers(0, 256, (12, 20, 28, 3), dtype=np.uint8)
ORDER = [7, 0, 3, 11, 5, 2, 9, 1]  # stimulus i shows image ORDER[i]
GEOM = {"mode": "whole", "input_size": 16, "interpolation": "bilinear"}


def _parts(n=len(ORDER), seed=0):
    rng = np.random.default_rng(seed)
    stimuli = pd.DataFrame({"stimulus_id": [f"s{i}" for i in range(n)],
                            "image_index": np.asarray(ORDER[:n], dtype=np.int64)})
    neuroids = pd.DataFrame({"neuroid_id": [f"n{j}" for j in range(6)],
                             "subject": ["a", "a", "a", "b", "b", "b"], "region": "V1"})
    return dict(meta={"name": "arr"}, stimuli=stimuli, neuroids=neuroids,
                responses=rng.normal(size=(n, 3, 6)).astype(np.float32))


@pytest.fixture(scope="module")
def npy_ds(tmp_path_factory):
    return write_dataset(str(tmp_path_factory.mktemp("arr") / "npy"), **_parts(),
                         image_array=IMGS)


@pytest.fixture(scope="module")
def h5_file(tmp_path_factory):
    """An HDF5 image brick laid out as NSD's nsd_stimuli.hdf5: 'imgBrick' uint8
    [n, H, W, 3], one chunk per image."""
    path = str(tmp_path_factory.mktemp("arr") / "stimuli.hdf5")
    with h5py.File(path, "w") as f:
        f.create_dataset("imgBrick", data=IMGS, chunks=(1, *IMGS.shape[1:]))
    return path


def test_refs_roundtrip():
    assert parse_array_ref(array_ref("s3://b/x/images.npy", 3)) == ("s3://b/x/images.npy", None, 3)
    assert parse_array_ref(array_ref("/d/s.hdf5", 72999, "grp/imgBrick")) == \
        ("/d/s.hdf5", "grp/imgBrick", 72999)
    for not_ref in ("/d/image#3.png", "/d/a.png", "s3://b/images.npy", "/d/a.npy#x"):
        assert parse_array_ref(not_ref) is None


def test_npy_folder_reads_by_index(npy_ds, tmp_path):
    ds = load_dataset(npy_ds)
    assert ds.image_array == {"path": "images.npy"}
    assert "image" not in ds.stimuli and ds.image_uri(0).endswith("images.npy#7")
    assert isinstance(open_array(ds.uri + "/images.npy")._mm, np.memmap)  # memory-mapped
    for i, j in enumerate(ORDER):
        np.testing.assert_array_equal(np.asarray(ds.read_image(i)), IMGS[j])
    # the same images as PNG files: identical model input
    files = {f"{j}.png": IMGS[j] for j in set(ORDER)}
    st = _parts()["stimuli"].drop(columns="image_index")
    st["image"] = [f"{j}.png" for j in ORDER]
    ref = load_dataset(write_dataset(str(tmp_path / "png"), **{**_parts(), "stimuli": st},
                                     images=files))
    np.testing.assert_array_equal(read_and_crop(ds.image_uris(), GEOM),
                                  read_and_crop(ref.image_uris(), GEOM))
    batch = decode_crop_batch({"idx": np.arange(3), "uri": ds.image_uris()[:3],
                               "sid": ["s0", "s1", "s2"]}, GEOM)
    np.testing.assert_array_equal(batch["pixels"], read_and_crop(ref.image_uris()[:3], GEOM))
    # byte readers (domains, read_image_bytes) get the image encoded as PNG
    png = read_images([ds.image_uri(1)])[0]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), IMGS[0])
    assert check_image_contents(ds, progress=False) == []


def test_hdf5_named_in_dataset_json_local_and_s3(h5_file, s3_bucket, tmp_path):
    parts = _parts()
    parts["meta"] = {"name": "h5", "image_array": {"path": h5_file, "dataset": "imgBrick"}}
    ds = load_dataset(write_dataset(str(tmp_path / "h5"), **parts))
    assert ds.image_uri(0) == f"{h5_file}#imgBrick/7"
    np.testing.assert_array_equal(np.asarray(ds.read_image(3)), IMGS[11])
    # the brick and the folder on s3: h5py reads the rows through fsspec
    fs = fsspec.filesystem("s3")
    key = s3_bucket.replace("s3://", "")
    fs.put(h5_file, f"{key}/stimuli.hdf5")
    parts["meta"] = {"name": "h5s3", "image_array": {"path": "stimuli.hdf5", "dataset": "imgBrick"}}
    fs.put(h5_file, f"{key}/h5s3/stimuli.hdf5")
    remote = load_dataset(write_dataset(f"{s3_bucket}/h5s3", **parts))
    assert remote.image_uri(2) == f"{s3_bucket}/h5s3/stimuli.hdf5#imgBrick/3"
    np.testing.assert_array_equal(read_and_crop(remote.image_uris(), GEOM),
                                  read_and_crop(ds.image_uris(), GEOM))


def test_remote_npy_reads_only_the_rows_asked(npy_ds, s3_bucket, monkeypatch):
    ds = load_dataset(write_dataset(f"{s3_bucket}/npy", **_parts(), image_array=IMGS))
    assert ds.image_uri(0) == f"{s3_bucket}/npy/images.npy#7"
    arr = open_array(parse_array_ref(ds.image_uri(0))[0])  # what the readers will use
    calls = []
    orig = arr._fs.cat_ranges

    def spy(paths, starts, ends, *a, **k):
        calls.append(sum(e - s for s, e in zip(starts, ends)))
        return orig(paths, starts, ends, *a, **k)

    monkeypatch.setattr(arr._fs, "cat_ranges", spy)
    pix = read_and_crop([ds.image_uri(i) for i in (0, 4, 5)], GEOM)
    assert calls == [3 * IMGS[0].nbytes]  # three rows of the 12, in one batched request
    local = load_dataset(npy_ds)
    np.testing.assert_array_equal(pix, read_and_crop([local.image_uri(i) for i in (0, 4, 5)], GEOM))


def test_validation_names_what_is_wrong(npy_ds, h5_file, tmp_path):
    parts = _parts()
    parts["stimuli"].loc[2, "image_index"] = 40
    with pytest.raises(DatasetError, match=r"image_index beyond the 12 images.*'s2'"):
        write_dataset(str(tmp_path / "a"), **parts, image_array=IMGS)
    parts = _parts()
    parts["meta"] = {"name": "x", "image_array": {"path": h5_file}}
    with pytest.raises(DatasetError, match="HDF5 file: name the dataset"):
        write_dataset(str(tmp_path / "b"), **parts)
    parts["meta"] = {"name": "x", "image_array": {"path": h5_file, "dataset": "nope"}}
    with pytest.raises(DatasetError, match="no dataset 'nope'; it has 'imgBrick'"):
        write_dataset(str(tmp_path / "c"), **parts)
    parts["meta"] = {"name": "x", "image_array": {"path": "missing.npy"}}
    with pytest.raises(DatasetError, match="missing.npy' does not exist"):
        write_dataset(str(tmp_path / "d"), **parts)
    parts = _parts()
    parts["stimuli"]["image"] = "x.png"
    with pytest.raises(DatasetError, match="has an 'image' column"):
        write_dataset(str(tmp_path / "e"), **parts, image_array=IMGS)
    parts = _parts()
    parts["stimuli"]["image_index"] = parts["stimuli"]["image_index"].astype(float) + 0.5
    with pytest.raises(DatasetError, match="must hold integers"):
        write_dataset(str(tmp_path / "f"), **parts, image_array=IMGS)
    parts = _parts()
    parts["stimuli"] = parts["stimuli"].drop(columns="image_index")
    with pytest.raises(DatasetError, match="lacks required column.*'image_index'"):
        write_dataset(str(tmp_path / "i"), **parts, image_array=IMGS)
    parts = _parts()
    parts["stimuli"].loc[1, "image_index"] = -3
    with pytest.raises(DatasetError, match="negative image_index: 's1'"):
        write_dataset(str(tmp_path / "j"), **parts, image_array=IMGS)
    with pytest.raises(DatasetError, match=r"has shape \(12, 20\)"):
        write_dataset(str(tmp_path / "g"), **_parts(), image_array=IMGS[:, :, 0, 0])
    bad = IMGS.astype(np.float32) / 255
    bad[7, 0, 0, 0] = np.nan  # stimulus s0's image
    ds = load_dataset(write_dataset(str(tmp_path / "h"), **_parts(), image_array=bad))
    problems = check_image_contents(ds, progress=False)
    assert len(problems) == 1 and "stimulus s0" in problems[0] and "NaN" in problems[0]


def test_fingerprints(npy_ds, h5_file, tmp_path):
    a = load_dataset(npy_ds)
    assert a.fingerprint() == load_dataset(npy_ds).fingerprint()
    parts = _parts()
    parts["stimuli"].loc[0, "image_index"] = 4  # another image for one stimulus
    b = load_dataset(write_dataset(str(tmp_path / "b"), **parts, image_array=IMGS))
    assert b.fingerprint() != a.fingerprint()
    assert b.stimulus_fingerprint() != a.stimulus_fingerprint()
    c = load_dataset(write_dataset(str(tmp_path / "c"), **_parts(), image_array=IMGS[:, :10]))
    assert c.stimulus_fingerprint() != a.stimulus_fingerprint()  # the array's shape
    d = load_dataset(write_dataset(str(tmp_path / "d"), **_parts(seed=5), image_array=IMGS))
    assert d.stimulus_fingerprint() == a.stimulus_fingerprint()  # same stimuli, other responses
    assert d.fingerprint() != a.fingerprint()
    sel = RowSelection(IMGS, [5, 1, 1, 9])  # streamed rows in the order given
    np.testing.assert_array_equal(sel[1:4], IMGS[[1, 1, 9]])


@pytest.mark.ray
def test_scan_on_ray_reads_array_images_in_decode_tasks(ray_local, h5_file, tmp_path):
    """The decode tasks get array references and read their rows from the HDF5 brick;
    the scores equal the local engine's."""
    from cortexzoo.features.reduce import ReductionConfig
    from cortexzoo.scan import ScanConfig, run_scan
    from cortexzoo.scan.scoring import ScoringConfig

    n = 24
    rng = np.random.default_rng(3)
    stimuli = pd.DataFrame({"stimulus_id": [f"s{i}" for i in range(n)],
                            "image_index": rng.integers(0, len(IMGS), n)})
    pix = IMGS[stimuli["image_index"]].reshape(n, -1).astype(np.float64)
    resp = (pix[:, :6] / 255 + rng.normal(0, 0.1, (n, 3, 6)).transpose(1, 0, 2)).transpose(1, 0, 2)
    uri = write_dataset(str(tmp_path / "ds"), meta={"name": "h5ray", "image_array": {
        "path": h5_file, "dataset": "imgBrick"}}, stimuli=stimuli,
        neuroids=_parts()["neuroids"], responses=resp.astype(np.float32))
    common = dict(data=uri, models=["pixels"], input_size=16, progress=False, plot=False,
                  reduction=ReductionConfig(n_components=32), batch_size=8,
                  scoring=ScoringConfig(reliability_splits=5, inter_animal_boot=20))
    on_ray = run_scan(ScanConfig(out=str(tmp_path / "ray"), engine="ray", **common)).scores
    local = run_scan(ScanConfig(out=str(tmp_path / "loc"), engine="local", **common)).scores
    key = ["model", "layer", "region", "method", "metric", "split"]
    a = on_ray.sort_values(key).reset_index(drop=True)
    b = local.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[key], b[key])
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-4, atol=1e-5)
