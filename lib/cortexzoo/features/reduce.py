"""Reductions applied to each layer's activations as a batch streams past.

The full activations of a layer never exist for the whole stimulus set: a reducer
maps a batch ``[b, ...]`` to ``[b, k]`` with state that depends only on the layer's
shape and a seed, so batches can be reduced anywhere (any actor, any order) and
concatenated afterwards.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import warnings

warnings.filterwarnings("ignore", message=".*[Ss]parse.*(beta|invariant).*")

DEFAULT_K = 4096


def layer_seed(base_seed: int, model_key: str, layer: str) -> int:
    """A projection seed per (model, layer), stable across processes and Python versions."""
    h = hashlib.sha256(f"{base_seed}|{model_key}|{layer}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


# entries generated per step: temporaries of about 1 MB each. An actor regenerates the
# matrices it does not keep once per batch; whole-matrix temporaries (tens of MB each,
# a dozen per matrix) fragment the heap or, above malloc's mmap threshold, page-fault.
_GEN_BLOCK = 1 << 17


def _bernoulli_position_blocks(rng: np.random.Generator, total: int, density: float):
    """Sorted positions of the successes of ``total`` i.i.d. Bernoulli(density) trials, in
    blocks.

    Gaps between successes are geometric, so the positions are a cumulative sum of
    geometric draws: exact, vectorized, and several times faster than sampling a subset
    without replacement. Draws come in rounds of ``mean + 6 sd`` gaps, each drawn whole
    (a round that passes ``total`` is still drawn to its end), so what ``rng`` yields
    afterwards does not depend on the block size.
    """
    if density >= 1.0:
        for start in range(0, total, _GEN_BLOCK):
            yield np.arange(start, min(total, start + _GEN_BLOCK), dtype=np.int64)
        return
    mean = total * density
    chunk = int(mean + 6 * math.sqrt(mean) + 64)
    last, done = -1, False
    while not done:
        for start in range(0, chunk, _GEN_BLOCK):
            gaps = rng.geometric(density, size=min(_GEN_BLOCK, chunk - start))
            if done:
                continue  # the rest of the round, drawn and dropped
            pos = last + np.cumsum(gaps)
            if pos[-1] >= total:
                pos, done = pos[pos < total], True
            if pos.size:
                last = int(pos[-1])
                yield pos


def srp_matrix(n_features: int, n_components: int = DEFAULT_K, seed: int = 0,
               density: float | None = None) -> torch.Tensor:
    """Sparse random projection matrix ``[n_components, n_features]`` (CSR, float32).

    Entries are 0 with probability ``1 - density`` and ``±sqrt(1 / (density * k))``
    otherwise, independently (Li et al. 2006; scikit-learn's SparseRandomProjection),
    with ``density = 1 / sqrt(n_features)`` by default. Generation is fast enough
    (about 0.05 s per million non-zeros) that actors can regenerate matrices they do not
    keep rather than hold every layer's; it works in small blocks, so that it needs
    little memory beyond the matrix itself.
    """
    if n_features < 1 or n_components < 1:
        raise ValueError(f"SRP needs positive sizes, got n_features={n_features}, "
                         f"n_components={n_components}")
    if density is None:
        density = 1.0 / math.sqrt(n_features)
    if not 0.0 < density <= 1.0:
        raise ValueError(f"SRP density must be in (0, 1], got {density}")
    rng = np.random.default_rng(seed)
    total = n_components * n_features
    counts = np.zeros(n_components, dtype=np.int64)
    cols, nnz = [], 0
    for pos in _bernoulli_position_blocks(rng, total, density):
        rows = pos // n_features
        cols.append((pos - rows * n_features).astype(np.int32))
        counts += np.bincount(rows, minlength=n_components)
        nnz += pos.size
    cols = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int32)
    scale = np.float32(math.sqrt(1.0 / (density * n_components)))
    values = np.empty(nnz, dtype=np.float32)
    for start in range(0, nnz, _GEN_BLOCK):  # the signs: the stream after the positions
        stop = min(nnz, start + _GEN_BLOCK)
        values[start:stop] = np.where(rng.random(stop - start) < 0.5, -scale, scale)
    crow = np.concatenate([[0], np.cumsum(counts)])
    index_dtype = torch.int32 if nnz < 2**31 else torch.int64
    return torch.sparse_csr_tensor(
        torch.from_numpy(crow).to(index_dtype), torch.from_numpy(cols).to(index_dtype),
        torch.from_numpy(values), size=(n_components, n_features))


def unit_sample(n_units: int, n_keep: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n_keep`` of a layer's ``n_units`` units drawn uniformly without
    replacement (all of them, in order, when ``n_keep >= n_units``). A unit is one entry of
    the layer's flattened output: for a ``[C, H, W]`` map, channel ``i // (H * W)`` at
    position ``i % (H * W)`` (row-major), so units are channels x positions."""
    if n_keep >= n_units:
        return np.arange(n_units, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_units, size=n_keep, replace=False)).astype(np.int64)


@dataclass(frozen=True)
class ReductionConfig:
    """How each layer is reduced: ``srp`` (default), ``gap`` (global average pool),
    ``flatten``, or ``units``: the layer's own units (channels x positions, flattened),
    all of them up to ``n_components``, else a seeded uniform sample of ``n_components``
    of them (:func:`unit_sample`, seeded per (model, layer)) chosen in the hook, so a
    large layer never holds more than that many values per image."""

    method: str = "srp"
    n_components: int = DEFAULT_K
    seed: int = 0
    density: float | None = None
    max_flatten: int = 200_000

    def __post_init__(self):
        if self.method not in ("srp", "gap", "flatten", "units"):
            raise ValueError(f"unknown reduction {self.method!r}; choose srp, gap, flatten or "
                             "units")
        if (not isinstance(self.n_components, int) or isinstance(self.n_components, bool)
                or self.n_components < 1):
            raise ValueError(f"reduction n_components (--k) must be an integer >= 1, got "
                             f"{self.n_components!r}")

    @property
    def name(self) -> str:
        if self.method == "srp":
            return f"srp{self.n_components}"
        if self.method == "units":
            return f"units{self.n_components}"
        return self.method


class LayerReducer:
    """Reduces batches of one layer; holds the layer's projection matrix once made."""

    chunk_bytes = 64 << 20

    def __init__(self, config: ReductionConfig, model_key: str, layer: str):
        self.config, self.model_key, self.layer = config, model_key, layer
        self._matrix: torch.Tensor | None = None
        self._n_features: int | None = None
        self._units: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        m = self._matrix
        if m is None:
            return 0
        return sum(t.numel() * t.element_size()
                   for t in (m.crow_indices(), m.col_indices(), m.values()))

    def release(self) -> None:
        self._matrix = None

    def __call__(self, act: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        b = act.shape[0]
        if cfg.method == "gap":
            return act.float().mean(dim=tuple(range(2, act.ndim))) if act.ndim > 2 else act.float().reshape(b, -1)
        flat = act.reshape(b, -1).float()
        p = flat.shape[1]
        if cfg.method == "flatten":
            if p > cfg.max_flatten:
                raise ValueError(f"layer {self.layer!r} has {p} units, more than max_flatten="
                                 f"{cfg.max_flatten}; use reduction 'srp'")
            return flat.clone()  # a later in-place op (ReLU(inplace=True)) would change a view
        if cfg.method == "units":
            if self._units is None or self._n_features != p:
                self._n_features = p
                idx = unit_sample(p, cfg.n_components, layer_seed(cfg.seed, self.model_key, self.layer))
                self._units = None if idx.size == p else torch.from_numpy(idx).to(flat.device)
            return flat.clone() if self._units is None else flat.index_select(1, self._units)
        if self._n_features not in (None, p):
            raise ValueError(f"layer {self.layer!r} changed size from {self._n_features} to {p} "
                             "between batches (all stimuli must share one input size)")
        if self._matrix is None:
            self._n_features = p
            seed = layer_seed(cfg.seed, self.model_key, self.layer)
            self._matrix = srp_matrix(p, cfg.n_components, seed, cfg.density).to(flat.device)
        # (k x p) @ (p x b): CSR times dense is torch's fast sparse path. A few samples
        # at a time bound the transposed copy it needs to a few activation rows.
        step = max(1, int(self.chunk_bytes // max(1, 4 * p)))
        return torch.cat([(self._matrix @ flat[i:i + step].T).T for i in range(0, b, step)])
