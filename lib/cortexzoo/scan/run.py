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
import logging
import socket
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import pandas as pd

from ..core import cache_key
from ..core.progress import Progress
from ..data import load_dataset
from ..features.cache import FeatureCache
from ..store import (ResultStore, StoreAccessError, StoreNotFoundError, StoreUnavailableError,
                     is_remote, join, make_score_rows, package_versions, safe_key)
from ..zoo import parse_spec
from .config import ScanConfig, default_models, resolve_data
from .model import ModelOutcome, scan_model
from .plan import actors_per_model, describe_plan, worker_plan
from .scoring import DatasetTargets
from .workers import ScoringPool, remote_score

log = logging.getLogger("cortexzoo")

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
    return cache_key.scan_key(fingerprint, dataclasses.asdict(cfg.reduction),
                              cfg.scoring.key_parts(),
                              {"stimulus": cfg.stimulus, "input_size": cfg.input_size})


def _inter_animal(targets: DatasetTargets, cfg: ScanConfig, store: ResultStore, dataset,
                  scan_key: str, run_id: str, done: set) -> tuple[list[str], int]:
    """The inter-animal ceiling rows of this scan, as one unit (written once); returns
    (its unit key, rows written now)."""
    key = safe_key(scan_key, "inter_animal")
    if key in done or not cfg.scoring.inter_animal or targets.Y is None:
        return [key], 0
    rows = targets.inter_animal_rows(cfg.scoring)
    if not rows:
        return [], 0
    common = dict(run_id=run_id, dataset=dataset.name, model="inter_animal", source="ceiling",
                  weights="none", layer="", relative_depth=float("nan"), reduction="none",
                  seed=cfg.scoring.seed, n_stimuli=dataset.n_stimuli, scan_key=scan_key,
                  stimulus=cfg.stimulus, unit_key=key)
    table = make_score_rows(common, rows)
    store.write_scores(table, key)
    return [key], len(table)


#: Store errors that retrying cannot fix: the scan stops (units written so far are kept).
_FATAL_STORE_ERRORS = (StoreAccessError, StoreNotFoundError, StoreUnavailableError)


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
    specs: dict[str, object] = {}
    for m in models:  # parsed once; fails on a bad spec before any work
        spec = parse_spec(m)
        specs.setdefault(str(spec), spec)
    names = list(specs)
    if len(names) < len(models):  # twice the same units would be scored twice (or race)
        log.warning("scanning each model once: %d repeated spec(s) dropped", len(models) - len(names))
    store = ResultStore(cfg.out)
    fingerprint = dataset.fingerprint()
    scan_key = _scan_key(fingerprint, cfg)
    manifest = {"run_id": run_id, "config": cfg.to_dict(), "data_uri": data_uri,
                "dataset": dataset.name, "dataset_fingerprint": fingerprint, "scan_key": scan_key,
                "models": names, "versions": package_versions(),
                "host": socket.gethostname(), "started_at": pd.Timestamp.now("UTC").isoformat()}
    store.write_manifest(run_id, manifest)  # the first write: a refused store fails here
    concurrent = max(1, min(cfg.max_concurrent_models, len(names)))
    log.info("scan %s: %d models on %s (%d stimuli, %d neuroids), %d at a time -> %s", run_id,
             len(names), dataset.name, dataset.n_stimuli, dataset.n_neuroids, concurrent, cfg.out)

    targets = DatasetTargets.from_dataset(dataset, cfg.scoring)
    manifest.update(targets.manifest(dataset.stimuli["stimulus_id"]))
    store.write_manifest(run_id, manifest)
    done = store.completed_units()
    own_units, ia_rows = _inter_animal(targets, cfg, store, dataset, scan_key, run_id, done)
    cache = FeatureCache(store, dataset.stimulus_fingerprint(), dataset.n_stimuli)
    num_actors = actors_per_model(cfg, concurrent)
    workers = None
    if cfg.engine == "ray" and cfg.score_on == "workers":
        workers = worker_plan(cfg, concurrent, num_actors)
        log.info(describe_plan(workers, concurrent))
        if workers["nodes"] > 1 and not is_remote(cfg.out):
            log.warning("a %d-node cluster writes its features and scores to the local path "
                        "%s: every node must see it (a shared filesystem), else use s3:// or "
                        "gs://", workers["nodes"], cfg.out)
        import ray

        workers["targets"] = ray.put(targets)  # computed once, shared by every scoring task
        scored: dict[str, dict] = {}
        lock = threading.Lock()

        def on_done(key, result):
            model, layer = key
            with lock:
                acc = scored.setdefault(model, {"rows": 0, "written": 0, "timing": {},
                                                "errors": [], "ended": 0.0})
                acc["ended"] = time.time()
                if isinstance(result, BaseException):
                    msg = f"scoring {layer}: {type(result).__name__}: " + \
                          str(result).strip().splitlines()[-1][:500]
                    acc["errors"].append(msg)
                    log.error("model %s: %s", model, msg)
                    return
                rows, secs = result
                acc["rows"] += int(rows)
                acc["written"] += 1
                for k, v in secs.items():
                    acc["timing"][k] = acc["timing"].get(k, 0.0) + v

        workers["pool"] = ScoringPool(remote_score(workers["scoring"], workers["env"]),
                                      workers["max_inflight"], on_done,
                                      tail_inflight=workers["tail_inflight"])
        manifest["resource_plan"] = {k: v for k, v in workers.items()
                                     if k in ("extraction", "scoring", "nodes", "cpus", "gpus",
                                              "why")}
    outcomes: dict[str, ModelOutcome] = {}
    failures: dict[str, str] = {}

    def one(name: str) -> ModelOutcome:
        return scan_model(specs[name], cfg, dataset, targets, store, scan_key, done, run_id,
                          cache, num_actors=num_actors, workers=workers)

    with Progress(len(names), "models", unit="model", enabled=cfg.progress) as bar:
        if concurrent == 1:
            for spec in names:
                try:
                    outcomes[spec] = one(spec)
                except _FATAL_STORE_ERRORS:
                    raise
                except Exception as e:  # one broken model must not cost the others' results
                    if len(names) == 1:
                        raise
                    failures[spec] = f"{type(e).__name__}: {e}"
                    log.error("model %s failed: %s", spec, failures[spec])
                bar.update(1, postfix=spec)
        else:
            _run_concurrently(names, one, concurrent, outcomes, failures, bar)

    if workers is not None:
        t_wait = time.time()
        workers["pool"].close()  # the last units are scored after the last extraction
        log.info("scoring: waited %.1f s after the last extraction", time.time() - t_wait)
        for model, acc in scored.items():
            o = outcomes.setdefault(model, ModelOutcome())
            o.rows += acc["rows"]
            o.written += acc["written"]
            o.ended = max(o.ended, acc["ended"])
            for k, v in acc["timing"].items():
                o.timing[k] = o.timing.get(k, 0.0) + v
            if acc["errors"]:
                failures[model] = "; ".join(acc["errors"])
    for o in outcomes.values():
        own_units += o.units
    if cfg.compact:
        store.compact(units=own_units, run_id=run_id)  # a few large files per run
    scores = store.read_scores(filters=[("scan_key", "==", scan_key)])
    scores = scores[scores["unit_key"].isin(set(own_units))].reset_index(drop=True)
    from ..report import leaderboard, plot_depth, scan_label

    board = leaderboard(scores)
    encoders = []
    if cfg.save_encoders and len(scores):
        from .encoders import save_encoders
        encoders = save_encoders(cfg, dataset, targets, store, scores, scan_key, run_id,
                                 workers=workers)
    plot_path = None
    if cfg.plot and len(scores):
        label = scan_label(dataset.name, scan_key)
        store.put_bytes(f"plots/{label}/depth.png", plot_depth(scores))
        plot_path = join(cfg.out, f"plots/{label}/depth.png")
        board.to_csv(buf := io.StringIO(), index=False)
        store.put_bytes(f"leaderboards/{label}.csv", buf.getvalue().encode())
    written = sum(o.written for o in outcomes.values())
    skipped = sum(o.skipped for o in outcomes.values())
    summary = _summary(t0, specs, outcomes, failures, concurrent, store)
    summary["rows_written"] += ia_rows  # the inter-animal ceiling's rows
    summary["encoders"] = encoders
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
        # where the time went: extraction wall time and the scoring tasks' own seconds
        "timing": {k: round(sum(o.timing.get(k, 0.0) for o in outcomes.values()), 3)
                   for k in sorted({k for o in outcomes.values() for k in o.timing})},
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


