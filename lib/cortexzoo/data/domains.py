"""Multi-domain stimulus sets from any image set with categories (``cortexzoo data domains``).

Paper 001 decodes categories from images of 13 domains (photos, silhouettes, outlines,
line drawings, mosaics, paintings, ...). Labs without those images can make a set of the
same kind from their own categorized photos: every source image (optionally several
jittered crops of it, ``variants``) is rendered in each domain of
:data:`~cortexzoo.data.domain_filters.FILTERS`, and each rendered image's **recipe** is
recorded in ``stimuli.parquet`` (column ``recipe``, JSON): the source image, the crop
box and flip, the output size, the filter, its parameters, the seed of its random
generator and the code version. :func:`render` turns a source image and a recipe into
exactly the stored pixels again.

Sources: a dataset folder with a ``category`` column (when it has a ``domain`` column,
only its rows of ``source_domain`` are used), or a folder of images one sub-folder per
category (``SRC/<category>/<image>``, as torchvision's ImageFolder).

Output: a dataset folder marked ``"stimulus_set": true`` (no recordings; decode it
model-only, or add responses recorded to these images), with columns ``stimulus_id``,
``image``, ``category``, ``domain``, ``source_id``, ``variant``, ``source_image``,
``recipe`` and, for the mask-based domains, ``mask_fraction``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..core.progress import Progress
from ..core.uri import normalize_uri, url_to_fs
from .domain_filters import DEFAULT_PARAMS, FILTERS, MASK_DOMAINS, apply_filter, foreground_mask
from .errors import DatasetError, format_items
from .folder import DATASET_JSON, IMAGES_DIR, STIMULI, join
from .images import decode_image, encode_image, read_images

__all__ = ["DOMAINS", "DOMAINS_VERSION", "make_domain_set", "read_sources", "render",
           "source_geometry", "Source"]

log = logging.getLogger("cortexzoo")

#: Part of every recipe: bump when a filter's output changes for the same recipe.
DOMAINS_VERSION = 1
#: Every domain, the unmodified photo first.
DOMAINS = tuple(FILTERS)
_PHOTO = "photo"


@dataclass(frozen=True)
class Source:
    source_id: str
    uri: str
    category: str


# ----------------------------------------------------------------------- sources
def _image_extensions() -> set[str]:
    return {e.lower() for e in Image.registered_extensions()}


def read_sources(src: str, source_domain: str = _PHOTO) -> tuple[list[Source], str]:
    """The categorized source images of ``src`` and a name for the set (see module doc)."""
    src = normalize_uri(src)
    fs, root = url_to_fs(src)
    if not fs.exists(root):
        raise DatasetError(f"source {src!r} does not exist")
    if fs.exists(join(root, STIMULI)) and fs.exists(join(root, DATASET_JSON)):
        from .dataset import load_dataset

        ds = load_dataset(src)
        st = ds.stimuli
        if "category" not in st.columns:
            raise DatasetError(f"source dataset {src!r} has no 'category' column in {STIMULI} "
                               f"(columns: {format_items(list(st.columns))})")
        rows = np.arange(len(st))
        if "domain" in st.columns:
            rows = np.flatnonzero(st["domain"].astype(str).to_numpy() == source_domain)
            if rows.size == 0:
                raise DatasetError(f"source dataset {src!r} has no stimuli of domain "
                                   f"{source_domain!r}; domains: "
                                   f"{format_items(sorted(st['domain'].astype(str).unique()))}")
        out = [Source(str(st["stimulus_id"].iloc[i]), ds.image_uri(int(i)), str(st["category"].iloc[i]))
               for i in rows]
        return out, ds.name or posixpath.basename(root)
    exts = _image_extensions()
    cats = sorted(p for p in fs.ls(root, detail=False) if fs.isdir(p))
    out: list[Source] = []
    for cdir in cats:
        cat = posixpath.basename(cdir.rstrip("/"))
        files = sorted(f for f in fs.find(cdir) if posixpath.splitext(f)[1].lower() in exts)
        for f in files:
            rel = posixpath.relpath(f, root.rstrip("/"))
            sid = posixpath.splitext(rel)[0].replace("/", "-")
            uri = f if "://" not in src else src.split("://")[0] + "://" + f
            out.append(Source(sid, uri, cat))
    if not out:
        raise DatasetError(f"source {src!r} is neither a dataset folder (dataset.json + "
                           f"{STIMULI} with a 'category' column) nor a folder of images with "
                           "one sub-folder per category")
    return out, posixpath.basename(root.rstrip("/"))


# ------------------------------------------------------------------------ recipes
def _seed(*parts: Any) -> int:
    h = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:4], "little")


def source_geometry(width: int, height: int, variant: int, seed: int,
                    scale: tuple[float, float] = (0.7, 1.0)) -> tuple[list[int], bool]:
    """Crop box ``[left, top, right, bottom]`` (a square) and flip of one variant of a source
    image: variant 0 is the centred square of the shorter side, unflipped; later variants
    take a square of ``scale`` (random in the range) of the shorter side at a random
    position, flipped with probability 1/2 (seeded)."""
    side = min(width, height)
    if variant == 0:
        left, top = (width - side) // 2, (height - side) // 2
        return [left, top, left + side, top + side], False
    rng = np.random.default_rng(seed)
    s = max(1, int(round(side * rng.uniform(*scale))))
    left = int(rng.integers(0, width - s + 1))
    top = int(rng.integers(0, height - s + 1))
    return [left, top, left + s, top + s], bool(rng.random() < 0.5)


def _prepare(img: Image.Image, crop: Sequence[int], flip: bool, size: int) -> np.ndarray:
    im = img.convert("RGB").crop(tuple(int(c) for c in crop))
    if flip:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    im = im.resize((size, size), Image.BICUBIC)
    return np.asarray(im, dtype=np.float64) / 255.0


def render(source: Image.Image, recipe: dict | str, mask: np.ndarray | None = None) -> np.ndarray:
    """The image a recipe describes (uint8 RGB [size, size, 3]) from its source image."""
    r = json.loads(recipe) if isinstance(recipe, str) else recipe
    if int(r.get("version", -1)) != DOMAINS_VERSION:
        log.warning("recipe version %s differs from this code's %d: the image may differ",
                    r.get("version"), DOMAINS_VERSION)
    img = _prepare(source, r["crop"], r["flip"], int(r["size"]))
    return apply_filter(r["filter"], img, r["params"], int(r["seed"]), mask=mask)


def _recipes_of(src: Source, width: int, height: int, domains: Sequence[str],
                source_domain: str, size: int, variants: int, seed: int,
                params: dict[str, dict]) -> list[tuple[int, str, dict]]:
    out = []
    for v in range(variants):
        crop, flip = source_geometry(width, height, v, _seed(seed, src.source_id, v, "crop"))
        for d in domains:
            out.append((v, source_domain if d == _PHOTO else d, {
                "version": DOMAINS_VERSION, "source": src.uri, "crop": crop, "flip": flip,
                "size": size, "filter": d, "params": params[d],
                "seed": _seed(seed, src.source_id, v, d)}))
    return out


def _render_source(src: Source, blob: bytes, domains: Sequence[str], source_domain: str,
                   size: int, variants: int, seed: int, params: dict[str, dict]) -> list[dict]:
    """Every (variant, domain) image of one source: table rows with PNG bytes."""
    img = decode_image(blob, src.uri)
    rows = []
    masks: dict[int, np.ndarray] = {}
    for v, domain, rec in _recipes_of(src, img.width, img.height, domains, source_domain, size,
                                      variants, seed, params):
        mask = None
        if rec["filter"] in MASK_DOMAINS:
            if v not in masks:
                masks[v] = foreground_mask(_prepare(img, rec["crop"], rec["flip"], size))
            mask = masks[v]
        pixels = render(img, rec, mask=mask)
        sid = f"{src.source_id}-v{v}-{domain}"
        rows.append({"stimulus_id": sid, "image": f"{IMAGES_DIR}/{domain}/{sid}.png",
                     "category": src.category, "domain": domain, "source_id": src.source_id,
                     "variant": v, "source_image": src.uri,
                     "recipe": json.dumps(rec, sort_keys=True),
                     "mask_fraction": float(mask.mean()) if mask is not None else float("nan"),
                     "_png": encode_image(pixels, "PNG")})
    return rows


# ---------------------------------------------------------------------- the maker
def make_domain_set(src: str, out: str, domains: Sequence[str] | None = None, size: int = 224,
                    variants: int = 1, seed: int = 0, source_domain: str = _PHOTO,
                    params: dict[str, dict] | None = None, name: str | None = None,
                    overwrite: bool = False, workers: int = 1, progress: bool = True) -> str:
    """Render ``src``'s categorized images in every domain and write a stimulus set at ``out``.

    Parameters
    ----------
    domains : domain names (default all of :data:`DOMAINS`); ``photo`` (the source as it
        is, cropped and resized) is always included, labelled ``source_domain``.
    size : side of the square output images, in pixels.
    variants : rendered crops per source image (variant 0 the centred square; the others
        random squares of 70-100% of the shorter side, half of them mirrored).
    seed : seeds the crops and the random filters (recorded per image).
    params : per-domain parameter overrides, e.g. ``{"noise": {"sigma": 0.1}}``.
    workers : processes rendering sources in parallel.

    Returns the output folder's URI.
    """
    domains = list(DOMAINS if domains is None else domains)
    unknown = [d for d in domains if d not in FILTERS]
    if unknown:
        raise DatasetError(f"unknown domain(s) {format_items(unknown)}; known: {format_items(list(FILTERS))}")
    if _PHOTO not in domains:
        domains.insert(0, _PHOTO)
    domains = list(dict.fromkeys(domains))
    if source_domain in FILTERS and source_domain != _PHOTO:
        raise DatasetError(f"source_domain {source_domain!r} is the name of a filter domain; "
                           "choose another label for the unmodified images")
    if not isinstance(size, int) or size < 16:
        raise DatasetError(f"size must be an integer >= 16 pixels, got {size!r}")
    if not isinstance(variants, int) or variants < 1:
        raise DatasetError(f"variants must be an integer >= 1, got {variants!r}")
    merged = {d: dict(DEFAULT_PARAMS[d]) for d in domains}
    for d, over in (params or {}).items():
        if d not in merged:
            raise DatasetError(f"parameters given for domain {d!r}, which is not made "
                               f"(domains: {format_items(domains)})")
        bad = [k for k in over if k not in DEFAULT_PARAMS[d]]
        if bad:
            raise DatasetError(f"unknown parameter(s) {format_items(bad)} of domain {d!r}; "
                               f"known: {format_items(sorted(DEFAULT_PARAMS[d]))}")
        merged[d].update(over)
    sources, src_name = read_sources(src, source_domain)
    out = normalize_uri(out)
    fs, root = url_to_fs(out)
    if fs.exists(join(root, DATASET_JSON)) and not overwrite:
        raise DatasetError(f"a dataset already exists at {out!r}; pass overwrite=True (--overwrite)")
    n_img = len(sources) * variants * len(domains)
    log.info("data domains: %d source images x %d variant(s) x %d domains = %d images -> %s",
             len(sources), variants, len(domains), n_img, out)
    args = (domains, source_domain, size, variants, seed, merged)
    rows: list[dict] = []
    chunk = 16
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        with Progress(len(sources), "rendering domains", unit="source", enabled=progress) as bar:
            for c0 in range(0, len(sources), chunk):
                batch = sources[c0:c0 + chunk]
                blobs = read_images([s.uri for s in batch])
                if pool is None:
                    done = [_render_source(s, b, *args) for s, b in zip(batch, blobs)]
                else:
                    done = list(pool.map(_render_source, batch, blobs, *[[a] * len(batch) for a in args]))
                files = {}
                for got in done:
                    for r in got:
                        files[join(root, r["image"])] = r.pop("_png")
                        rows.append(r)
                for parent in sorted({posixpath.dirname(p) for p in files}):
                    fs.makedirs(parent, exist_ok=True)
                fs.pipe(files)
                bar.update(len(batch))
    finally:
        if pool is not None:
            pool.shutdown()
    stimuli = pd.DataFrame(rows)
    counts = stimuli.groupby(["domain", "category"]).size().unstack(fill_value=0)
    meta = {"name": name or f"{src_name}-domains",
            "description": f"{len(domains)} image domains rendered from the categorized images of "
                           f"{src} by `cortexzoo data domains` (recipes in stimuli.parquet)",
            "source": src, "license": "as the source images",
            "stimulus_set": True, "domains": [source_domain if d == _PHOTO else d for d in domains],
            "source_domain": source_domain, "size": size, "variants": variants, "seed": seed,
            "domains_version": DOMAINS_VERSION, "categories": list(map(str, counts.columns))}
    from .dataset import write_dataset

    empty = pd.DataFrame({"neuroid_id": pd.Series([], dtype=str), "subject": pd.Series([], dtype=str),
                          "region": pd.Series([], dtype=str)})
    return write_dataset(out, meta=meta, stimuli=stimuli, neuroids=empty, responses=None,
                         overwrite=overwrite)
