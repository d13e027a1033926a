"""Seeded stimulus splits and streamed, cached image tensors for training.

Splits
------
:func:`make_splits` ranks stimuli by ``sha256(f"{seed}:{stimulus_id}")`` and takes the
first ``round(test_fraction * n)`` as test, the next ``round(val_fraction * n)`` as
validation and the rest as training. The assignment depends only on the set of ids and
the seed (not on row order), the three parts never overlap, and the split is stored
with every run (``Splits.to_dict``) so that every trial of a campaign uses the same one.

Images
------
:func:`load_image_tensor` streams the images of a dataset folder (local or ``s3://``)
in chunks, resizes/crops them with the model's preprocessing geometry and keeps them as
``uint8 [n, 3, S, S]`` (4x smaller than float32); normalization (mean/std) is applied per
batch on the training device by :class:`Normalizer`. Decoded tensors are cached in
memory and in a local disk cache (``$CORTEXZOO_TRAIN_CACHE`` or the temp folder), so
trials on the same node decode each image set once.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

__all__ = [
    "SplitError",
    "Splits",
    "make_splits",
    "load_image_tensor",
    "Normalizer",
    "PreparedData",
    "prepare_data",
    "target_columns",
    "split_reliability",
    "clear_memory_cache",
]


class SplitError(ValueError):
    """Bad split request, or a stored split that does not fit the dataset."""


@dataclass
class Splits:
    """Train/validation/test stimulus ids (disjoint), with how they were made."""

    train: list[str]
    val: list[str]
    test: list[str]
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    method: str = "sha256-rank"

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise SplitError naming ids that occur in more than one part (or twice)."""
        seen: dict[str, str] = {}
        clashes = []
        for part in ("train", "val", "test"):
            for sid in getattr(self, part):
                if sid in seen:
                    clashes.append(f"{sid} ({seen[sid]} and {part})")
                seen[sid] = part
        if clashes:
            raise SplitError(f"splits overlap: {clashes[:10]}"
                             + (f" and {len(clashes) - 10} more" if len(clashes) > 10 else ""))
        if not self.train or not self.val or not self.test:
            raise SplitError(f"every split needs at least one stimulus; got train={len(self.train)}, "
                             f"val={len(self.val)}, test={len(self.test)}")

    def indices(self, stimulus_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Row positions of each part in a dataset with these stimulus ids (in row order)."""
        pos = {str(s): i for i, s in enumerate(stimulus_ids)}
        out = {}
        for part in ("train", "val", "test"):
            ids = getattr(self, part)
            missing = [s for s in ids if s not in pos]
            if missing:
                raise SplitError(f"the stored {part} split names {len(missing)} stimulus id(s) "
                                 f"absent from the dataset: {missing[:10]}")
            out[part] = np.sort(np.array([pos[s] for s in ids], dtype=np.int64))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test),
                "seed": self.seed, "val_fraction": self.val_fraction,
                "test_fraction": self.test_fraction, "method": self.method}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Splits":
        try:
            return cls(**d)
        except TypeError as e:
            raise SplitError(f"not a stored split: {e}") from e

    def digest(self) -> str:
        """Short hash identifying this split."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


def _rank_key(seed: int, sid: str) -> bytes:
    return hashlib.sha256(f"{int(seed)}:{sid}".encode("utf-8")).digest()


def make_splits(stimulus_ids: Sequence[str], val_fraction: float = 0.1,
                test_fraction: float = 0.1, seed: int = 0) -> Splits:
    """Deterministic train/val/test split of stimulus ids by seeded hash rank.

    Raises
    ------
    SplitError
        Duplicate ids (named), fractions outside (0, 1), or too few stimuli for three
        non-empty parts.
    """
    ids = [str(s) for s in stimulus_ids]
    if len(set(ids)) != len(ids):
        seen, dup = set(), []
        for s in ids:
            if s in seen:
                dup.append(s)
            seen.add(s)
        raise SplitError(f"duplicate stimulus ids: {sorted(set(dup))[:10]}")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise SplitError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must lie "
                         "in (0, 1) and sum to less than 1")
    n = len(ids)
    n_test = max(1, int(round(test_fraction * n)))
    n_val = max(1, int(round(val_fraction * n)))
    if n - n_test - n_val < 1:
        raise SplitError(f"{n} stimuli are too few for a train/val/test split "
                         f"({n_test} test + {n_val} val)")
    order = sorted(ids, key=lambda s: _rank_key(seed, s))
    test = sorted(order[:n_test])
    val = sorted(order[n_test:n_test + n_val])
    train = sorted(order[n_test + n_val:])
    return Splits(train, val, test, int(seed), float(val_fraction), float(test_fraction))


# --------------------------------------------------------------------------- images
_MEM_CACHE: "OrderedDict[str, np.ndarray]" = OrderedDict()
_MEM_LOCK = threading.Lock()
_MEM_ITEMS = 6
_FINGERPRINTS: dict[tuple[str, int], str] = {}


def clear_memory_cache() -> None:
    with _MEM_LOCK:
        _MEM_CACHE.clear()


def _cache_dir() -> str:
    d = os.environ.get("CORTEXZOO_TRAIN_CACHE") or os.path.join(tempfile.gettempdir(),
                                                                 "cortexzoo-train-cache")
    os.makedirs(d, exist_ok=True)
    return d


def _dataset_key(ds: Any) -> str:
    # The fingerprint lists image sizes (one listing); memoize per loaded dataset object.
    k = (str(ds.uri), id(ds))
    if k not in _FINGERPRINTS:
        _FINGERPRINTS[k] = ds.fingerprint()
    return _FINGERPRINTS[k]


def _geometry(pre: Any) -> tuple:
    return (int(pre.input_size), int(pre.resize_size), str(pre.interpolation))


def load_image_tensor(ds: Any, idx: Sequence[int] | np.ndarray, preprocess: Any,
                      chunk: int = 128, disk_cache: bool = True) -> np.ndarray:
    """Images of stimuli `idx` resized/cropped by `preprocess`, as uint8 [n, 3, S, S].

    Streams ``chunk`` images at a time from the dataset folder; caches the result in
    memory and (``disk_cache``) in a local file keyed by the dataset fingerprint, the
    stimulus positions and the preprocessing geometry.
    """
    from cortexzoo.zoo import PreprocessConfig

    idx = np.asarray(idx, dtype=np.int64).ravel()
    geo = _geometry(preprocess)
    key = hashlib.sha1(json.dumps([_dataset_key(ds), idx.tolist(), geo]).encode()).hexdigest()
    with _MEM_LOCK:
        if key in _MEM_CACHE:
            _MEM_CACHE.move_to_end(key)
            return _MEM_CACHE[key]
    path = os.path.join(_cache_dir(), f"{key}.npy") if disk_cache else None
    arr = None
    if path and os.path.exists(path):
        try:
            arr = np.load(path, allow_pickle=False)
            if arr.shape != (idx.size, 3, geo[0], geo[0]) or arr.dtype != np.uint8:
                arr = None
        except (ValueError, OSError, EOFError):
            arr = None  # a damaged cache file is rebuilt
    if arr is None:
        # mean 0 / std 1: the geometry only; normalization happens per batch on the device
        geo_pre = PreprocessConfig(geo[0], geo[1], (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), geo[2])
        arr = np.empty((idx.size, 3, geo[0], geo[0]), dtype=np.uint8)
        for s in range(0, idx.size, chunk):
            part = idx[s:s + chunk]
            x = geo_pre.apply(ds.read_images(part.tolist()))
            arr[s:s + part.size] = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
        if path:
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as f:
                np.save(f, arr, allow_pickle=False)
            os.replace(tmp, path)  # atomic: parallel trials may race to write it
    with _MEM_LOCK:
        _MEM_CACHE[key] = arr
        while len(_MEM_CACHE) > _MEM_ITEMS:
            _MEM_CACHE.popitem(last=False)
    return arr


class Normalizer:
    """uint8 [b, 3, S, S] -> float32 normalized by the model's mean/std, on a device."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: Any = "cpu"):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0

    def __call__(self, x_u8: torch.Tensor) -> torch.Tensor:
        return (x_u8.to(self.mean.device, non_blocking=True).float() - self.mean) / self.std


# ------------------------------------------------------------------------ prepared data
def target_columns(ds: Any, region: str | None) -> np.ndarray:
    """Neuroid columns used as targets: all, or those of `region`."""
    if region is None:
        return np.arange(ds.n_neuroids)
    return ds.region_index(region)


@dataclass
class PreparedData:
    """Everything a training run reads: uint8 images and mean responses per split."""

    x: dict[str, np.ndarray]          # split -> uint8 [n, 3, S, S]
    y: dict[str, np.ndarray]          # split -> float64 [n, n_neuroids] (NaN allowed)
    splits: Splits
    index: dict[str, np.ndarray]      # split -> dataset row positions
    neuroid_ids: list[str]
    regions: list[str]                # region of each target column
    preprocess: Any
    dataset_name: str = ""
    reliability_by_split: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_outputs(self) -> int:
        return len(self.neuroid_ids)


def split_reliability(ds: Any, splits: Splits, region: str | None = None,
                      n_splits: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    """Split-half reliability (Spearman-Brown) of each target neuroid on each split's
    stimuli, for the ceilings of the score rows; empty with fewer than 2 repetitions."""
    if ds.responses is None or ds.responses.shape[1] < 2:
        return {}
    from cortexzoo.mapping import split_half_reliability

    cols = target_columns(ds, region)
    index = splits.indices(ds.stimuli["stimulus_id"].astype(str).tolist())
    return {part: split_half_reliability(ds.responses[ix][:, :, cols], n_splits=n_splits,
                                         seed=seed)
            for part, ix in index.items() if ix.size >= 3}


def prepare_data(ds: Any, splits: Splits, preprocess: Any, region: str | None = None,
                 reliability_splits: int = 50, seed: int = 0,
                 reliability: dict[str, np.ndarray] | None = None) -> PreparedData:
    """Images and targets of each split (targets = mean over repetitions).

    `reliability` (split -> per-neuroid split-half reliability, see
    :func:`split_reliability`) is computed here unless given; tuning campaigns compute
    it once in the driver and hand it to every trial.
    """
    cols = target_columns(ds, region)
    index = splits.indices(ds.stimuli["stimulus_id"].astype(str).tolist())
    Y = ds.mean_responses()[:, cols]
    x, y = {}, {}
    for part, ix in index.items():
        x[part] = load_image_tensor(ds, ix, preprocess)
        y[part] = Y[ix]
    rel = reliability if reliability is not None else \
        split_reliability(ds, splits, region, reliability_splits, seed)
    regions = ds.neuroids["region"].astype(str).to_numpy()[cols].tolist() \
        if "region" in ds.neuroids else ["all"] * len(cols)
    return PreparedData(x=x, y=y, splits=splits, index=index,
                        neuroid_ids=ds.neuroids["neuroid_id"].astype(str).to_numpy()[cols].tolist(),
                        regions=regions, preprocess=preprocess, dataset_name=ds.name,
                        reliability_by_split=rel)
