"""Importer for Allen Brain Observatory two-photon sessions (Visual Coding 2P): the
natural-scenes epochs of one or more NWB files merged into one dataset folder.

The files are NWB 1.x (HDF5); the AllenSDK reads them with h5py
(``allensdk/core/brain_observatory_nwb_data_set.py``, ``BrainObservatoryNwbDataSet``),
and so does this importer (pynwb reads NWB 2 only). What it reads, by that class's paths:

* ``processing/brain_observatory_pipeline/DfOverF/imaging_plane_1/data`` ``[n_cells,
  n_frames]`` and ``.../timestamps`` (s): the dF/F traces (``get_dff_traces``);
* ``processing/brain_observatory_pipeline/ImageSegmentation/cell_specimen_ids``;
* ``stimulus/presentation/natural_scenes_stimulus/data`` (the image index of each
  presentation, -1 for a blank) and ``frame_duration`` ``[n, 2]`` (its first and last
  acquisition frame): ``get_stimulus_table("natural_scenes")`` (an indexed time series);
* ``stimulus/templates/natural_scenes_image_stack/data`` ``[118, 918, 1174]`` uint8: the
  images (``get_stimulus_template``);
* ``general/...`` metadata (``FILE_METADATA_MAPPING``): ``session_id`` (the ophys
  experiment), ``experiment_container_id``, ``optophysiology/imaging_plane_1/location``
  (the targeted area), ``.../imaging depth`` (``"175 microns"``), ``subject/genotype``
  (the cre line is its part before the first ``;``), ``session_type``.

**The trial response** of a cell is the mean of its dF/F over the acquisition frames
whose timestamps fall in ``[onset + start, onset + end)`` (``window``, ms; default
0-500 ms), onset being the timestamp of the presentation's first frame. Each image is
shown for 250 ms (7-8 frames at 30 Hz); GCaMP6 responses peak later, so the default
covers the presentation and the 250 ms after it. (The AllenSDK's ``NaturalScenes``
analysis averages its own baseline-normalized trace over the sweep and one sweep length
after it, ``[start, start + 2 x sweeplength)`` frames, about 0-467 ms.) Blank
presentations are dropped. The 50 trials of each image are the repetition axis, in
presentation order (NaN where a session has fewer).

Cells are neuroids (``neuroid_id`` = cell_specimen_id), with ``subject`` = the experiment
container (one mouse, area and depth), ``region`` = the targeted visual area (VISp,
VISl, ...), ``depth`` (µm), ``cre_line``, ``genotype``, ``ophys_experiment_id``. Several
sessions must show the same images (the template is compared by shape and SHA-256); they
merge into one folder with one region per area, so that areas recorded in two or more
containers get the inter-animal ceiling. The template is stored once, as ``images.npy``.
"""
from __future__ import annotations

import hashlib
import re
from contextlib import ExitStack

import numpy as np
import pandas as pd

from ..core.progress import Progress
from .arrays import array_problem
from .dataset import write_dataset
from .errors import DatasetError, format_items
from .sources import check_target, file_info, is_local, open_source, parse_window, source_path

__all__ = ["convert_allen", "ALLEN_CITATION"]

PIPELINE = "processing/brain_observatory_pipeline"
DFF = f"{PIPELINE}/DfOverF/imaging_plane_1"
CELL_IDS = f"{PIPELINE}/ImageSegmentation/cell_specimen_ids"
PRESENTATION = ("stimulus/presentation/natural_scenes_stimulus",
                "stimulus/presentation/natural_scenes")
TEMPLATE = "stimulus/templates/natural_scenes_image_stack/data"
META_PATHS = {
    "ophys_experiment_id": "general/session_id",
    "experiment_container_id": "general/experiment_container_id",
    "targeted_structure": "general/optophysiology/imaging_plane_1/location",
    "imaging_depth": "general/optophysiology/imaging_plane_1/imaging depth",
    "genotype": "general/subject/genotype",
    "session_type": "general/session_type",
    "specimen_name": "general/specimen_name",
    "sex": "general/subject/sex",
    "age": "general/subject/age",
}
REQUIRED_META = ("experiment_container_id", "targeted_structure")
ALLEN_CITATION = ("de Vries, S. E. J., Lecoq, J. A., Buice, M. A., et al. (2020). A large-scale "
                  "standardized physiological survey reveals functional organization of the mouse "
                  "visual cortex. Nature Neuroscience 23, 138-151.")
ALLEN_SOURCE = "Allen Brain Observatory, Visual Coding 2P (https://observatory.brain-map.org/visualcoding)"


def _scalar(f, path):
    """A metadata dataset as str or number (bytes decoded), None when absent."""
    if path not in f:
        return None
    v = f[path][()]
    if isinstance(v, np.ndarray):
        v = v.item() if v.size == 1 else v.tolist()
    if isinstance(v, (bytes, np.bytes_)):
        v = v.decode("utf-8")
    if isinstance(v, np.generic):
        v = v.item()
    return v


def _open_nwb(f, uri: str):
    import h5py

    try:
        h5 = h5py.File(f, "r")
    except OSError as e:
        raise DatasetError(f"{uri!r} is not an NWB file (not HDF5: {e})") from e
    version = h5.attrs.get("nwb_version")
    if "nwb_version" in h5 and isinstance(h5["nwb_version"], h5py.Dataset):
        version = h5["nwb_version"][()]
    if isinstance(version, (bytes, np.bytes_)):
        version = version.decode("utf-8")
    if version is None:
        h5.close()
        raise DatasetError(f"{uri!r} is an HDF5 file but not an NWB file (no nwb_version)")
    if PIPELINE not in h5:
        h5.close()
        raise DatasetError(f"{uri!r} (NWB {version}) is not an Allen Brain Observatory two-photon "
                           f"session: it has no {PIPELINE} (the Visual Coding 2P files are "
                           "NWB 1 files from the AllenSDK's BrainObservatoryCache)")
    return h5, str(version)


def _read_session(h5, uri: str, window: tuple[float, float], cells_per_block: int,
                  progress: bool) -> dict:
    meta = {k: _scalar(h5, p) for k, p in META_PATHS.items()}
    stim = next((p for p in PRESENTATION if p in h5), None)
    if stim is None:
        raise DatasetError(f"{uri!r}: session {meta.get('session_type')!r} has no natural scenes "
                           f"epoch ({PRESENTATION[0]}; only three_session_B sessions show the "
                           "natural scenes)")
    missing = [p for p in (f"{DFF}/data", f"{DFF}/timestamps", CELL_IDS, f"{stim}/data",
                           f"{stim}/frame_duration", TEMPLATE) if p not in h5]
    lack_meta = [META_PATHS[k] for k in REQUIRED_META if meta.get(k) is None]
    if missing or lack_meta:
        raise DatasetError(f"{uri!r} lacks {format_items(missing + lack_meta)} (an Allen Brain "
                           "Observatory NWB file has them all)")
    frames = np.asarray(h5[f"{stim}/data"][()]).reshape(-1)
    fd = np.asarray(h5[f"{stim}/frame_duration"][()])
    if fd.ndim != 2 or fd.shape != (frames.size, 2):
        raise DatasetError(f"{uri!r}: {stim}/frame_duration has shape {fd.shape}, expected "
                           f"({frames.size}, 2)")
    table = pd.DataFrame({"frame": frames.astype(np.int64), "start": fd[:, 0].astype(np.int64),
                          "end": fd[:, 1].astype(np.int64)}).sort_values(["start", "end"],
                                                                        kind="stable")
    n_blank = int((table["frame"] < 0).sum())
    table = table[table["frame"] >= 0].reset_index(drop=True)
    tmpl = h5[TEMPLATE]
    bad = array_problem(tmpl.shape, tmpl.dtype)
    if bad:
        raise DatasetError(f"{uri!r}: the natural scenes template {bad}")
    out_of = table["frame"][table["frame"] >= tmpl.shape[0]].unique().tolist()
    if out_of:
        raise DatasetError(f"{uri!r}: presentations show image(s) {format_items(out_of)}, beyond "
                           f"the {tmpl.shape[0]} images of the template")
    h = hashlib.sha256(f"{tmpl.shape}{tmpl.dtype.str}".encode())
    for a in range(0, tmpl.shape[0], 16):
        h.update(np.ascontiguousarray(tmpl[a:a + 16]).tobytes())

    cells = np.asarray(h5[CELL_IDS][()]).reshape(-1)
    data, ts = h5[f"{DFF}/data"], np.asarray(h5[f"{DFF}/timestamps"][()], dtype=np.float64)
    if data.ndim != 2 or data.shape != (cells.size, ts.size):
        raise DatasetError(f"{uri!r}: {DFF}/data has shape {data.shape}, expected [n_cells="
                           f"{cells.size}, n_frames={ts.size}] (cells x timestamps)")
    if table["start"].max() >= ts.size or table["start"].min() < 0:
        raise DatasetError(f"{uri!r}: natural scenes presentations start at frames outside the "
                           f"{ts.size} dF/F timestamps")
    onset = ts[table["start"].to_numpy()]
    lo = np.searchsorted(ts, onset + window[0] / 1000.0, side="left")
    hi = np.searchsorted(ts, onset + window[1] / 1000.0, side="left")
    f0, f1 = int(lo.min()), int(max(hi.max(), lo.min()))
    resp = np.full((len(table), cells.size), np.nan, dtype=np.float32)
    with Progress(cells.size, f"dF/F {meta.get('ophys_experiment_id')}", unit="cell",
                  enabled=progress) as bar:
        for c0 in range(0, cells.size, cells_per_block):
            x = np.asarray(data[c0:c0 + cells_per_block, f0:f1], dtype=np.float64)
            ok = np.isfinite(x)
            zeros = np.zeros((x.shape[0], 1))
            cs = np.concatenate([zeros, np.cumsum(np.where(ok, x, 0.0), axis=1)], axis=1)
            cn = np.concatenate([zeros, np.cumsum(ok, axis=1)], axis=1)
            sums = cs[:, hi - f0] - cs[:, lo - f0]
            counts = cn[:, hi - f0] - cn[:, lo - f0]
            with np.errstate(invalid="ignore", divide="ignore"):
                resp[:, c0:c0 + x.shape[0]] = np.where(counts > 0, sums / counts, np.nan).T
            bar.update(x.shape[0])
    depth = meta.get("imaging_depth")
    m = re.match(r"\s*(\d+)", str(depth)) if depth is not None else None
    genotype = meta.get("genotype")
    return {"uri": uri, "meta": meta, "cells": cells, "table": table, "responses": resp,
            "n_blank": n_blank, "template_shape": tuple(tmpl.shape),
            "template_dtype": tmpl.dtype.str, "template_sha256": h.hexdigest(),
            "depth_um": int(m.group(1)) if m else None,
            "cre_line": str(genotype).split(";")[0] if genotype else None,
            "frames_per_window": [int((hi - lo).min()), int((hi - lo).max())]}


def convert_allen(nwb_files: "str | list[str]", out_uri: str, *,
                  window: "tuple[float, float] | str" = (0.0, 500.0), name: str | None = None,
                  overwrite: bool = False, digests: bool = True, progress: bool = True,
                  cells_per_block: int = 32) -> str:
    """Convert the natural-scenes epochs of Allen Brain Observatory NWB sessions into one
    dataset folder (see the module doc for what is read and how).

    Parameters
    ----------
    nwb_files : paths or URIs (``s3://``) of the sessions' NWB files (a list, or one string
        with commas).
    out_uri : the dataset folder to write.
    window : (start, end) ms after image onset, or ``"0,500"``: the dF/F frames averaged.
    cells_per_block : cells read from a file at a time (the traces are never loaded whole).
    """
    import h5py

    out_uri = check_target(out_uri, overwrite)
    files = [s for s in (nwb_files.split(",") if isinstance(nwb_files, str) else nwb_files)
             if str(s).strip()]
    if not files:
        raise DatasetError("no NWB file given")
    files = [source_path(str(s).strip()) for s in files]
    if len(set(files)) < len(files):
        raise DatasetError(f"an NWB file is given twice: {format_items(files)}")
    w = parse_window(window)
    sessions = []
    for uri in files:
        with open_source(uri, "NWB file") as fobj:
            h5, version = _open_nwb(uri if is_local(uri) else fobj, uri)
            with h5:
                s = _read_session(h5, uri, w, cells_per_block, progress)
        s["nwb_version"] = version
        sessions.append(s)

    first = sessions[0]
    for s in sessions[1:]:
        same = (s["template_shape"], s["template_sha256"]) == (first["template_shape"],
                                                                 first["template_sha256"])
        if not same:
            raise DatasetError(
                f"sessions show different image sets: the natural scenes template of {s['uri']!r} "
                f"(shape {s['template_shape']}, sha256 {s['template_sha256'][:12]}) differs from "
                f"that of {first['uri']!r} (shape {first['template_shape']}, sha256 "
                f"{first['template_sha256'][:12]})")
    all_cells = np.concatenate([s["cells"] for s in sessions]).astype(str)
    dup = pd.Series(all_cells)[pd.Series(all_cells).duplicated()].unique().tolist()
    if dup:
        raise DatasetError(f"{len(dup)} cell_specimen_id(s) appear in more than one session (the "
                           f"same cells given twice?): {format_items(dup)}")

    shown = sorted(set().union(*(set(s["table"]["frame"]) for s in sessions)))
    row_of = {k: i for i, k in enumerate(shown)}
    n_reps = max(int(s["table"].groupby("frame").size().max()) for s in sessions)
    responses = np.full((len(shown), n_reps, all_cells.size), np.nan, dtype=np.float32)
    neuroids, col = [], 0
    for s in sessions:
        t = s["table"]
        slot = t.groupby("frame").cumcount().to_numpy()
        rows = t["frame"].map(row_of).to_numpy()
        n = s["cells"].size
        responses[rows, slot, col:col + n] = s["responses"]
        col += n
        m = s["meta"]
        neuroids.append(pd.DataFrame({
            "neuroid_id": s["cells"].astype(str),
            "subject": str(m["experiment_container_id"]),
            "region": str(m["targeted_structure"]),
            "cell_specimen_id": s["cells"].astype(np.int64),
            "roi_index": np.arange(n, dtype=np.int64),
            "experiment_container_id": str(m["experiment_container_id"]),
            "ophys_experiment_id": str(m.get("ophys_experiment_id")),
            "depth": np.full(n, np.nan if s["depth_um"] is None else float(s["depth_um"])),
            "cre_line": s["cre_line"], "genotype": m.get("genotype"),
            "session_type": m.get("session_type"), "specimen_name": m.get("specimen_name"),
        }))
    neuroids = pd.concat(neuroids, ignore_index=True)
    stimuli = pd.DataFrame({"stimulus_id": [f"natural_scene_{k:03d}" for k in shown],
                            "image_index": np.asarray(shown, dtype=np.int64),
                            "frame": np.asarray(shown, dtype=np.int64)})
    w0, w1 = w
    regions = sorted(set(neuroids["region"]))
    meta = {
        "name": name or "allen_brain_observatory_natural_scenes",
        "description": (f"Allen Brain Observatory two-photon calcium imaging, natural scenes: "
                        f"{len(neuroids)} cells of {len(sessions)} session(s), "
                        f"{neuroids['subject'].nunique()} experiment container(s), areas "
                        f"{regions}; {len(shown)} images, up to {n_reps} trials each; mean dF/F "
                        f"in [{w0:g}, {w1:g}) ms after image onset."),
        "source": ALLEN_SOURCE,
        "license": "Allen Institute Terms of Use (https://alleninstitute.org/terms-of-use/)",
        "citation": ALLEN_CITATION,
        "response_unit": f"mean dF/F over [{w0:g}, {w1:g}) ms after image onset",
        "species": "mouse",
        "provenance": {
            "importer": "cortexzoo.data.allen", "window_ms": [w0, w1],
            "options": {"cells_per_block": cells_per_block},
            "response": "mean of DfOverF/imaging_plane_1/data over the frames whose timestamps "
                        "lie in [onset + start, onset + end); onset = timestamp of the "
                        "presentation's first frame; blank presentations (frame -1) dropped",
            "template_sha256": first["template_sha256"],
            "sessions": [{**file_info(s["uri"], digests, progress=progress),
                          "nwb_version": s["nwb_version"],
                          **{k: s["meta"].get(k) for k in META_PATHS},
                          "n_cells": int(s["cells"].size),
                          "n_presentations": int(len(s["table"])),
                          "n_blank_presentations_dropped": s["n_blank"],
                          "frames_per_window": s["frames_per_window"]} for s in sessions],
        },
    }
    with ExitStack() as stack:  # the first session's template, streamed into images.npy
        fobj = stack.enter_context(open_source(first["uri"], "NWB file"))
        h5 = stack.enter_context(h5py.File(first["uri"] if is_local(first["uri"]) else fobj, "r"))
        return write_dataset(out_uri, meta=meta, stimuli=stimuli, neuroids=neuroids,
                             responses=responses, image_array=h5[TEMPLATE],
                             overwrite=overwrite, progress=progress)
