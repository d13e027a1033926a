"""Stimulus images stored as one array instead of one file per stimulus.

A dataset folder may hold its images as one array ``[n_images, H, W]`` (grayscale) or
``[n_images, H, W, C]`` (C = 1, 3 or 4, channels last): ``images.npy`` in the folder, or
a dataset inside an HDF5 file (NSD's ``nsd_stimuli.hdf5`` holds its 73,000 images as
``imgBrick`` ``[73000, 425, 425, 3]`` uint8, 40 GB). ``dataset.json`` names it::

    "image_array": {"path": "images.npy"}
    "image_array": {"path": "s3://bucket/nsd_stimuli.hdf5", "dataset": "imgBrick"}

(``path`` relative to the folder or an absolute URI) and ``stimuli.parquet`` has an
integer ``image_index`` column (the row of the array) instead of ``image``.

Each stimulus' image is then named by an **array reference**, a string that travels to
the decode tasks like a file URI: ``<array uri>#<index>`` for ``.npy`` and
``<array uri>#<dataset>/<index>`` for HDF5. A task reads only the rows it is given: a
local ``.npy`` is memory-mapped, a remote one read with one ranged request per image, an
HDF5 dataset indexed with h5py (through fsspec for ``s3://``); arrays are never loaded
whole. Opened arrays are kept per process (:func:`open_array`).
"""
from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..core.uri import join as uri_join
from ..core.uri import url_to_fs
from .errors import DatasetError, ImageDecodeError, format_items

__all__ = ["ARRAY_SUFFIXES", "IMAGE_ARRAY", "ImageArray", "RowSelection", "array_problem",
           "array_ref", "array_to_image", "array_uri", "identity_bytes", "is_array_ref",
           "is_hdf5_path", "open_array", "parse_array_ref", "read_array_images", "write_npy"]

#: The default file name of array-stored images in a dataset folder.
IMAGE_ARRAY = "images.npy"
ARRAY_SUFFIXES = (".npy", ".h5", ".hdf5", ".hdf", ".he5")
_HDF5_SUFFIXES = ARRAY_SUFFIXES[1:]
_REF_RE = re.compile(r"^(?P<base>.+?(?:\.npy|\.h5|\.hdf5|\.hdf|\.he5))#"
                     r"(?:(?P<key>[^#]+)/)?(?P<index>\d+)$", re.IGNORECASE)


def is_hdf5_path(path: str) -> bool:
    return str(path).lower().endswith(_HDF5_SUFFIXES)


def array_ref(uri: str, index: int, dataset: str | None = None) -> str:
    """The reference of row ``index`` of the array at ``uri`` (dataset ``dataset`` of an HDF5 file)."""
    key = f"{str(dataset).strip('/')}/" if dataset else ""
    return f"{uri}#{key}{int(index)}"


def parse_array_ref(ref: str) -> tuple[str, str | None, int] | None:
    """``(array uri, dataset or None, index)`` of an array reference, None for anything else."""
    m = _REF_RE.match(str(ref))
    if not m:
        return None
    return m.group("base"), m.group("key"), int(m.group("index"))


def is_array_ref(ref: str) -> bool:
    return parse_array_ref(ref) is not None


def array_uri(folder_uri: str, spec: dict) -> str:
    """The absolute URI of the array ``spec`` (dataset.json's ``image_array``) names."""
    path = str(spec["path"])
    return path if ("://" in path or path.startswith("/")) else uri_join(folder_uri, path)


def array_problem(shape: Sequence[int], dtype) -> str | None:
    """Why an array of this shape and dtype cannot hold images (None when it can)."""
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3, 4)):
        return (f"has shape {shape}; images are stored as [n_images, H, W] (grayscale) or "
                "[n_images, H, W, C] with C = 1, 3 or 4 (channels last)")
    if min(shape[1:3]) < 1:
        return f"has shape {shape}: empty images"
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
            or dtype == np.bool_):
        return f"has dtype {dtype}; images need an integer, float or bool dtype"
    return None


def array_to_image(arr: np.ndarray, name: str = "image") -> Image.Image:
    """One stored image as an RGB PIL image: uint8 as is; bool as 0/255; floats taken as
    intensities in [0, 1]; other integers rescaled by the image's own maximum (as
    :func:`~cortexzoo.data.images.decode_image` does for 16-bit files). Grayscale is
    repeated to 3 channels and alpha dropped."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageDecodeError(f"image {name!r} holds NaN or infinite values")
        a = np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = a.astype(np.float64)
        top = a.max() if a.size and a.max() > 0 else 1.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(a))
    return img if img.mode == "RGB" else img.convert("RGB")


class ImageArray:
    """One opened image array; :meth:`read` returns the requested rows only."""

    def __init__(self, uri: str, dataset: str | None = None):
        self.uri, self.dataset = uri, dataset
        self._lock = threading.Lock()
        fs, path = url_to_fs(uri)
        self._fs, self._path = fs, path
        self.local = type(fs).__name__ == "LocalFileSystem"
        try:
            self.file_size = int(fs.size(path))
        except FileNotFoundError:
            raise DatasetError(f"image array {uri!r} does not exist") from None
        if is_hdf5_path(uri):
            self._open_hdf5()
        else:
            if dataset:
                raise DatasetError(f"image array {uri!r} is a .npy file: it has no dataset "
                                   f"{dataset!r} (only HDF5 files name one)")
            self._open_npy()
        bad = array_problem(self.shape, self.dtype)
        if bad:
            raise DatasetError(f"image array {self.label} {bad}")

    @property
    def label(self) -> str:
        return f"{self.uri!r}" + (f" (dataset {self.dataset!r})" if self.dataset else "")

    def _open_npy(self) -> None:
        fs, path = self._fs, self._path
        try:
            if self.local:
                self._mm = np.load(path, mmap_mode="r", allow_pickle=False)
                self.shape, self.dtype = tuple(self._mm.shape), self._mm.dtype
                return
            with fs.open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                         else np.lib.format.read_array_header_2_0(f))
                self._offset = f.tell()
        except (ValueError, OSError, EOFError) as e:
            raise DatasetError(f"image array {self.uri!r} is not a readable .npy file: {e}") from e
        if fortran:
            raise DatasetError(f"image array {self.uri!r} is stored in Fortran order; "
                               "save it in C order (np.save of a C-contiguous array)")
        self._mm = None
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def _open_hdf5(self) -> None:
        import h5py

        if not self.dataset:
            raise DatasetError(f"image array {self.uri!r} is an HDF5 file: name the dataset that "
                               "holds the images (\"dataset\" in image_array, e.g. \"imgBrick\")")
        try:
            self._fileobj = None if self.local else self._fs.open(self._path, "rb",
                                                                  block_size=4 << 20)
            self._h5 = h5py.File(self._path if self.local else self._fileobj, "r")
        except OSError as e:
            raise DatasetError(f"image array {self.uri!r} is not a readable HDF5 file: {e}") from e
        if self.dataset not in self._h5 or not isinstance(self._h5[self.dataset], h5py.Dataset):
            names = []
            self._h5.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            raise DatasetError(f"HDF5 file {self.uri!r} has no dataset {self.dataset!r}; "
                               f"it has {format_items(names)}")
        self._ds = self._h5[self.dataset]
        self.shape, self.dtype = tuple(self._ds.shape), self._ds.dtype

    @property
    def n_images(self) -> int:
        return int(self.shape[0])

    @property
    def image_nbytes(self) -> int:
        return int(np.prod(self.shape[1:])) * self.dtype.itemsize

    def identity(self) -> dict:
        """What identifies the array without reading its content (for fingerprints)."""
        return {"dataset": self.dataset, "shape": list(self.shape), "dtype": self.dtype.str,
                "file_size": self.file_size}

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Rows ``indices`` (any order, repeats allowed) as one in-memory array."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        bad = idx[(idx < 0) | (idx >= self.n_images)]
        if bad.size:
            raise DatasetError(f"image array {self.label} has {self.n_images} images; "
                               f"no index {format_items(sorted(set(bad.tolist())))}")
        if idx.size == 0:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        uniq, inverse = np.unique(idx, return_inverse=True)  # increasing, as h5py wants
        with self._lock:
            if hasattr(self, "_ds"):
                rows = self._ds[uniq]
            elif self._mm is not None:
                rows = np.asarray(self._mm[uniq])
            else:  # remote .npy: one ranged read per row, fetched concurrently
                n = self.image_nbytes
                starts = [self._offset + int(i) * n for i in uniq]
                blobs = self._fs.cat_ranges([self._path] * len(starts), starts,
                                            [s + n for s in starts])
                rows = np.frombuffer(b"".join(blobs), dtype=self.dtype).reshape(
                    (len(uniq), *self.shape[1:]))
        return rows[inverse]

    def close(self) -> None:
        h5 = getattr(self, "_h5", None)
        if h5 is not None:
            h5.close()
        if getattr(self, "_fileobj", None) is not None:
            self._fileobj.close()


_OPEN: "OrderedDict[tuple, ImageArray]" = OrderedDict()
_OPEN_LOCK = threading.Lock()
_MAX_OPEN = 8


def open_array(uri: str, dataset: str | None = None) -> ImageArray:
    """The array at ``uri`` (an HDF5 file's ``dataset``), opened once per process.

    A local file is reopened when its size or modification time changed since."""
    stamp: tuple = ()
    if "://" not in uri or uri.startswith("file://"):
        try:
            st = os.stat(uri[len("file://"):] if uri.startswith("file://") else uri)
            stamp = (st.st_size, st.st_mtime_ns)
        except OSError:
            pass
    key = (uri, dataset or None, stamp)
    with _OPEN_LOCK:
        arr = _OPEN.get(key)
        if arr is not None:
            _OPEN.move_to_end(key)
            return arr
    arr = ImageArray(uri, dataset or None)
    with _OPEN_LOCK:
        _OPEN[key] = arr
        while len(_OPEN) > _MAX_OPEN:
            _OPEN.popitem(last=False)[1].close()
    return arr


def read_array_images(refs: Sequence[str], on_error: str = "raise") -> list:
    """The images of array references (:func:`array_ref`) as arrays, in the order given;
    one read per array. With ``on_error="return"`` an entry that cannot be read is its
    exception instead."""
    refs = list(refs)
    out: list = [None] * len(refs)
    groups: dict[tuple[str, str | None], list[tuple[int, int]]] = {}
    for i, ref in enumerate(refs):
        parsed = parse_array_ref(ref)
        if parsed is None:
            out[i] = DatasetError(f"{ref!r} is not an array reference (<array>#<index>)")
            continue
        base, key, index = parsed
        groups.setdefault((base, key), []).append((i, index))
    for (base, key), members in groups.items():
        try:
            arr = open_array(base, key)
        except (DatasetError, OSError, ValueError) as e:
            for i, _ in members:
                out[i] = e
            continue
        try:
            rows = arr.read([j for _, j in members])
        except DatasetError:  # some index out of range: name exactly those references
            for i, j in members:
                try:
                    out[i] = arr.read([j])[0]
                except DatasetError as e1:
                    out[i] = e1
            continue
        except (OSError, ValueError) as e:
            for i, _ in members:
                out[i] = e
            continue
        for (i, _), row in zip(members, rows):
            out[i] = row
    if on_error != "return":
        failed = [(r, o) for r, o in zip(refs, out) if isinstance(o, BaseException)]
        if failed:
            raise DatasetError(f"{len(failed)} array image(s) could not be read: "
                               f"{format_items([r for r, _ in failed])} (first error: "
                               f"{failed[0][1]})")
    return out


class RowSelection:
    """Rows ``rows`` of an array-like (a numpy array, an h5py dataset), in that order, read
    only when sliced: what :func:`write_npy` streams from (e.g. 1,000 of NSD's 73,000
    images without loading the brick)."""

    def __init__(self, source, rows: Sequence[int]):
        self.source = source
        self.rows = np.asarray(rows, dtype=np.int64)
        self.shape = (len(self.rows), *tuple(source.shape[1:]))
        self.dtype = np.dtype(source.dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, sl: slice) -> np.ndarray:
        idx = self.rows[sl]
        uniq, inverse = np.unique(idx, return_inverse=True)
        return np.asarray(self.source[uniq])[inverse]


def write_npy(fs, path: str, source, chunk_bytes: int = 64 << 20, progress: bool = False) -> int:
    """Write ``source`` (an array, or anything with ``shape``, ``dtype`` and row slicing)
    as a C-order ``.npy`` file, ``chunk_bytes`` at a time; returns the bytes written."""
    from ..core.progress import Progress

    shape, dtype = tuple(int(s) for s in source.shape), np.dtype(source.dtype)
    row = max(1, int(np.prod(shape[1:])) * dtype.itemsize)
    step = max(1, chunk_bytes // row)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": shape}
    written = 0
    with fs.open(path, "wb") as f, Progress(shape[0], f"writing {os.path.basename(path)}",
                                            unit="img", enabled=progress) as bar:
        np.lib.format.write_array_header_2_0(f, header)
        for start in range(0, shape[0], step):
            block = np.ascontiguousarray(np.asarray(source[start:start + step]), dtype=dtype)
            if block.shape[1:] != shape[1:]:
                raise DatasetError(f"image rows {start}..: shape {block.shape[1:]}, "
                                   f"expected {shape[1:]}")
            f.write(block.tobytes())
            written += block.nbytes
            bar.update(block.shape[0])
    return written


def identity_bytes(arr: ImageArray, spec: dict) -> bytes:
    """Canonical bytes identifying an array-stored image set for fingerprints."""
    return json.dumps({"path": str(spec.get("path")), **arr.identity()},
                      sort_keys=True).encode("utf-8")
