"""Reading and decoding stimulus images from local paths or object storage (fsspec), and
from images stored as one array (array references, ``arrays.py``), read by index."""
from __future__ import annotations

import io
from collections.abc import Sequence

import fsspec
import numpy as np
from PIL import Image, UnidentifiedImageError

from .arrays import array_to_image, is_array_ref, read_array_images
from .errors import DatasetError, ImageDecodeError, format_items

__all__ = ["decode_crop_batch", "decode_image", "encode_image", "open_images", "read_and_crop",
           "read_images", "resize_center_crop"]


def decode_image(data: bytes, name: str) -> Image.Image:
    """Decode image bytes into an RGB PIL image.

    Grayscale, palette and alpha images are converted to RGB (alpha is dropped);
    16-bit and float images are rescaled to 8 bits by their own maximum.

    Raises
    ------
    ImageDecodeError
        When the bytes are empty, truncated or not a known image format; the message names `name`.
    """
    if not data:
        raise ImageDecodeError(f"image {name!r} is empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # decoding is lazy: force it so that truncation is caught here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(f"image {name!r} cannot be decoded ({len(data)} bytes): {e}") from e
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # PIL's convert("RGB") clips these modes to 255 instead of rescaling
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() if arr.size and arr.max() > 0 else 1.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def encode_image(image: np.ndarray | Image.Image, fmt: str = "PNG") -> bytes:
    """Encode an array (uint8 [H, W], [H, W, 3|4], or float in [0, 1]) or a PIL image."""
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating):
                # floats are taken as intensities in [0, 1]
                arr = np.clip(np.nan_to_num(arr) * 255.0 + 0.5, 0, 255).astype(np.uint8)
            else:
                arr = np.clip(arr, 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise DatasetError(f"cannot encode an image array of shape {image.shape}; "
                               "expected [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]")
        image = Image.fromarray(arr)
    if not isinstance(image, Image.Image):
        raise DatasetError(f"cannot encode an image of type {type(image).__name__}")
    if fmt.upper() in ("JPEG", "JPG") and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def read_images(uris: Sequence[str], on_error: str = "raise") -> list:
    """Read many files, batched per filesystem (one concurrent request batch on s3).

    Returns the bytes in the order of `uris`. Missing or unreadable files raise a
    DatasetError that names them (at most 10, then a count); with ``on_error="return"``
    their entries are the exceptions instead. An array reference (an image stored in an
    array, see ``arrays.py``) gives that image encoded as PNG.
    """
    uris = list(uris)
    groups: dict[int, tuple[fsspec.AbstractFileSystem, list[int], list[str]]] = {}
    out: list = [None] * len(uris)
    refs = [i for i, u in enumerate(uris) if is_array_ref(u)]
    if refs:
        for i, arr in zip(refs, read_array_images([uris[i] for i in refs], on_error="return")):
            try:
                out[i] = arr if isinstance(arr, BaseException) else \
                    encode_image(np.asarray(array_to_image(arr, uris[i])), "PNG")
            except DatasetError as e:
                out[i] = e
    for i, uri in enumerate(uris):
        if out[i] is not None:
            continue
        fs, path = fsspec.core.url_to_fs(uri)
        _, idx, paths = groups.setdefault(id(fs), (fs, [], []))
        idx.append(i)
        paths.append(path)
    failed: list[str] = []
    first_error: BaseException | None = None
    for i in refs:
        if isinstance(out[i], BaseException):
            failed.append(uris[i])
            first_error = first_error or out[i]
    for fs, idx, paths in groups.values():
        # cat_ranges keeps order and never expands glob characters in file names
        got = fs.cat_ranges(paths, None, None, on_error="return")
        for i, g in zip(idx, got):
            if isinstance(g, BaseException):
                failed.append(uris[i])
                first_error = first_error or g
                out[i] = g
            else:
                out[i] = bytes(g)
    if failed and on_error != "return":
        raise DatasetError(f"{len(failed)} image file(s) could not be read: {format_items(failed)} "
                           f"(first error: {type(first_error).__name__}: {first_error})")
    return out


_PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def resize_center_crop(img: Image.Image, resize_size: int, input_size: int,
                       interpolation: str = "bilinear") -> np.ndarray:
    """The ImageNet evaluation geometry on a PIL image, in 8 bits, without torch.

    Shorter side resized to ``resize_size`` (PIL's antialiased filters; the long side
    truncated as torchvision does), then a centered ``input_size`` crop.
    Returns uint8 [input_size, input_size, 3].
    """
    if interpolation not in _PIL_FILTERS:
        raise ValueError(f"interpolation {interpolation!r} not in {sorted(_PIL_FILTERS)}")
    if img.mode != "RGB":
        img = img.convert("RGB")
    w, h = img.size
    short, long = (h, w) if h <= w else (w, h)
    if short != resize_size:
        new_long = int(resize_size * long / short)
        size = (new_long, resize_size) if h <= w else (resize_size, new_long)  # PIL: (w, h)
        img = img.resize(size, _PIL_FILTERS[interpolation])
        w, h = size
    s = int(input_size)
    if w < s or h < s:
        raise ValueError(f"a {s}px crop does not fit a {w}x{h} image (resize_size {resize_size})")
    top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
    return np.array(img.crop((left, top, left + s, top + s)), dtype=np.uint8)


def resize_whole(img: Image.Image, input_size: int, interpolation: str = "bilinear") -> np.ndarray:
    """The whole image resized to ``input_size`` x ``input_size`` (PIL's antialiased
    filters), as Brain-Score presents stimuli: nothing is cropped; a non-square image is
    stretched to the square input. Returns uint8 [input_size, input_size, 3]."""
    if interpolation not in _PIL_FILTERS:
        raise ValueError(f"interpolation {interpolation!r} not in {sorted(_PIL_FILTERS)}")
    if img.mode != "RGB":
        img = img.convert("RGB")
    s = int(input_size)
    if img.size != (s, s):
        img = img.resize((s, s), _PIL_FILTERS[interpolation])
    return np.array(img, dtype=np.uint8)


def present(img: Image.Image, geometry: dict) -> np.ndarray:
    """One decoded image as the model sees it, in 8 bits: ``geometry["mode"]`` "whole"
    (:func:`resize_whole`) or "crop" (:func:`resize_center_crop`, the model's own
    evaluation transform)."""
    s = int(geometry["input_size"])
    interp = geometry.get("interpolation", "bilinear")
    mode = geometry.get("mode", "crop")
    if mode == "whole":
        return resize_whole(img, s, interp)
    if mode == "crop":
        return resize_center_crop(img, int(geometry["resize_size"]), s, interp)
    raise ValueError(f"stimulus mode {mode!r} is not 'whole' or 'crop'")


def open_images(uris: Sequence[str]) -> list:
    """Read and decode images (files or array references) as RGB PIL images, in the order
    of ``uris``; an image that cannot be read or decoded is its exception instead. Array
    references are read straight from the array (one read per array, no encoding)."""
    uris = list(uris)
    out: list = [None] * len(uris)
    refs = [i for i, u in enumerate(uris) if is_array_ref(u)]
    files = [i for i, u in enumerate(uris) if not is_array_ref(u)]
    if refs:
        for i, arr in zip(refs, read_array_images([uris[i] for i in refs], on_error="return")):
            try:
                out[i] = arr if isinstance(arr, BaseException) else array_to_image(arr, uris[i])
            except Exception as e:  # noqa: BLE001 - reported per image
                out[i] = e
    if files:
        blobs = read_images([uris[i] for i in files], on_error="return")
        for i, blob in zip(files, blobs):
            try:
                out[i] = blob if isinstance(blob, BaseException) else decode_image(blob, uris[i])
            except Exception as e:  # noqa: BLE001 - reported per image
                out[i] = e
    return out


def read_and_crop(uris: Sequence[str], geometry: dict,
                  names: Sequence[str] | None = None) -> np.ndarray:
    """Read, decode and present images (:func:`present`): uint8 [n, S, S, 3] in the order
    of ``uris`` (image files, or array references read by index from their array).

    ``geometry`` holds ``mode``, ``resize_size``, ``input_size`` and ``interpolation``; a
    plain dict so that decode workers never import torch or the model zoo. ``names``
    (stimulus ids) are named in the error when an image cannot be read or decoded.
    """
    uris = list(uris)
    names = list(names) if names is not None else uris
    s = int(geometry["input_size"])
    out = np.empty((len(uris), s, s, 3), dtype=np.uint8)
    bad = []
    for i, (img, uri) in enumerate(zip(open_images(uris), uris)):
        try:
            if isinstance(img, BaseException):
                raise img
            out[i] = present(img, geometry)
        except (DatasetError, OSError, ValueError) as e:
            bad.append(f"stimulus {names[i]} ({uri}): {e}")
    if bad:
        raise DatasetError(f"{len(bad)} stimulus image(s) cannot be used: " + "; ".join(bad[:10])
                           + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
                           + " (`cortexzoo data validate` lists every bad image)")
    return out


def decode_crop_batch(batch: dict, geometry: dict) -> dict:
    """Ray Data task: ``{"idx", "uri"[, "sid"]}`` -> ``{"idx", "pixels"}`` (uint8 [b, S, S, 3])."""
    names = list(batch["sid"]) if "sid" in batch else None
    return {"idx": np.asarray(batch["idx"]),
            "pixels": read_and_crop(list(batch["uri"]), geometry, names)}
