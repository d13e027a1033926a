"""The populations a run decodes: recorded regions and model layers, as ``[stimuli, units]``.

* A recorded population is a region's neuroids (sites): mean responses over repetitions,
  neuroids without a response to every stimulus left out (with a warning), optionally
  only those whose split-half reliability (Spearman-Brown, :func:`cortexzoo.mapping.
  split_half_reliability`) reaches ``min_reliability``.
* A model population is one layer's units: the layer's output flattened (channels x
  positions, as the layer defines them; a pooled layer's units are its channels), all of
  them up to ``max_units``, else a seeded uniform sample of ``max_units`` units made in
  the forward hook (reduction ``units``), so a large layer never holds more per image.
  Never a random projection: unit counts are counts of the layer's own units. Features
  come from the store's feature cache when an earlier run extracted them.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

import numpy as np

from ..features.cache import FeatureCache
from ..features.reduce import ReductionConfig
from .config import DecodeConfig

__all__ = ["Population", "recorded_populations", "model_population", "describe_layer", "resolve_layers",
           "penultimate", "PopulationError"]

log = logging.getLogger("cortexzoo")


class PopulationError(ValueError):
    """A population cannot be built (unknown region or layer, nothing left after filtering)."""


@dataclass
class Population:
    name: str            # the region, or the model spec
    kind: str            # "recorded" or "model"
    X: np.ndarray        # [n_stimuli, size]
    key: str             # identity of the features (unit keys and draws depend on it)
    region: str = ""
    model: str = ""
    source: str = ""
    weights: str = ""
    layer: str = ""
    relative_depth: float = float("nan")
    reduction: str = ""
    seed: int = 0
    info: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.X.shape[1])

    def meta(self) -> dict:
        """What a unit needs to know about its population (small, picklable)."""
        return {"name": self.name, "kind": self.kind, "key": self.key, "size": self.size}


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def recorded_populations(dataset, cfg: DecodeConfig) -> list[Population]:
    """One population per region (``cfg.regions`` or all), none without responses."""
    if not cfg.neural or dataset.responses is None:
        if cfg.regions:
            raise PopulationError(f"regions {cfg.regions} were asked for, but dataset "
                                  f"{dataset.name!r} has no responses" if dataset.responses is None
                                  else f"regions {cfg.regions} were asked for with neural=False")
        return []
    regions = dataset.regions if cfg.regions is None else list(cfg.regions)
    unknown = [r for r in regions if r not in dataset.regions]
    if unknown:
        raise PopulationError(f"unknown region(s) {unknown}; dataset {dataset.name!r} has "
                              f"{dataset.regions}")
    R = dataset.responses
    Y = dataset.mean_responses()
    rel = None
    if cfg.min_reliability is not None:
        from ..mapping import split_half_reliability

        rel = split_half_reliability(R, n_splits=cfg.reliability_splits, seed=cfg.seed)
    complete = np.isfinite(Y).all(axis=0)
    ids = dataset.neuroids["neuroid_id"].astype(str).to_numpy()
    out = []
    for region in regions:
        cols = dataset.region_index(region)
        keep = cols[complete[cols]]
        if keep.size < cols.size:
            log.warning("region %r: %d neuroid(s) lack a response to some stimulus and are not "
                        "decoded: %s", region, cols.size - keep.size,
                        ", ".join(ids[cols[~complete[cols]]][:10]))
        if rel is not None:
            ok = rel[keep] >= cfg.min_reliability
            if not ok.any():
                raise PopulationError(f"region {region!r}: no neuroid reaches min_reliability="
                                      f"{cfg.min_reliability} (best {np.nanmax(rel[cols]):.3f})")
            log.info("region %r: %d of %d neuroids reach split-half reliability %.2f", region,
                     int(ok.sum()), keep.size, cfg.min_reliability)
            keep = keep[ok]
        if keep.size == 0:
            raise PopulationError(f"region {region!r}: no neuroid has a response to every stimulus")
        X = np.ascontiguousarray(Y[:, keep], dtype=np.float32)
        key = "recorded-" + _digest({"region": region, "neuroids": ids[keep].tolist(),
                                     "responses": hashlib.sha256(X.tobytes()).hexdigest()})
        out.append(Population(region, "recorded", X, key, region=region, model=f"recorded:{region}", source="recording",
                              weights="none", layer=region, reduction="sites",
                              info={"neuroids": ids[keep].tolist(),
                                    "n_dropped": int(cols.size - keep.size)}))
    return out


def penultimate(layers: list[str]) -> str:
    """The layer before the last (the last is the classifier), or the only one."""
    return layers[-2] if len(layers) >= 2 else layers[-1]


def resolve_layers(models: list[str], layers) -> dict[str, str | None]:
    """``{spec: layer or None (penultimate)}`` from ``cfg.layers`` (see DecodeConfig)."""
    if layers is None:
        return {m: None for m in models}
    if isinstance(layers, str):
        layers = [x.strip() for x in layers.split(",") if x.strip()]
    if isinstance(layers, dict):
        unknown = [m for m in layers if m not in models]
        if unknown:
            raise PopulationError(f"layers given for model(s) {unknown} that are not decoded "
                                  f"(models: {models})")
        return {m: layers.get(m) for m in models}
    layers = list(layers)
    pairs = [x for x in layers if "=" in x]
    if pairs:
        if len(pairs) != len(layers):
            raise PopulationError(f"layers mixes 'spec=layer' entries with plain names: {layers}")
        return resolve_layers(models, dict(x.rsplit("=", 1) for x in pairs))
    if len(layers) == 1:
        return {m: layers[0] for m in models}
    if len(layers) != len(models):
        raise PopulationError(f"{len(layers)} layers for {len(models)} models: give one layer for "
                              "every model, one per model in order, or 'spec=layer' pairs")
    return dict(zip(models, layers))


def describe_layer(spec, layer: str | None, cfg: DecodeConfig):
    """``(description, layer)`` of a model (no weights loaded); the layer is checked."""
    from ..zoo import describe_model

    desc = describe_model(spec, input_size=cfg.input_size)
    chosen = layer or penultimate(desc.layers)
    if chosen not in desc.relative_depth:
        raise PopulationError(f"{spec}: unknown layer {chosen!r}; layers: {desc.layers}")
    return desc, chosen


def model_population(spec, layer: str | None, dataset, cfg: DecodeConfig, store,
                     cache: FeatureCache | None, described=None) -> Population:
    """Extract (or read from the cache) one model layer's units on every stimulus."""
    name = str(spec)
    desc, chosen = described or describe_layer(spec, layer, cfg)
    reduction = ReductionConfig(method="units", n_components=cfg.max_units, seed=0)
    pre = desc.preprocess.to_dict()
    X = cache.get(name, chosen, reduction, pre) if cache is not None else None
    if X is None:
        kw = dict(layers=[chosen], reduction=reduction, batch_size=cfg.batch_size,
                  progress=cfg.progress)
        if cfg.engine == "ray":
            from ..core.raysetup import init_ray
            from ..features.pipeline import extract_ray

            init_ray(cfg.address)
            X = extract_ray(dataset, desc, num_actors=cfg.num_actors, **kw).features[chosen]
        else:
            from ..features.pipeline import extract_local
            from ..zoo import load_model

            X = extract_local(dataset, load_model(spec, input_size=cfg.input_size), **kw).features[chosen]
        if cache is not None:
            cache.put(name, chosen, reduction, pre, X)
    else:
        log.info("%s %s: %d units per image from the feature cache", name, chosen, X.shape[1])
    X = np.asarray(X, dtype=np.float32)
    if not np.all(np.isfinite(X)):
        raise PopulationError(f"{name} layer {chosen!r}: features contain NaN or inf")
    key = "model-" + _digest({"model": name, "layer": chosen, "pre": pre,
                              "reduction": reduction.name})
    return Population(name, "model", X, key, model=name, source=spec.source, weights=spec.weights,
                      layer=chosen, relative_depth=float(desc.relative_depth[chosen]),
                      reduction=reduction.name, seed=spec.seed, info={"preprocessing": pre})
