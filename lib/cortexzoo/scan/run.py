"""A zoo scan: every layer of every model scored against a dataset, resumably.

Work is cut into units of one (model, layer). A unit is done when its score file
exists in the results store; a rerun with the same RESULTS_URI and settings skips
done units. Reduced features are cached in the store too, so a scan killed while
scoring does not extract again. Cache keys hold everything the numbers depend on:
the dataset fingerprint, the model spec (seed included), the reduction and the
scoring settings; a change to any of them is new work, never a stale hit.

``max_concurrent_models > 1`` scans several models at once: a thread pool in the
driver, each thread running one model's extraction (its own Ray Data pipeline, or
in-process with the local engine) and scoring. A model that fails costs only its
own units; an error of the results store that retrying cannot fix (refused
credentials, missing bucket, store unreachable past the retry policy) stops the
scan at once, keeping every unit written so far (a rerun resumes).

The final summary (log line and ``summary`` in the run's manifest) reports the
time, throughput, score rows written and the store operations retried.
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from .. import __version__
from .._progress import Progress
from ..data import load_dataset
from ..features.pipeline import extract_local, extract_ray
from ..features.reduce import ReductionConfig
from ..store import (
    ResultStore,
    StoreAccessError,
    StoreNotFoundError,
    StoreUnavailableError,
    join,
    make_score_rows,
    package_versions,
    safe_key,
)
from .scoring import DatasetTargets, ScoringConfig, score_layer

log = logging.getLogger("cortexzoo")

EMBEDDED = "embedded"


def default_models() -> list[str]:
    """The embedded default zoo: a timm and a torchvision net (trained where weights
    are available, and random) plus the pixel baseline."""
    from ..zoo import weights_available

    specs = ["timm:tf_efficientnet_lite0@trained", "timm:tf_efficientnet_lite0@random",
             "torchvision:resnet18@trained", "torchvision:resnet18@random", "pixels"]
    keep = []
    for s in specs:
        if s.endswith("@trained") and not weights_available(s):
            log.warning("skipping %s in the default zoo: its trained weights are not available "
                        "offline (pass it with --models to download it)", s)
            continue
        keep.append(s)
    return keep


@dataclass
class ScanConfig:
    data: str = EMBEDDED
    models: list[str] | None = None
    out: str = "cortexzoo-results"
    layers: str | list[str] = "all"
    reduction: ReductionConfig = field(default_factory=ReductionConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    engine: str = "ray"  # "ray" or "local"
    address: str | None = None
    batch_size: int = 16
    num_actors: int | None = None
    input_size: int | None = None  # override every model's crop size (keeps resize/crop ratio)
    cache_features: bool = True
    progress: bool = True
    plot: bool = True
    run_id: str | None = None
    max_concurrent_models: int = 1  # models extracted and scored at once (driver threads)

    def __post_init__(self):
        if self.engine not in ("ray", "local"):
            raise ValueError(f"engine must be 'ray' or 'local', got {self.engine!r}")
        if (not isinstance(self.max_concurrent_models, int) or isinstance(self.max_concurrent_models, bool)
                or self.max_concurrent_models < 1):
            raise ValueError("max_concurrent_models must be an integer >= 1, got "
                             f"{self.max_concurrent_models!r}")
        if isinstance(self.reduction, dict):
            self.reduction = ReductionConfig(**self.reduction)
        if isinstance(self.scoring, dict):
            self.scoring = ScoringConfig(**self.scoring)
        if isinstance(self.models, str):
            self.models = [m.strip() for m in self.models.split(",") if m.strip()]

    @classmethod
    def from_dict(cls, d: dict) -> "ScanConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown scan config key(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str) -> "ScanConfig":
        import yaml

        with open(path) as f:
            d = yaml.safe_load(f) or {}
        if not isinstance(d, dict):
            raise ValueError(f"{path}: a scan config is a mapping of keys, got {type(d).__name__}")
        return cls.from_dict(d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ScanResult:
    run_id: str
    out: str
    scores: pd.DataFrame
    leaderboard: pd.DataFrame
    written_units: int
    skipped_units: int
    plot_path: str | None = None
    summary: dict = field(default_factory=dict)  # time, throughput, rows, retries (see run_scan)


def _scan_key(fingerprint: str, cfg: ScanConfig) -> str:
    parts = {"dataset": fingerprint, "reduction": dataclasses.asdict(cfg.reduction),
             "scoring": cfg.scoring.key_parts(), "input_size": cfg.input_size}
    return safe_key("scan", json.dumps(parts, sort_keys=True, default=str))


def resolve_data(data: str) -> str:
    if data != EMBEDDED:
        return data
    from .planted import ensure_embedded_dataset

    return ensure_embedded_dataset()


_RAY_LOCK = threading.Lock()


def _ensure_ray(cfg: ScanConfig):
    import ray

    with _RAY_LOCK:  # model threads may all get here at once
        if not ray.is_initialized():
            address = cfg.address or os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(address="local", include_dashboard=False, log_to_driver=False)
    return ray


#: Store errors that retrying cannot fix: the scan stops (units written so far are kept).
_FATAL_STORE_ERRORS = (StoreAccessError, StoreNotFoundError, StoreUnavailableError)


def _actors_per_model(cfg: ScanConfig, concurrent: int) -> int | None:
    """Model actors per pipeline when ``concurrent`` pipelines share a CPU-only cluster.

    Each pipeline sizes its actors from the whole cluster; side by side their actors
    could take every CPU and starve the decode tasks (0.25 CPU) that feed them. Pick
    the smallest actor count at least the single-pipeline default whose actors, as
    many as fit, always leave a decode task room."""
    if cfg.num_actors is not None or concurrent <= 1 or cfg.engine != "ray":
        return cfg.num_actors
    from ..features.pipeline import default_actor_plan

    ray = _ensure_ray(cfg)
    res = ray.cluster_resources()
    if res.get("GPU", 0) > 0:
        return None  # GPU actors: the pipelines queue for GPUs, CPUs stay free for decoding
    cpus = float(res.get("CPU", 1))
    n0 = default_actor_plan(None)["n"]
    for n in range(n0, n0 + 4 * int(math.ceil(cpus)) + 8):
        per = default_actor_plan(n)["num_cpus"]
        most = min(concurrent * n, int(math.floor(cpus / per + 1e-9)))
        if cpus - most * per >= 0.25 - 1e-9:
            return n
    return n0


@dataclass
class _ModelOutcome:
    written: int = 0   # units scored now
    skipped: int = 0   # units already in the store
    rows: int = 0      # score rows written
    started: float = 0.0  # wall-clock (time.time()) start and end of this model's work
    ended: float = 0.0


def run_scan(cfg: ScanConfig) -> ScanResult:
    """Scan every model of ``cfg`` (up to ``cfg.max_concurrent_models`` at once).

    Raises
    ------
    ScanFailed
        When some models failed (the others' results are written; ``.result`` has them).
    StoreAccessError, StoreNotFoundError, StoreUnavailableError
        When the results store refuses or cannot be reached: the scan stops at once
        and keeps every unit written before.
    """
    t0 = time.time()
    run_id = cfg.run_id or time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    data_uri = resolve_data(cfg.data)
    dataset = load_dataset(data_uri)
    models = cfg.models or default_models()
    from ..zoo import parse_spec

    specs = [parse_spec(m) for m in models]  # fail on a bad spec before any work
    names = list(dict.fromkeys(str(s) for s in specs))
    if len(names) < len(specs):  # twice the same units would be scored twice (or race)
        log.warning("scanning each model once: %d repeated spec(s) dropped", len(specs) - len(names))
        specs = [parse_spec(m) for m in names]
    store = ResultStore(cfg.out)
    fingerprint = dataset.fingerprint()
    scan_key = _scan_key(fingerprint, cfg)
    manifest = {"run_id": run_id, "config": cfg.to_dict(), "data_uri": data_uri,
                "dataset": dataset.name, "dataset_fingerprint": fingerprint, "scan_key": scan_key,
                "models": names, "versions": package_versions(),
                "host": socket.gethostname(), "started_at": pd.Timestamp.now("UTC").isoformat()}
    store.write_manifest(run_id, manifest)  # the first write: a refused store fails here
    concurrent = max(1, min(cfg.max_concurrent_models, len(specs)))
    log.info("scan %s: %d models on %s (%d stimuli, %d neuroids), %d at a time -> %s", run_id,
             len(specs), dataset.name, dataset.n_stimuli, dataset.n_neuroids, concurrent, cfg.out)

    targets = DatasetTargets.from_dataset(dataset, cfg.scoring)
    done = store.completed_units()
    num_actors = _actors_per_model(cfg, concurrent)
    outcomes: dict[str, _ModelOutcome] = {}
    failures: dict[str, str] = {}

    def one(spec: str) -> _ModelOutcome:
        return _scan_model(spec, cfg, dataset, targets, store, scan_key, done, run_id,
                           num_actors=num_actors)

    with Progress(len(specs), "models", unit="model", enabled=cfg.progress) as bar:
        if concurrent == 1:
            for spec in names:
                try:
                    outcomes[spec] = one(spec)
                except _FATAL_STORE_ERRORS:
                    raise
                except Exception as e:  # one broken model must not cost the others' results
                    if len(specs) == 1:
                        raise
                    failures[spec] = f"{type(e).__name__}: {e}"
                    log.error("model %s failed: %s", spec, failures[spec])
                bar.update(1, postfix=spec)
        else:
            _run_concurrently(names, one, concurrent, outcomes, failures, bar)

    scores = store.read_scores()
    scores = scores[scores["scan_key"] == scan_key] if "scan_key" in scores else scores
    from ..report import leaderboard, plot_depth

    board = leaderboard(scores)
    plot_path = None
    if cfg.plot and len(scores):
        store.put_bytes("plots/depth.png", plot_depth(scores))
        plot_path = join(cfg.out, "plots/depth.png")
        board.to_csv(buf := io.StringIO(), index=False)
        store.put_bytes("leaderboard.csv", buf.getvalue().encode())
    written = sum(o.written for o in outcomes.values())
    skipped = sum(o.skipped for o in outcomes.values())
    summary = _summary(t0, specs, outcomes, failures, concurrent, store)
    manifest.update(finished_at=pd.Timestamp.now("UTC").isoformat(), seconds=summary["seconds"],
                    written_units=written, skipped_units=skipped, failures=failures,
                    summary=summary)
    store.write_manifest(run_id, manifest)
    summary["store"] = store.retry_stats()  # the final manifest write counted too
    log.info(_summary_line(run_id, summary))
    result = ScanResult(run_id, cfg.out, scores, board, written, skipped, plot_path, summary)
    if failures:
        raise ScanFailed(failures, result)
    return result


def _run_concurrently(names: list[str], one, concurrent: int, outcomes: dict, failures: dict,
                      bar: Progress) -> None:
    """Run ``one(spec)`` for every spec, ``concurrent`` at a time, in driver threads."""
    fatal: BaseException | None = None
    with ThreadPoolExecutor(concurrent, thread_name_prefix="cortexzoo-model") as pool:
        pending = {pool.submit(one, spec): spec for spec in names}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                spec = pending.pop(fut)
                try:
                    outcomes[spec] = fut.result()
                except _FATAL_STORE_ERRORS as e:
                    fatal = fatal or e
                except Exception as e:  # one broken model must not cost the others' results
                    failures[spec] = f"{type(e).__name__}: {e}"
                    log.error("model %s failed: %s", spec, failures[spec])
                bar.update(1, postfix=spec)
            if fatal is not None:
                # stop starting models; those already running end on the same error soon
                for fut in pending:
                    fut.cancel()
                break
    if fatal is not None:
        raise fatal


def _summary(t0: float, specs, outcomes: dict, failures: dict, concurrent: int,
             store: ResultStore) -> dict:
    seconds = time.time() - t0
    written = sum(o.written for o in outcomes.values())
    rows = sum(o.rows for o in outcomes.values())
    scanned = sum(1 for o in outcomes.values() if o.written)
    return {
        "seconds": round(seconds, 3),
        "models": len(specs),
        "models_scanned": scanned,          # models with at least one unit scored now
        "models_skipped": len(outcomes) - scanned,  # every unit already in the store
        "models_failed": len(failures),
        "units_written": written,
        "units_skipped": sum(o.skipped for o in outcomes.values()),
        "rows_written": rows,
        "layers_per_s": round(written / seconds, 4) if seconds > 0 else None,
        "models_per_min": round(60 * scanned / seconds, 4) if seconds > 0 else None,
        "max_concurrent_models": concurrent,
        # seconds from the scan's start when each model's work began and ended
        "model_windows": {m: [round(o.started - t0, 3), round(o.ended - t0, 3)]
                          for m, o in outcomes.items()},
        "store": store.retry_stats(),
    }


def _summary_line(run_id: str, s: dict) -> str:
    st = s["store"]
    return (f"scan {run_id} done in {s['seconds']:.1f} s: {s['models_scanned']} models scanned, "
            f"{s['models_skipped']} already done, {s['models_failed']} failed; "
            f"{s['units_written']} units ({s['rows_written']} score rows) written, "
            f"{s['units_skipped']} skipped; {s['layers_per_s'] or 0:.2f} layers/s, "
            f"{s['models_per_min'] or 0:.2f} models/min; store: {st['retries']} retries "
            f"({st['operations_retried']} operations, {st['gave_up']} gave up)")


class ScanFailed(RuntimeError):
    def __init__(self, failures: dict[str, str], result: ScanResult):
        self.failures, self.result = failures, result
        lines = "\n".join(f"  {m}: {e}" for m, e in failures.items())
        super().__init__(f"{len(failures)} model(s) failed (the other results are written):\n{lines}")


def _feature_path(model: str, layer: str, cfg: ScanConfig, fingerprint: str) -> str:
    # Features depend on the data, the model, its input size and the reduction only.
    from ..features.pipeline import FEATURES_VERSION

    key = safe_key(model, layer, json.dumps(dataclasses.asdict(cfg.reduction), sort_keys=True),
                   str(cfg.input_size), fingerprint, FEATURES_VERSION)
    return f"features/{key}.npy"


def load_for_scan(spec: str, input_size: int | None = None, describe: bool = False):
    """Load a model, optionally at another input size (same resize/crop ratio).
    ``describe=True``: layers and preprocessing only, no weights (``module`` is None)."""
    from ..zoo import describe_model, load_model

    model = describe_model(spec) if describe else load_model(spec)
    if input_size:
        pre = model.preprocess
        resize = max(input_size, round(input_size * pre.resize_size / pre.input_size))
        model.preprocess = dataclasses.replace(pre, input_size=input_size, resize_size=resize)
    return model


def _scan_model(spec: str, cfg: ScanConfig, dataset, targets: DatasetTargets, store,
                scan_key: str, done: set, run_id: str,
                num_actors: int | None = None) -> _ModelOutcome:
    """Extract (or reuse cached features) and score every missing unit of one model."""
    from ..zoo import parse_spec

    t0 = time.time()

    fingerprint = dataset.fingerprint()
    layers_key = f"layers/{safe_key(spec)}.json"
    layer_info = store.get_json(layers_key)
    if layer_info is None or cfg.layers != "all":
        model = load_for_scan(spec, cfg.input_size, describe=True)
        names = model.layers if cfg.layers == "all" else list(cfg.layers)
        unknown = [n for n in names if n not in model.relative_depth]
        if unknown:
            raise ValueError(f"{spec}: unknown layer(s) {unknown}; available: {model.layers}")
        layer_info = {"layers": names, "relative_depth": {n: model.relative_depth[n] for n in names}}
        if cfg.layers == "all":
            store.put_json(layers_key, layer_info)
    else:
        model = None
    names = layer_info["layers"]
    unit = {n: safe_key(scan_key, spec, n) for n in names}
    todo = [n for n in names if unit[n] not in done]
    if not todo:
        log.info("%s: all %d layers already scored, skipping", spec, len(names))
        return _ModelOutcome(skipped=len(names), started=t0, ended=time.time())

    feats: dict[str, np.ndarray] = {}
    if cfg.cache_features:
        for n in todo:
            arr = store.get_array(_feature_path(spec, n, cfg, fingerprint))
            if arr is not None and arr.shape[0] == dataset.n_stimuli:
                feats[n] = arr
    need = [n for n in todo if n not in feats]
    if need:
        # Ray actors load the network themselves; the driver only needs its description.
        model = load_for_scan(spec, cfg.input_size, describe=cfg.engine == "ray")
        extract = extract_ray if cfg.engine == "ray" else extract_local
        kw = dict(layers=need, reduction=cfg.reduction, batch_size=cfg.batch_size,
                  progress=cfg.progress)
        if cfg.engine == "ray":
            _ensure_ray(cfg)
            kw["num_actors"] = num_actors if num_actors is not None else cfg.num_actors
        lf = extract(dataset, model, **kw)
        for n in need:
            feats[n] = lf.features[n]
            if cfg.cache_features:
                store.put_array(_feature_path(spec, n, cfg, fingerprint), feats[n])

    parsed = parse_spec(spec)
    common = dict(run_id=run_id, dataset=dataset.name, model=spec, source=parsed.source,
                  weights=parsed.weights, reduction=cfg.reduction.name, split="loo",
                  seed=getattr(parsed, "seed", 0), n_stimuli=dataset.n_stimuli, scan_key=scan_key)
    n_rows = 0
    with Progress(len(todo), f"{spec} scoring", unit="layer", enabled=cfg.progress) as bar:
        for n in todo:
            rows = score_layer(feats.pop(n), targets, cfg.scoring)
            for r in rows:
                r.update(layer=n, relative_depth=float(layer_info["relative_depth"][n]),
                         unit_key=unit[n])
            table = make_score_rows(common, rows)
            store.write_scores(table, unit[n])
            n_rows += len(table)
            bar.update(1, postfix=n)
    return _ModelOutcome(written=len(todo), skipped=len(names) - len(todo), rows=n_rows,
                         started=t0, ended=time.time())
