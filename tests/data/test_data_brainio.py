"""BrainIO importer: a stimulus set (CSV + ZIP) and a neural assembly (netCDF-4), built
here with the real libraries in the layout brainio writes, converted, and checked
against values computed independently with xarray.

Where the structure was read:
* brain-score/brainio ``docs/SPECIFICATION.md``: the CSV has ``stimulus_id`` (legacy
  ``image_id``) and ``filename`` (the file's path in the ZIP); the netCDF-4 assembly has
  one data variable and global attributes ``identifier`` and ``stimulus_set_identifier``.
* brainio ``packaging.py``: ``create_stimulus_zip`` names members ``<stimulus_id><ext>``;
  ``write_netcdf`` does ``assembly.reset_index(list(assembly.indexes))`` (MultiIndex
  levels become plain coordinates), then ``to_dataset(name="data")`` with zlib level 1;
  ``package_data_assembly``: dimensions presentation x neuroid [x time_bin], coordinates
  ``stimulus_id`` and ``repetition`` on presentation, ``neuroid_id``, ``region``,
  ``animal``, ... on neuroid, ``time_bin_start``/``time_bin_end`` on time_bin.
* brainio ``assemblies.py`` (``AssemblyLoader``: ``xr.open_dataarray``; ``gather_indexes``).
* brain-score/vision ``benchmarks/majajhong2015/benchmark.py``: ``squeeze("time_bin")``,
  ``sel(region=...)``, ``average_repetition`` over ``stimulus_id``; 70-170 ms window.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image

from cortexzoo.cli import main
from cortexzoo.data import DatasetError, load_dataset
from cortexzoo.data.brainio import PRESENTATIONS, convert_brainio

BINS = [(0, 50), (50, 70), (70, 120), (120, 170), (170, 220)]
IDS = [f"im{i:02d}" for i in range(10)]


def _image(i: int) -> bytes:
    rng = np.random.default_rng(i)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _assembly(ids, reps, seed=0, drop_coords=()):
    """A NeuronRecordingAssembly as brainio packages it: MultiIndexes, then reset."""
    rng = np.random.default_rng(seed)
    sid, rep, day = [], [], []
    for i, s in enumerate(ids):
        for r in range(reps[i]):
            sid.append(s), rep.append(r), day.append(f"day{(r + i) % 2}")
    n_pres = len(sid)
    order = rng.permutation(n_pres)  # presentations in recording order, not grouped
    sid, rep, day = (np.asarray(a)[order] for a in (sid, rep, day))
    n_neu = 8
    coords = {
        "stimulus_id": ("presentation", sid), "repetition": ("presentation", rep),
        "object_name": ("presentation", np.array([f"obj{int(s[2:]) % 3}" for s in sid])),
        "day": ("presentation", day),
        "neuroid_id": ("neuroid", [f"Chabo_L_M_{j}" for j in range(n_neu)]),
        "animal": ("neuroid", ["Chabo"] * 4 + ["Tito"] * 4),
        "region": ("neuroid", ["IT", "IT", "V4", "V4"] * 2),
        "arr": ("neuroid", ["M", "A", "M", "P"] * 2),
        "elec": ("neuroid", np.arange(n_neu)),
        "time_bin_start": ("time_bin", [a for a, _ in BINS]),
        "time_bin_end": ("time_bin", [b for _, b in BINS]),
    }
    for c in drop_coords:
        coords.pop(c)
    values = rng.gamma(2.0, 5.0, (n_pres, n_neu, len(BINS))).astype(np.float32)
    values[3, 1, 2] = np.nan  # one NaN bin: the window mean skips it, as xarray's does
    da = xr.DataArray(values, coords=coords, dims=["presentation", "neuroid", "time_bin"])
    levels = {d: [c for c, (dd, _) in coords.items() if dd == d] for d in da.dims}
    da = da.set_index(**levels)  # as brainio's DataAssembly holds it
    da = da.reset_index(list(da.indexes))  # brainio.packaging.write_netcdf
    ds = da.to_dataset(name="data")
    ds.attrs.update(identifier="dicarlo.Test2015.public", stimulus_set_identifier="dicarlo.test")
    return ds


def _write(tmp, ids=IDS, reps=None, drop_coords=(), csv_ids=None):
    reps = reps or [3] * (len(ids) - 1) + [2]  # the last stimulus: one repetition fewer
    os.makedirs(tmp, exist_ok=True)
    csv_ids = csv_ids or list(ids) + ["unshown"]
    zpath, cpath, npath = (os.path.join(tmp, f) for f in ("s.zip", "s.csv", "a.nc"))
    with zipfile.ZipFile(zpath, "w") as z:
        for i, s in enumerate(csv_ids):
            z.writestr(f"{s}.png", _image(i))
    pd.DataFrame({"stimulus_id": csv_ids,
                  "object_name": [f"obj{i % 3}" for i in range(len(csv_ids))],
                  "category_name": ["cat" if i % 2 else "dog" for i in range(len(csv_ids))],
                  "filename": [f"{s}.png" for s in csv_ids]}).to_csv(cpath, index=False)
    ds = _assembly(ids, reps, drop_coords=drop_coords)
    ds.to_netcdf(npath, engine="h5netcdf",
                 encoding={v: dict(zlib=True, complevel=1) for v in ds.data_vars})
    return cpath, zpath, npath


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return _write(str(tmp_path_factory.mktemp("brainio") / "src"))


@pytest.fixture(scope="module")
def converted(source, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("brainio") / "ds")
    convert_brainio(*source, out, progress=False)
    return load_dataset(out)


def _expected(nc_path, window=(70, 170)):
    """The window mean per presentation with xarray, then presentations grouped per
    stimulus in repetition order (independent of the importer)."""
    da = xr.open_dataarray(nc_path, engine="h5netcdf").load()
    inside = (da.time_bin_start >= window[0]) & (da.time_bin_end <= window[1])
    mean = da.isel(time_bin=np.flatnonzero(inside.values)).mean("time_bin")  # skips NaN
    out = {}
    for s in np.unique(mean.stimulus_id.values):
        sel = mean.isel(presentation=np.flatnonzero(mean.stimulus_id.values == s))
        sel = sel.isel(presentation=np.argsort(sel.repetition.values, kind="stable"))
        out[str(s)] = sel.values
    return out, da


def test_window_mean_repetitions_and_tables(converted, source):
    ds = converted
    exp, da = _expected(source[2])
    assert ds.stimuli["stimulus_id"].tolist() == IDS  # the CSV's order; 'unshown' dropped
    assert ds.responses.shape == (10, 3, 8) and ds.responses.dtype == np.float32
    for i, s in enumerate(IDS):
        k = exp[s].shape[0]
        np.testing.assert_allclose(ds.responses[i, :k], exp[s], rtol=1e-6)
        assert np.isnan(ds.responses[i, k:]).all()
    assert np.isnan(ds.responses[-1, 2]).all()  # 2 repetitions: padded
    # every coordinate kept: neuroid ones, stimulus-level ones, CSV columns
    assert ds.neuroids["subject"].tolist() == da.animal.values.tolist()
    assert ds.neuroids["region"].tolist() == da.region.values.tolist()
    assert ds.neuroids["arr"].tolist() == da.arr.values.tolist()
    assert ds.neuroids["elec"].tolist() == list(range(8))
    assert {"object_name", "category_name", "filename"} <= set(ds.stimuli.columns)
    assert ds.regions == ["IT", "V4"]
    pres = pd.read_parquet(os.path.join(ds.uri, PRESENTATIONS))
    assert len(pres) == da.sizes["presentation"] and "day" in pres.columns
    # each presentation's response sits at (its stimulus, its repetition slot)
    row = {s: i for i, s in enumerate(IDS)}
    inside = (da.time_bin_start >= 70) & (da.time_bin_end <= 170)
    m = da.isel(time_bin=np.flatnonzero(inside.values)).mean("time_bin").values
    for p in [0, 5, len(pres) - 1]:
        r = pres.iloc[p]
        np.testing.assert_allclose(ds.responses[row[r.stimulus_id], r.repetition_slot],
                                   m[int(r.presentation)], rtol=1e-6)


def test_images_copied_and_provenance(converted, source):
    ds = converted
    with zipfile.ZipFile(source[1]) as z:
        for i in (0, 9):
            assert ds.read_image_bytes(i) == z.read(f"{IDS[i]}.png")
    prov = ds.meta["provenance"]
    assert prov["window_ms"] == [70.0, 170.0]
    assert prov["time_bins_averaged"] == [[70.0, 120.0], [120.0, 170.0]]
    for key, path in zip(("stimulus_set_csv", "stimulus_set_zip", "assembly"), source):
        assert prov["sources"][key]["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert ds.meta["name"] == "dicarlo.Test2015.public"
    assert ds.meta["stimulus_set_identifier"] == "dicarlo.test"
    assert prov["stimuli_in_set_not_presented"] == 1


def test_other_window_and_s3_sources(source, s3_bucket, tmp_path):
    import fsspec

    fs = fsspec.filesystem("s3")
    for p in source:
        fs.put(p, s3_bucket.replace("s3://", "") + "/bio/" + os.path.basename(p))
    remote = [f"{s3_bucket}/bio/{os.path.basename(p)}" for p in source]
    out = convert_brainio(*remote, str(tmp_path / "w"), window="0,70", progress=False)
    ds = load_dataset(out)
    exp, _ = _expected(source[2], window=(0, 70))
    np.testing.assert_allclose(ds.responses[0, :3], exp[IDS[0]], rtol=1e-6)
    assert ds.meta["provenance"]["sources"]["assembly"]["uri"] == remote[2]


def test_bad_input_named(source, tmp_path):
    cpath, zpath, npath = source
    with pytest.raises(DatasetError, match="not a netCDF-4"):
        convert_brainio(cpath, zpath, cpath, str(tmp_path / "a"), progress=False)
    with pytest.raises(DatasetError, match="not a ZIP"):
        convert_brainio(cpath, cpath, npath, str(tmp_path / "b"), progress=False)
    with pytest.raises(DatasetError, match="no time bin lies within 300-400"):
        convert_brainio(cpath, zpath, npath, str(tmp_path / "c"), window=(300, 400),
                        progress=False)
    src = _write(str(tmp_path / "s1"), drop_coords=("animal",))
    with pytest.raises(DatasetError, match="lacks coordinate.*'animal'"):
        convert_brainio(*src, str(tmp_path / "d"), progress=False)
    src = _write(str(tmp_path / "s2"), csv_ids=IDS[:7])  # the assembly shows im07..im09 too
    with pytest.raises(DatasetError, match=r"3 stimulus id\(s\).*not in the stimulus set.*'im07'"):
        convert_brainio(*src, str(tmp_path / "e"), progress=False)
    with pytest.raises(DatasetError, match="lacks a 'stimulus_id'"):
        bad = tmp_path / "bad.csv"
        bad.write_text("id,filename\na,a.png\n")
        convert_brainio(str(bad), zpath, npath, str(tmp_path / "f"), progress=False)


def test_cli_and_scan(source, tmp_path, capsys):
    from cortexzoo.features.reduce import ReductionConfig
    from cortexzoo.scan import ScanConfig, run_scan
    from cortexzoo.scan.scoring import ScoringConfig

    cpath, zpath, npath = source
    out = str(tmp_path / "cli")
    assert main(["data", "brainio", "--stimuli", cpath, "--images", zpath, "--assembly", npath,
                 out, "--quiet"]) == 0
    assert main(["data", "brainio", "--stimuli", cpath, "--images", zpath, "--assembly", cpath,
                 str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "not a netCDF-4" in err and "Traceback" not in err
    res = run_scan(ScanConfig(data=out, models=["pixels"], out=str(tmp_path / "r"),
                              engine="local", progress=False, plot=False, input_size=16,
                              reduction=ReductionConfig(n_components=32),
                              scoring=ScoringConfig(reliability_splits=5, inter_animal_boot=50)))
    s = res.scores
    assert set(s["region"]) >= {"IT", "V4"} and s["value"].notna().any()
    assert json.load(open(os.path.join(out, "dataset.json")))["provenance"]["importer"] \
        == "cortexzoo.data.brainio"
