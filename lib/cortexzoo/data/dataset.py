"""The dataset folder: stimuli, neuroids, responses (and optional RDMs) on a local path or s3.

Layout (see FORMAT.md)::

    dataset.json        name, description, source, license, response_unit, ... (all kept)
    stimuli.parquet     stimulus_id (unique str), image (relative path or absolute URI), metadata
    neuroids.parquet    neuroid_id (unique str), subject, region, metadata
    responses.npy       float32 [n_stimuli, n_repetitions, n_neuroids], NaN = missing repetition
    rdms.npy            optional, [n_rdms, n_stimuli, n_stimuli]
    rdms.parquet        optional, one row per RDM: rdm_id, subject, region, measure
    images/             image files named by the `image` column (when relative)
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import fsspec
import numpy as np
import pandas as pd
from PIL import Image

from .errors import DatasetError, format_items
from .images import decode_image, encode_image, read_images

__all__ = [
    "DatasetError",
    "NeuralDataset",
    "load_dataset",
    "write_dataset",
    "validate_dataset",
    "normalize_uri",
    "FILES",
]

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
NEUROID_COLUMNS = ("neuroid_id", "subject", "region")
RDM_COLUMNS = ("rdm_id", "subject", "region", "measure")

_FINGERPRINT_VERSION = b"cortexzoo-dataset-fingerprint-v1"


def _is_absolute(ref: str) -> bool:
    return "://" in ref or ref.startswith("/")


def normalize_uri(uri: str | os.PathLike) -> str:
    """Local paths become absolute (so that image URIs stay valid in other processes and
    working directories); URIs keep their scheme. Trailing slashes are dropped."""
    uri = os.fspath(uri)
    if "://" not in uri:
        uri = os.path.abspath(os.path.expanduser(uri))
    return uri.rstrip("/") or uri


def _join(uri: str, rel: str) -> str:
    return uri.rstrip("/") + "/" + rel


def _escapes(rel: str) -> bool:
    """True when a relative image path would leave the dataset folder."""
    norm = posixpath.normpath(rel.replace("\\", "/"))
    return norm == ".." or norm.startswith("../") or norm == "."


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
    def image_uri(self, i: int) -> str:
        """Absolute URI (or path) of the image of stimulus `i` (row position)."""
        ref = str(self.stimuli["image"].iloc[i])
        return ref if _is_absolute(ref) else _join(self.uri, ref)

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

    # ---- identity ----------------------------------------------------------------------
    def image_sizes(self) -> np.ndarray:
        """Size in bytes of each stimulus image, listed in bulk (-1 where the file is missing)."""
        return _image_sizes(self)

    def fingerprint(self) -> str:
        """SHA-256 hex digest identifying the dataset's content (for cache keys).

        Hashed, in order: a version tag; the responses' dtype, shape and raw bytes;
        the stimuli and neuroids tables (column names, dtypes and a CSV rendering of
        the values, no index); the rdms' dtype, shape and bytes and the rdm table;
        and for each stimulus its `image` entry and the image file's size in bytes.
        Image *contents* are not read (sizes come from one directory listing), so the
        fingerprint is cheap on s3 but blind to an edit that keeps a file's size.
        dataset.json is not hashed: renaming or re-describing a dataset keeps its cache.
        """
        h = hashlib.sha256(_FINGERPRINT_VERSION)
        _hash_array(h, b"responses", self.responses)
        _hash_table(h, b"stimuli", self.stimuli)
        _hash_table(h, b"neuroids", self.neuroids)
        _hash_array(h, b"rdms", self.rdms)
        _hash_table(h, b"rdm_table", self.rdm_table)
        h.update(b"images")
        sizes = _image_sizes(self)
        for ref, size in zip(self.stimuli["image"].astype(str), sizes):
            h.update(ref.encode("utf-8") + b"\0" + str(int(size)).encode() + b"\n")
        return h.hexdigest()

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


def _image_sizes(ds: NeuralDataset) -> np.ndarray:
    """File sizes of every stimulus image (-1 if missing), with one listing per folder.

    Relative images are found with one recursive listing of the dataset folder; absolute
    ones with one listing of each distinct parent folder (never one request per image).
    """
    refs = ds.stimuli["image"].astype(str).tolist() if "image" in ds.stimuli else []
    sizes = np.full(len(refs), -1, dtype=np.int64)
    rel = [(i, r) for i, r in enumerate(refs) if not _is_absolute(r)]
    if rel:
        fs, root = ds._fs()
        listing = _list_sizes(fs, root, recursive=True)
        root_s = root.rstrip("/") + "/"
        by_rel = {p[len(root_s):] if p.startswith(root_s) else p: s for p, s in listing.items()}
        for i, r in rel:
            s = by_rel.get(posixpath.normpath(r.replace("\\", "/")))
            if s is not None:
                sizes[i] = s
    # absolute URIs: group by (filesystem, parent folder) and list each folder once
    groups: dict[tuple[int, str], tuple[fsspec.AbstractFileSystem, list[tuple[int, str]]]] = {}
    for i, r in enumerate(refs):
        if _is_absolute(r):
            fs, path = fsspec.core.url_to_fs(r)
            path = path.rstrip("/")
            key = (id(fs), posixpath.dirname(path))
            groups.setdefault(key, (fs, []))[1].append((i, path))
    for (_, parent), (fs, members) in groups.items():
        listing = _list_sizes(fs, parent, recursive=False)
        for i, path in members:
            s = listing.get(path)
            if s is not None:
                sizes[i] = s
    return sizes


def _list_sizes(fs: fsspec.AbstractFileSystem, folder: str, recursive: bool) -> dict[str, int]:
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


# ---------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------
def validate_dataset(ds: NeuralDataset, check_images: bool = True) -> None:
    """Check a dataset's structure and content; raise DatasetError listing every problem.

    Checked: dataset.json has a non-empty `name`; required table columns exist and
    hold no nulls; stimulus, neuroid and rdm ids are unique (duplicates are named);
    at least one of responses/rdms is present; responses are float, 3-D and match the
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

    stim_ok = _check_table(ds.stimuli, STIMULI, "stimulus_id", STIMULUS_COLUMNS, problems)
    # an RSA-only dataset may have an empty neuroid table
    neu_ok = _check_table(ds.neuroids, NEUROIDS, "neuroid_id", NEUROID_COLUMNS, problems,
                          allow_empty=ds.responses is None)

    images_ok = stim_ok and "image" in ds.stimuli and not ds.stimuli["image"].isna().any()
    if images_ok:
        refs = ds.stimuli["image"]
        ids = ds.stimuli["stimulus_id"].astype(str)
        escaping = [f"{sid} ({ref})" for sid, ref in zip(ids, refs)
                    if isinstance(ref, str) and not _is_absolute(ref) and _escapes(ref)]
        if escaping:
            images_ok = False
            problems.append(f"{len(escaping)} image path(s) escape the dataset folder "
                            f"(relative paths must stay inside it): {format_items(escaping)}")

    if ds.responses is None and ds.rdms is None:
        problems.append(f"the dataset has neither {RESPONSES} nor {RDMS}")
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


def _check_images(ds: NeuralDataset, problems: list[str]) -> None:
    """Append a problem naming the stimuli whose image file does not exist (bulk listing)."""
    sizes = _image_sizes(ds)
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
    missing = [f for f in (DATASET_JSON, STIMULI, NEUROIDS) if f not in present]
    if RESPONSES not in present and RDMS not in present:
        missing.append(f"{RESPONSES} (or {RDMS} with {RDM_TABLE})")
    if (RDMS in present) != (RDM_TABLE in present):
        missing.append(RDM_TABLE if RDMS in present else RDMS)
    if missing:
        raise DatasetError(f"dataset folder {uri!r} lacks required file(s): "
                           f"{format_items(missing)} (has {format_items(sorted(present))})")
    try:
        meta = json.loads(fs.cat_file(_join(root, DATASET_JSON)).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"{_join(uri, DATASET_JSON)!r} is not valid JSON: {e}") from e
    stimuli = _ids_as_str(_read_parquet(fs, _join(root, STIMULI)), "stimulus_id")
    neuroids = _ids_as_str(_read_parquet(fs, _join(root, NEUROIDS)), "neuroid_id")
    responses = _read_npy(fs, _join(root, RESPONSES)) if RESPONSES in present else None
    rdms = rdm_table = None
    if RDMS in present:
        rdms = _read_npy(fs, _join(root, RDMS))
        rdm_table = _ids_as_str(_read_parquet(fs, _join(root, RDM_TABLE)), "rdm_id")
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
    neuroids: pd.DataFrame,
    responses: np.ndarray | None,
    images: Mapping[str, ImageLike] | None = None,
    rdms: np.ndarray | None = None,
    rdm_table: pd.DataFrame | None = None,
    overwrite: bool = False,
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
    overwrite : bool
        Replace an existing dataset at `uri` (its known files are removed first).

    The content is validated before anything is written; image existence is checked
    after writing (images may also be placed in the folder beforehand).
    """
    uri = normalize_uri(uri)
    fs, root = fsspec.core.url_to_fs(uri)
    stimuli = _ids_as_str(pd.DataFrame(stimuli).reset_index(drop=True), "stimulus_id")
    neuroids = _ids_as_str(pd.DataFrame(neuroids).reset_index(drop=True), "neuroid_id")
    if rdm_table is not None:
        rdm_table = _ids_as_str(pd.DataFrame(rdm_table).reset_index(drop=True), "rdm_id")
    images = dict(images or {})
    bad_names = [n for n in images if not isinstance(n, str) or _is_absolute(n) or _escapes(n)]
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
    ds = NeuralDataset(uri=uri, meta=dict(meta), stimuli=stimuli, neuroids=neuroids,
                       responses=responses, rdms=rdms, rdm_table=rdm_table)
    validate_dataset(ds, check_images=False)
    try:
        meta_json = json.dumps(ds.meta, indent=2, ensure_ascii=False)
    except TypeError as e:
        raise DatasetError(f"meta must be JSON-serialisable: {e}") from e

    if fs.exists(_join(root, DATASET_JSON)):
        if not overwrite:
            raise DatasetError(f"a dataset already exists at {uri!r}; pass overwrite=True")
        for f in FILES:
            if fs.exists(_join(root, f)):
                fs.rm(_join(root, f))
    fs.makedirs(root, exist_ok=True)

    blobs: dict[str, bytes] = {}
    for name, content in images.items():
        if isinstance(content, (bytes, bytearray, memoryview)):
            data = bytes(content)
        else:
            data = encode_image(content, _format_for(name))
        blobs[_join(root, f"{IMAGES_DIR}/{name}")] = data
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

    files = {STIMULI: parquet(stimuli), NEUROIDS: parquet(neuroids)}
    if responses is not None:
        files[RESPONSES] = npy(responses)
    if rdms is not None:
        files[RDMS] = npy(rdms)
        files[RDM_TABLE] = parquet(rdm_table)
    # dataset.json last: its presence marks a complete folder
    fs.pipe({_join(root, k): v for k, v in files.items()})
    fs.pipe_file(_join(root, DATASET_JSON), meta_json.encode("utf-8"))
    problems: list[str] = []
    _check_images(ds, problems)  # images may come from the mapping, the folder or elsewhere
    _raise_problems(ds, problems)
    return uri
