"""Validation of a dataset folder's content: every problem named, all at once."""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .arrays import ARRAY_SUFFIXES, is_hdf5_path
from .errors import DatasetError, format_items
from .folder import (ARRAY_STIMULUS_COLUMNS, DATASET_JSON, NEUROID_COLUMNS, NEUROIDS, RDM_COLUMNS,
                     RDM_TABLE, RDMS, RESPONSES, STIMULI, STIMULUS_COLUMNS, escapes,
                     image_array_spec, image_sizes, is_absolute, open_image_array)

if TYPE_CHECKING:
    from .dataset import NeuralDataset

__all__ = ["validate_dataset", "check_image_contents", "is_stimulus_set"]


def is_stimulus_set(meta) -> bool:
    """True when dataset.json marks the folder as stimuli alone (no recordings): model-only
    analyses such as out-of-domain decoding run on it; ``neuroids.parquet`` is then empty."""
    return isinstance(meta, Mapping) and meta.get("stimulus_set") is True

def validate_dataset(ds: NeuralDataset, check_images: bool = True) -> None:
    """Check a dataset's structure and content; raise DatasetError listing every problem.

    Checked: dataset.json has a non-empty `name`; required table columns exist and
    hold no nulls; stimulus, neuroid and rdm ids are unique (duplicates are named);
    at least one of responses/rdms is present (neither, exactly when dataset.json has
    ``"stimulus_set": true``: a stimulus set for model-only analyses); responses are float, 3-D and match the
    two tables' lengths; no neuroid is all-NaN (named); no stimulus is all-NaN for
    every neuroid and repetition (named; an error, because such a stimulus has no
    mapping target and would poison every mean and regression); no infinite values;
    rdms are 3-D, [n_rdms, n_stimuli, n_stimuli], symmetric, and match the rdm table;
    relative image paths stay inside the folder (no ``../``); and, when `check_images`,
    every image file exists (one bulk listing, not one request per image).

    (stimulus, neuroid) cells without any valid repetition (e.g. a stimulus shown to
    only one subject) are allowed: they give NaN in `mean_responses()`; a warning
    says how many there are.
    """
    problems: list[str] = []
    name = ds.meta.get("name") if isinstance(ds.meta, Mapping) else None
    if not isinstance(ds.meta, Mapping):
        problems.append(f"{DATASET_JSON} must hold a JSON object, got {type(ds.meta).__name__}")
    elif not isinstance(name, str) or not name.strip():
        problems.append(f"{DATASET_JSON} needs a non-empty string 'name' (got {name!r})")

    arrayed = image_array_spec(ds.meta) is not None
    stim_ok = _check_table(ds.stimuli, STIMULI, "stimulus_id",
                           ARRAY_STIMULUS_COLUMNS if arrayed else STIMULUS_COLUMNS, problems)
    # an RSA-only dataset may have an empty neuroid table
    neu_ok = _check_table(ds.neuroids, NEUROIDS, "neuroid_id", NEUROID_COLUMNS, problems,
                          allow_empty=ds.responses is None)

    if arrayed:
        images_ok = stim_ok and _check_array_spec(ds, problems)
    else:
        images_ok = stim_ok and "image" in ds.stimuli and not ds.stimuli["image"].isna().any()
    if images_ok and not arrayed:
        refs = ds.stimuli["image"]
        ids = ds.stimuli["stimulus_id"].astype(str)
        escaping = [f"{sid} ({ref})" for sid, ref in zip(ids, refs)
                    if isinstance(ref, str) and not is_absolute(ref) and escapes(ref)]
        if escaping:
            images_ok = False
            problems.append(f"{len(escaping)} image path(s) escape the dataset folder "
                            f"(relative paths must stay inside it): {format_items(escaping)}")

    if ds.responses is None and ds.rdms is None and not is_stimulus_set(ds.meta):
        problems.append(f"the dataset has neither {RESPONSES} nor {RDMS} (a folder of stimuli "
                        f"alone says so with \"stimulus_set\": true in {DATASET_JSON})")
    if is_stimulus_set(ds.meta) and (ds.responses is not None or ds.rdms is not None):
        problems.append(f"{DATASET_JSON} says \"stimulus_set\": true, but the folder holds "
                        f"{RESPONSES if ds.responses is not None else RDMS}")
    if ds.responses is not None:
        _check_responses(ds, stim_ok and neu_ok, problems)
    if ds.rdms is not None or ds.rdm_table is not None:
        _check_rdms(ds, stim_ok, problems)

    if check_images and images_ok:
        _check_images(ds, problems)
    _raise_problems(ds, problems)


def _raise_problems(ds: NeuralDataset, problems: list[str]) -> None:
    if problems:
        name = ds.meta.get("name") if isinstance(ds.meta, Mapping) else None
        head = f"invalid dataset {name!r} at {ds.uri!r}" if isinstance(name, str) else \
            f"invalid dataset at {ds.uri!r}"
        raise DatasetError(head + ":\n  - " + "\n  - ".join(problems))


def _check_array_spec(ds: NeuralDataset, problems: list[str]) -> bool:
    """Problems of dataset.json's ``image_array`` and the ``image_index`` column (no I/O);
    True when the images can be looked for in the array."""
    spec = image_array_spec(ds.meta)
    n0 = len(problems)
    path = spec.get("path") if isinstance(spec, Mapping) else None
    if not isinstance(path, str) or not path:
        problems.append(f"{DATASET_JSON}: image_array must be an object with a 'path' (the array "
                        f"file, relative to the folder or an absolute URI); got {spec!r}")
        return False
    if not path.lower().endswith(ARRAY_SUFFIXES):
        problems.append(f"{DATASET_JSON}: image_array path {path!r} must name a .npy or an HDF5 "
                        f"file ({', '.join(ARRAY_SUFFIXES)})")
    elif not is_absolute(path) and escapes(path):
        problems.append(f"{DATASET_JSON}: image_array path {path!r} escapes the dataset folder")
    dataset = spec.get("dataset")
    if is_hdf5_path(path) and not (isinstance(dataset, str) and dataset):
        problems.append(f"{DATASET_JSON}: image_array {path!r} is an HDF5 file: name the dataset "
                        "holding the images with \"dataset\" (e.g. \"imgBrick\")")
    if "image" in ds.stimuli.columns:
        problems.append(f"{STIMULI} has an 'image' column, but {DATASET_JSON} stores the images as "
                        "one array (image_array): a stimulus' image is its row 'image_index'; "
                        "drop one of the two")
    if "image_index" not in ds.stimuli.columns or ds.stimuli["image_index"].isna().any():
        return False  # named by the table check
    col = ds.stimuli["image_index"]
    if not pd.api.types.is_integer_dtype(col):
        problems.append(f"{STIMULI}: column 'image_index' must hold integers (the row of the "
                        f"image array), got dtype {col.dtype}")
    else:
        neg = ds.stimuli["stimulus_id"].astype(str)[(col < 0).to_numpy()].tolist()
        if neg:
            problems.append(f"{STIMULI}: {len(neg)} stimulus(es) have a negative image_index: "
                            f"{format_items(neg)}")
    return len(problems) == n0


def _check_images(ds: NeuralDataset, problems: list[str]) -> None:
    """Append a problem naming the stimuli whose image file does not exist (bulk listing);
    for images stored as one array: an array that cannot be opened, or indices outside it."""
    if image_array_spec(ds.meta) is not None:
        try:
            arr = open_image_array(ds)
        except (DatasetError, OSError, ValueError) as e:
            problems.append(f"the image array cannot be used: {e}")
            return
        idx = ds.stimuli["image_index"].to_numpy(dtype=np.int64)
        out = (idx < 0) | (idx >= arr.n_images)
        if out.any():
            bad = [f"{sid} (image_index {i})" for sid, i in
                   zip(ds.stimuli["stimulus_id"].astype(str)[out], idx[out])]
            problems.append(f"{len(bad)} stimulus(es) have an image_index outside the image array "
                            f"{arr.label} of {arr.n_images} images: {format_items(bad)}")
        return
    sizes = image_sizes(ds)
    missing = [f"{sid} ({ref})" for sid, ref, s in
               zip(ds.stimuli["stimulus_id"].astype(str), ds.stimuli["image"].astype(str), sizes)
               if s < 0]
    if missing:
        problems.append(f"{len(missing)} image file(s) missing: {format_items(missing)}")


def _check_table(df: pd.DataFrame, fname: str, id_col: str, required: Sequence[str],
                 problems: list[str], allow_empty: bool = False) -> bool:
    """Append problems of a table; True when its id column is usable for further checks."""
    if not isinstance(df, pd.DataFrame):
        problems.append(f"{fname} must be a table, got {type(df).__name__}")
        return False
    missing = [c for c in required if c not in df.columns]
    if missing:
        problems.append(f"{fname} lacks required column(s) {format_items(missing)} "
                        f"(has {format_items(list(df.columns))})")
    ok = id_col in df.columns
    for col in required:
        if col not in df.columns:
            continue
        null = df[col].isna().to_numpy()
        if null.any():
            rows = np.flatnonzero(null).tolist()
            problems.append(f"{fname}: column {col!r} is empty in {len(rows)} row(s): "
                            f"rows {format_items(rows)}")
            ok = ok and col != id_col
    if id_col in df.columns:
        ids = df[id_col].dropna().astype(str)
        dup = ids[ids.duplicated(keep="first")].unique().tolist()
        if dup:
            problems.append(f"{fname}: {len(dup)} duplicate {id_col}(s): {format_items(dup)}")
    if len(df) == 0 and not allow_empty:
        problems.append(f"{fname} has no rows")
        ok = False
    return ok


def _check_responses(ds: NeuralDataset, tables_ok: bool, problems: list[str]) -> None:
    r = ds.responses
    if not isinstance(r, np.ndarray):
        problems.append(f"responses must be a numpy array, got {type(r).__name__}")
        return
    if r.ndim != 3:
        problems.append(f"responses must be 3-D [n_stimuli, n_repetitions, n_neuroids]; "
                        f"got ndim {r.ndim} with shape {r.shape}")
        return
    if not np.issubdtype(r.dtype, np.floating):
        problems.append(f"responses must be floating point (float32), got dtype {r.dtype}")
        return
    expected = (ds.n_stimuli, r.shape[1], ds.n_neuroids)
    if r.shape[0] != ds.n_stimuli or r.shape[2] != ds.n_neuroids or r.shape[1] < 1:
        problems.append(f"responses shape mismatch: expected [n_stimuli={ds.n_stimuli}, "
                        f"n_repetitions>=1, n_neuroids={ds.n_neuroids}] = {expected}, "
                        f"got {r.shape}")
        return
    if not tables_ok:
        return
    nan = np.isnan(r)
    neu_ids = ds.neuroids["neuroid_id"].astype(str).to_numpy()
    stim_ids = ds.stimuli["stimulus_id"].astype(str).to_numpy()
    inf = np.isinf(r)
    if inf.any():
        bad = neu_ids[inf.any(axis=(0, 1))].tolist()
        problems.append(f"responses hold infinite values for {len(bad)} neuroid(s): "
                        f"{format_items(bad)}")
    all_nan_neu = nan.all(axis=(0, 1))
    if all_nan_neu.any():
        bad = neu_ids[all_nan_neu].tolist()
        problems.append(f"{len(bad)} neuroid(s) have no valid response (all NaN): {format_items(bad)}")
    all_nan_stim = nan.all(axis=(1, 2))
    if all_nan_stim.any():
        bad = stim_ids[all_nan_stim].tolist()
        problems.append(f"{len(bad)} stimulus(es) have no valid response for any neuroid or "
                        f"repetition (all NaN; drop them): {format_items(bad)}")
    if "reliability" in ds.neuroids.columns:
        rel = pd.to_numeric(ds.neuroids["reliability"], errors="coerce")
        bad = neu_ids[(rel.isna() & ds.neuroids["reliability"].notna()).to_numpy()
                      | (rel > 1).to_numpy()].tolist()
        if bad:
            problems.append(f"neuroids.parquet: column 'reliability' must hold numbers <= 1 "
                            f"(NaN where unknown); bad for {len(bad)} neuroid(s): "
                            f"{format_items(bad)}")
    if not (all_nan_neu.any() or all_nan_stim.any()) and "region" in ds.neuroids:
        # a region is scored on the neuroids with a response to every stimulus: one
        # without any such neuroid cannot be scored (the scan would refuse it)
        complete = (~nan).any(axis=1).all(axis=0)
        regions = ds.neuroids["region"].astype(str).to_numpy()
        empty = sorted({r for r in set(regions) if not complete[regions == r].any()})
        if empty:
            problems.append(f"{len(empty)} region(s) have no neuroid with a response to every "
                            f"stimulus, so nothing to score: {format_items(empty)}")
    if not (all_nan_neu.any() or all_nan_stim.any()):
        empty_cells = nan.all(axis=1)
        n_empty = int(empty_cells.sum())
        if n_empty:
            warnings.warn(f"dataset {ds.name!r}: {n_empty} (stimulus, neuroid) pair(s) have no "
                          "valid repetition; their mean response is NaN", stacklevel=3)


def _check_rdms(ds: NeuralDataset, stim_ok: bool, problems: list[str]) -> None:
    if ds.rdms is None:
        problems.append(f"{RDM_TABLE} is present but {RDMS} is missing")
        return
    if ds.rdm_table is None:
        problems.append(f"{RDMS} is present but {RDM_TABLE} (rdm_id, subject, region, measure) "
                        "is missing")
        return
    ok = _check_table(ds.rdm_table, RDM_TABLE, "rdm_id", RDM_COLUMNS, problems)
    d = ds.rdms
    if not isinstance(d, np.ndarray) or d.ndim != 3:
        shape = getattr(d, "shape", None)
        problems.append(f"rdms must be 3-D [n_rdms, n_stimuli, n_stimuli]; got shape {shape}")
        return
    if not np.issubdtype(d.dtype, np.floating):
        problems.append(f"rdms must be floating point, got dtype {d.dtype}")
        return
    expected = (len(ds.rdm_table), ds.n_stimuli, ds.n_stimuli)
    if d.shape != expected:
        problems.append(f"rdms shape mismatch: expected [n_rdms={expected[0]}, "
                        f"n_stimuli={expected[1]}, n_stimuli={expected[2]}] = {expected}, "
                        f"got {d.shape}")
        return
    if ok and stim_ok:
        asym = ~np.all(np.isclose(d, np.swapaxes(d, 1, 2), rtol=1e-5, atol=1e-6, equal_nan=True),
                       axis=(1, 2))
        if asym.any():
            bad = ds.rdm_table["rdm_id"].astype(str).to_numpy()[asym].tolist()
            problems.append(f"{len(bad)} rdm(s) are not symmetric: {format_items(bad)}")




def check_image_contents(ds: "NeuralDataset", workers: int = 8, batch: int = 32,
                         progress: bool = True) -> list[str]:
    """Read and decode every stimulus image (in parallel, with a progress bar); returns
    one problem per bad image, naming its stimulus id and file: missing, empty,
    truncated or not an image. The scan would fail on each of these one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    from ..core.progress import Progress
    from .images import open_images

    ids = ds.stimuli["stimulus_id"].astype(str).tolist()
    uris = ds.image_uris()

    def check(start: int) -> list[str]:
        out = []
        sel = range(start, min(start + batch, len(uris)))
        for i, img in zip(sel, open_images([uris[i] for i in sel])):
            if isinstance(img, BaseException):  # any failure is a bad image, reported
                out.append(f"stimulus {ids[i]} ({uris[i]}): {type(img).__name__}: {img}")
        return out

    problems: list[str] = []
    with Progress(len(uris), "decoding images", unit="img", enabled=progress) as bar, \
            ThreadPoolExecutor(max(1, workers)) as pool:
        for start, found in zip(range(0, len(uris), batch),
                                pool.map(check, range(0, len(uris), batch))):
            problems += found
            bar.update(min(batch, len(uris) - start))
    return problems
