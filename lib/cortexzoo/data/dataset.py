"""The dataset folder: stimuli, neuroids, responses (and optional RDMs) on a local path or s3.

Layout (see FORMAT.md)::

    dataset.json        name, description, source, license, response_unit, ... (all kept)
    stimuli.parquet     stimulus_id (unique str), image (relative path or absolute URI), metadata
    neuroids.parquet    neuroid_id (unique str), subject, region, metadata
    responses.npy       float32 [n_stimuli, n_repetitions, n_neuroids], NaN = missing repetition
    rdms.npy            optional, [n_rdms, n_stimuli, n_stimuli]
    rdms.parquet        optional, one row per RDM: rdm_id, subject, region, measure
    images/             image files named by the `image` column (when relative)
    images.npy          or: all images as one array (dataset.json "image_array", stimuli
                        column `image_index`; or an HDF5 dataset), read by index (arrays.py)
"""
from __future__ import annotations

import hashlib
import io
import json
import posixpath
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import fsspec
import numpy as np
import pandas as pd
from PIL import Image

from ..core.uri import normalize_uri
from .arrays import IMAGE_ARRAY, array_problem, array_ref, array_uri, identity_bytes, write_npy
from .folder import (DATASET_JSON, FILES, IMAGES_DIR, NEUROID_COLUMNS, NEUROIDS, RDM_TABLE, RDMS,
                     RESPONSES, STIMULI,
                     escapes, image_array_spec, image_sizes, is_absolute, join, open_image_array)
from .errors import DatasetError, format_items
from .validate import _check_images, _raise_problems, is_stimulus_set, validate_dataset
from .images import decode_image, encode_image, open_images, read_images

_FINGERPRINT_VERSION = b"cortexzoo-dataset-fingerprint-v1"

__all__ = [
    "DatasetError",
    "NeuralDataset",
    "load_dataset",
    "write_dataset",
    "validate_dataset",
    "normalize_uri",
    "FILES",
    "is_stimulus_set",
]

@dataclass
class NeuralDataset:
    """A stimulus set with neural responses (and/or RDMs), loaded from a dataset folder.

    Attributes
    ----------
    uri : str
        The folder (local path or URI such as ``s3://bucket/prefix``); relative image
        paths resolve against it.
    meta : dict
        The content of dataset.json.
    stimuli : pd.DataFrame
        One row per stimulus, in the row order of `responses`.
    neuroids : pd.DataFrame
        One row per neuroid, in the column order of `responses`.
    responses : np.ndarray or None
        float32 [n_stimuli, n_repetitions, n_neuroids], NaN for missing repetitions.
    rdms : np.ndarray or None
        [n_rdms, n_stimuli, n_stimuli].
    rdm_table : pd.DataFrame or None
        One row per RDM (rdm_id, subject, region, measure).
    """

    uri: str
    meta: dict
    stimuli: pd.DataFrame
    neuroids: pd.DataFrame
    responses: np.ndarray | None = None
    rdms: np.ndarray | None = None
    rdm_table: pd.DataFrame | None = None
    _fs_cache: tuple = field(default=(), init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        # filesystem handles are re-created on demand (cheap) rather than pickled to workers
        state = dict(self.__dict__)
        state["_fs_cache"] = ()
        return state

    # ---- descriptors ------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.meta.get("name", ""))

    @property
    def n_stimuli(self) -> int:
        return len(self.stimuli)

    @property
    def n_neuroids(self) -> int:
        return len(self.neuroids)

    @property
    def n_repetitions(self) -> int:
        return 0 if self.responses is None else int(self.responses.shape[1])

    @property
    def regions(self) -> list[str]:
        """Sorted unique regions of the neuroids and of the RDMs."""
        regs = set(self.neuroids["region"].astype(str)) if "region" in self.neuroids else set()
        if self.rdm_table is not None and "region" in self.rdm_table:
            regs |= set(self.rdm_table["region"].astype(str))
        return sorted(regs)

    def __repr__(self) -> str:
        shape = None if self.responses is None else tuple(self.responses.shape)
        rdms = None if self.rdms is None else tuple(self.rdms.shape)
        return (f"NeuralDataset(name={self.name!r}, uri={self.uri!r}, n_stimuli={self.n_stimuli}, "
                f"n_neuroids={self.n_neuroids}, responses={shape}, rdms={rdms}, "
                f"regions={self.regions})")

    # ---- filesystem --------------------------------------------------------------------
    def _fs(self) -> tuple[fsspec.AbstractFileSystem, str]:
        if not self._fs_cache:
            self._fs_cache = fsspec.core.url_to_fs(self.uri)
        return self._fs_cache

    # ---- images ------------------------------------------------------------------------
    @property
    def image_array(self) -> dict | None:
        """dataset.json's ``image_array`` when the images are stored as one array, else None."""
        return image_array_spec(self.meta)

    def image_uri(self, i: int) -> str:
        """Absolute URI (or path) of the image of stimulus `i` (row position); for images
        stored as one array, its array reference (``<array uri>#[<dataset>/]<index>``),
        which every image reader here reads by index."""
        spec = self.image_array
        if spec is not None:
            return array_ref(array_uri(self.uri, spec), int(self.stimuli["image_index"].iloc[i]),
                             spec.get("dataset"))
        ref = str(self.stimuli["image"].iloc[i])
        return ref if is_absolute(ref) else join(self.uri, ref)

    def image_uris(self) -> list[str]:
        """Absolute URIs of all stimulus images, in row order."""
        return [self.image_uri(i) for i in range(self.n_stimuli)]

    def read_image_bytes(self, i: int) -> bytes:
        """The raw bytes of the image file of stimulus `i`."""
        return read_images([self.image_uri(i)])[0]

    def read_image(self, i: int) -> Image.Image:
        """The image of stimulus `i` as an RGB PIL image."""
        return decode_image(self.read_image_bytes(i), self.image_uri(i))

    def read_images(self, idx: Sequence[int] | None = None) -> list[Image.Image]:
        """Several stimulus images (RGB), read in one batched request per filesystem."""
        idx = range(self.n_stimuli) if idx is None else idx
        uris = [self.image_uri(i) for i in idx]
        if self.image_array is not None:
            imgs = open_images(uris)
            bad = [e for e in imgs if isinstance(e, BaseException)]
            if bad:
                raise bad[0] if isinstance(bad[0], DatasetError) else DatasetError(str(bad[0]))
            return imgs
        return [decode_image(b, u) for b, u in zip(read_images(uris), uris)]

    # ---- responses ---------------------------------------------------------------------
    def _require_responses(self) -> np.ndarray:
        if self.responses is None:
            raise DatasetError(f"dataset {self.name!r} has no responses (RDM-only dataset)")
        return self.responses

    def mean_responses(self) -> np.ndarray:
        """Mean over repetitions (NaN-aware), float64 [n_stimuli, n_neuroids].

        A (stimulus, neuroid) pair without any valid repetition stays NaN.
        """
        r = self._require_responses()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells give NaN on purpose
            return np.nanmean(r.astype(np.float64, copy=False), axis=1)

    def region_index(self, region: str) -> np.ndarray:
        """Column indices (into `responses`' neuroid axis) of the neuroids in `region`."""
        regs = self.neuroids["region"].astype(str).to_numpy()
        idx = np.flatnonzero(regs == str(region))
        if idx.size == 0:
            raise DatasetError(f"dataset {self.name!r} has no neuroids in region {region!r}; "
                               f"regions: {format_items(sorted(set(regs)))}")
        return idx

    def complete_neuroids(self, region: str) -> tuple[np.ndarray, np.ndarray]:
        """(kept, dropped) column indices of `region`: a neuroid is kept when it has a
        valid (non-NaN) repetition for every stimulus, so its mean response is a complete
        mapping target. Validation rejects a region with no kept neuroid; a scan drops
        the others with a warning."""
        cols = self.region_index(region)
        r = self._require_responses()[:, :, cols]
        ok = (~np.isnan(r)).any(axis=1).all(axis=0)
        return cols[ok], cols[~ok]

    def published_reliability(self) -> np.ndarray | None:
        """Per-neuroid reliabilities supplied by the dataset (the ``reliability`` column of
        neuroids.parquet, as many papers publish them), or None."""
        if "reliability" not in self.neuroids.columns:
            return None
        return pd.to_numeric(self.neuroids["reliability"], errors="coerce").to_numpy(np.float64)

    # ---- identity ----------------------------------------------------------------------
    def image_sizes(self) -> np.ndarray:
        """Size in bytes of each stimulus image, listed in bulk (-1 where the file is missing)."""
        return image_sizes(self)

    def fingerprint(self) -> str:
        """SHA-256 hex digest identifying the dataset's content (for cache keys).

        Hashed, in order: a version tag; the responses' dtype, shape and raw bytes;
        the stimuli and neuroids tables (column names, dtypes and a CSV rendering of
        the values, no index); the rdms' dtype, shape and bytes and the rdm table;
        and for each stimulus its `image` entry and the image file's size in bytes.
        Image *contents* are not read (sizes come from one directory listing), so the
        fingerprint is cheap on s3 but blind to an edit that keeps a file's size.
        dataset.json is not hashed: renaming or re-describing a dataset keeps its cache.
        Images stored as one array: its ``image_array`` entry (path, dataset), the array's
        shape, dtype and file size, and each stimulus' ``image_index`` (from the table).
        """
        h = hashlib.sha256(_FINGERPRINT_VERSION)
        _hash_array(h, b"responses", self.responses)
        _hash_table(h, b"stimuli", self.stimuli)
        _hash_table(h, b"neuroids", self.neuroids)
        _hash_array(h, b"rdms", self.rdms)
        _hash_table(h, b"rdm_table", self.rdm_table)
        h.update(b"images")
        if self.image_array is not None:
            h.update(b"array" + self._array_identity())
            return h.hexdigest()
        sizes = image_sizes(self)
        for ref, size in zip(self.stimuli["image"].astype(str), sizes):
            h.update(ref.encode("utf-8") + b"\0" + str(int(size)).encode() + b"\n")
        return h.hexdigest()

    def stimulus_fingerprint(self) -> str:
        """SHA-256 hex digest of what a model sees: the stimuli in row order (their ids and
        image entries) and each image file's size. Two datasets with the same stimulus set
        share it, whatever their responses (features are cached under it)."""
        h = hashlib.sha256(_FINGERPRINT_VERSION + b"-stimuli")
        if self.image_array is not None:
            h.update(b"array" + self._array_identity())
            for sid, i in zip(self.stimuli["stimulus_id"].astype(str), self.stimuli["image_index"]):
                h.update(sid.encode("utf-8") + b"\0" + str(int(i)).encode() + b"\n")
            return h.hexdigest()
        sizes = image_sizes(self)
        for sid, ref, size in zip(self.stimuli["stimulus_id"].astype(str),
                                  self.stimuli["image"].astype(str), sizes):
            h.update(sid.encode("utf-8") + b"\0" + ref.encode("utf-8") + b"\0"
                     + str(int(size)).encode() + b"\n")
        return h.hexdigest()

    def _array_identity(self) -> bytes:
        return identity_bytes(open_image_array(self), self.image_array)

    # ---- selection ---------------------------------------------------------------------
    def subset(self, stimulus_idx: Sequence[int] | np.ndarray) -> "NeuralDataset":
        """A new dataset with the given stimuli (row positions or a boolean mask), same folder."""
        idx = np.asarray(stimulus_idx)
        if idx.dtype == bool:
            if idx.shape != (self.n_stimuli,):
                raise DatasetError(f"boolean stimulus mask has shape {idx.shape}, "
                                   f"expected ({self.n_stimuli},)")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).ravel()
        bad = idx[(idx < -self.n_stimuli) | (idx >= self.n_stimuli)]
        if bad.size:
            raise DatasetError(f"stimulus indices out of range [0, {self.n_stimuli}): "
                               f"{format_items(bad.tolist())}")
        out = replace(
            self,
            stimuli=self.stimuli.iloc[idx].reset_index(drop=True),
            responses=None if self.responses is None else self.responses[idx],
            rdms=None if self.rdms is None else self.rdms[:, idx][:, :, idx],
        )
        out._fs_cache = self._fs_cache
        return out


def _hash_array(h, tag: bytes, a: np.ndarray | None) -> None:
    h.update(tag)
    if a is None:
        h.update(b"none")
        return
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))


def _hash_table(h, tag: bytes, df: pd.DataFrame | None) -> None:
    h.update(tag)
    if df is None:
        h.update(b"none")
        return
    h.update(json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()]).encode())
    h.update(df.to_csv(index=False, lineterminator="\n").encode("utf-8"))


# ---------------------------------------------------------------------------------------
# load / write
# ---------------------------------------------------------------------------------------
def _read_npy(fs: fsspec.AbstractFileSystem, path: str) -> np.ndarray:
    try:
        with fs.open(path, "rb") as f:
            return np.load(f, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DatasetError(f"cannot read {path!r} as a .npy array: {e}") from e


def _read_parquet(fs: fsspec.AbstractFileSystem, path: str) -> pd.DataFrame:
    try:
        with fs.open(path, "rb") as f:
            return pd.read_parquet(f)
    except (ValueError, OSError) as e:
        raise DatasetError(f"cannot read {path!r} as a parquet table: {e}") from e


def empty_neuroids() -> pd.DataFrame:
    """The neuroid table of an RDM-only dataset: the required columns, no rows."""
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in NEUROID_COLUMNS})


def _ids_as_str(df: pd.DataFrame, col: str) -> pd.DataFrame:
    """Store ids as strings (numbers are accepted and converted; nulls are left for validation)."""
    if col in df.columns and not df[col].isna().any():
        if not all(isinstance(x, str) for x in df[col]):
            df = df.copy()
            df[col] = df[col].astype(str)
    return df


def load_dataset(uri: str, validate: bool = True) -> NeuralDataset:
    """Load a dataset folder from a local path or a URI (``s3://bucket/prefix``, ``file://``).

    Parameters
    ----------
    uri : str
        The dataset folder.
    validate : bool
        Run `validate_dataset` (with the bulk image existence check).

    Raises
    ------
    DatasetError
        When a required file is missing or unreadable, or validation fails.
    """
    uri = normalize_uri(uri)
    fs, root = fsspec.core.url_to_fs(uri)
    fs.invalidate_cache(root)  # another process may have written the folder since we last listed
    try:
        present = {posixpath.basename(p.rstrip("/")) for p in fs.ls(root, detail=False)}
    except (FileNotFoundError, NotADirectoryError):
        raise DatasetError(f"dataset folder {uri!r} does not exist") from None
    meta = None
    if DATASET_JSON in present:
        try:
            meta = json.loads(fs.cat_file(join(root, DATASET_JSON)).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise DatasetError(f"{join(uri, DATASET_JSON)!r} is not valid JSON: {e}") from e
    # neuroids.parquet describes the responses' columns: RDM-only folders and stimulus
    # sets need none
    need = (DATASET_JSON, STIMULI) + ((NEUROIDS,) if RESPONSES in present else ())
    missing = [f for f in need if f not in present]
    if RESPONSES not in present and RDMS not in present and not is_stimulus_set(meta):
        missing.append(f"{RESPONSES} (or {RDMS} with {RDM_TABLE})")
    if (RDMS in present) != (RDM_TABLE in present):
        missing.append(RDM_TABLE if RDMS in present else RDMS)
    if missing:
        raise DatasetError(f"dataset folder {uri!r} lacks required file(s): "
                           f"{format_items(missing)} (has {format_items(sorted(present))})")
    stimuli = _ids_as_str(_read_parquet(fs, join(root, STIMULI)), "stimulus_id")
    neuroids = (_ids_as_str(_read_parquet(fs, join(root, NEUROIDS)), "neuroid_id")
                if NEUROIDS in present else empty_neuroids())
    responses = _read_npy(fs, join(root, RESPONSES)) if RESPONSES in present else None
    rdms = rdm_table = None
    if RDMS in present:
        rdms = _read_npy(fs, join(root, RDMS))
        rdm_table = _ids_as_str(_read_parquet(fs, join(root, RDM_TABLE)), "rdm_id")
    ds = NeuralDataset(uri=uri, meta=meta, stimuli=stimuli, neuroids=neuroids,
                       responses=responses, rdms=rdms, rdm_table=rdm_table)
    ds._fs_cache = (fs, root)
    if validate:
        validate_dataset(ds)
    return ds


ImageLike = bytes | bytearray | np.ndarray | Image.Image


def _format_for(name: str) -> str:
    ext = posixpath.splitext(name)[1].lower()
    return Image.registered_extensions().get(ext, "PNG") if ext else "PNG"


def write_dataset(
    uri: str,
    *,
    meta: dict,
    stimuli: pd.DataFrame,
    neuroids: pd.DataFrame | None,
    responses: np.ndarray | None,
    images: Mapping[str, ImageLike] | None = None,
    rdms: np.ndarray | None = None,
    rdm_table: pd.DataFrame | None = None,
    image_array=None,
    overwrite: bool = False,
    progress: bool = False,
) -> str:
    """Write a dataset folder (local path or s3 URI) and return its URI.

    Parameters
    ----------
    uri : str
        Target folder; created if needed.
    meta : dict
        dataset.json content; needs `name`, should have description, source, license,
        response_unit. Must be JSON-serialisable.
    stimuli, neuroids : pd.DataFrame
        See FORMAT.md. Ids are stored as strings; the index is dropped.
    responses : np.ndarray or None
        [n_stimuli, n_repetitions, n_neuroids], stored as float32.
    images : mapping name -> bytes | array | PIL image, optional
        Written to ``images/<name>``. Bytes are written as they are; arrays (uint8, or
        float in [0, 1]) and PIL images are encoded in the format of the name's
        extension (PNG when it has none). An `image` entry equal to a bare ``name`` of
        this mapping is rewritten to ``images/<name>``.
    rdms, rdm_table : optional RDMs [n_rdms, n_stimuli, n_stimuli] and their table.
    image_array : array-like, optional
        All images as one array ``[n_images, H, W(, C)]`` (a numpy array, an h5py dataset,
        :class:`~cortexzoo.data.arrays.RowSelection`: anything with ``shape``, ``dtype``
        and row slicing), written as ``images.npy`` in blocks (never whole in memory);
        ``meta["image_array"]`` becomes ``{"path": "images.npy"}`` and the stimuli need an
        integer ``image_index`` (its row) instead of ``image``. To keep the images in an
        array elsewhere (an HDF5 dataset, on s3), set ``meta["image_array"]`` yourself and
        pass no ``image_array``.
    overwrite : bool
        Replace an existing dataset at `uri` (its known files are removed first).
    progress : bool
        A progress bar while ``image_array`` is written.

    The content is validated before anything is written; image existence is checked
    after writing (images may also be placed in the folder beforehand).
    """
    uri = normalize_uri(uri)
    fs, root = fsspec.core.url_to_fs(uri)
    stimuli = _ids_as_str(pd.DataFrame(stimuli).reset_index(drop=True), "stimulus_id")
    neuroids = (empty_neuroids() if neuroids is None else
                _ids_as_str(pd.DataFrame(neuroids).reset_index(drop=True), "neuroid_id"))
    if rdm_table is not None:
        rdm_table = _ids_as_str(pd.DataFrame(rdm_table).reset_index(drop=True), "rdm_id")
    images = dict(images or {})
    bad_names = [n for n in images if not isinstance(n, str) or is_absolute(n) or escapes(n)]
    if bad_names:
        raise DatasetError(f"image names must be relative paths inside images/: "
                           f"{format_items(bad_names)}")
    if images and "image" in stimuli.columns:
        stimuli = stimuli.copy()
        stimuli["image"] = [f"{IMAGES_DIR}/{r}" if isinstance(r, str) and r in images else r
                            for r in stimuli["image"]]
    if responses is not None:
        responses = np.asarray(responses)
        if np.issubdtype(responses.dtype, np.number) and responses.dtype != np.float32:
            responses = responses.astype(np.float32)
    if rdms is not None:
        rdms = np.asarray(rdms)
    meta = dict(meta)
    if image_array is not None:
        if images:
            raise DatasetError("pass images (files) or image_array (one array), not both")
        bad = array_problem(image_array.shape, image_array.dtype)
        if bad:
            raise DatasetError(f"image_array {bad}")
        meta["image_array"] = {"path": IMAGE_ARRAY}
    ds = NeuralDataset(uri=uri, meta=meta, stimuli=stimuli, neuroids=neuroids,
                       responses=responses, rdms=rdms, rdm_table=rdm_table)
    validate_dataset(ds, check_images=False)
    if image_array is not None and "image_index" in stimuli.columns:
        idx = stimuli["image_index"].to_numpy(dtype=np.int64)
        out = idx >= int(image_array.shape[0])
        if out.any():
            raise DatasetError(f"{int(out.sum())} stimulus(es) have an image_index beyond the "
                               f"{image_array.shape[0]} images of image_array: "
                               f"{format_items(stimuli['stimulus_id'][out].astype(str).tolist())}")
    try:
        meta_json = json.dumps(ds.meta, indent=2, ensure_ascii=False)
    except TypeError as e:
        raise DatasetError(f"meta must be JSON-serialisable: {e}") from e

    if fs.exists(join(root, DATASET_JSON)):
        if not overwrite:
            raise DatasetError(f"a dataset already exists at {uri!r}; pass overwrite=True")
        for f in (*FILES, IMAGE_ARRAY):
            if fs.exists(join(root, f)):
                fs.rm(join(root, f))
    fs.makedirs(root, exist_ok=True)
    if image_array is not None:
        write_npy(fs, join(root, IMAGE_ARRAY), image_array, progress=progress)

    blobs: dict[str, bytes] = {}
    for name, content in images.items():
        if isinstance(content, (bytes, bytearray, memoryview)):
            data = bytes(content)
        else:
            data = encode_image(content, _format_for(name))
        blobs[join(root, f"{IMAGES_DIR}/{name}")] = data
    if blobs:
        # local filesystems do not create parent folders on write
        for parent in sorted({posixpath.dirname(p) for p in blobs}):
            fs.makedirs(parent, exist_ok=True)
        fs.pipe(blobs)  # concurrent on object stores

    def npy(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
        return buf.getvalue()

    def parquet(df: pd.DataFrame) -> bytes:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return buf.getvalue()

    files = {STIMULI: parquet(stimuli)}
    if responses is not None or len(neuroids):
        files[NEUROIDS] = parquet(neuroids)
    if responses is not None:
        files[RESPONSES] = npy(responses)
    if rdms is not None:
        files[RDMS] = npy(rdms)
        files[RDM_TABLE] = parquet(rdm_table)
    # dataset.json last: its presence marks a complete folder
    fs.pipe({join(root, k): v for k, v in files.items()})
    fs.pipe_file(join(root, DATASET_JSON), meta_json.encode("utf-8"))
    problems: list[str] = []
    _check_images(ds, problems)  # images may come from the mapping, the folder or elsewhere
    _raise_problems(ds, problems)
    return uri
