"""Reading a volume (an ROI mask) from a NIfTI-1 file, or a ``.npy`` array.

NSD's ROI masks (``nsddata/ppdata/subjNN/func1pt8mm/roi/*.nii.gz``) are NIfTI-1 files.
nibabel reads them when it is installed; otherwise this module parses the NIfTI-1
single-file format itself (the 348-byte header of the NIfTI-1 standard,
https://nifti.nimh.nih.gov/nifti-1: ``sizeof_hdr`` 348 at byte 0, ``dim[8]`` int16 at 40,
``datatype`` int16 at 70, ``vox_offset`` float32 at 108, ``scl_slope``/``scl_inter`` at
112/116, magic ``"n+1"`` at 344; voxels in Fortran order from ``vox_offset``), gzip or not.
The volume comes back as ``[X, Y, Z]`` (the order nibabel's ``get_fdata()`` gives).
"""
from __future__ import annotations

import gzip
import io
import struct

import numpy as np

from .errors import DatasetError
from .sources import open_source

__all__ = ["read_volume"]

_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4",
           1024: "i8", 1280: "u8"}


def read_volume(uri: str) -> np.ndarray:
    """The 3-D volume of a NIfTI-1 file (``.nii``/``.nii.gz``) or a ``.npy`` array, ``[X, Y, Z]``
    (a 4-D file with one volume is squeezed)."""
    with open_source(uri, "ROI mask") as f:
        raw = f.read()
    if uri.lower().endswith(".npy"):
        try:
            vol = np.load(io.BytesIO(raw), allow_pickle=False)
        except ValueError as e:
            raise DatasetError(f"ROI mask {uri!r} is not a .npy array: {e}") from e
    else:
        vol = _parse_nifti(raw, uri)
    vol = np.asarray(vol)
    if vol.ndim == 4 and vol.shape[3] == 1:
        vol = vol[..., 0]
    if vol.ndim != 3:
        raise DatasetError(f"ROI mask {uri!r} has shape {vol.shape}; expected a 3-D volume")
    return vol


def _parse_nifti(raw: bytes, uri: str) -> np.ndarray:
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DatasetError(f"ROI mask {uri!r}: corrupt gzip data: {e}") from e
    try:  # nibabel, where installed, is the reference reader
        import nibabel

        img = nibabel.Nifti1Image.from_bytes(raw)
        return np.asanyarray(img.dataobj)
    except ImportError:
        pass
    except Exception as e:  # noqa: BLE001 - nibabel's errors are many; all mean "not NIfTI-1"
        raise DatasetError(f"ROI mask {uri!r} is not a NIfTI-1 file: {e}") from e
    if len(raw) < 348:
        raise DatasetError(f"ROI mask {uri!r} is not a NIfTI-1 file ({len(raw)} bytes)")
    end = next((e for e in ("<", ">") if struct.unpack(e + "i", raw[:4])[0] == 348), None)
    if end is None or raw[344:347] != b"n+1":
        raise DatasetError(f"ROI mask {uri!r} is not a NIfTI-1 file (.nii/.nii.gz; NIfTI-2 and "
                           ".hdr/.img pairs need nibabel, which is not installed)")
    dim = struct.unpack(end + "8h", raw[40:56])
    datatype = struct.unpack(end + "h", raw[70:72])[0]
    offset = int(struct.unpack(end + "f", raw[108:112])[0])
    slope, inter = struct.unpack(end + "2f", raw[112:120])
    if datatype not in _DTYPES or not 1 <= dim[0] <= 7:
        raise DatasetError(f"ROI mask {uri!r}: unsupported NIfTI datatype {datatype} or dim {dim}")
    shape = tuple(int(d) for d in dim[1:dim[0] + 1])
    dtype = np.dtype(end + _DTYPES[datatype])
    n = int(np.prod(shape)) * dtype.itemsize
    if len(raw) < offset + n:
        raise DatasetError(f"ROI mask {uri!r}: truncated ({len(raw)} bytes, need {offset + n})")
    vol = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=offset)
    vol = vol.reshape(shape, order="F")
    if slope not in (0.0, 1.0) or inter != 0.0:
        vol = vol * (slope or 1.0) + inter
    return vol
