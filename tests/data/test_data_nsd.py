"""NSD importer: a small copy of NSD's files built here with the real libraries (h5py for
the image brick and the betas, scipy for the design .mat; the ROI mask as NIfTI-1, written
below by the standard's byte layout since nibabel is not installed), converted, and
checked against betas read straight from the files and unscaled as NSD documents.

Where the structure was read (NSD data manual, cvnlab.slite.page):
* "Functional data (NSD)": betas "have been multiplied by 300 and converted to int16
  format ... divid[e] by 300" on loading; HDF5 ``/betas`` is "X voxels x Y voxels x Z
  voxels x 750 trials" (MATLAB order; h5py sees [750, Z, Y, X]) with chunk size
  [1 1 1 750]; one file per session, ``betas_sessionNN.hdf5``.
* "Technical notes": func1pt8mm volumes (subj01 [81 104 83], subj02 [82 106 84]): every
  subject has its own volume size; sessions per subject (40, 40, 32, 30, ...); shared
  images shown 3 times.
* "Experiments" / ``nsd_expdesign.mat`` as read by NSD users (e.g. tknapen/nsd_access,
  gifale95's Algonauts preparation): ``masterordering`` [1 x 30000], ``subjectim``
  [8 x 10000], ``sharedix`` [1 x 1000], all 1-based; nsdId of trial ``g`` =
  ``subjectim[s-1, masterordering[g]-1] - 1``; ``nsd_stimuli.hdf5`` ``imgBrick``
  [73000, 425, 425, 3] uint8, indexed by that 0-based id (``sdataset[image_index]``).
* The h5py reading convention is confirmed by code that reshapes ``betas`` [750, ...] in
  Fortran order to match a NIfTI mask flattened in C order.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct

import h5py
import numpy as np
import pytest
from scipy.io import loadmat, savemat

from cortexzoo.cli import main
from cortexzoo.data import DatasetError, load_dataset
from cortexzoo.data.nsd import convert_nsd

VOL = {1: (5, 4, 3), 2: (6, 4, 3)}  # (X, Y, Z) per subject, as func1pt8mm differs per subject
SESSIONS = {1: [1, 2, 3], 2: [1, 2]}
SIDE = 4  # the real images are 425 px; 4 px keeps the 73,000-image brick small (3.5 MB)


def write_nifti(path: str, vol: np.ndarray) -> None:
    """A gzipped single-file NIfTI-1 (.nii.gz): the 348-byte header of the NIfTI-1
    standard (sizeof_hdr, dim, datatype, bitpix, pixdim, vox_offset, scl_slope, magic),
    then the voxels in Fortran order at vox_offset 352."""
    vol = np.asarray(vol, dtype="<i2")
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    struct.pack_into("<8h", hdr, 40, 3, *vol.shape, 1, 1, 1, 1)
    struct.pack_into("<hh", hdr, 70, 4, 16)  # DT_INT16, 16 bits
    struct.pack_into("<8f", hdr, 76, 1, 1.8, 1.8, 1.8, 1, 1, 1, 1)
    struct.pack_into("<fff", hdr, 108, 352.0, 1.0, 0.0)  # vox_offset, scl_slope, scl_inter
    hdr[344:348] = b"n+1\0"
    with gzip.open(path, "wb") as f:
        f.write(bytes(hdr) + b"\0" * 4 + vol.tobytes(order="F"))


def _build(root: str, labels=(1,)):
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = rng.choice(73000, size=1000 + 2 * 9000, replace=False) + 1  # 1-based 73k ids
    shared = np.sort(ids[:1000])
    subjectim = np.zeros((8, 10000), dtype=np.int64)
    for s in range(8):
        own = ids[1000:10000] if s % 2 == 0 else ids[10000:]
        subjectim[s] = np.concatenate([shared, own])
    masterordering = rng.permutation(np.repeat(np.arange(1, 10001), 3))[None, :]
    savemat(os.path.join(root, "nsd_expdesign.mat"),
            {"masterordering": masterordering.astype(np.float64),
             "subjectim": subjectim.astype(np.float64), "sharedix": shared[None, :].astype(np.float64),
             "basiccnt": np.zeros((3, 40))})
    brick = rng.integers(0, 256, (73000, SIDE, SIDE, 3), dtype=np.uint8)
    with h5py.File(os.path.join(root, "nsd_stimuli.hdf5"), "w") as f:
        f.create_dataset("imgBrick", data=brick)
    feature = brick.reshape(73000, -1)[:, :4].astype(np.float64) / 255  # what voxels "see"
    for s, (X, Y, Z) in VOL.items():
        d = os.path.join(root, f"subj{s:02d}")
        os.makedirs(os.path.join(d, "betas"))
        mask = rng.choice([-1, 0, *labels], size=(X, Y, Z), p=[0.2, 0.3] + [0.5 / len(labels)] * len(labels))
        write_nifti(os.path.join(d, "roi.nii.gz"), mask)
        weights = rng.normal(0, 2, (4, Z, Y, X))
        img = subjectim[s - 1, masterordering[0] - 1] - 1
        for k in SESSIONS[s]:
            g = np.arange((k - 1) * 750, k * 750)
            psc = np.einsum("tf,fzyx->tzyx", feature[img[g]], weights) + rng.normal(0, 1, (750, Z, Y, X))
            with h5py.File(os.path.join(d, "betas", f"betas_session{k:02d}.hdf5"), "w") as f:
                f.create_dataset("betas", data=np.round(psc * 300).astype(np.int16),
                                 chunks=(750, 1, 1, 1))
    return root


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    return _build(str(tmp_path_factory.mktemp("nsd")))


def _args(root, **kw):
    return dict(betas=os.path.join(root, "subj{subject:02d}", "betas"),
                stimuli=os.path.join(root, "nsd_stimuli.hdf5"),
                design=os.path.join(root, "nsd_expdesign.mat"),
                roi=os.path.join(root, "subj{subject:02d}", "roi.nii.gz"), **kw)


def _roi_xyz(root, s):
    with gzip.open(os.path.join(root, f"subj{s:02d}", "roi.nii.gz")) as f:
        raw = f.read()
    vol = np.frombuffer(raw[352:], dtype="<i2").reshape(VOL[s], order="F")
    return vol


@pytest.fixture(scope="module")
def converted(nsd, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("nsd") / "ds")
    convert_nsd(**_args(nsd), out_uri=out, subjects=[1, 2], progress=False)
    return load_dataset(out)


def test_shared_images_unscaled_betas_and_voxels(converted, nsd):
    ds = converted
    mat = loadmat(os.path.join(nsd, "nsd_expdesign.mat"))
    mo, sim = mat["masterordering"][0].astype(int), mat["subjectim"].astype(int)
    shared = set(mat["sharedix"][0].astype(int) - 1)
    seen = {s: {int(sim[s - 1, mo[g] - 1] - 1) for k in SESSIONS[s]
                for g in range((k - 1) * 750, k * 750)} for s in (1, 2)}
    expected_ids = sorted(shared & seen[1] & seen[2])
    assert ds.stimuli["nsd_id"].tolist() == expected_ids
    assert ds.stimuli["stimulus_id"].iloc[0] == f"nsd{expected_ids[0]:05d}"
    assert ds.responses.shape[1] == 3 and ds.regions == ["roi"]
    for s in (1, 2):
        vol = _roi_xyz(nsd, s)
        nd = ds.neuroids[ds.neuroids["subject"] == f"subj{s:02d}"]
        assert {tuple(v) for v in nd[["x", "y", "z"]].to_numpy()} == \
            {tuple(v) for v in np.argwhere(vol > 0)}
    # every (stimulus, repetition, voxel) against the betas file, trial by trial
    row = {i: r for r, i in enumerate(expected_ids)}
    col = {nid: j for j, nid in enumerate(ds.neuroids["neuroid_id"])}
    filled = np.zeros(ds.responses.shape, dtype=bool)
    for s in (1, 2):
        img = sim[s - 1, mo - 1] - 1
        nd = ds.neuroids[ds.neuroids["subject"] == f"subj{s:02d}"]
        cols = [col[n] for n in nd["neuroid_id"]]
        for k in SESSIONS[s]:
            with h5py.File(os.path.join(nsd, f"subj{s:02d}", "betas", f"betas_session{k:02d}.hdf5")) as f:
                b = f["betas"][()]
            for t in range(750):
                g = (k - 1) * 750 + t
                if img[g] not in row:
                    continue
                rep = int((img[:g] == img[g]).sum())  # earlier showings in the whole design
                want = b[t, nd["z"], nd["y"], nd["x"]] / 300.0
                np.testing.assert_allclose(ds.responses[row[img[g]], rep, cols], want, rtol=1e-6)
                filled[row[img[g]], rep, cols] = True
    assert np.isnan(ds.responses[~filled]).all()  # the rest: showings in sessions not imported


def test_images_copied_and_provenance(converted, nsd):
    ds = converted
    assert ds.image_array == {"path": "images.npy"}
    with h5py.File(os.path.join(nsd, "nsd_stimuli.hdf5")) as f:
        for i in (0, ds.n_stimuli - 1):
            np.testing.assert_array_equal(np.asarray(ds.read_image(i)),
                                          f["imgBrick"][ds.stimuli["nsd_id"].iloc[i]])
    prov = ds.meta["provenance"]
    assert prov["beta_scale"] == 300.0 and prov["images"] == "shared" and not prov["zscore"]
    betas = prov["sources"]["subjects"]["subj01"]["betas"]
    assert len(betas) == 3
    p = os.path.join(nsd, "subj01", "betas", "betas_session02.hdf5")
    assert betas[1]["sha256"] == hashlib.sha256(open(p, "rb").read()).hexdigest()
    assert "percent signal change" in ds.meta["response_unit"]
    assert ds.stimuli["shared"].all()


def test_one_subject_all_images_zscore_and_labels(nsd, tmp_path):
    root = _build(str(tmp_path / "lab"), labels=(1, 2))
    out = convert_nsd(**_args(root), out_uri=str(tmp_path / "one"), subjects=[2], images="all",
                      sessions=[2], zscore=True, roi_labels={1: "early", 2: "ventral"},
                      progress=False)
    ds = load_dataset(out)
    assert ds.regions == ["early", "ventral"] and set(ds.neuroids["subject"]) == {"subj02"}
    mat = loadmat(os.path.join(root, "nsd_expdesign.mat"))
    mo, sim = mat["masterordering"][0].astype(int), mat["subjectim"].astype(int)
    img = sim[1, mo[750:1500] - 1] - 1
    assert ds.stimuli["nsd_id"].tolist() == sorted(set(img.tolist()))
    with h5py.File(os.path.join(root, "subj02", "betas", "betas_session02.hdf5")) as f:
        b = f["betas"][()] / 300.0
    n = ds.neuroids.iloc[3]
    v = b[:, n["z"], n["y"], n["x"]]
    z = (v - v.mean()) / v.std()
    t = 10
    full_img = sim[1, mo - 1] - 1
    rep = int((full_img[:750 + t] == img[t]).sum())
    r = ds.stimuli["nsd_id"].tolist().index(img[t])
    np.testing.assert_allclose(ds.responses[r, rep, 3], z[t], rtol=1e-5)


def test_link_images_and_s3_sources(nsd, s3_bucket, tmp_path):
    import fsspec

    fs = fsspec.filesystem("s3")
    fs.put(nsd + "/", s3_bucket.replace("s3://", "") + "/nsd/", recursive=True)
    base = f"{s3_bucket}/nsd"
    out = convert_nsd(betas=base + "/subj{subject:02d}/betas", stimuli=base + "/nsd_stimuli.hdf5",
                      design=base + "/nsd_expdesign.mat", roi=base + "/subj{subject:02d}/roi.nii.gz",
                      out_uri=str(tmp_path / "link"), subjects=[1], sessions=[1],
                      link_images=True, digests=False, progress=False)
    ds = load_dataset(out)
    assert ds.image_array == {"path": base + "/nsd_stimuli.hdf5", "dataset": "imgBrick"}
    assert ds.stimuli["image_index"].tolist() == ds.stimuli["nsd_id"].tolist()
    assert ds.image_uri(0) == f"{base}/nsd_stimuli.hdf5#imgBrick/{ds.stimuli['nsd_id'].iloc[0]}"
    with h5py.File(os.path.join(nsd, "nsd_stimuli.hdf5")) as f:
        np.testing.assert_array_equal(np.asarray(ds.read_image(2)),
                                      f["imgBrick"][ds.stimuli["nsd_id"].iloc[2]])


def test_bad_input_named(nsd, tmp_path):
    a = _args(nsd)
    with pytest.raises(DatasetError, match="another subject or resolution"):
        convert_nsd(**{**a, "roi": os.path.join(nsd, "subj02", "roi.nii.gz")},
                    out_uri=str(tmp_path / "a"), subjects=[1], progress=False)
    with pytest.raises(DatasetError, match="not an HDF5 file"):
        convert_nsd(**{**a, "stimuli": a["design"]}, out_uri=str(tmp_path / "b"), progress=False)
    with pytest.raises(DatasetError, match="not a MATLAB .mat file|v7.3"):
        convert_nsd(**{**a, "design": a["stimuli"]}, out_uri=str(tmp_path / "c"), progress=False)
    with pytest.raises(DatasetError, match=r"lacks session\(s\) 5"):
        convert_nsd(**a, out_uri=str(tmp_path / "d"), sessions=[5], progress=False)
    with pytest.raises(DatasetError, match="takes one subject"):
        convert_nsd(**a, out_uri=str(tmp_path / "e"), subjects=[1, 2], images="all", progress=False)
    with pytest.raises(DatasetError, match="selects no voxel"):
        convert_nsd(**a, out_uri=str(tmp_path / "f"), roi_labels={7: "none"}, progress=False)
    with pytest.raises(DatasetError, match="not a NIfTI-1"):
        convert_nsd(**{**a, "roi": a["design"]}, out_uri=str(tmp_path / "g"), progress=False)


def test_cli_and_scan(nsd, tmp_path, capsys):
    from cortexzoo.features.reduce import ReductionConfig
    from cortexzoo.scan import ScanConfig, run_scan
    from cortexzoo.scan.scoring import ScoringConfig

    a = _args(nsd)
    out = str(tmp_path / "cli")
    assert main(["data", "nsd", "--betas", a["betas"], "--stimuli", a["stimuli"], "--design",
                 a["design"], "--roi", a["roi"], "--subjects", "1,2", "--sessions", "1-2",
                 "--region", "nsdgeneral", out, "--quiet"]) == 0
    assert "nsdgeneral" in capsys.readouterr().out
    assert main(["data", "nsd", "--betas", a["betas"], "--stimuli", a["design"], "--design",
                 a["design"], "--roi", a["roi"], str(tmp_path / "x"), "--quiet"]) == 2
    assert "not an HDF5 file" in capsys.readouterr().err
    res = run_scan(ScanConfig(data=out, models=["pixels"], out=str(tmp_path / "r"),
                              engine="local", progress=False, plot=False, input_size=8,
                              reduction=ReductionConfig(n_components=16),
                              scoring=ScoringConfig(reliability_splits=5, inter_animal_boot=50)))
    s = res.scores
    assert set(s[s["model"] == "inter_animal"]["region"]) == {"nsdgeneral"}
    assert s[s["model"] != "inter_animal"]["value"].notna().any()
