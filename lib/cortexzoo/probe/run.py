"""The probe battery over every trained twin of a results URI, on Ray.

:func:`probe_family` finds the exported twins under ``OUT/twins/best/`` (every encoder x
seed, or those selected), and runs one Ray task per (twin, probe family) unit:
``orientation``, ``contrast``, ``motion`` (method ``"probe"``), ``tuning`` (method
``"tuning"``) and ``eigenspectrum`` (method ``"eigenspectrum"``). A task takes
``cpus_per_task`` CPUs and, when the cluster has GPUs (or ``use_gpu``), ``gpus_per_task``
GPUs, and runs the twin there.

Resumable like a scan unit: a unit is done exactly when its scores file
``scores/probe-<pair>-<family>.parquet`` exists, and a task writes that file last,
after its tables (``probes/<table>/<pair>.parquet``) and its timings
(``probes/timings/<pair>-<family>.json``). A run started again skips finished units
(``overwrite`` recomputes them). A failed unit does not stop the others; the run
raises :class:`ProbeFailed` at the end, naming them.

Afterwards the driver writes the neural cvPCA reference (sessions with repeats), makes
sure every twin has its neural-prediction score (running ``twins eval`` for those
without), and builds the cross-model table and the plots
(:mod:`cortexzoo.probe.cross_model`).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import pandas as pd

from ..core.progress import Progress
from ..core.raysetup import init_ray, remote_task
from ..core.uri import normalize_uri
from .config import FAMILIES, ProbeConfig, ProbeConfigError
from .files import NEURAL_UNIT, list_twins, parquet_bytes, parse_pair, unit_key

log = logging.getLogger("cortexzoo.probe")

__all__ = ["ProbeFailed", "UnitResult", "ProbeRun", "unit_key", "list_twins", "select_twins",
           "run_unit", "probe_family", "finish", "METHODS", "NEURAL_UNIT"]

#: Score-table method of each family.
METHODS = {"orientation": "probe", "contrast": "probe", "motion": "probe", "tuning": "tuning",
           "eigenspectrum": "eigenspectrum"}


class ProbeFailed(RuntimeError):
    """One or more units failed; ``results`` holds every unit's outcome."""

    def __init__(self, msg: str, results: list["UnitResult"]):
        super().__init__(msg)
        self.results = results


@dataclass
class UnitResult:
    pair: str
    family: str
    status: str  # "done", "skipped" (already done) or "failed"
    seconds: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class ProbeRun:
    """What :func:`probe_family` did: unit outcomes, the cross-model table, files."""

    results: list[UnitResult]
    cross_model: pd.DataFrame
    files: list[str] = field(default_factory=list)
    run_id: str = ""


def select_twins(store: Any, cfg: ProbeConfig) -> list[tuple[str, str, int]]:
    """``(pair, encoder, seed)`` of the twins to probe; errors name what is missing."""
    available = list_twins(store)
    if not available:
        raise FileNotFoundError(f"no trained twins under {store.uri_of('twins/best')}; run "
                                "`cortexzoo twins train` first")
    twins = [(p, *parse_pair(p)) for p in available]
    if cfg.encoders is not None or cfg.seeds is not None:
        from ..twins.train import pair_key

        encs = cfg.encoders or sorted({e for _, e, _ in twins})
        seeds = cfg.seeds if cfg.seeds is not None else sorted({s for _, _, s in twins})
        want = [pair_key(e, s) for e in encs for s in seeds]
        if cfg.encoders is not None and cfg.seeds is not None:
            missing = [k for k in want if k not in available]
            if missing:
                raise FileNotFoundError(f"no trained twin(s) {missing} under "
                                        f"{store.uri_of('twins/best')}; available: {available}")
        twins = [t for t in twins if t[0] in want]
        if not twins:
            raise FileNotFoundError(f"no trained twin matches encoders {cfg.encoders} and seeds "
                                    f"{cfg.seeds} under {store.uri_of('twins/best')}; "
                                    f"available: {available}")
    return twins


def _compute(family: str, model: Any, blob: Mapping[str, Any], cfg: ProbeConfig, data: str,
             session: str | None, device: Any):
    from .extract import FeatureExtractor
    from .geometry import eigenspectrum_task
    from .tasks import contrast_task, motion_task, orientation_task
    from .tuning import tuning_task

    seed = int(blob["twin_config"]["seed"])
    clip_len = int(getattr(model, "clip_len", 5))
    fx = FeatureExtractor(model, tuple(blob["input_hw"]), cfg.batch_size, device)
    if family == "orientation":
        res = orientation_task(fx, cfg, seed)
    elif family == "contrast":
        res = contrast_task(fx, cfg, seed, clip_len)
    elif family == "motion":
        res = motion_task(fx, cfg, seed, clip_len)
    elif family == "tuning":
        res = tuning_task(fx, cfg)
    elif family == "eigenspectrum":
        from types import SimpleNamespace

        from ..data.sessions import load_session

        sess = load_session(data, session)
        res = eigenspectrum_task(fx, SimpleNamespace(sessions=[sess], uri=data), cfg, clip_len)
    else:  # validated by the config; here for callers of run_unit
        raise ProbeConfigError(f"unknown probe family {family!r}; known: {list(FAMILIES)}")
    res.info.update(device=str(fx.device), frames=fx.frames, forward_only_s=fx.seconds)
    return res


def run_unit(out: str, data: str, pair: str, family: str, cfg: ProbeConfig | Mapping[str, Any],
             *, run_id: str, dataset: str, session: str | None = None,
             device: Any = None) -> dict[str, Any]:
    """Compute and write one (twin, family) unit; returns its timings and info.

    The body of each Ray task, callable in-process too. Writes the tables and the
    timings first and the scores file (the unit's completion mark) last.
    """
    from ..store import ResultStore, make_score_rows
    from ..twins.train import load_twin, model_name

    t_start = time.perf_counter()
    cfg = cfg if isinstance(cfg, ProbeConfig) else ProbeConfig.from_dict(cfg)
    store = ResultStore(out)
    blob_bytes = store.get_bytes(f"twins/best/{pair}.pt")
    if blob_bytes is None:
        raise FileNotFoundError(f"twin {pair!r}: {store.uri_of(f'twins/best/{pair}.pt')} is gone")
    model, blob = load_twin(blob_bytes)
    enc, seed = blob["twin_config"]["encoder"], int(blob["twin_config"]["seed"])
    t_load = time.perf_counter() - t_start
    res = _compute(family, model, blob, cfg, data, session, device)
    t_write = time.perf_counter()
    ident = {"architecture": enc, "seed": seed, "model": model_name(enc, seed), "pair": pair}
    for name, df in res.tables.items():
        store.put_bytes(f"probes/{name}/{pair}.parquet", parquet_bytes(df.assign(**ident)))
    timings = {"load_s": t_load, **res.timings}
    info = {**res.info, "family": family, **ident}
    common = {"run_id": run_id, "dataset": dataset, "region": "V1", "model": ident["model"],
              "source": "twin", "weights": "trained", "relative_depth": float("nan"),
              "reduction": "none", "method": METHODS[family], "ceiling": float("nan"),
              "seed": seed, "encoder": enc, "family": family, "probe_seed": int(cfg.seed)}
    scores = make_score_rows(common, res.rows)
    timings["write_s"] = time.perf_counter() - t_write
    timings["total_s"] = time.perf_counter() - t_start
    store.put_json(f"probes/timings/{pair}-{family}.json", {"timings": timings, "info": info})
    store.write_scores(scores, unit_key(pair, family))
    return {"timings": timings, "info": info}


def _ray_unit(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """run_unit in a Ray worker: torch gets the CPUs the task was given."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))
    return run_unit(*args, **kwargs)


def _use_gpu(ray: Any, cfg: ProbeConfig) -> bool:
    if cfg.use_gpu is not None:
        return bool(cfg.use_gpu)
    return float(ray.cluster_resources().get("GPU", 0)) > 0


def _neural_unit(store: Any, coll: Any, cfg: ProbeConfig, run_id: str, dataset: str) -> bool:
    """Write the neural cvPCA reference unit when a session has repeats; True if written."""
    from ..store import make_score_rows
    from .geometry import neural_reference

    if not cfg.overwrite and store.has_unit(NEURAL_UNIT):
        return False
    table, rows = neural_reference(coll, cfg)
    if not rows:
        return False
    store.put_bytes("probes/eigenspectrum/neural-cvpca.parquet", parquet_bytes(table))
    common = {"run_id": run_id, "dataset": dataset, "region": "V1", "model": "neural:recorded",
              "source": "neural", "weights": "none", "relative_depth": float("nan"),
              "reduction": "none", "method": "eigenspectrum", "ceiling": float("nan"),
              "seed": int(cfg.seed), "family": "eigenspectrum"}
    store.write_scores(make_score_rows(common, rows), NEURAL_UNIT)
    return True


def finish(store: Any, cfg: Any, data: str) -> tuple[pd.DataFrame, list[str]]:
    """Neural prediction where missing, the cross-model table and its statistics, plots.

    The table covers every twin of the store that has probe scores (earlier runs'
    included). Returns the table and the URIs written.
    """
    from ..twins.train import model_name
    from .cross_model import PROBE_METHODS, build_cross_model, cross_model_stats, \
        ensure_neural_prediction
    from .plots import write_plots

    pairs = [(p, *parse_pair(p)) for p in list_twins(store)]
    sc = store.read_scores(columns=["model", "method"])
    probed = set(sc.loc[sc["method"].isin(PROBE_METHODS), "model"])
    pairs = [t for t in pairs if model_name(t[1], t[2]) in probed]
    files = []
    if pairs:
        ensure_neural_prediction(store, data, pairs, cfg)
    cross = build_cross_model(store.read_scores(), pairs)
    files.append(store.put_bytes("probes/cross_model.parquet", parquet_bytes(cross)))
    files.append(store.put_bytes("probes/cross_model_stats.parquet",
                                 parquet_bytes(cross_model_stats(cross))))
    if cfg.plots and len(cross):
        files += write_plots(store, cross)
    return cross, files


def probe_family(cfg: ProbeConfig, *, on_unit: Callable[[UnitResult], None] | None = None,
                 device: Any = None) -> ProbeRun:
    """Run the battery on every selected twin of ``cfg.out`` (see the module text)."""
    from ..data.sessions import load_sessions
    from ..store import ResultStore

    if not cfg.data:
        raise ProbeConfigError("data: a sessions URI is required (--data)")
    data, out = normalize_uri(cfg.data), normalize_uri(cfg.out)
    coll = load_sessions(data)  # errors name the missing folder, session or file
    store = ResultStore(out)
    twins = select_twins(store, cfg)
    session = None
    if "eigenspectrum" in cfg.families:
        from .geometry import reference_session

        session = reference_session(coll, cfg).name
    dataset = str(coll.index.get("name") or os.path.basename(data.rstrip("/")) or data)
    run_id = f"twins-probe-{time.strftime('%Y%m%dT%H%M%S')}"
    done = store.completed_units()
    units = [(p, f) for p, _, _ in twins for f in cfg.families]
    results: list[UnitResult] = []
    todo = []
    for p, f in units:
        if not cfg.overwrite and unit_key(p, f) in done:
            results.append(UnitResult(p, f, "skipped"))
        else:
            todo.append((p, f))
    store.write_manifest(run_id, {"kind": "twins-probe", "config": cfg.to_dict(),
                                  "twins": [t[0] for t in twins], "units": len(units),
                                  "todo": len(todo)})
    if todo:
        ray = init_ray(cfg.address)
        gpu = _use_gpu(ray, cfg)
        ray, task = remote_task(_ray_unit, cfg.address, num_cpus=cfg.cpus_per_task,
                                gpus=cfg.gpus_per_task if gpu else 0, max_retries=cfg.max_retries)
        cfg_d = cfg.to_dict()
        refs = {}
        for p, f in todo:
            ref = task.remote(out, data, p, f, cfg_d, run_id=run_id, dataset=dataset,
                              session=session, device=device)
            refs[ref] = (p, f, time.perf_counter())
        log.info("probing %d unit(s) of %d twin(s) on %s", len(todo), len(twins),
                 "GPUs" if gpu else "CPUs")
        with Progress(len(todo), "probe units", unit="unit") as prog:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                p, f, t0 = refs.pop(ready[0])
                try:
                    got = ray.get(ready[0])
                    r = UnitResult(p, f, "done", time.perf_counter() - t0, got["timings"])
                except Exception as exc:  # noqa: BLE001 - one failed unit must not stop the rest
                    cause = getattr(exc, "cause", None) or exc
                    log.error("probe unit %s failed: %s", unit_key(p, f), cause)
                    r = UnitResult(p, f, "failed", time.perf_counter() - t0,
                                   error=f"{type(cause).__name__}: {cause}")
                results.append(r)
                if on_unit is not None:
                    on_unit(r)
                prog.update(1, postfix=f"{p} {f} {r.status}")
    if "eigenspectrum" in cfg.families:
        _neural_unit(store, coll, cfg, run_id, dataset)
    # the battery's units, compacted into a few files (each unit read once meanwhile)
    store.compact(units=[unit_key(p, f) for p, f in units] + [NEURAL_UNIT],
                  run_id=run_id)
    cross, files = finish(store, cfg, data)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise ProbeFailed(f"{len(failed)} of {len(results)} probe units failed: " +
                          "; ".join(f"{unit_key(r.pair, r.family)}: {r.error}" for r in failed),
                          results)
    return ProbeRun(results, cross, files, run_id)
