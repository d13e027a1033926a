"""Freely-moving recording sessions: folder format, validation, loading and clip batches.

Layout of a sessions root (a local folder or ``s3://bucket/prefix``)::

    index.json                 {"format": "cortexzoo-sessions/1", "sessions": ["s0", ...]}
    <session>/frames.npy       uint8   [T, H, W]   grayscale movie, one frame per bin
    <session>/responses.npy    float32 [T, N]      per-neuron responses at the frame rate
    <session>/session.json     {"session_id", "animal_id", "frame_rate_hz", ...}
    <session>/segments.json    temporal segments and their train/val/test intervals
    <session>/rates.npy        optional float32 [T, N]: ground-truth rates (synthetic data)

``segments.json`` holds ``n_segments``, ``train_fraction``, ``test_segments`` and
``intervals``: a list of ``{"segment", "split", "start", "stop"}`` (frame indices,
``stop`` exclusive) with ``split`` in ``train`` / ``val`` / ``test``. Each session is
cut into ``n_segments`` equal temporal segments; in a segment that is not a test
segment the first ``train_fraction`` of the frames trains and the rest validates; test
segments are held out whole (:func:`make_segments`).

A sample is a clip of ``clip_len`` frames ``[t - clip_len, t)`` and the target is the
response at the next bin ``t``; the clip and its target lie inside one interval, so no
sample straddles a split boundary. Frames are scaled per session as the paper does:
subtract the movie minimum and divide by the (shifted) maximum when positive.

Readouts are per animal, so batches hold clips of one animal; :class:`InterleavedClips`
alternates animals across batches and shards every global batch deterministically
across data-parallel ranks.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from ..core.uri import join as _join
from ..core.uri import npy_bytes as _npy_bytes
from ..core.uri import read_bytes, read_npy, url_to_fs
from ..core.uri import write_bytes as _write_bytes
from .errors import DatasetError

__all__ = [
    "SESSIONS_FORMAT", "SPLITS", "SessionFormatError", "Session", "SessionCollection",
    "make_segments", "validate_segments", "write_session", "write_sessions_index",
    "load_session", "load_sessions", "validate_sessions", "ClipDataset", "InterleavedClips",
]

SESSIONS_FORMAT = "cortexzoo-sessions/1"
SPLITS = ("train", "val", "test")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")


class SessionFormatError(DatasetError):
    """A sessions folder or one of its files is malformed; the message names it."""


# --------------------------------------------------------------------------- segments


def make_segments(n_frames: int, n_segments: int = 10, train_fraction: float = 0.8,
                  test_segments: Sequence[int] = (4, 9)) -> dict[str, Any]:
    """The ``segments.json`` document for a session of ``n_frames`` frames.

    Segment ``k`` spans ``[floor(k T / n), floor((k+1) T / n))``. Test segments are
    held out whole; in the others the first ``train_fraction`` of the frames trains
    and the rest validates.
    """
    if n_segments < 1 or n_frames < n_segments:
        raise SessionFormatError(f"cannot cut {n_frames} frames into {n_segments} segments")
    if not 0.0 < train_fraction < 1.0:
        raise SessionFormatError(f"train_fraction must be in (0, 1), got {train_fraction}")
    test = sorted({int(k) for k in test_segments})
    bad = [k for k in test if not 0 <= k < n_segments]
    if bad:
        raise SessionFormatError(f"test segments {bad} outside 0..{n_segments - 1}")
    if len(test) == n_segments:
        raise SessionFormatError("every segment is a test segment; nothing left to train on")
    bounds = [(k * n_frames) // n_segments for k in range(n_segments + 1)]
    intervals = []
    for k in range(n_segments):
        a, b = bounds[k], bounds[k + 1]
        if k in test:
            intervals.append({"segment": k, "split": "test", "start": a, "stop": b})
        else:
            cut = a + int(round(train_fraction * (b - a)))
            intervals.append({"segment": k, "split": "train", "start": a, "stop": cut})
            intervals.append({"segment": k, "split": "val", "start": cut, "stop": b})
    return {"n_segments": n_segments, "train_fraction": train_fraction,
            "test_segments": test, "intervals": intervals}


def validate_segments(doc: Any, n_frames: int, where: str) -> list[dict[str, Any]]:
    """Check a ``segments.json`` document against ``n_frames``; returns its intervals."""
    if not isinstance(doc, dict) or not isinstance(doc.get("intervals"), list):
        raise SessionFormatError(f"{where}: must be an object with an 'intervals' list")
    out = []
    for i, iv in enumerate(doc["intervals"]):
        if not isinstance(iv, dict) or not {"split", "start", "stop"} <= set(iv):
            raise SessionFormatError(f"{where}: interval {i} needs 'split', 'start' and 'stop'")
        if iv["split"] not in SPLITS:
            raise SessionFormatError(f"{where}: interval {i} has split {iv['split']!r}; "
                                     f"expected one of {SPLITS}")
        a, b = iv["start"], iv["stop"]
        if not (isinstance(a, int) and isinstance(b, int)) or not 0 <= a < b <= n_frames:
            raise SessionFormatError(f"{where}: interval {i} [{a}, {b}) is not inside "
                                     f"[0, {n_frames}) or is empty")
        out.append({"segment": int(iv.get("segment", -1)), "split": iv["split"],
                    "start": a, "stop": b})
    spans = sorted((iv["start"], iv["stop"]) for iv in out)
    for (a0, b0), (a1, b1) in zip(spans, spans[1:]):
        if a1 < b0:
            raise SessionFormatError(f"{where}: intervals [{a0}, {b0}) and [{a1}, {b1}) overlap")
    for s in ("train", "val"):
        if not any(iv["split"] == s for iv in out):
            raise SessionFormatError(f"{where}: no {s!r} interval")
    return out


# ---------------------------------------------------------------------------- session


@dataclass
class Session:
    """One recording: movie, responses, ids and split intervals (all in memory)."""

    name: str
    session_id: str
    animal_id: str
    frames: np.ndarray  # uint8 [T, H, W]
    responses: np.ndarray  # float32 [T, N]
    intervals: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    rates: np.ndarray | None = None  # float32 [T, N] ground truth, synthetic only

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def n_neurons(self) -> int:
        return int(self.responses.shape[1])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def scale(self) -> tuple[float, float]:
        """(offset, divisor) of the per-session frame normalisation to [0, 1]."""
        lo = float(self.frames.min())
        hi = float(self.frames.max()) - lo
        return lo, (hi if hi > 0 else 1.0)

    def targets(self, split: str, clip_len: int) -> np.ndarray:
        """Target bins ``t`` of ``split`` whose clip ``[t - clip_len, t)`` fits its interval."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        parts = [np.arange(iv["start"] + clip_len, iv["stop"]) for iv in self.intervals
                 if iv["split"] == split and iv["stop"] - iv["start"] > clip_len]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def _read_bytes(uri: str, what: str) -> bytes:
    try:
        return read_bytes(uri)
    except FileNotFoundError as exc:
        raise SessionFormatError(f"{what}: missing file {uri}") from exc


def _read_json(uri: str, what: str) -> Any:
    try:
        return json.loads(_read_bytes(uri, what).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SessionFormatError(f"{what}: {uri} is not valid JSON ({exc})") from exc


def _read_npy(uri: str, what: str) -> np.ndarray:
    try:
        return read_npy(_read_bytes(uri, what))
    except (ValueError, OSError, EOFError) as exc:
        raise SessionFormatError(f"{what}: {uri} is not a valid .npy file ({exc})") from exc


def write_session(root: str, name: str, frames: np.ndarray, responses: np.ndarray, *,
                  animal_id: str, session_id: str | None = None,
                  segments: dict[str, Any] | None = None, frame_rate_hz: float = 1000 / 48,
                  rates: np.ndarray | None = None, extra: dict[str, Any] | None = None) -> str:
    """Write one session folder ``root/name`` (validated first); returns its URI.

    Does not touch ``index.json``; call :func:`write_sessions_index` afterwards.
    """
    if not _NAME_RE.match(name):
        raise SessionFormatError(f"session name {name!r} must match {_NAME_RE.pattern}")
    frames = np.asarray(frames)
    responses = np.asarray(responses, dtype=np.float32)
    segments = segments or make_segments(len(frames))
    meta = {"session_id": session_id or name, "animal_id": str(animal_id),
            "frame_rate_hz": float(frame_rate_hz), "n_frames": int(len(frames)),
            "n_neurons": int(responses.shape[1]) if responses.ndim == 2 else None,
            **(extra or {})}
    _check_session(name, frames, responses, meta, segments, rates)
    uri = _join(root, name)
    _write_bytes(_join(uri, "frames.npy"), _npy_bytes(frames))
    _write_bytes(_join(uri, "responses.npy"), _npy_bytes(responses))
    if rates is not None:
        _write_bytes(_join(uri, "rates.npy"), _npy_bytes(np.asarray(rates, np.float32)))
    _write_bytes(_join(uri, "segments.json"), json.dumps(segments, indent=1).encode())
    _write_bytes(_join(uri, "session.json"), json.dumps(meta, indent=1).encode())
    return uri


def write_sessions_index(root: str, names: Sequence[str], **extra: Any) -> str:
    """Write ``root/index.json`` listing ``names``; returns its URI."""
    names = list(names)
    if not names or len(set(names)) != len(names):
        raise SessionFormatError(f"index of {root}: session names must be unique and non-empty")
    uri = _join(root, "index.json")
    _write_bytes(uri, json.dumps({"format": SESSIONS_FORMAT, "sessions": names, **extra},
                                 indent=1).encode())
    return uri


def _check_session(name: str, frames: np.ndarray, responses: np.ndarray, meta: Any,
                   segments: Any, rates: np.ndarray | None) -> list[dict[str, Any]]:
    where = f"session {name!r}"
    if frames.dtype != np.uint8 or frames.ndim != 3:
        raise SessionFormatError(f"{where}: frames.npy must be uint8 [T, H, W], got "
                                 f"{frames.dtype} {list(frames.shape)}")
    if responses.dtype != np.float32 or responses.ndim != 2:
        raise SessionFormatError(f"{where}: responses.npy must be float32 [T, N], got "
                                 f"{responses.dtype} {list(responses.shape)}")
    if responses.shape[0] != frames.shape[0]:
        raise SessionFormatError(f"{where}: responses.npy has {responses.shape[0]} bins but "
                                 f"frames.npy has {frames.shape[0]} frames")
    if responses.shape[1] < 1:
        raise SessionFormatError(f"{where}: responses.npy has no neurons")
    if not np.all(np.isfinite(responses)):
        raise SessionFormatError(f"{where}: responses.npy holds NaN or infinite values")
    if (responses < 0).any():
        raise SessionFormatError(f"{where}: responses.npy holds negative values "
                                 "(Poisson loss needs non-negative responses)")
    if not isinstance(meta, dict) or not isinstance(meta.get("animal_id"), str) \
            or not meta["animal_id"]:
        raise SessionFormatError(f"{where}: session.json needs a non-empty string 'animal_id'")
    if rates is not None and np.shape(rates) != responses.shape:
        raise SessionFormatError(f"{where}: rates.npy shape {list(np.shape(rates))} != "
                                 f"responses {list(responses.shape)}")
    return validate_segments(segments, int(frames.shape[0]), f"{where}: segments.json")


def load_session(root: str, name: str) -> Session:
    """Read and validate one session folder; errors name the session and file."""
    uri = _join(root, name)
    what = f"session {name!r}"
    meta = _read_json(_join(uri, "session.json"), what)
    segments = _read_json(_join(uri, "segments.json"), what)
    frames = _read_npy(_join(uri, "frames.npy"), what)
    responses = _read_npy(_join(uri, "responses.npy"), what)
    fs, rpath = url_to_fs(_join(uri, "rates.npy"))
    rates = _read_npy(_join(uri, "rates.npy"), what) if fs.exists(rpath) else None
    intervals = _check_session(name, frames, responses, meta, segments, rates)
    return Session(name=name, session_id=str(meta.get("session_id", name)),
                   animal_id=meta["animal_id"], frames=frames, responses=responses,
                   intervals=intervals, meta=meta, rates=rates)


@dataclass
class SessionCollection:
    """All sessions of a root, grouped by animal (one readout per animal)."""

    uri: str
    sessions: list[Session]
    index: dict[str, Any]

    @property
    def animals(self) -> list[str]:
        """Animal ids in first-appearance order (fixes the readout order)."""
        seen: dict[str, None] = {}
        for s in self.sessions:
            seen.setdefault(s.animal_id, None)
        return list(seen)

    def by_animal(self, animal: str) -> list[Session]:
        return [s for s in self.sessions if s.animal_id == animal]

    def n_neurons(self) -> dict[str, int]:
        return {a: self.by_animal(a)[0].n_neurons for a in self.animals}

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.sessions[0].frame_shape


def load_sessions(uri: str) -> SessionCollection:
    """Load and validate every session listed in ``uri/index.json``.

    Raises
    ------
    SessionFormatError
        Naming the offending session and file (missing files, bad dtypes/shapes,
        mismatched lengths, bad intervals, frame sizes or neuron counts that differ
        between sessions of one animal, ...).
    """
    index = _read_json(_join(uri, "index.json"), f"sessions root {uri}")
    if not isinstance(index, dict) or not isinstance(index.get("sessions"), list) \
            or not index["sessions"]:
        raise SessionFormatError(f"{_join(uri, 'index.json')}: needs a non-empty 'sessions' list")
    if index.get("format", SESSIONS_FORMAT) != SESSIONS_FORMAT:
        raise SessionFormatError(f"{_join(uri, 'index.json')}: format {index.get('format')!r} "
                                 f"is not {SESSIONS_FORMAT!r}")
    names = index["sessions"]
    bad = [n for n in names if not isinstance(n, str) or not _NAME_RE.match(n)]
    if bad:
        raise SessionFormatError(f"{_join(uri, 'index.json')}: bad session names {bad}")
    if len(set(names)) != len(names):
        raise SessionFormatError(f"{_join(uri, 'index.json')}: duplicate session names")
    sessions = [load_session(uri, n) for n in names]
    shape = sessions[0].frame_shape
    for s in sessions[1:]:
        if s.frame_shape != shape:
            raise SessionFormatError(f"session {s.name!r}: frames are {list(s.frame_shape)} but "
                                     f"session {sessions[0].name!r} has {list(shape)}; the shared "
                                     "encoder needs one frame size")
    coll = SessionCollection(uri=uri, sessions=sessions, index=index)
    for a in coll.animals:
        ss = coll.by_animal(a)
        if len({s.n_neurons for s in ss}) > 1:
            raise SessionFormatError(
                f"animal {a!r}: sessions {[s.name for s in ss]} have different neuron counts "
                f"{[s.n_neurons for s in ss]}; one readout per animal needs the same neurons")
    return coll


def validate_sessions(uri: str) -> SessionCollection:
    """Alias of :func:`load_sessions` for symmetry with the dataset API."""
    return load_sessions(uri)


# ------------------------------------------------------------------------------ clips


class ClipDataset:
    """Clips of one animal and split: item ``i`` is ``(x [L, 1, H, W] float32, y [N])``.

    Implements the map-style ``torch.utils.data.Dataset`` protocol; :meth:`get_batch`
    gathers many items at once with numpy fancy indexing (much faster than a
    per-item DataLoader on small frames).
    """

    def __init__(self, sessions: Sequence[Session], split: str, clip_len: int = 5) -> None:
        if clip_len < 1:
            raise ValueError(f"clip_len must be >= 1, got {clip_len}")
        self.sessions = list(sessions)
        self.split, self.clip_len = split, clip_len
        pairs = [(np.full(len(t), k, np.int64), t) for k, s in enumerate(self.sessions)
                 for t in [s.targets(split, clip_len)]]
        self.session_idx = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, np.int64)
        self.target_bins = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0, np.int64)
        self._scales = [s.scale() for s in self.sessions]

    def __len__(self) -> int:
        return int(len(self.target_bins))

    def __getitem__(self, i: int):
        x, y = self.get_batch(np.array([i]))
        return x[0], y[0]

    def get_batch(self, idx: np.ndarray, with_rates: bool = False):
        """``(x [B, L, 1, H, W] float32, y [B, N] float32)`` (+ rates when asked) as torch."""
        import torch

        idx = np.asarray(idx, dtype=np.int64)
        lags = np.arange(-self.clip_len, 0)
        xs, ys, rs = [], [], []
        order = []
        for k in np.unique(self.session_idx[idx]):
            sel = np.flatnonzero(self.session_idx[idx] == k)
            order.append(sel)
            s, t = self.sessions[k], self.target_bins[idx[sel]]
            lo, div = self._scales[k]
            clip = s.frames[t[:, None] + lags[None, :]].astype(np.float32)
            xs.append((clip - lo) / div)
            ys.append(s.responses[t])
            if with_rates:
                rs.append(s.rates[t] if s.rates is not None else np.full_like(s.responses[t], np.nan))
        inv = np.argsort(np.concatenate(order), kind="stable")
        x = np.concatenate(xs)[inv][:, :, None]
        y = np.concatenate(ys)[inv]
        out = (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)))
        if with_rates:
            return out + (torch.from_numpy(np.ascontiguousarray(np.concatenate(rs)[inv])),)
        return out


def _iterable_base():
    try:
        from torch.utils.data import IterableDataset

        return IterableDataset
    except ImportError:  # pragma: no cover - torch is a dependency
        return object


class InterleavedClips(_iterable_base()):
    """Batches of one animal each, animals alternating, sharded across ranks.

    Every epoch each animal's clips are permuted with ``seed`` and ``epoch`` (the
    same permutation on every rank), cut into *global* batches of ``batch_size``,
    and the animals' batches are interleaved round-robin (a0, a1, a2, a0, ...; an
    animal whose batches run out drops out). Rank ``r`` of ``world_size`` gets rows
    ``[r * b, (r + 1) * b)`` of each global batch (``b = batch_size // world_size``),
    so the union over ranks of one step is exactly the global batch a single worker
    would see: data-parallel training with the same global batch is equivalent.

    Yields ``(animal_index, x [b, L, 1, H, W], y [b, N_animal])``. With
    ``drop_last`` (training) incomplete global batches are dropped, so every rank
    runs the same number of equal-size steps; without it (evaluation) the last
    batch is split as evenly as possible and a rank may get an empty share, which
    is skipped.
    """

    def __init__(self, coll: SessionCollection, split: str, batch_size: int, *,
                 clip_len: int = 5, shuffle: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True,
                 max_batches_per_animal: int | None = None) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad batch_size/rank/world_size {batch_size}/{rank}/{world_size}")
        if drop_last and batch_size % world_size:
            raise ValueError(f"global batch {batch_size} is not divisible by {world_size} workers")
        self.animals = coll.animals
        self.datasets = [ClipDataset(coll.by_animal(a), split, clip_len) for a in self.animals]
        empty = [a for a, d in zip(self.animals, self.datasets) if len(d) == 0]
        if empty:
            raise SessionFormatError(f"split {split!r} has no clips of {clip_len} frames for "
                                     f"animal(s) {empty}")
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.max_batches_per_animal = max_batches_per_animal
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (same order on every rank and after a restart)."""
        self.epoch = int(epoch)

    def _global_batches(self, k: int) -> list[np.ndarray]:
        n = len(self.datasets[k])
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch, k])
            order = rng.permutation(n)
        else:
            order = np.arange(n)
        nb = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        if self.max_batches_per_animal is not None:
            nb = min(nb, self.max_batches_per_animal)
        return [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(nb)]

    def schedule(self) -> list[tuple[int, np.ndarray]]:
        """The epoch's ``(animal_index, global batch indices)`` in interleaved order."""
        per = [self._global_batches(k) for k in range(len(self.datasets))]
        out = []
        for i in range(max((len(p) for p in per), default=0)):
            for k, p in enumerate(per):
                if i < len(p):
                    out.append((k, p[i]))
        return out

    def _shard(self, idx: np.ndarray) -> np.ndarray:
        if self.drop_last:
            b = self.batch_size // self.world_size
            return idx[self.rank * b:(self.rank + 1) * b]
        return np.array_split(idx, self.world_size)[self.rank]

    def __len__(self) -> int:
        return len(self.schedule())

    def __iter__(self) -> Iterator[tuple[int, Any, Any]]:
        for k, idx in self.schedule():
            mine = self._shard(idx)
            if len(mine) == 0:
                continue
            x, y = self.datasets[k].get_batch(mine)
            yield k, x, y
