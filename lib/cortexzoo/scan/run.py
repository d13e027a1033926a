"""A zoo scan: every layer of every model scored against a dataset, resumably.

Work is cut into units of one (model, layer). A unit is done when its score file
exists in the results store; a rerun with the same RESULTS_URI and settings skips
done units. Reduced features are cached in the store too, so a scan killed while
scoring does not extract again. Cache keys hold everything the numbers depend on:
the dataset fingerprint, the model spec (seed included), the reduction and the
scoring settings; a change to any of them is new work, never a stale hit.
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from .. import __version__
from .._progress import Progress
from ..data import load_dataset
from ..features.pipeline import extract_local, extract_ray
from ..features.reduce import ReductionConfig
from ..store import ResultStore, join, make_score_rows, package_versions, safe_key
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

    def __post_init__(self):
        if self.engine not in ("ray", "local"):
            raise ValueError(f"engine must be 'ray' or 'local', got {self.engine!r}")
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


def _scan_key(fingerprint: str, cfg: ScanConfig) -> str:
    parts = {"dataset": fingerprint, "reduction": dataclasses.asdict(cfg.reduction),
             "scoring": cfg.scoring.key_parts(), "input_size": cfg.input_size}
    return safe_key("scan", json.dumps(parts, sort_keys=True, default=str))


def resolve_data(data: str) -> str:
    if data != EMBEDDED:
        return data
    from .planted import ensure_embedded_dataset

    return ensure_embedded_dataset()


def _ensure_ray(cfg: ScanConfig):
    import ray

    if not ray.is_initialized():
        address = cfg.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
    return ray


def run_scan(cfg: ScanConfig) -> ScanResult:
    t0 = time.time()
    run_id = cfg.run_id or time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    data_uri = resolve_data(cfg.data)
    dataset = load_dataset(data_uri)
    models = cfg.models or default_models()
    from ..zoo import parse_spec

    specs = [parse_spec(m) for m in models]  # fail on a bad spec before any work
    store = ResultStore(cfg.out)
    fingerprint = dataset.fingerprint()
    scan_key = _scan_key(fingerprint, cfg)
    manifest = {"run_id": run_id, "config": cfg.to_dict(), "data_uri": data_uri,
                "dataset": dataset.name, "dataset_fingerprint": fingerprint, "scan_key": scan_key,
                "models": [str(s) for s in specs], "versions": package_versions(),
                "host": socket.gethostname(), "started_at": pd.Timestamp.now("UTC").isoformat()}
    store.write_manifest(run_id, manifest)
    log.info("scan %s: %d models on %s (%d stimuli, %d neuroids) -> %s", run_id, len(specs),
             dataset.name, dataset.n_stimuli, dataset.n_neuroids, cfg.out)

    targets = DatasetTargets.from_dataset(dataset, cfg.scoring)
    done = store.completed_units()
    written = skipped = 0
    failures: dict[str, str] = {}
    with Progress(len(specs), "models", unit="model", enabled=cfg.progress) as bar:
        for spec in specs:
            try:
                w, s = _scan_model(str(spec), cfg, dataset, targets, store, scan_key, done, run_id)
                written += w
                skipped += s
            except Exception as e:  # one broken model must not cost the others' results
                if len(specs) == 1:
                    raise
                failures[str(spec)] = f"{type(e).__name__}: {e}"
                log.error("model %s failed: %s", spec, failures[str(spec)])
            bar.update(1, postfix=str(spec))

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
    manifest.update(finished_at=pd.Timestamp.now("UTC").isoformat(), seconds=time.time() - t0,
                    written_units=written, skipped_units=skipped, failures=failures)
    store.write_manifest(run_id, manifest)
    if failures:
        raise ScanFailed(failures, ScanResult(run_id, cfg.out, scores, board, written, skipped,
                                              plot_path))
    return ScanResult(run_id, cfg.out, scores, board, written, skipped, plot_path)


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
                scan_key: str, done: set, run_id: str) -> tuple[int, int]:
    from ..zoo import parse_spec

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
        return 0, len(names)

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
            kw["num_actors"] = cfg.num_actors
        lf = extract(dataset, model, **kw)
        for n in need:
            feats[n] = lf.features[n]
            if cfg.cache_features:
                store.put_array(_feature_path(spec, n, cfg, fingerprint), feats[n])

    parsed = parse_spec(spec)
    common = dict(run_id=run_id, dataset=dataset.name, model=spec, source=parsed.source,
                  weights=parsed.weights, reduction=cfg.reduction.name, split="loo",
                  seed=getattr(parsed, "seed", 0), n_stimuli=dataset.n_stimuli, scan_key=scan_key)
    with Progress(len(todo), f"{spec} scoring", unit="layer", enabled=cfg.progress) as bar:
        for n in todo:
            rows = score_layer(feats.pop(n), targets, cfg.scoring)
            for r in rows:
                r.update(layer=n, relative_depth=float(layer_info["relative_depth"][n]),
                         unit_key=unit[n])
            store.write_scores(make_score_rows(common, rows), unit[n])
            bar.update(1, postfix=n)
    return len(todo), len(names) - len(todo)
