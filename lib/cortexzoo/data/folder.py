"""The dataset folder's names and paths: file and column names (FORMAT.md), image
paths relative to the folder, and image file sizes listed in bulk."""
from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import TYPE_CHECKING

import fsspec
import numpy as np

from .arrays import IMAGE_ARRAY, array_uri, open_array
from .errors import DatasetError

if TYPE_CHECKING:
    from .dataset import NeuralDataset

__all__ = ["DATASET_JSON", "STIMULI", "NEUROIDS", "RESPONSES", "RDMS", "RDM_TABLE", "IMAGES_DIR",
           "FILES", "IMAGE_ARRAY", "REQUIRED_META", "RECOMMENDED_META", "STIMULUS_COLUMNS",
           "ARRAY_STIMULUS_COLUMNS", "NEUROID_COLUMNS", "RDM_COLUMNS", "is_absolute", "escapes",
           "join", "image_sizes", "image_array_spec", "open_image_array"]

DATASET_JSON = "dataset.json"
STIMULI = "stimuli.parquet"
NEUROIDS = "neuroids.parquet"
RESPONSES = "responses.npy"
RDMS = "rdms.npy"
RDM_TABLE = "rdms.parquet"
IMAGES_DIR = "images"
FILES = (DATASET_JSON, STIMULI, NEUROIDS, RESPONSES, RDMS, RDM_TABLE)

REQUIRED_META = ("name",)
RECOMMENDED_META = ("description", "source", "license", "response_unit")
STIMULUS_COLUMNS = ("stimulus_id", "image")
#: with images stored as one array (dataset.json's ``image_array``): the row of the array
ARRAY_STIMULUS_COLUMNS = ("stimulus_id", "image_index")
NEUROID_COLUMNS = ("neuroid_id", "subject", "region")
RDM_COLUMNS = ("rdm_id", "subject", "region", "measure")


def is_absolute(ref: str) -> bool:
    return "://" in ref or ref.startswith("/")


def join(uri: str, rel: str) -> str:
    return uri.rstrip("/") + "/" + rel


def escapes(rel: str) -> bool:
    """True when a relative image path would leave the dataset folder."""
    norm = posixpath.normpath(rel.replace("\\", "/"))
    return norm == ".." or norm.startswith("../") or norm == "."


def image_array_spec(meta) -> dict | None:
    """dataset.json's ``image_array`` (images stored as one array), or None."""
    return meta.get("image_array") if isinstance(meta, Mapping) else None


def open_image_array(ds: NeuralDataset):
    """The opened image array of an array-stored dataset (see ``arrays.py``)."""
    spec = image_array_spec(ds.meta)
    if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
        raise DatasetError(f"dataset.json's image_array must be an object with a 'path' "
                           f"(and, for HDF5, a 'dataset'); got {spec!r}")
    return open_array(array_uri(ds.uri, spec), spec.get("dataset"))


def image_sizes(ds: NeuralDataset) -> np.ndarray:
    """File sizes of every stimulus image (-1 if missing), with one listing per folder.

    Relative images are found with one recursive listing of the dataset folder; absolute
    ones with one listing of each distinct parent folder (never one request per image).
    With images stored as one array, each image's size in bytes within the array (-1 for an
    ``image_index`` outside it, every entry -1 when the array cannot be opened).
    """
    if image_array_spec(ds.meta) is not None:
        n = len(ds.stimuli)
        try:
            arr = open_image_array(ds)
            idx = np.asarray(ds.stimuli["image_index"], dtype=np.int64)
        except (DatasetError, OSError, ValueError, KeyError, TypeError):
            return np.full(n, -1, dtype=np.int64)
        ok = (idx >= 0) & (idx < arr.n_images)
        return np.where(ok, arr.image_nbytes, -1).astype(np.int64)
    refs = ds.stimuli["image"].astype(str).tolist() if "image" in ds.stimuli else []
    sizes = np.full(len(refs), -1, dtype=np.int64)
    rel = [(i, r) for i, r in enumerate(refs) if not is_absolute(r)]
    if rel:
        fs, root = ds._fs()
        listing = list_sizes(fs, root, recursive=True)
        root_s = root.rstrip("/") + "/"
        by_rel = {p[len(root_s):] if p.startswith(root_s) else p: s for p, s in listing.items()}
        for i, r in rel:
            s = by_rel.get(posixpath.normpath(r.replace("\\", "/")))
            if s is not None:
                sizes[i] = s
    # absolute URIs: group by (filesystem, parent folder) and list each folder once
    groups: dict[tuple[int, str], tuple[fsspec.AbstractFileSystem, list[tuple[int, str]]]] = {}
    for i, r in enumerate(refs):
        if is_absolute(r):
            fs, path = fsspec.core.url_to_fs(r)
            path = path.rstrip("/")
            key = (id(fs), posixpath.dirname(path))
            groups.setdefault(key, (fs, []))[1].append((i, path))
    for (_, parent), (fs, members) in groups.items():
        listing = list_sizes(fs, parent, recursive=False)
        for i, path in members:
            s = listing.get(path)
            if s is not None:
                sizes[i] = s
    return sizes


def list_sizes(fs: fsspec.AbstractFileSystem, folder: str, recursive: bool) -> dict[str, int]:
    """{path: size} of the files under `folder` (empty when it does not exist)."""
    fs.invalidate_cache(folder)  # listings are cached per process; files may have changed since
    try:
        if recursive:
            info = fs.find(folder, detail=True)
        else:
            info = {d["name"]: d for d in fs.ls(folder, detail=True)}
    except (FileNotFoundError, NotADirectoryError):
        return {}
    out = {}
    for name, d in info.items():
        if d.get("type", "file") == "file":
            out[fs._strip_protocol(name).rstrip("/")] = int(d.get("size") or 0)
    return out


