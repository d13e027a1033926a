"""Streaming feature extraction: Ray Data decodes, an actor pool runs the model.

Stimuli flow as small blocks: decode + 8-bit resize/crop tasks (no torch) -> model
actors (GPU when the cluster has GPUs, CPU otherwise) that normalize the crops and reduce
every layer in the forward hook -> the driver, which only ever holds the *reduced*
features ``[n, k]`` per layer. ``extract_local`` is the same computation in one process (tests, debugging,
machines without Ray).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..core.progress import Progress
from ..core.raysetup import worker_env
from .extract import FeatureExtractor
from .reduce import ReductionConfig

log = logging.getLogger("cortexzoo")

@dataclass
class LayerFeatures:
    """Reduced features of one model on one stimulus set, stimulus order preserved."""

    model: str
    features: dict[str, np.ndarray]
    relative_depth: dict[str, float]
    reduction: str
    extra: dict = field(default_factory=dict)


def _read_and_crop(uris: Sequence[str], preprocess, names=None) -> np.ndarray:
    from ..data.images import read_and_crop

    return read_and_crop(list(uris), preprocess.geometry(), names)


class _ModelActor:
    """Ray Data actor: loads the model once, reduces every requested layer per batch."""

    def __init__(self, spec: str, layers: list[str], reduction: ReductionConfig,
                 threads: int = 1, cache_bytes: int = 256 << 20, preprocess=None,
                 cache=None, keys: dict[str, str] | None = None, minibatch: int = 16,
                 gpu_fraction: float = 1.0):
        import torch

        from ..zoo import load_model

        torch.set_num_threads(max(1, threads))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = load_model(spec, device=device)
        # the driver's description: decoding and normalization from one config
        self.preprocess, self.device = preprocess or model.preprocess, device
        self.extractor = FeatureExtractor(model, layers, reduction, device=device,
                                          cache_bytes=cache_bytes)
        self.layers = layers
        # writer mode: blocks go to the cache, only their names come back
        self.cache, self.keys, self.minibatch = cache, keys, max(1, int(minibatch))

    def __call__(self, batch: dict) -> dict:
        if self.cache is None:
            x = self.preprocess.normalize_uint8(batch["pixels"], self.device)
            feats = self.extractor(x)
            out = {"idx": np.asarray(batch["idx"])}
            for j, name in enumerate(self.layers):
                out[f"f{j}"] = feats[name]
            return out
        idx = np.asarray(batch["idx"], dtype=np.int64)
        pixels = batch["pixels"]
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.layers}
        for start in range(0, idx.size, self.minibatch):  # forward passes of bounded size
            x = self.preprocess.normalize_uint8(pixels[start:start + self.minibatch], self.device)
            for name, f in self.extractor(x).items():
                parts[name].append(f)
        chunk = None
        for name in self.layers:
            chunk = self.cache.put_block(self.keys[name], idx, np.concatenate(parts[name]))
        return {"idx": idx, "chunk": np.full(idx.size, chunk)}


def _resolve_layers(model, layers) -> list[str]:
    if layers in (None, "all"):
        return list(model.layers)
    layers = [layers] if isinstance(layers, str) else list(layers)
    unknown = [name for name in layers if name not in model.relative_depth]
    if unknown:
        raise ValueError(f"{model.spec}: unknown layer(s) {unknown}; available: {model.layers}")
    return layers


def extract_local(dataset, model, layers=None, reduction: ReductionConfig | None = None,
                  batch_size: int = 16, progress: bool = True,
                  stimulus_idx: np.ndarray | None = None) -> LayerFeatures:
    """Extract in this process. ``model`` is a spec string or a LoadedModel."""
    from ..zoo import load_model

    if isinstance(model, str):
        model = load_model(model)
    reduction = reduction or ReductionConfig()
    layers = _resolve_layers(model, layers)
    extractor = FeatureExtractor(model, layers, reduction)
    idx = np.arange(dataset.n_stimuli) if stimulus_idx is None else np.asarray(stimulus_idx)
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    with Progress(len(idx), f"{model.spec} features", unit="img", enabled=progress) as bar:
        for start in range(0, len(idx), batch_size):
            sel = idx[start:start + batch_size]
            crops = _read_and_crop([dataset.image_uri(int(i)) for i in sel], model.preprocess,
                                   [str(dataset.stimuli["stimulus_id"].iloc[int(i)]) for i in sel])
            for name, f in extractor(model.preprocess.normalize_uint8(crops)).items():
                chunks[name].append(f)
            bar.update(len(sel))
    feats = {name: np.concatenate(c) for name, c in chunks.items()}
    return LayerFeatures(str(model.spec), feats, {n: model.relative_depth[n] for n in layers},
                         reduction.name)


def default_actor_plan(num_actors: int | None = None) -> dict:
    """How many model actors and what each asks for, from the cluster's resources."""
    import ray

    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    cpus = float(res.get("CPU", 1))
    if gpus > 0:
        n = num_actors or gpus
        return {"n": n, "num_gpus": 1, "num_cpus": 1, "threads": 1}
    # Fractional CPUs leave room for decode tasks (whole-CPU actors starve them).
    # Each actor holds a model copy and its projection cache: fewer actors, less memory.
    n = num_actors or max(1, min(2, int(cpus)))
    per = max(0.25, min(1.0, (cpus * 0.75) / n))
    threads = int(os.environ.get("CORTEXZOO_TORCH_THREADS", "0")) or max(1, round(cpus / n))
    return {"n": n, "num_gpus": 0, "num_cpus": per, "threads": threads}


def extract_ray(dataset, model, layers=None, reduction: ReductionConfig | None = None,
                batch_size: int = 16, num_actors: int | None = None,
                progress: bool = True, object_store_bytes: int = 256 << 20) -> LayerFeatures:
    """Extract with Ray Data on the connected cluster (``ray.init`` first).

    ``object_store_bytes`` bounds the preprocessed batches buffered between decoding
    and the model actors (Ray Data backpressure)."""
    import ray

    from ..zoo import load_model

    if isinstance(model, str):
        model = load_model(model)
    reduction = reduction or ReductionConfig()
    layers = _resolve_layers(model, layers)
    n = dataset.n_stimuli
    plan = default_actor_plan(num_actors)
    ds = _pipeline(ray, dataset, model, layers, reduction, batch_size, plan, object_store_bytes,
                   {}, batch_size)
    k = None
    feats: dict[str, np.ndarray] = {}
    for batch, idx in _stream(ds, model, n, progress):
        for j, name in enumerate(layers):
            f = np.asarray(batch[f"f{j}"])
            if name not in feats:
                k = f.shape[1]
                feats[name] = np.empty((n, k), dtype=np.float32)
            feats[name][idx] = f
    return LayerFeatures(str(model.spec), feats, {n_: model.relative_depth[n_] for n_ in layers},
                         reduction.name, extra={"actors": plan})


def _stream(ds, model, n: int, progress: bool):
    """The pipeline's output batches with their row indices; raises naming the stimuli
    that never came back once the stream ends."""
    seen = np.zeros(n, dtype=bool)
    with Progress(n, f"{model.spec} features", unit="img", enabled=progress) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            idx = np.asarray(batch["idx"], dtype=np.int64)
            yield batch, idx
            seen[idx] = True
            bar.update(len(idx))
    if not seen.all():
        missing = np.flatnonzero(~seen)
        raise RuntimeError(f"{model.spec}: {missing.size} stimuli never came back from the "
                           f"pipeline (first: {missing[:5].tolist()})")


def _pipeline(ray, dataset, model, layers, reduction, batch_size, plan, object_store_bytes,
              actor_kwargs: dict, actor_batch: int):
    """The Ray Data plan: decode tasks (no torch) -> model actors."""
    runtime_env = {"env_vars": {"MALLOC_ARENA_MAX": "2", **worker_env()}}
    ctx = ray.data.DataContext.get_current()
    # Decoding is far faster than a big model on CPU: cap what waits in the object store.
    ctx.execution_options.resource_limits = ctx.execution_options.resource_limits.copy(
        object_store_memory=object_store_bytes)
    n = dataset.n_stimuli
    sids = dataset.stimuli["stimulus_id"].astype(str).tolist()
    items = [{"idx": i, "uri": dataset.image_uri(i), "sid": sids[i]} for i in range(n)]
    n_blocks = max(1, min(64, -(-n // batch_size)))
    ds = ray.data.from_items(items, override_num_blocks=n_blocks)
    from ..data.images import decode_crop_batch

    ds = ds.map_batches(decode_crop_batch, fn_kwargs={"geometry": model.preprocess.geometry()},
                        batch_size=batch_size, num_cpus=0.25,
                        compute=ray.data.TaskPoolStrategy(size=max(1, plan["n"])),
                        runtime_env=runtime_env)
    return ds.map_batches(
        _ModelActor,
        fn_constructor_kwargs={"spec": str(model.spec), "layers": layers,
                               "reduction": reduction, "threads": plan["threads"],
                               "preprocess": model.preprocess, **actor_kwargs},
        batch_size=actor_batch,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=plan["n"]),
        num_cpus=plan["num_cpus"], num_gpus=plan["num_gpus"], runtime_env=runtime_env)


def extract_to_cache(dataset, model, keys: dict[str, str], reduction: ReductionConfig, cache,
                     batch_size: int = 16, chunk: int = 256, num_actors: int | None = None,
                     plan: dict | None = None, progress: bool = True,
                     object_store_bytes: int = 256 << 20) -> None:
    """Extract with Ray Data straight into the feature cache (``ray.init`` first).

    Each model actor reduces a chunk of ``chunk`` stimuli (forward passes of
    ``batch_size``) and writes one block per layer to ``cache`` under ``keys[layer]``;
    the driver receives only the chunks' row indices and names, never features, and
    marks each layer complete once every stimulus is covered. ``model`` is a
    description (the actors load the weights)."""
    import ray

    layers = list(keys)
    plan = plan or default_actor_plan(num_actors)
    n = dataset.n_stimuli
    chunk = max(batch_size, min(int(chunk), n))
    ds = _pipeline(ray, dataset, model, layers, reduction, batch_size, plan, object_store_bytes,
                   {"cache": cache, "keys": keys, "minibatch": batch_size}, chunk)
    blocks: set[str] = set()
    for batch, _ in _stream(ds, model, n, progress):
        blocks.update(str(c) for c in np.unique(batch["chunk"]))
    for name in layers:
        cache.complete(keys[name], sorted(blocks))
