"""Allen Brain Observatory importer: small NWB 1 sessions built here with h5py in the
layout of the Visual Coding 2P files, converted and merged, checked against trial
responses computed independently from the traces, then scanned (with the inter-animal
ceiling of an area recorded in two experiment containers).

Where the structure was read: AllenInstitute/AllenSDK
``allensdk/core/brain_observatory_nwb_data_set.py`` (``BrainObservatoryNwbDataSet``):
``PIPELINE_DATASET = 'brain_observatory_pipeline'``; ``get_dff_traces`` reads
``processing/brain_observatory_pipeline/DfOverF/imaging_plane_1/{data,timestamps}`` with
``data[cell_indices, :]`` (cells x frames); ``get_cell_specimen_ids`` reads
``.../ImageSegmentation/cell_specimen_ids``; ``get_stimulus_table('natural_scenes')``
is an indexed time series: ``stimulus/presentation/natural_scenes_stimulus/data`` (the
frame = image index, -1 for blanks) and ``frame_duration`` ``[n, 2]`` (start and end
acquisition frames, cast with ``astype(int)``); ``get_stimulus_template`` reads
``stimulus/templates/natural_scenes_image_stack/data`` ([118, 918, 1174] uint8 in the
real files); ``FILE_METADATA_MAPPING`` gives the ``general/...`` paths (``session_id``,
``experiment_container_id``, ``optophysiology/imaging_plane_1/location`` and
``imaging depth`` as "175 microns", ``subject/genotype``, ``session_type``), stored as
byte strings (decoded with ``.decode('UTF-8')``); ``cre_line = genotype.split(';')[0]``.
NWB 1 files carry a root ``nwb_version`` dataset ("NWB-1.0.x"; AllenSDK's ephys reader
checks ``f['nwb_version']``); NWB 2 files a root attribute (pynwb writes one below).
The AllenSDK's natural scenes analysis (``stimulus_analysis.get_sweep_response``) is the
reference for the trial window discussed in ``cortexzoo/data/allen.py``.
"""
from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest

from cortexzoo.cli import main
from cortexzoo.data import DatasetError, load_dataset
from cortexzoo.data.allen import convert_allen

N_IMG, H, W = 6, 24, 30
TEMPLATE = np.random.default_rng(99).integers(0, 256, (N_IMG, H, W), dtype=np.uint8)
GENOTYPE = "Cux2-CreERT2/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/Ai93(TITL-GCaMP6f)"
SESSIONS = [  # (experiment id, container, area, depth, cells, trials per image, seed)
    (501940850, 511510736, "VISp", 175, 5, 4, 1),
    (502115959, 511510650, "VISp", 275, 4, 4, 2),
    (501729039, 511498742, "VISl", 175, 3, 3, 3),
]


def _write_session(path, exp, container, area, depth, n_cells, trials, seed,
                   template=TEMPLATE, session_type="three_session_B", with_scenes=True):
    rng = np.random.default_rng(seed)
    frames = np.repeat(np.arange(N_IMG), trials)
    if seed == 3:
        frames = frames[frames != 2].tolist() + [2, 2]  # image 2: one trial fewer
    frames = np.concatenate([np.asarray(frames), [-1, -1]])  # two blank sweeps
    frames = frames[rng.permutation(frames.size)]
    sweep, gap = 7, 1  # 7 frames of 33 ms per image, as in session B
    start = 40 + np.arange(frames.size) * (sweep + gap)
    n_frames = int(start[-1] + 40)
    ts = 10.0 + np.arange(n_frames) / 30.0 + rng.normal(0, 1e-4, n_frames)
    tuning = rng.normal(0, 1, (N_IMG, n_cells))
    dff = rng.normal(0, 0.05, (n_cells, n_frames))
    for f, s in zip(frames, start):
        if f >= 0:
            dff[:, s + 3:s + 12] += 0.3 * tuning[f][:, None]
    dff[0, 100] = np.nan  # a dropped frame: the mean skips it
    with h5py.File(path, "w") as h:
        h["nwb_version"] = np.bytes_("NWB-1.0.5")
        h["identifier"] = np.bytes_(f"{exp}")
        h["session_start_time"] = np.bytes_("2016-02-04 10:25:24-08:00")
        h["session_description"] = np.bytes_("")
        g = h.create_group("general")
        g["session_id"] = np.bytes_(str(exp))
        g["experiment_container_id"] = np.bytes_(str(container))
        g["session_type"] = np.bytes_(session_type)
        g["specimen_name"] = np.bytes_("Cux2-CreERT2;Camk2a-tTA;Ai93-222426")
        g["subject/genotype"] = np.bytes_(GENOTYPE)
        g["subject/sex"] = np.bytes_("male")
        g["subject/age"] = np.bytes_("104 days")
        g["optophysiology/imaging_plane_1/location"] = np.bytes_(area)
        g["optophysiology/imaging_plane_1/imaging depth"] = np.bytes_(f"{depth} microns")
        p = h.create_group("processing/brain_observatory_pipeline")
        p["DfOverF/imaging_plane_1/data"] = dff.astype(np.float32)
        p["DfOverF/imaging_plane_1/timestamps"] = ts
        p["ImageSegmentation/cell_specimen_ids"] = (exp % 1000) * 1000 + np.arange(n_cells)
        if with_scenes:
            st = h.create_group("stimulus/presentation/natural_scenes_stimulus")
            st["data"] = frames.astype(np.int32)
            st["frame_duration"] = np.stack([start, start + sweep], axis=1).astype(np.float64)
            h["stimulus/templates/natural_scenes_image_stack/data"] = template
        else:
            h.create_group("stimulus/presentation/static_gratings_stimulus")
    return path


def _expected(path, window=(0.0, 0.5)):
    """Trial responses straight from the file: for each non-blank presentation, the mean
    dF/F of the frames with onset + start <= t < onset + end."""
    with h5py.File(path, "r") as h:
        dff = h["processing/brain_observatory_pipeline/DfOverF/imaging_plane_1/data"][()]
        ts = h["processing/brain_observatory_pipeline/DfOverF/imaging_plane_1/timestamps"][()]
        frames = h["stimulus/presentation/natural_scenes_stimulus/data"][()]
        fd = h["stimulus/presentation/natural_scenes_stimulus/frame_duration"][()].astype(int)
    trials = {}
    for f, s in sorted(zip(frames, fd[:, 0]), key=lambda x: x[1]):
        if f < 0:
            continue
        t0 = ts[s]
        sel = (ts >= t0 + window[0]) & (ts < t0 + window[1])
        trials.setdefault(int(f), []).append(np.nanmean(dff[:, sel], axis=1))
    return {f: np.stack(v) for f, v in trials.items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("allen")
    return [_write_session(str(d / f"{s[0]}.nwb"), *s) for s in SESSIONS]


@pytest.fixture(scope="module")
def converted(files, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("allen") / "ds")
    convert_allen(files, out, progress=False)
    return load_dataset(out)


def test_trial_responses_cells_and_images(converted, files):
    ds = converted
    assert ds.stimuli["image_index"].tolist() == list(range(N_IMG))
    assert ds.responses.shape == (N_IMG, 4, 12)
    col = 0
    for path, (exp, container, area, depth, n, trials, _) in zip(files, SESSIONS):
        exp_resp = _expected(path)
        for f in range(N_IMG):
            k = exp_resp[f].shape[0]
            np.testing.assert_allclose(ds.responses[f, :k, col:col + n], exp_resp[f], rtol=1e-5)
            assert np.isnan(ds.responses[f, k:, col:col + n]).all()
        nd = ds.neuroids.iloc[col:col + n]
        assert set(nd["subject"]) == {str(container)} and set(nd["region"]) == {area}
        assert set(nd["depth"]) == {float(depth)} and set(nd["cre_line"]) == {"Cux2-CreERT2/wt"}
        assert set(nd["ophys_experiment_id"]) == {str(exp)}
        col += n
    assert np.isnan(ds.responses[2, 3, 9:]).all()  # the VISl session's image 2: 3 trials
    assert ds.regions == ["VISl", "VISp"]
    assert ds.neuroids.groupby("region")["subject"].nunique().to_dict() == {"VISl": 1, "VISp": 2}
    # the template as the images, stored once as an array and read by index
    assert ds.image_array == {"path": "images.npy"}
    for i in (0, 5):
        img = np.asarray(ds.read_image(i))
        assert img.shape == (H, W, 3) and (img == TEMPLATE[i][:, :, None]).all()


def test_provenance(converted, files):
    prov = converted.meta["provenance"]
    assert prov["window_ms"] == [0.0, 500.0]
    assert [s["uri"] for s in prov["sessions"]] == files
    for s, path in zip(prov["sessions"], files):
        assert s["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
        assert s["n_blank_presentations_dropped"] == 2
    assert prov["sessions"][0]["experiment_container_id"] == "511510736"
    assert "dF/F" in converted.meta["response_unit"]


def test_window_option(files, tmp_path):
    ds = load_dataset(convert_allen(files[0], str(tmp_path / "w"), window="100,300",
                                    progress=False))
    exp = _expected(files[0], window=(0.1, 0.3))
    np.testing.assert_allclose(ds.responses[3], exp[3], rtol=1e-5)


def test_bad_input_named(files, tmp_path):
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile

    nwb2 = str(tmp_path / "nwb2.nwb")
    with NWBHDF5IO(nwb2, "w") as io:
        io.write(NWBFile(session_description="x", identifier="x",
                         session_start_time=datetime(2020, 1, 1, tzinfo=timezone.utc)))
    with pytest.raises(DatasetError, match="not an Allen Brain Observatory two-photon session"):
        convert_allen([nwb2], str(tmp_path / "a"), progress=False)
    txt = tmp_path / "notes.nwb"
    txt.write_text("hello")
    with pytest.raises(DatasetError, match="not an NWB file"):
        convert_allen([str(txt)], str(tmp_path / "b"), progress=False)
    plain = str(tmp_path / "plain.h5")
    with h5py.File(plain, "w") as h:
        h["x"] = 1
    with pytest.raises(DatasetError, match="not an NWB file"):
        convert_allen([plain], str(tmp_path / "c"), progress=False)
    sess_a = _write_session(str(tmp_path / "a.nwb"), 1, 2, "VISp", 175, 3, 2, 7,
                            session_type="three_session_A", with_scenes=False)
    with pytest.raises(DatasetError, match="'three_session_A' has no natural scenes"):
        convert_allen([files[0], sess_a], str(tmp_path / "d"), progress=False)
    other = _write_session(str(tmp_path / "o.nwb"), 2, 3, "VISp", 175, 3, 2, 8,
                           template=TEMPLATE[::-1].copy())
    with pytest.raises(DatasetError, match="different image sets"):
        convert_allen([files[0], other], str(tmp_path / "e"), progress=False)
    with pytest.raises(DatasetError, match="given twice"):
        convert_allen([files[0], files[0]], str(tmp_path / "f"), progress=False)


def test_cli_and_scan_with_inter_animal_ceiling(files, tmp_path, capsys):
    from cortexzoo.features.reduce import ReductionConfig
    from cortexzoo.scan import ScanConfig, run_scan
    from cortexzoo.scan.scoring import ScoringConfig

    out = str(tmp_path / "cli")
    assert main(["data", "allen", ",".join(files), out, "--quiet"]) == 0
    assert "VISp" in capsys.readouterr().out
    assert main(["data", "allen", files[0], out, "--quiet"]) == 2  # exists: no --overwrite
    assert "already exists" in capsys.readouterr().err
    res = run_scan(ScanConfig(data=out, models=["pixels"], out=str(tmp_path / "r"),
                              engine="local", progress=False, plot=False, input_size=16,
                              reduction=ReductionConfig(n_components=16),
                              scoring=ScoringConfig(reliability_splits=5, inter_animal_boot=50)))
    s = res.scores
    ia = s[s["model"] == "inter_animal"]
    assert set(ia["region"]) == {"VISp"} and ia["value"].notna().all()
    assert set(s[s["model"] != "inter_animal"]["region"]) == {"VISp", "VISl"}
