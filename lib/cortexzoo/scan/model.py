"""One model of a scan: extract (or reuse cached features) and score its missing units."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ..core import cache_key
from ..core.progress import Progress
from ..core.raysetup import init_ray
from ..features.cache import FeatureCache
from ..features.pipeline import extract_local, extract_ray, extract_to_cache
from ..store import ResultStore, safe_key
from ..zoo import ModelSpec, describe_model
from ..zoo.weights import weights_identity
from .config import ScanConfig
from .scoring import DatasetTargets
from .workers import write_unit

__all__ = ["ModelOutcome", "ModelPlan", "plan_model", "scan_model", "cached_features", "describe"]

log = logging.getLogger("cortexzoo")


@dataclass
class ModelOutcome:
    written: int = 0   # units scored now
    skipped: int = 0   # units already in the store
    rows: int = 0      # score rows written
    started: float = 0.0  # wall-clock (time.time()) start and end of this model's work
    ended: float = 0.0
    units: list[str] = field(default_factory=list)  # every unit key of the model
    timing: dict = field(default_factory=dict)   # seconds by phase (extraction, scoring tasks)


def _layers(spec: ModelSpec, cfg: ScanConfig, store: ResultStore):
    """(layer names, relative depths, description or None): the layer list comes from the
    store when an earlier run of this model recorded it, else from one description of
    the model (returned so that it is not described again)."""
    layers_key = f"layers/{safe_key(str(spec))}.json"
    info = store.get_json(layers_key) if cfg.layers == "all" else None
    if info is not None:
        return info["layers"], info["relative_depth"], None
    model = describe(spec, cfg)
    names = model.layers if cfg.layers == "all" else list(cfg.layers)
    unknown = [n for n in names if n not in model.relative_depth]
    if unknown:
        raise ValueError(f"{spec}: unknown layer(s) {unknown}; available: {model.layers}")
    depth = {n: model.relative_depth[n] for n in names}
    if cfg.layers == "all":
        store.put_json(layers_key, {"layers": names, "relative_depth": depth})
    return names, depth, model


def describe(spec: ModelSpec, cfg: ScanConfig):
    """The model as the scan presents stimuli to it (no weights loaded)."""
    return describe_model(spec, input_size=cfg.input_size, stimulus=cfg.stimulus)


@dataclass
class ModelPlan:
    """One model's units: names, keys, what is left to do."""

    spec: ModelSpec
    model_id: str
    preprocessing: dict
    layers: list[str]
    depth: dict[str, float]
    units: dict[str, str]          # layer -> unit key
    todo: list[str]
    description: object | None = None


def plan_model(spec: ModelSpec, cfg: ScanConfig, store: ResultStore, scan_key: str,
               done: set) -> ModelPlan:
    names, depth, model = _layers(spec, cfg, store)
    if model is None:
        model = describe(spec, cfg)
    mid = cache_key.model_id(str(spec), weights_identity(spec))
    pre = model.preprocess.to_dict()
    units = {n: cache_key.unit_key(scan_key, mid, pre, n) for n in names}
    todo = [n for n in names if units[n] not in done]
    return ModelPlan(spec, mid, pre, names, depth, units, todo, model)


def scan_model(spec: ModelSpec, cfg: ScanConfig, dataset, targets: DatasetTargets,
               store: ResultStore, scan_key: str, done: set, run_id: str,
               cache: FeatureCache, num_actors: int | None = None,
               workers: dict | None = None) -> ModelOutcome:
    """Extract (or reuse cached features) and score every missing unit of one model.

    With the Ray engine and ``score_on="workers"`` (``workers`` holds the resource plan,
    the targets' object reference and the scoring pool), the units are handed to the
    pool's tasks and not waited for: the outcome's ``written`` and ``rows`` are counted
    when they end (see :func:`cortexzoo.scan.run.run_scan`)."""
    t0 = time.time()
    name = str(spec)
    plan = plan_model(spec, cfg, store, scan_key, done)
    names, todo = plan.layers, plan.todo
    if not todo:
        log.info("%s: all %d layers already scored, skipping", name, len(names))
        return ModelOutcome(skipped=len(names), started=t0, ended=time.time(),
                            units=list(plan.units.values()))

    common = dict(run_id=run_id, dataset=dataset.name, model=name, source=spec.source,
                  weights=spec.weights, reduction=cfg.reduction.name, split="loo",
                  seed=spec.seed, n_stimuli=dataset.n_stimuli, scan_key=scan_key,
                  stimulus=cfg.stimulus, weights_id=plan.model_id.split("|", 1)[1],
                  preprocessing=json.dumps(plan.preprocessing, sort_keys=True))
    neuroid_meta = dict(run_id=run_id, dataset=dataset.name, scan_key=scan_key, model=name)
    keys = {n: cache.key(plan.model_id, n, cfg.reduction, plan.preprocessing) for n in todo}
    if cfg.engine == "ray" and cfg.score_on == "workers":
        return _scan_model_on_workers(spec, cfg, dataset, plan, keys, cache, common,
                                      neuroid_meta, store, workers, t0)

    feats: dict[str, np.ndarray] = {}
    if cfg.cache_features:
        for n in todo:
            arr = cache.read(keys[n])
            if arr is not None:
                feats[n] = arr
    need = [n for n in todo if n not in feats]
    if need:
        kw = dict(layers=need, reduction=cfg.reduction, batch_size=cfg.batch_size,
                  progress=cfg.progress)
        if cfg.engine == "ray":
            # Ray actors load the network themselves; the driver only needs its description.
            init_ray(cfg.address)
            kw["num_actors"] = num_actors if num_actors is not None else cfg.num_actors
            lf = extract_ray(dataset, plan.description, **kw)
        else:
            from ..zoo import load_model

            lf = extract_local(dataset, load_model(spec, input_size=cfg.input_size,
                                                   stimulus=cfg.stimulus), **kw)
        for n in need:
            feats[n] = lf.features[n]
            if cfg.cache_features:
                cache.put(plan.model_id, n, cfg.reduction, plan.preprocessing, feats[n])

    n_rows = 0
    with Progress(len(todo), f"{name} scoring", unit="layer", enabled=cfg.progress) as bar:
        for n in todo:
            n_rows += write_unit(feats.pop(n), targets, cfg.scoring, store, plan.units[n],
                                 common, n, plan.depth[n], neuroid_meta)
            bar.update(1, postfix=n)
    return ModelOutcome(written=len(todo), skipped=len(names) - len(todo), rows=n_rows,
                        started=t0, ended=time.time(), units=list(plan.units.values()))


def _scan_model_on_workers(spec, cfg, dataset, plan, keys, cache, common, neuroid_meta, store,
                           workers, t0) -> ModelOutcome:
    """Extract the missing layers into the feature cache (model actors write blocks),
    then submit one scoring task per unit without waiting: ``pending`` holds them."""
    todo = plan.todo
    need = [n for n in todo if not (cfg.cache_features and cache.has(keys[n]))]
    timing = {}
    if need:
        init_ray(cfg.address)
        t = time.time()
        extract_to_cache(dataset, plan.description, {n: keys[n] for n in need}, cfg.reduction,
                         cache, batch_size=cfg.batch_size, chunk=cfg.chunk,
                         plan=workers["extraction"], progress=cfg.progress)
        timing["extraction_s"] = time.time() - t
    for n in todo:  # scored by the pool's tasks while the next model is extracted
        workers["pool"].submit((str(spec), n), workers["targets"], cache, keys[n], cfg.scoring,
                               store, plan.units[n], common, n, plan.depth[n], neuroid_meta)
    return ModelOutcome(skipped=len(plan.layers) - len(todo), started=t0, ended=time.time(),
                        units=list(plan.units.values()), timing=timing)


def cached_features(store: ResultStore, dataset, spec: "str | ModelSpec", layer: str,
                    cfg: ScanConfig) -> np.ndarray | None:
    """The reduced features a scan with ``cfg`` cached for ``layer`` of ``spec`` on
    ``dataset`` (None when there are none)."""
    from ..zoo import parse_spec

    spec = parse_spec(spec)
    cache = FeatureCache(store, dataset.stimulus_fingerprint(), dataset.n_stimuli)
    model = describe(spec, cfg)
    mid = cache_key.model_id(str(spec), weights_identity(spec))
    return cache.get(mid, layer, cfg.reduction, model.preprocess.to_dict())
