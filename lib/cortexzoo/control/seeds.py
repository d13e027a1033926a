"""Seed images: read, decoded and presented on an encoder's canvas, every failure named."""
from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass

import numpy as np

from ..core.uri import join, normalize_uri, url_to_fs
from ..data.errors import DatasetError
from ..data.images import decode_image, present, read_images

__all__ = ["Seed", "canvas_geometry", "read_seeds"]

_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


@dataclass
class Seed:
    seed_id: str
    uri: str
    pixels: np.ndarray  # uint8 [R, R, 3] on the canvas

    @property
    def digest(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.pixels).tobytes()).hexdigest()[:16]


def canvas_geometry(preprocessing: dict) -> dict:
    """How an image becomes an encoder's canvas (what :class:`~.site_model.SiteModel`
    takes): ``whole``: the whole image resized to the input size; ``crop``: the shorter
    side resized to the model's resize size and the centre square of that size kept (the
    model then sees its centre crop, as the scan would)."""
    mode = preprocessing["mode"]
    side = int(preprocessing["resize_size"] if mode == "crop" else preprocessing["input_size"])
    return {"mode": mode, "input_size": side, "resize_size": side,
            "interpolation": preprocessing.get("interpolation", "bilinear")}


def _stem(uri: str) -> str:
    return posixpath.splitext(posixpath.basename(uri.rstrip("/")))[0]


def _list_seeds(entries: list[str]) -> list[tuple[str, str]]:
    """(seed id, image URI) for a dataset folder, a folder of images, or image files."""
    if len(entries) == 1:
        uri = normalize_uri(entries[0])
        fs, path = url_to_fs(uri)
        if fs.isdir(path):
            if fs.exists(posixpath.join(path, "dataset.json")):
                from ..data import load_dataset

                ds = load_dataset(uri, validate=False)
                ids = ds.stimuli["stimulus_id"].astype(str).tolist()
                return list(zip(ids, ds.image_uris()))
            files = sorted(p for p in fs.ls(path, detail=False)
                           if p.lower().endswith(_EXTS))
            if not files:
                raise DatasetError(f"seed folder {uri} holds no image files ({', '.join(_EXTS)})")
            return [(_stem(p), join(uri, posixpath.basename(p))) for p in files]
    return [(_stem(e), normalize_uri(e)) for e in entries]


def read_seeds(seeds: "str | list[str]", preprocessing: dict, n_seeds: int | None = None,
               seed_ids: list[str] | None = None) -> list[Seed]:
    """The seed images named by ``seeds``, on the canvas of an encoder with
    ``preprocessing``.

    ``seeds``: a dataset folder (its stimuli, by ``stimulus_id``), a folder of image files
    (ids: file names without extension), or comma-separated image paths or URIs.
    ``seed_ids`` keeps those ids (in that order), ``n_seeds`` the first N.

    Raises
    ------
    DatasetError (ValueError)
        Nothing named, unknown ids, repeated ids, or seed images that cannot be read or
        decoded (each one named).
    """
    entries = [s.strip() for s in seeds.split(",")] if isinstance(seeds, str) else list(seeds or [])
    entries = [e for e in entries if e]
    if not entries:
        raise DatasetError("no seed images given (--seeds: a dataset folder, a folder of images "
                           "or comma-separated image files)")
    listed = _list_seeds(entries)
    if seed_ids:
        have = dict(listed)
        missing = [s for s in seed_ids if s not in have]
        if missing:
            raise DatasetError(f"seed id(s) {missing} not among the seeds ({len(listed)}: "
                               f"{[i for i, _ in listed[:10]]} ...)")
        listed = [(s, have[s]) for s in seed_ids]
    if n_seeds is not None:
        listed = listed[:int(n_seeds)]
    ids = [i for i, _ in listed]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise DatasetError(f"seed ids {dup} repeat (two images with one name)")
    geo = canvas_geometry(preprocessing)
    blobs = read_images([u for _, u in listed], on_error="return")
    out, bad = [], []
    for (sid, uri), blob in zip(listed, blobs):
        try:
            if isinstance(blob, BaseException):
                raise blob
            out.append(Seed(sid, uri, present(decode_image(blob, uri), geo)))
        except (DatasetError, OSError, ValueError) as e:
            bad.append(f"{sid} ({uri}): {e}")
    if bad:
        raise DatasetError(f"{len(bad)} seed image(s) cannot be read: " + "; ".join(bad[:10])
                           + (f"; and {len(bad) - 10} more" if len(bad) > 10 else ""))
    return out
