"""Tuning campaigns: Ray Tune + Optuna (TPE) + ASHA over a YAML search space.

One trial trains one network (:func:`cortexzoo.training.finetune.train_network`) and
reports after every epoch; ASHA stops weak trials early on the best-so-far validation EV
(or r), and Optuna's TPE proposes the next configuration. Every trial uses the same
seeded split, stored with the campaign. Trials take one GPU each when the cluster has
GPUs, else a fraction of a CPU.

Layout under the results URI (local folder or s3://)::

    tune/<name>/                    Ray Tune experiment (restorable; --resume)
    campaigns/<name>/splits.json    the split every trial uses
    campaigns/<name>/space.json     the validated space and settings
    campaigns/<name>/trials.parquet one row per trial: config, status, scores
    scores/tune-<name>-<trial>.parquet   val/test rows of each finished trial
    presets/<name>-best.yaml        the best trial's full config, a ready preset
    plots/tune-<name>.png           score vs trial and the best learning curve

Checkpoints: every ``checkpoint_every`` epochs (default 1; 0: never) a trial reports its
complete training state (:meth:`~cortexzoo.training.finetune.TrainResult.training_state`:
weights, optimizer, scheduler, random generators, best epoch) as a Tune checkpoint in
``tune/<name>/<trial>/checkpoint_*``; only the latest is kept, and a finished trial's is
deleted when the campaign ends (its scores are written; ``finetune --preset
presets/<name>-best.yaml`` retrains the best). A checkpoint holds about three copies of
the trainable weights (weights, Adam's two moments) plus the best epoch's weights.

Fault tolerance: a trial whose actor dies (its node is lost, a spot instance is
reclaimed) is run again from its latest checkpoint, up to ``max_failures`` times
(``tune.FailureConfig``), and ends as it would have without the failure; its scores are
written once, when the campaign ends, from its final result, so a retried trial never
leaves duplicate rows.

Resuming (``resume=True``) restores the experiment with ``tune.Tuner.restore(path,
trainable, resume_errored=True)``: finished trials are kept, unfinished and errored ones
continue from their latest checkpoint, and the search continues until the campaign's
original number of trials is reached.
"""
from __future__ import annotations

import io
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..core.uri import normalize_uri
from .finetune import (bundle_info, common_columns, load_or_make_splits, load_training_state,
                       save_training_state, score_rows, train_network)
from .loaders import Splits, split_reliability
from .presets import FinetuneConfig
from .space import SearchSpace, load_space

__all__ = ["TuneError", "TuneResult", "run_tune", "trial_resources", "campaign_paths"]

log = logging.getLogger("cortexzoo.training")

# metrics every epoch reports (besides Ray's own)
_REPORTED = ("epoch", "train_loss", "val_ev", "val_r", "best_val_ev", "best_val_r",
             "best_epoch", "lr")
# the training state's file inside a trial's checkpoint folder
_STATE_FILE = "training_state.pt"


class TuneError(ValueError):
    """A campaign cannot start (it exists without --resume, bad settings, ...)."""


@dataclass
class TuneResult:
    """A finished (or interrupted) campaign."""

    name: str
    experiment_path: str
    trials: pd.DataFrame
    best_config: FinetuneConfig | None
    best_score: float
    best_trial_id: str | None
    preset_uri: str | None
    plot_uri: str | None
    trials_uri: str
    n_trials: int = 0
    interrupted: bool = False
    scores_written: list[str] = field(default_factory=list)


def campaign_paths(name: str) -> dict[str, str]:
    """Relative paths (under the results URI) of a campaign's files."""
    return {"splits": f"campaigns/{name}/splits.json", "space": f"campaigns/{name}/space.json",
            "trials": f"campaigns/{name}/trials.parquet", "preset": f"presets/{name}-best.yaml",
            "plot": f"plots/tune-{name}.png", "experiment": f"tune/{name}"}


def trial_resources(cpus_per_trial: float | None = None,
                    gpus_per_trial: float | None = None) -> dict[str, float]:
    """Resources of one trial: one GPU (and a share of the CPUs) per trial when the
    cluster has GPUs, else half a CPU (several small trials share a core)."""
    import ray

    res = ray.cluster_resources()
    n_gpu, n_cpu = float(res.get("GPU", 0)), float(res.get("CPU", 1))
    if gpus_per_trial is None:
        gpus_per_trial = 1.0 if n_gpu >= 1 else 0.0
    if cpus_per_trial is None:
        cpus_per_trial = (max(1.0, min(8.0, math.floor(n_cpu / max(n_gpu, 1))))
                          if gpus_per_trial else 0.5)
    if gpus_per_trial > n_gpu:
        raise TuneError(f"gpus_per_trial={gpus_per_trial} but the cluster has {n_gpu:g} GPU(s)")
    if cpus_per_trial <= 0 or cpus_per_trial > n_cpu:
        raise TuneError(f"cpus_per_trial={cpus_per_trial} must be in (0, {n_cpu:g}] "
                        "(the cluster's CPUs)")
    out = {"cpu": float(cpus_per_trial)}
    if gpus_per_trial:
        out["gpu"] = float(gpus_per_trial)
    return out


# --------------------------------------------------------------------------- the trial
def _trial_inputs(config: dict, data_uri: str, base: dict, splits: dict,
                  reliability: dict | None) -> tuple[FinetuneConfig, Any, Any]:
    """A trial's settings, prepared data and freshly built network (seeded: the same in
    every attempt of the trial)."""
    from cortexzoo.data import load_dataset

    from .loaders import prepare_data
    from .networks import build_network

    cfg = FinetuneConfig.from_dict({**base, **config})
    ds = load_dataset(data_uri, validate=False)  # the driver validated it
    sp = Splits.from_dict(splits)
    n_out = ds.n_neuroids if cfg.region is None else len(ds.region_index(cfg.region))
    bundle = build_network(cfg, n_out)
    rel = {k: np.asarray(v) for k, v in reliability.items()} if reliability is not None else None
    data = prepare_data(ds, sp, bundle.preprocess, cfg.region, seed=cfg.seed, reliability=rel)
    return cfg, data, bundle


def _trial(config: dict, *, data_uri: str, base: dict, splits: dict,
           reliability: dict | None = None, checkpoint_every: int = 1) -> None:
    """One Ray Tune trial: train with the trial's config, report every epoch (with a
    checkpoint every ``checkpoint_every`` epochs), continue from the trial's latest
    checkpoint when Tune restarts it."""
    import ray
    import torch
    from ray import tune

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(round(cpus))))
    cfg, data, bundle = _trial_inputs(config, data_uri, base, splits, reliability)
    info = json.dumps(bundle_info(bundle))
    resume = None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            resume = load_training_state(os.path.join(d, _STATE_FILE))
    state: dict[str, str | None] = {"rows": None}

    def on_epoch(m: dict, res) -> None:
        if m["improved"] or (state["rows"] is None and res.predictions):
            rows, _ = score_rows(data, res.predictions)   # (also the restored best epoch's)
            state["rows"] = json.dumps(rows)
        payload = {k: float(m[k]) for k in _REPORTED}
        # the best epoch's val/test rows travel with every report so that a trial
        # stopped by ASHA at any epoch still leaves its scores
        payload.update(rows=state["rows"] or "[]", network=info, dataset=data.dataset_name,
                       resumed_epoch=res.resumed_epoch)
        if checkpoint_every and int(m["epoch"]) % checkpoint_every == 0:
            # Tune copies the folder to the experiment's storage before report returns
            with tempfile.TemporaryDirectory(prefix="cortexzoo-trial-") as d:
                save_training_state(res.training_state(), os.path.join(d, _STATE_FILE))
                tune.report(payload, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(payload)

    train_network(cfg, data, bundle, track_test=True, on_epoch=on_epoch, resume=resume)


# --------------------------------------------------------------------------- campaign
def _storage(store: Any) -> str:
    """Ray Tune storage path for ``<results>/tune``: absolute for local folders."""
    if store.is_local:
        return os.path.join(os.path.abspath(store.root), "tune")
    return store.uri_of("tune")


def _storage_filesystem(uri: str):
    """A pyarrow filesystem honouring AWS_ENDPOINT_URL for s3://, gcsfs for gs://
    (None: Ray's default)."""
    if uri.startswith(("gs://", "gcs://")):
        from ..store import portable_pyarrow_fs
        return portable_pyarrow_fs(uri)[0]
    if not uri.startswith("s3://"):
        return None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return None
    import pyarrow.fs as pafs

    scheme = "http" if endpoint.startswith("http://") else "https"
    host = endpoint.split("://", 1)[-1].rstrip("/")
    return pafs.S3FileSystem(endpoint_override=host, scheme=scheme,
                             region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))


def _strip_scheme(uri: str, fs) -> str:
    return uri.split("://", 1)[1] if fs is not None and "://" in uri else uri


def _make_searcher(space: SearchSpace, max_concurrent: int | None):
    from ray.tune.search import ConcurrencyLimiter

    seed = int(space.search.get("seed", 0))
    points = [dict(p) for p in space.points_to_evaluate] or None
    if space.search["algorithm"] == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        n_startup = int(space.search.get("n_startup_trials", 5))
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup)
        alg = OptunaSearch(sampler=sampler, points_to_evaluate=points)
    else:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(points_to_evaluate=points, random_state=seed,
                                     max_concurrent=max_concurrent or 0)
    return ConcurrencyLimiter(alg, max_concurrent=max_concurrent) if max_concurrent else alg


def _make_scheduler(space: SearchSpace):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = space.scheduler
    if s.get("type", "asha") == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(time_attr="training_iteration",
                         max_t=int(s.get("max_t", space.base.epochs)),
                         grace_period=int(s.get("grace_period", 1)),
                         reduction_factor=float(s.get("reduction_factor", 3)))


def run_tune(data_uri: str, space: str | SearchSpace, num_samples: int, out: str, *,
             name: str | None = None, resume: bool = False,
             cpus_per_trial: float | None = None, gpus_per_trial: float | None = None,
             max_concurrent: int | None = None, max_failures: int = 2, verbose: int = 1,
             callbacks: Sequence[Any] | None = None, checkpoint_every: int = 1) -> TuneResult:
    """Run (or resume) a tuning campaign and write its trials, scores, best preset and plot.

    Parameters
    ----------
    data_uri : dataset folder (local, s3:// or gs://).
    space : a SearchSpace or the path of its YAML (see :mod:`cortexzoo.training.space`).
    num_samples : number of trials (ignored on resume: a restored campaign keeps its own).
    out : results URI (local, s3:// or gs://).
    name : campaign name (default: the space's name); the experiment lives in
        ``<out>/tune/<name>``.
    resume : restore an interrupted campaign; finished trials are not repeated.
    cpus_per_trial, gpus_per_trial : default one GPU per trial when there are GPUs,
        else 0.5 CPU per trial.
    max_concurrent : cap on concurrent trials (default: the space's, else as many as
        the resources allow).
    max_failures : how often a failed trial (its worker or node died, or it raised) is
        run again, from its latest checkpoint, before it counts as an error; 0: never,
        -1: without limit.
    verbose : Ray Tune's verbosity.
    callbacks : extra ``ray.tune.Callback`` objects (e.g. for monitoring).
    checkpoint_every : epochs between a trial's checkpoints (0: none; a failed or
        interrupted trial then starts again from its first epoch).

    Ray must be initialized (the CLI does it); otherwise a local instance is started.
    """
    import ray
    from ray import tune

    from cortexzoo.data import load_dataset
    from cortexzoo.store import ResultStore

    from cortexzoo.core.raysetup import init_ray

    init_ray()  # a no-op when the CLI (or a test) has connected already
    sp = space if isinstance(space, SearchSpace) else load_space(space)
    name = name or sp.name
    if not name.replace("-", "").replace("_", "").isalnum():
        raise TuneError(f"campaign name {name!r} must be letters, digits, '-' or '_'")
    if num_samples < 1:
        raise TuneError(f"num_samples must be >= 1, got {num_samples}")
    if checkpoint_every < 0:
        raise TuneError(f"checkpoint_every must be >= 0 (0: no checkpoints), got {checkpoint_every}")
    if max_failures < -1:
        raise TuneError(f"max_failures must be >= 0 (or -1: without limit), got {max_failures}")
    # trials run in Ray workers' own directories: local paths must be absolute
    data_uri, out = normalize_uri(data_uri), normalize_uri(out)
    store = ResultStore(out)
    paths = campaign_paths(name)
    storage = _storage(store)
    fs = _storage_filesystem(storage)
    exp_path = storage.rstrip("/") + "/" + name
    exists = tune.Tuner.can_restore(_strip_scheme(exp_path, fs), storage_filesystem=fs) \
        if fs is not None else tune.Tuner.can_restore(exp_path)
    if exists and not resume:
        raise TuneError(f"campaign {name!r} already exists at {exp_path}; pass --resume to "
                        "continue it or choose another --name")

    ds = load_dataset(data_uri)
    ids = ds.stimuli["stimulus_id"].astype(str).tolist()
    stored_space = store.get_json(paths["space"])
    if exists and stored_space is not None:
        # resume with the campaign's own base config so that restored trials match
        base = FinetuneConfig.from_dict(stored_space["base"])
        if stored_space.get("dataset_fingerprint") not in (None, ds.fingerprint()):
            raise TuneError(f"campaign {name!r} was run on another dataset "
                            f"(fingerprint {stored_space['dataset_fingerprint'][:12]}); "
                            f"{data_uri} differs")
        num_samples = int(stored_space.get("num_samples", num_samples))
    else:
        base = sp.base
    splits = load_or_make_splits(store, paths["splits"], ids, base)
    if not exists:
        store.put_json(paths["space"], {
            "name": name, "source": sp.source, "base": base.to_dict(),
            "params": {k: vars(p) for k, p in sp.params.items()},
            "points_to_evaluate": sp.points_to_evaluate, "metric": sp.metric,
            "scheduler": sp.scheduler, "search": sp.search, "num_samples": num_samples,
            "data": data_uri, "dataset_fingerprint": ds.fingerprint(),
            "split_digest": splits.digest(), "created_at": time.time()})

    resources = trial_resources(cpus_per_trial, gpus_per_trial)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, data_uri=data_uri, base=base.to_dict(),
                             splits=splits.to_dict(),
                             reliability=split_reliability(ds, splits, base.region,
                                                           seed=base.seed),
                             checkpoint_every=int(checkpoint_every)),
        resources)
    t0 = time.time()
    if exists:
        log.info("resuming campaign %s from %s", name, exp_path)
        tuner = tune.Tuner.restore(_strip_scheme(exp_path, fs) if fs is not None else exp_path,
                                   trainable=trainable, resume_errored=True,
                                   storage_filesystem=fs)
    else:
        if max_concurrent is None:
            max_concurrent = sp.max_concurrent
        if max_concurrent is None:
            res = ray.cluster_resources()
            slots = (res.get("GPU", 0) / resources["gpu"]) if "gpu" in resources \
                else res.get("CPU", 1) / resources["cpu"]
            max_concurrent = max(1, int(slots))
        tuner = tune.Tuner(
            trainable,
            param_space=sp.param_space(),
            tune_config=tune.TuneConfig(metric=sp.metric, mode="max", num_samples=num_samples,
                                        search_alg=_make_searcher(sp, max_concurrent),
                                        scheduler=_make_scheduler(sp), reuse_actors=True),
            run_config=tune.RunConfig(name=name, storage_path=_strip_scheme(storage, fs),
                                      storage_filesystem=fs, verbose=verbose,
                                      callbacks=list(callbacks or []),
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                      failure_config=tune.FailureConfig(
                                          max_failures=max_failures)),
        )
    grid = tuner.fit()
    elapsed = time.time() - t0
    return _finish(store, name, exp_path, grid, base, splits, elapsed, num_samples)


def _trials(grid) -> list:
    """Ray's Trial objects, in the order of the ResultGrid's results (status, trial_id)."""
    try:
        trials = list(grid._experiment_analysis.trials)
    except AttributeError:  # private API moved: fall back to the results' own flags
        return []
    return trials if len(trials) == len(grid) else []


def _creation_index(trial, default: int) -> int:
    """0-based creation index of a trial: Ray's experiment tag starts with a 1-based counter."""
    try:
        return int(str(trial.experiment_tag).split("_", 1)[0]) - 1
    except (AttributeError, ValueError):
        return default


def _stop_reason(status: str, m: dict, cfg: FinetuneConfig | None) -> str:
    """max_epochs, early_stopping (patience), scheduler (ASHA), error or unfinished."""
    if status == "ERROR":
        return "error"
    if status != "TERMINATED":
        return "unfinished"
    n = int(m.get("training_iteration", 0) or 0)
    if cfg is None or n >= cfg.epochs:
        return "max_epochs"
    best = int(m.get("best_epoch", 0) or 0)
    if cfg.patience and n - best >= cfg.patience:
        return "early_stopping"
    return "scheduler"


def _drop_checkpoints(result) -> None:
    """Delete a finished trial's checkpoint folders (a resume never runs it again). All of
    them: Tune forgets the ones written before an interruption when it restores a trial."""
    from cortexzoo.store import delete_checkpoint_dirs

    try:
        delete_checkpoint_dirs(result)
    except OSError as e:  # not worth failing a campaign over
        log.warning("checkpoints of trial folder %s not deleted: %s",
                    getattr(result, "path", None), e)


def _finish(store, name: str, exp_path: str, grid, base: FinetuneConfig, splits: Splits,
            elapsed: float, num_samples: int) -> TuneResult:
    from cortexzoo.store import make_score_rows

    from .plots import plot_campaign

    paths = campaign_paths(name)
    trial_objs = _trials(grid)
    records, curves, written = [], {}, []
    interrupted = False
    for k, r in enumerate(grid):
        m = dict(r.metrics or {})
        t = trial_objs[k] if k < len(trial_objs) else None
        tid = str(t.trial_id) if t is not None else str(m.get("trial_id") or f"trial{k:05d}")
        status = str(t.status) if t is not None else (
            "ERROR" if r.error else "TERMINATED" if m.get("done") else "UNKNOWN")
        if status == "TERMINATED" and not m.get("done"):
            # stopped by an interruption (Ctrl+C, SIGUSR1): the saved state has it unfinished,
            # and a resume runs it again
            status = "INTERRUPTED"
        if status not in ("TERMINATED", "ERROR"):
            interrupted = True
        trial_params = {k: v for k, v in (r.config or {}).items()}
        try:
            cfg = base.replace(**trial_params)
        except ValueError:
            cfg = None
        rec = {"campaign": name, "trial_index": _creation_index(t, k), "trial_id": tid,
               "status": status,
               "error": str(r.error)[:500] if r.error else None,
               "epochs_run": int(m.get("training_iteration", 0) or 0),
               "resumed_epoch": int(m.get("resumed_epoch", 0) or 0),
               "stop_reason": _stop_reason(status, m, cfg),
               "config": json.dumps(trial_params, sort_keys=True),
               "seconds": float(m.get("time_total_s", float("nan")) or float("nan"))}
        for k in ("best_val_ev", "best_val_r", "best_epoch"):
            rec[k] = float(m.get(k, float("nan")))
        for k, v in trial_params.items():
            rec[f"param_{k}"] = v
        rows = json.loads(m.get("rows", "[]")) if m.get("rows") else []
        for row in rows:
            if row["metric"] in ("explained_variance", "pearson_r"):
                key = f"{row['split']}_{'ev' if row['metric'] == 'explained_variance' else 'r'}"
                rec.setdefault(key, row["value"])  # first region; per-region values are in scores
        records.append(rec)
        try:
            df = r.metrics_dataframe
            if df is not None and len(df):
                curves[tid] = df[[c for c in ("training_iteration", "val_ev", "best_val_ev",
                                              "train_loss", "val_r") if c in df.columns]]
        except Exception:  # noqa: BLE001 - a missing progress file only costs the curve
            pass
        if status == "TERMINATED":
            _drop_checkpoints(r)
        unit = f"tune-{name}-{tid}"
        if status == "TERMINATED" and rows and cfg is not None and not store.has_unit(unit):
            info = json.loads(m["network"])
            common = common_columns(cfg.replace(preset=f"tune:{name}"), info,
                                    str(m.get("dataset", "")), name, splits)
            common.update(best_epoch=int(m.get("best_epoch", 0)),
                          epochs_run=rec["epochs_run"], trial_id=tid, campaign=name)
            store.write_scores(make_score_rows(common, rows), unit)
            written.append(unit)
    # the campaign's trial units, compacted into a few files (each unit read once meanwhile)
    store.compact(units=[f"tune-{name}-{r['trial_id']}" for r in records], run_id=f"tune-{name}")
    # an interrupted campaign has unfinished trials, or has not created all of them yet
    interrupted = interrupted or len(records) < num_samples
    trials = pd.DataFrame.from_records(records)
    if len(trials):  # creation order (a restore may list trials in another order)
        trials = trials.sort_values("trial_index", kind="stable").reset_index(drop=True)
    buf = io.BytesIO()
    trials.to_parquet(buf, index=False)
    trials_uri = store.put_bytes(paths["trials"], buf.getvalue())

    best_cfg, best_score, best_tid, preset_uri = None, float("nan"), None, None
    ok = trials[(trials["status"] == "TERMINATED") & np.isfinite(trials["best_val_ev"])] \
        if len(trials) else trials
    if len(ok):
        metric = "best_val_ev"
        i = ok[metric].astype(float).idxmax()
        best_tid = str(ok.loc[i, "trial_id"])
        best_score = float(ok.loc[i, metric])
        best_cfg = base.replace(**json.loads(ok.loc[i, "config"]), preset=f"{name}-best")
        import yaml

        header = (f"# best trial {best_tid} of tuning campaign {name!r}: validation EV "
                  f"{best_score:.4f}, split {splits.digest()}\n"
                  f"# use: cortexzoo finetune --preset {store.uri_of(paths['preset'])} ...\n")
        preset_uri = store.put_bytes(paths["preset"], (header + yaml.safe_dump(
            best_cfg.to_dict(), sort_keys=False)).encode())
    plot_uri = None
    if len(trials):
        png = plot_campaign(trials, curves.get(best_tid) if best_tid else None, name)
        plot_uri = store.put_bytes(paths["plot"], png)
    log.info("campaign %s: %d trials in %.0f s; best %s (val EV %.4f)", name, len(trials),
             elapsed, best_tid, best_score)
    return TuneResult(name=name, experiment_path=exp_path, trials=trials, best_config=best_cfg,
                      best_score=best_score, best_trial_id=best_tid, preset_uri=preset_uri,
                      plot_uri=plot_uri, trials_uri=trials_uri, n_trials=len(trials),
                      interrupted=interrupted, scores_written=written)
