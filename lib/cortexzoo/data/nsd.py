"""Importer for the Natural Scenes Dataset (NSD): single-trial betas of one or more
subjects in an ROI, on a selection of the 73,000 images.

The layouts, as NSD's data manual (cvnlab.slite.page: "Functional data (NSD)",
"Experiments", "Technical notes") documents them:

* ``nsd_stimuli.hdf5``: dataset ``imgBrick`` ``[73000, 425, 425, 3]`` uint8 (40 GB), row
  ``i`` = the image with 0-based 73k id ``i`` (``nsdId`` of ``nsd_stim_info_merged.csv``).
* ``nsd_expdesign.mat`` (MATLAB v5, read with scipy): ``masterordering`` [1 x 30000] (for
  each trial, 1-based, which of the subject's 10,000 images), ``subjectim`` [8 x 10000]
  (1-based 73k ids of each subject's images; the first 1,000 are the shared ones),
  ``sharedix`` [1 x 1000] (1-based 73k ids of the shared images). Trial ``g`` (0-based,
  ``g = 750 (session - 1) + trial``) of subject ``s`` showed image
  ``subjectim[s-1, masterordering[g]-1] - 1`` (0-based).
* ``betas_sessionNN.hdf5`` (one per session, e.g. ``nsddata_betas/ppdata/subj01/
  func1pt8mm/betas_fithrf_GLMdenoise_RR/``): dataset ``betas`` int16, "X x Y x Z x 750"
  in MATLAB's order, so ``[750, Z, Y, X]`` in h5py's; the betas are percent signal change
  times 300, stored as int16: divided by 300 here, as the manual says to do on loading.
  The file is chunked one voxel's 750 trials at a time; it is read one z-slab (bounded
  to the ROI's extent) at a time, never whole.
* ROI masks (``nsddata/ppdata/subjNN/func1pt8mm/roi/nsdgeneral.nii.gz``, ...): NIfTI
  volumes ``[X, Y, Z]`` in the same space; voxels with a value > 0 (or with the labels
  asked for) are kept.

Repetitions: an image's k-th trial in the whole design is its repetition k (NSD shows
each image up to 3 times); trials of sessions not imported are NaN. Images: the ones
selected (``shared``: NSD's shared 1,000 that every imported subject saw in the imported
sessions; ``all``: every image the subject saw, one subject only) are copied from the
brick into ``images.npy`` in blocks, or referenced in place (``link_images``: the brick
as the folder's image array, on disk or on s3).

Memory: the betas are streamed, but the output array ``[n_images, 3, n_voxels]`` float32
is held whole (1,000 shared images x 4 subjects x ~15,000 nsdgeneral voxels: ~0.7 GB;
one subject's 10,000 images: ~1.8 GB).
"""
from __future__ import annotations

import posixpath
import re
import warnings

import numpy as np
import pandas as pd

from ..core.progress import Progress
from ..core.uri import url_to_fs
from .arrays import RowSelection
from .dataset import write_dataset
from .errors import DatasetError, format_items
from .nifti import read_volume
from .sources import check_target, file_info, is_local, open_source, source_path

__all__ = ["convert_nsd", "read_design", "NSD_CITATION", "TRIALS_PER_SESSION", "BETA_SCALE"]

TRIALS_PER_SESSION = 750
BETA_SCALE = 300.0
NSD_CITATION = ("Allen, E. J., St-Yves, G., Wu, Y., et al. (2022). A massive 7T fMRI dataset to "
                "bridge cognitive neuroscience and artificial intelligence. Nature Neuroscience "
                "25, 116-126.")
_SESSION_RE = re.compile(r"^betas_session(\d+)\.hdf5$")


def read_design(uri: str) -> dict:
    """masterordering, subjectim and sharedix of ``nsd_expdesign.mat``, as 1-D/2-D int arrays."""
    from scipy.io import loadmat

    with open_source(uri, "NSD design file") as f:
        try:
            mat = loadmat(f)
        except NotImplementedError as e:  # v7.3 .mat files are HDF5
            raise DatasetError(f"{uri!r} is a MATLAB v7.3 file; nsd_expdesign.mat is v5: {e}") from e
        except (ValueError, TypeError, OSError) as e:
            raise DatasetError(f"{uri!r} is not a MATLAB .mat file: {e}") from e
    missing = [k for k in ("masterordering", "subjectim", "sharedix") if k not in mat]
    if missing:
        raise DatasetError(f"{uri!r} is not NSD's nsd_expdesign.mat: it lacks "
                           f"{format_items(missing)} (has {format_items(sorted(k for k in mat if not k.startswith('__')))})")
    out = {"masterordering": np.asarray(mat["masterordering"]).astype(np.int64).ravel(),
           "subjectim": np.atleast_2d(np.asarray(mat["subjectim"]).astype(np.int64)),
           "sharedix": np.asarray(mat["sharedix"]).astype(np.int64).ravel()}
    if out["masterordering"].min() < 1 or out["masterordering"].max() > out["subjectim"].shape[1]:
        raise DatasetError(f"{uri!r}: masterordering indexes outside subjectim's "
                           f"{out['subjectim'].shape[1]} columns")
    return out


def _expand(template: str, subject: int) -> str:
    try:
        return template.format(subject=subject)
    except (KeyError, IndexError, ValueError) as e:
        raise DatasetError(f"cannot fill {template!r} for subject {subject}: {e} (use "
                           "{subject} or {subject:02d})") from e


def _session_files(folder: str, sessions) -> dict[int, str]:
    fs, path = url_to_fs(folder)
    try:
        names = [posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)]
    except FileNotFoundError:
        raise DatasetError(f"betas folder {folder!r} does not exist") from None
    found = {int(m.group(1)): folder.rstrip("/") + "/" + n for n in names
             if (m := _SESSION_RE.match(n))}
    if sessions is not None:
        lack = sorted(set(sessions) - set(found))
        if lack:
            raise DatasetError(f"betas folder {folder!r} lacks session(s) {format_items(lack)} "
                               f"(has {format_items(sorted(found))})")
        found = {k: found[k] for k in sorted(set(sessions))}
    if not found:
        raise DatasetError(f"betas folder {folder!r} holds no betas_sessionNN.hdf5 file")
    return dict(sorted(found.items()))


def _roi(uri: str, labels: dict | None, region: str) -> tuple:
    """(voxel coordinates [n, 3] as (x, y, z), region names [n], label values [n], the
    volume's shape (X, Y, Z)); voxels in the betas' (z, y, x) C order."""
    vol = read_volume(uri)
    vt = np.transpose(vol, (2, 1, 0))  # [Z, Y, X], as the betas
    if labels:
        keep = np.isin(vt, list(labels))
    else:
        keep = vt > 0
    zyx = np.argwhere(keep)
    values = vt[keep]
    if zyx.size == 0:
        raise DatasetError(f"ROI mask {uri!r} selects no voxel "
                           f"({'labels ' + str(sorted(labels)) if labels else 'values > 0'})")
    names = np.array([labels[v] if labels else region for v in values.tolist()], dtype=object)
    return zyx[:, ::-1].copy(), names, values, vol.shape


def _read_session(path: str, xyz: np.ndarray, vol_shape) -> np.ndarray:
    """[750, n_voxels] float32 percent signal change of one session file, one z-slab of
    the ROI's bounding box at a time."""
    import h5py

    with open_source(path, "betas file") as fobj:
        try:
            h5 = h5py.File(path if is_local(path) else fobj, "r")
        except OSError as e:
            raise DatasetError(f"betas file {path!r} is not an HDF5 file: {e}") from e
        with h5:
            if "betas" not in h5:
                raise DatasetError(f"{path!r} has no 'betas' dataset (NSD's betas_sessionNN.hdf5 "
                                   f"has one); it has {format_items(list(h5))}")
            ds = h5["betas"]
            expect = (TRIALS_PER_SESSION, *tuple(vol_shape)[::-1])
            if ds.ndim != 4 or tuple(ds.shape) != expect:
                raise DatasetError(f"{path!r}: betas have shape {tuple(ds.shape)}; the ROI mask "
                                   f"{tuple(vol_shape)} (X, Y, Z) needs {expect} "
                                   "(750 trials x Z x Y x X): another subject or resolution?")
            if ds.dtype != np.int16:
                raise DatasetError(f"{path!r}: betas are {ds.dtype}; NSD stores int16 percent "
                                   "signal change x 300")
            out = np.empty((TRIALS_PER_SESSION, len(xyz)), dtype=np.float32)
            z_all = xyz[:, 2]
            for z in np.unique(z_all):
                sel = np.flatnonzero(z_all == z)
                ys, xs = xyz[sel, 1], xyz[sel, 0]
                y0, x0 = ys.min(), xs.min()
                slab = ds[:, int(z), int(y0):int(ys.max()) + 1, int(x0):int(xs.max()) + 1]
                out[:, sel] = slab[:, ys - y0, xs - x0] / BETA_SCALE
    return out


def convert_nsd(betas: str, stimuli: str, design: str, roi: str, out_uri: str, *,
                subjects=(1,), sessions=None, images: str = "shared",
                roi_labels: dict | None = None, region: str | None = None,
                zscore: bool = False, link_images: bool = False,
                stimuli_key: str = "imgBrick", name: str | None = None,
                overwrite: bool = False, digests: bool = True, progress: bool = True) -> str:
    """Convert NSD betas into a dataset folder (see the module doc for the layouts).

    Parameters
    ----------
    betas : the folder of a subject's ``betas_sessionNN.hdf5`` files; with several
        subjects a template with ``{subject}`` (e.g. ``.../subj{subject:02d}/func1pt8mm/
        betas_fithrf_GLMdenoise_RR``). Local or a URI.
    stimuli : ``nsd_stimuli.hdf5`` (path or URI); ``stimuli_key`` its dataset.
    design : ``nsd_expdesign.mat``.
    roi : the ROI mask (NIfTI ``.nii``/``.nii.gz`` or ``.npy`` [X, Y, Z]) in the betas' space;
        a template with ``{subject}`` for several subjects.
    subjects : NSD subject numbers (1-8).
    sessions : session numbers to import (default: every session file in the folder).
    images : ``"shared"`` (the shared images every subject saw in the imported sessions)
        or ``"all"`` (every image the subject saw; one subject only).
    roi_labels : {mask value: region name} (e.g. streams' labels); default every voxel
        > 0, in region ``region`` (default: the mask file's name, e.g. ``nsdgeneral``).
    zscore : z-score each voxel over the 750 trials of each session (as most NSD
        analyses do) after unscaling; off by default (percent signal change).
    link_images : keep the images in ``stimuli`` (the folder's image array is the brick)
        instead of copying the selected ones into ``images.npy``.
    """
    import h5py

    out_uri = check_target(out_uri, overwrite)
    if images not in ("shared", "all"):
        raise DatasetError(f"images must be 'shared' or 'all', got {images!r}")
    subjects = [int(s) for s in subjects]
    if not subjects or len(set(subjects)) < len(subjects):
        raise DatasetError(f"subjects must be distinct NSD subject numbers, got {subjects}")
    if images == "all" and len(subjects) > 1:
        raise DatasetError("images='all' takes one subject: each subject saw mostly other images, "
                           "so no voxel would have a response to every stimulus; use "
                           "images='shared' for several subjects")
    stimuli, design = source_path(stimuli), source_path(design)
    plan = read_design(design)
    if max(subjects) > plan["subjectim"].shape[0] or min(subjects) < 1:
        raise DatasetError(f"subjects {subjects} outside the design's "
                           f"{plan['subjectim'].shape[0]} subjects")
    mo = plan["masterordering"] - 1
    shared = set((plan["sharedix"] - 1).tolist())
    per_subject = {}
    for s in subjects:
        folder = source_path(_expand(betas, s))
        files = _session_files(folder, sessions)
        img = plan["subjectim"][s - 1, mo] - 1  # 0-based 73k id of every trial
        slot = pd.Series(img).groupby(img).cumcount().to_numpy()  # k-th showing in the design
        beyond = [k for k in files if k * TRIALS_PER_SESSION > img.size]
        if beyond:
            raise DatasetError(f"session(s) {format_items(beyond)} of subject {s} are beyond the "
                               f"design's {img.size // TRIALS_PER_SESSION} sessions")
        trials = np.concatenate([np.arange((k - 1) * TRIALS_PER_SESSION, k * TRIALS_PER_SESSION)
                                 for k in files])
        roi_uri = source_path(_expand(roi, s))
        reg = region or re.sub(r"\.(nii(\.gz)?|npy)$", "", posixpath.basename(roi_uri))
        xyz, names, values, vol_shape = _roi(roi_uri, roi_labels, reg)
        per_subject[s] = dict(folder=folder, files=files, img=img, slot=slot, roi=roi_uri,
                              seen=set(img[trials].tolist()), xyz=xyz, names=names,
                              values=values, vol_shape=vol_shape)
    if images == "shared":
        chosen = shared.intersection(*(p["seen"] for p in per_subject.values()))
    else:
        chosen = per_subject[subjects[0]]["seen"]
    if not chosen:
        raise DatasetError(f"no image to import: no shared image was shown to every subject "
                           f"{subjects} in the imported sessions")
    ids = np.array(sorted(chosen), dtype=np.int64)
    row_of = {int(i): r for r, i in enumerate(ids)}

    with open_source(stimuli, "NSD stimuli file") as fobj:
        try:
            h5 = h5py.File(stimuli if is_local(stimuli) else fobj, "r")
        except OSError as e:
            raise DatasetError(f"{stimuli!r} is not an HDF5 file (NSD's nsd_stimuli.hdf5): {e}") from e
        with h5:
            if stimuli_key not in h5:
                raise DatasetError(f"{stimuli!r} has no dataset {stimuli_key!r} (NSD's image brick); "
                                   f"it has {format_items(list(h5))}")
            brick = h5[stimuli_key]
            if brick.ndim != 4 or brick.shape[0] <= ids.max():
                raise DatasetError(f"{stimuli!r}:{stimuli_key} has shape {brick.shape}; NSD's "
                                   f"brick is [73000, 425, 425, 3] and must hold image {ids.max()}")
            n_reps = int(max(p["slot"].max() for p in per_subject.values())) + 1
            responses, neuroids, dropped = _betas(per_subject, ids, row_of, n_reps, zscore,
                                                  progress)
            meta = _meta(name, subjects, per_subject, ids, images, zscore, link_images,
                         stimuli, stimuli_key, design, digests, progress, brick.shape)
            meta["provenance"]["voxels_dropped_without_valid_beta"] = dropped
            meta["provenance"]["options"] = {
                "subjects": subjects, "sessions": None if sessions is None else sorted(sessions),
                "roi_labels": None if not roi_labels else {str(k): v for k, v in roi_labels.items()},
                "region": region, "betas": betas, "roi": roi}
            table = pd.DataFrame({"stimulus_id": [f"nsd{i:05d}" for i in ids], "nsd_id": ids,
                                  "shared": [int(i) in shared for i in ids]})
            for s, p in per_subject.items():
                counts = pd.Series(p["img"][np.concatenate(
                    [np.arange((k - 1) * TRIALS_PER_SESSION, k * TRIALS_PER_SESSION)
                     for k in p["files"]])]).value_counts()
                table[f"n_trials_subj{s:02d}"] = counts.reindex(ids).fillna(0).astype(np.int64).to_numpy()
            if link_images:
                meta["image_array"] = {"path": stimuli, "dataset": stimuli_key}
                table["image_index"] = ids
                return write_dataset(out_uri, meta=meta, stimuli=table, neuroids=neuroids,
                                     responses=responses, overwrite=overwrite)
            table["image_index"] = np.arange(len(ids), dtype=np.int64)
            return write_dataset(out_uri, meta=meta, stimuli=table, neuroids=neuroids,
                                 responses=responses, image_array=RowSelection(brick, ids),
                                 overwrite=overwrite, progress=progress)


def _betas(per_subject, ids, row_of, n_reps, zscore, progress):
    n_vox = sum(len(p["xyz"]) for p in per_subject.values())
    responses = np.full((len(ids), n_reps, n_vox), np.nan, dtype=np.float32)
    tables, col = [], 0
    n_files = sum(len(p["files"]) for p in per_subject.values())
    with Progress(n_files, "NSD sessions", unit="session", enabled=progress) as bar:
        for s, p in per_subject.items():
            n = len(p["xyz"])
            for k, path in p["files"].items():
                b = _read_session(path, p["xyz"], p["vol_shape"])
                if zscore:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        sd = b.std(axis=0)
                        b = np.where(sd > 0, (b - b.mean(axis=0)) / sd, np.nan).astype(np.float32)
                g = np.arange((k - 1) * TRIALS_PER_SESSION, k * TRIALS_PER_SESSION)
                img = p["img"][g]
                use = np.flatnonzero(np.isin(img, ids))
                rows = np.fromiter((row_of[int(i)] for i in img[use]), dtype=np.int64,
                                   count=use.size)
                responses[rows, p["slot"][g[use]], col:col + n] = b[use]
                bar.update(1)
            xyz = p["xyz"]
            tables.append(pd.DataFrame({
                "neuroid_id": [f"subj{s:02d}_{x}_{y}_{z}" for x, y, z in xyz],
                "subject": f"subj{s:02d}", "region": p["names"].astype(str),
                "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "roi_value": p["values"]}))
            col += n
    neuroids = pd.concat(tables, ignore_index=True)
    dead = np.isnan(responses).all(axis=(0, 1))
    if dead.any():  # e.g. a voxel constant within every session, z-scored
        warnings.warn(f"{int(dead.sum())} voxel(s) without any valid beta dropped: "
                      f"{format_items(neuroids['neuroid_id'][dead].tolist())}", stacklevel=3)
        responses, neuroids = responses[:, :, ~dead], neuroids[~dead].reset_index(drop=True)
    return responses, neuroids, int(dead.sum())


def _meta(name, subjects, per_subject, ids, images, zscore, link_images, stimuli, key, design,
          digests, progress, brick_shape):
    regions = sorted({str(r) for p in per_subject.values() for r in p["names"]})
    subj = "-".join(f"subj{s:02d}" for s in subjects)
    unit = "single-trial beta, percent signal change (NSD's int16 / 300)"
    if zscore:
        unit = "single-trial beta z-scored per voxel within each session (from % signal change)"
    return {
        "name": name or f"nsd_{'_'.join(regions)}_{subj}",
        "description": (f"Natural Scenes Dataset (7T fMRI) single-trial betas of {subj} in "
                        f"{regions}: {len(ids)} {images} images, sessions "
                        + "; ".join(f"subj{s:02d}: {format_items(list(p['files']))}"
                                    for s, p in per_subject.items()) + "."),
        "source": "Natural Scenes Dataset (https://naturalscenesdataset.org)",
        "license": "NSD Terms and Conditions (https://naturalscenesdataset.org)",
        "citation": NSD_CITATION,
        "response_unit": unit,
        "species": "human",
        "provenance": {
            "importer": "cortexzoo.data.nsd", "images": images, "zscore": zscore,
            "beta_scale": BETA_SCALE, "trials_per_session": TRIALS_PER_SESSION,
            "images_linked": link_images, "stimuli_dataset": key,
            "stimuli_shape": list(brick_shape),
            "stimulus_id": "nsdNNNNN = the 0-based 73k id (row of imgBrick; nsdId of "
                           "nsd_stim_info_merged.csv)",
            "repetition": "k-th showing of the image to the subject in the whole design",
            "sources": {
                "design": file_info(design, digests),
                "stimuli": file_info(stimuli, digests, progress=progress),
                "subjects": {f"subj{s:02d}": {
                    "roi": file_info(p["roi"], digests),
                    "n_voxels": int(len(p["xyz"])),
                    "betas": [file_info(f, digests, progress=progress)
                              for f in p["files"].values()]} for s, p in per_subject.items()},
            },
        },
    }
