"""Training the twin family with Ray Train (DDP), fault tolerant, checkpoints in storage.

One train loop, :func:`train_loop_per_worker`, serves both Ray Train workers
(``TorchTrainer``; DDP over NCCL on GPUs, gloo on CPUs) and in-process training
(:func:`fit_local`, world size 1), so tests of the one exercise the other.

:func:`train_family` runs every (encoder, seed) pair as its own ``TorchTrainer``.
Pairs are launched side by side from a thread pool: ``max_concurrent`` trainers at a
time (default: as many as the cluster's CPUs/GPUs can hold at once given
``num_workers`` and the per-worker resources, at least 1). A trainer whose workers do
not fit waits for its placement group, so on a small cluster the pairs simply run one
after another. Checkpoints go to ``OUT/twins/ray/<pair>/`` (local or ``s3://``, via
``RunConfig(storage_path=..., storage_filesystem=...)``); Ray keeps the best checkpoint
by validation loss (plus the latest, for restarts). After a pair finishes, its best
checkpoint's weights are exported to ``OUT/twins/best/<pair>.pt`` and a summary to
``OUT/twins/runs/<pair>.json``; evaluation reads only these.

Fault tolerance: ``FailureConfig(max_failures=...)`` restarts the worker group after a
worker dies; the loop resumes from ``ray.train.get_checkpoint()`` (model, optimizer,
scheduler, early-stopping state and history), and data order depends only on
``(seed, epoch)``, so a resumed run continues exactly where the checkpoint left off.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import logging
import math
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from ..core.config import config_from_mapping, read_yaml_mapping
from ..core.raysetup import init_ray
from ..core.uri import normalize_uri
from .model import ConfigError, Twin, TwinConfig, param_groups, twin_loss

log = logging.getLogger("cortexzoo.twins")

__all__ = ["TwinsRunConfig", "PairResult", "pair_key", "model_name", "train_loop_per_worker",
           "fit_local", "train_family", "load_twin", "save_twin_bytes", "TrainingFailed"]

_STATE_FILE = "state.pt"


class TrainingFailed(RuntimeError):
    """One or more (encoder, seed) pairs failed; ``results`` holds every pair's outcome."""

    def __init__(self, msg: str, results: list["PairResult"]):
        super().__init__(msg)
        self.results = results


def pair_key(encoder: str, seed: int) -> str:
    """Storage key of a pair, e.g. ``resnet18-seed0``."""
    return f"{encoder}-seed{int(seed)}"


def model_name(encoder: str, seed: int) -> str:
    """Score-table model name, e.g. ``twin:resnet18#seed0``."""
    return f"twin:{encoder}#seed{int(seed)}"


@dataclass
class TwinsRunConfig:
    """Everything ``cortexzoo twins train/eval`` needs; loadable from YAML.

    ``twin`` holds :class:`TwinConfig` fields (encoder and seed are set per pair).
    """

    data: str = ""
    out: str = "cortexzoo-results"
    encoders: list[str] = field(default_factory=lambda: ["cnn"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    twin: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    max_concurrent: int | None = None
    max_failures: int = 2
    address: str | None = None
    overwrite: bool = False
    eval_batch_size: int = 256
    chunk: int = 100

    def __post_init__(self) -> None:
        from .encoders import ENCODERS

        # Train workers run in their own directory: local paths must be absolute
        self.data = normalize_uri(self.data) if self.data else self.data
        self.out = normalize_uri(self.out)
        self.encoders = list(self.encoders)
        self.seeds = [int(s) for s in self.seeds]
        bad = [e for e in self.encoders if e not in ENCODERS]
        if bad:
            raise ConfigError(f"encoders: unknown {bad}; known: {sorted(ENCODERS)}")
        if not self.encoders or not self.seeds:
            raise ConfigError("encoders and seeds must be non-empty")
        if self.num_workers < 1:
            raise ConfigError(f"num_workers: must be >= 1, got {self.num_workers}")
        self.twin_config()  # validates the twin keys early

    def twin_config(self, encoder: str | None = None, seed: int | None = None) -> TwinConfig:
        d = dict(self.twin)
        d["encoder"] = encoder or d.get("encoder", self.encoders[0])
        if seed is not None:
            d["seed"] = int(seed)
        return TwinConfig.from_dict(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TwinsRunConfig":
        return config_from_mapping(cls, d, what="twins config keys", error=ConfigError)

    @classmethod
    def from_yaml(cls, path: str) -> "TwinsRunConfig":
        return cls.from_dict(read_yaml_mapping(path, error=ConfigError, what="twins config"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------ worker context


class _LocalContext:
    """In-process stand-in for Ray Train's session (world size 1)."""

    rank, world_size = 0, 1

    def __init__(self, resume: dict[str, Any] | None = None) -> None:
        self.resume = resume
        self.reports: list[dict[str, Any]] = []
        self.latest: dict[str, Any] | None = None
        self.best: dict[str, Any] | None = None
        self._best_val = math.inf

    def device(self) -> torch.device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device())

    def get_checkpoint_state(self) -> dict[str, Any] | None:
        return self.resume

    def report(self, metrics: dict[str, Any], state: dict[str, Any]) -> None:
        self.reports.append(dict(metrics))
        # the state holds live tensors; a checkpoint must not change afterwards
        state = copy.deepcopy(state)
        self.latest = state
        if self.best is None or metrics["val_loss"] < self._best_val:
            self.best, self._best_val = state, metrics["val_loss"]


class _RayContext:
    """Ray Train's session: rank, device, DDP wrapping, checkpoints."""

    def __init__(self) -> None:
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()

    def device(self) -> torch.device:
        import ray.train.torch

        return ray.train.torch.get_device()

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        # inactive animals' readouts get no gradient in a step
        return ray.train.torch.prepare_model(
            model, parallel_strategy_kwargs={"find_unused_parameters": True})

    def get_checkpoint_state(self) -> dict[str, Any] | None:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as d:
            return _torch_load(os.path.join(d, _STATE_FILE))

    def report(self, metrics: dict[str, Any], state: dict[str, Any]) -> None:
        import ray.train
        from ray.train import Checkpoint

        if self.rank == 0:
            with tempfile.TemporaryDirectory() as d:
                torch.save(state, os.path.join(d, _STATE_FILE))
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics, checkpoint=None)


def _torch_load(src: Any, name: str | None = None) -> dict[str, Any]:
    from ..zoo.weights import safe_torch_load

    return safe_torch_load(src, name)


def _all_reduce_sum(values: list[float], world_size: int, device: torch.device) -> list[float]:
    if world_size == 1 or not torch.distributed.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


# -------------------------------------------------------------------- train loop


def _evaluate_loss(model: Twin, loader, device: torch.device, eps: float) -> tuple[float, int]:
    """Sum over samples of the per-sample mean Poisson loss, and the sample count."""
    total, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for k, x, y in loader:
            x, y = x.to(device), y.to(device)
            pred = model(x, k)
            total += float((pred - y * torch.log(pred + eps)).mean(dim=1).sum())
            n += int(len(y))
    return total, n


def _maybe_fail(config: Mapping[str, Any], epoch: int, rank: int, world_size: int) -> None:
    """Test hook: kill this worker once, at ``fail_at_epoch``, on ``fail_rank``.

    ``fail_delay_s`` waits first, so that the controller has registered the previous
    epoch's checkpoint (reports reach it asynchronously) before the worker dies.
    """
    fail_at = config.get("fail_at_epoch")
    marker = config.get("fail_marker")
    if fail_at is None or epoch != int(fail_at) or not marker:
        return
    if rank != int(config.get("fail_rank", world_size - 1)) or os.path.exists(marker):
        return
    with open(marker, "w") as f:
        f.write(f"killed rank {rank} at epoch {epoch}\n")
    time.sleep(float(config.get("fail_delay_s", 0.0)))
    os._exit(1)  # like a killed process: no exception, no cleanup


def train_loop_per_worker(config: dict[str, Any], _ctx: Any = None) -> dict[str, Any] | None:
    """Train one twin; the Ray Train worker function (also run in-process by fit_local).

    ``config``: ``twin`` (TwinConfig dict), ``data`` (sessions URI), optional
    ``fail_at_epoch``/``fail_marker``/``fail_rank`` (fault-injection test hook).
    Reports per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``best_val_loss``,
    ``best_epoch``, learning rates, ``samples_per_s_per_worker``, ``start_epoch``
    (the epoch this attempt started at: > 0 after a resume) and ``n_resumes``.
    """
    from ..data.sessions import InterleavedClips, load_sessions

    ctx = _ctx if _ctx is not None else _RayContext()
    cfg = TwinConfig.from_dict(config["twin"])
    rank, world = ctx.rank, ctx.world_size
    coll = load_sessions(config["data"])
    animals = coll.animals
    n_neurons = [coll.n_neurons()[a] for a in animals]
    input_hw = coll.frame_shape

    torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP broadcasts anyway)
    core = Twin(cfg, animals, n_neurons, input_hw)
    if cfg.init_readout_bias:
        for k, a in enumerate(animals):
            y = np.concatenate([s.responses[s.targets("train", cfg.clip_len)]
                                for s in coll.by_animal(a)])
            core.init_bias(k, torch.from_numpy(y.mean(axis=0)))
    device = ctx.device()
    model = ctx.prepare(core)
    core = model.module if hasattr(model, "module") else model
    opt = torch.optim.AdamW(param_groups(core, cfg))
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
        min_lr=cfg.min_lr)

    train_data = InterleavedClips(coll, "train", cfg.batch_size, clip_len=cfg.clip_len,
                                  shuffle=True, seed=cfg.seed, rank=rank, world_size=world,
                                  drop_last=True,
                                  max_batches_per_animal=cfg.max_batches_per_animal)
    val_data = InterleavedClips(coll, "val", cfg.batch_size, clip_len=cfg.clip_len,
                                shuffle=False, rank=rank, world_size=world, drop_last=False)

    start_epoch, best_val, best_epoch, bad_epochs = 0, math.inf, -1, 0
    history: list[dict[str, Any]] = []
    n_resumes = 0
    state = ctx.get_checkpoint_state()
    if state is not None:
        core.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"]) + 1
        best_val, best_epoch = float(state["best_val_loss"]), int(state["best_epoch"])
        bad_epochs, history = int(state["bad_epochs"]), list(state["history"])
        n_resumes = int(state.get("n_resumes", 0)) + 1
        if bad_epochs >= cfg.early_stop_patience:
            start_epoch = cfg.max_epochs  # had already stopped early

    metrics: dict[str, Any] = {}
    for epoch in range(start_epoch, cfg.max_epochs):
        _maybe_fail(config, epoch, rank, world)
        # dropout masks depend on (seed, epoch, rank) only, so a resumed run repeats them
        torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + rank)
        train_data.set_epoch(epoch)
        model.train()
        t0, n_seen, loss_sum = time.perf_counter(), 0, 0.0
        for k, x, y in train_data:
            x, y = x.to(device), y.to(device)
            pred = model(x, k)
            loss = twin_loss(core, pred, y, k, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(core.parameters(), cfg.grad_clip)
            opt.step()
            n_seen += len(y)
            loss_sum += float(loss.detach()) * len(y)
        train_s = time.perf_counter() - t0
        tr_sum, tr_n = _all_reduce_sum([loss_sum, float(n_seen)], world, device)
        v_sum, v_n = _all_reduce_sum(list(_evaluate_loss(core, val_data, device, cfg.eps)),
                                     world, device)
        val_loss = v_sum / max(v_n, 1.0)
        sched.step(val_loss)
        if val_loss < best_val:
            best_val, best_epoch, bad_epochs = val_loss, epoch, 0
        else:
            bad_epochs += 1
        metrics = {
            "epoch": epoch, "train_loss": tr_sum / max(tr_n, 1.0), "val_loss": val_loss,
            "best_val_loss": best_val, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
            "lr_encoder": opt.param_groups[0]["lr"], "lr_gru": opt.param_groups[1]["lr"],
            "lr_readout": opt.param_groups[2]["lr"],
            "samples_per_s_per_worker": n_seen / max(train_s, 1e-9),
            "train_samples": int(tr_n), "world_size": world,
            "start_epoch": start_epoch, "n_resumes": n_resumes,
            "epoch_s": time.perf_counter() - t0, "time": time.time(),
        }
        history.append(dict(metrics))
        state = {
            "model": core.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "epoch": epoch, "best_val_loss": best_val,
            "best_epoch": best_epoch, "bad_epochs": bad_epochs, "history": history,
            "n_resumes": n_resumes, "twin_config": cfg.to_dict(), "animals": animals,
            "n_neurons": n_neurons, "input_hw": list(input_hw),
        }
        ctx.report(metrics, state)
        if bad_epochs >= cfg.early_stop_patience:
            break
    return metrics


def fit_local(twin: TwinConfig | Mapping[str, Any], data: str, *,
              resume: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Train one twin in this process with :func:`train_loop_per_worker` (world size 1).

    Returns ``{"best": state, "latest": state, "reports": [metrics per epoch]}``; a
    state is what a Ray checkpoint holds (``model`` weights, ``history``, ...).
    """
    twin = twin.to_dict() if isinstance(twin, TwinConfig) else dict(twin)
    ctx = _LocalContext(resume)
    train_loop_per_worker({"twin": twin, "data": data, **extra}, _ctx=ctx)
    return {"best": ctx.best, "latest": ctx.latest, "reports": ctx.reports}


# ---------------------------------------------------------------- model artifacts


def save_twin_bytes(state: Mapping[str, Any], **meta: Any) -> bytes:
    """Serialise the parts of a checkpoint state needed to rebuild the twin."""
    keep = {k: state[k] for k in ("model", "twin_config", "animals", "n_neurons", "input_hw",
                                  "epoch", "best_val_loss")}
    keep["val_loss"] = float(state["history"][-1]["val_loss"]) if state.get("history") else None
    keep.update(meta)
    buf = io.BytesIO()
    torch.save(keep, buf)
    return buf.getvalue()


def load_twin(data: bytes | str) -> tuple[Twin, dict[str, Any]]:
    """Rebuild a twin (eval mode, CPU) from :func:`save_twin_bytes` output or a path."""
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    blob = _torch_load(src, "twin checkpoint" if src is not data else str(data))
    cfg = TwinConfig.from_dict(blob["twin_config"])
    model = Twin(cfg, blob["animals"], blob["n_neurons"], tuple(blob["input_hw"]))
    model.load_state_dict(blob["model"])
    model.eval()
    return model, blob


# -------------------------------------------------------------------- the family


@dataclass
class PairResult:
    """Outcome of one (encoder, seed) training."""

    encoder: str
    seed: int
    status: str  # "trained", "skipped" (already done) or "failed"
    best_epoch: int | None = None
    best_val_loss: float | None = None
    epochs_run: int | None = None
    n_resumes: int | None = None
    seconds: float | None = None
    error: str | None = None
    model_uri: str | None = None


def _storage(out: str) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for Ray Train under ``OUT/twins/ray``."""
    from ..store import is_remote, join, portable_pyarrow_fs

    uri = join(out, "twins", "ray")
    if not is_remote(uri):
        path = os.path.abspath(uri.removeprefix("file://"))
        os.makedirs(path, exist_ok=True)
        return path, None
    # Ray's controller and workers rebuild this filesystem from its pickle
    fs, path = portable_pyarrow_fs(uri)
    return path, fs


def _auto_concurrency(run: TwinsRunConfig) -> int:
    import ray

    res = ray.cluster_resources()
    if run.use_gpu:
        fit = int(res.get("GPU", 0) // run.num_workers)
    else:
        fit = int(res.get("CPU", 1) // (run.num_workers * run.cpus_per_worker))
    return max(1, fit)


def _run_pair(run: TwinsRunConfig, encoder: str, seed: int,
              extra_loop_config: Mapping[str, Any] | None) -> PairResult:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from ..store import ResultStore

    key = pair_key(encoder, seed)
    twin = run.twin_config(encoder, seed)
    storage_path, storage_fs = _storage(run.out)
    # Ray Train resumes a run whose folder exists (e.g. after the driver died); a
    # retrain must start from scratch
    if run.overwrite:
        from ..store import join, url_to_fs

        fs, p = url_to_fs(join(run.out, "twins", "ray", key))
        if fs.exists(p):
            fs.rm(p, recursive=True)
    t0 = time.time()
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"twin": twin.to_dict(), "data": run.data,
                           **dict(extra_loop_config or {})},
        torch_config=TorchConfig(backend="nccl" if run.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=run.num_workers, use_gpu=run.use_gpu,
                                     resources_per_worker={"CPU": run.cpus_per_worker}),
        run_config=RunConfig(
            name=key, storage_path=storage_path, storage_filesystem=storage_fs,
            checkpoint_config=CheckpointConfig(num_to_keep=1,
                                               checkpoint_score_attribute="val_loss",
                                               checkpoint_score_order="min"),
            failure_config=FailureConfig(max_failures=run.max_failures)),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    drop_unregistered_checkpoints(result)
    best = result.get_best_checkpoint("val_loss", "min")
    if best is None:
        raise RuntimeError(f"pair {key}: training reported no checkpoint")
    with best.as_directory() as d:
        state = _torch_load(os.path.join(d, _STATE_FILE))
    latest = result.metrics or {}
    store = ResultStore(run.out)
    uri = store.put_bytes(f"twins/best/{key}.pt",
                          save_twin_bytes(state, data=run.data, encoder=encoder, seed=seed))
    summary = {
        "encoder": encoder, "seed": seed, "model": model_name(encoder, seed),
        "best_epoch": state["epoch"], "best_val_loss": state["history"][-1]["val_loss"],
        "last_epoch": latest.get("epoch"), "n_resumes": latest.get("n_resumes"),
        "start_epoch_of_last_attempt": latest.get("start_epoch"),
        "history": latest_history(result, state), "twin_config": twin.to_dict(),
        "num_workers": run.num_workers, "use_gpu": run.use_gpu, "data": run.data,
        "ray_run_path": result.path, "seconds": time.time() - t0,
    }
    store.put_json(f"twins/runs/{key}.json", summary)
    return PairResult(encoder, seed, "trained", best_epoch=int(state["epoch"]),
                      best_val_loss=float(summary["best_val_loss"]),
                      epochs_run=None if latest.get("epoch") is None else int(latest["epoch"]) + 1,
                      n_resumes=latest.get("n_resumes"), seconds=summary["seconds"],
                      model_uri=uri)


def drop_unregistered_checkpoints(result: Any) -> list[str]:
    """Delete the run's checkpoint folders that Ray Train does not hold: uploaded by a
    worker whose node then died, or forgotten when the run was restored. ``num_to_keep``
    never removes them and nothing resumes from them. Returns the deleted folder names."""
    import posixpath

    from ..store import delete_checkpoint_dirs

    held = [c for c, _ in (getattr(result, "best_checkpoints", None) or [])]
    if getattr(result, "checkpoint", None) is not None:
        held.append(result.checkpoint)
    keep = frozenset(posixpath.basename(str(c.path).rstrip("/")) for c in held)
    try:
        dropped = delete_checkpoint_dirs(result, keep)
    except OSError as e:  # not worth failing a trained pair over
        log.warning("unregistered checkpoints under %s not deleted: %s",
                    getattr(result, "path", None), e)
        return []
    if dropped:
        log.info("deleted %d unregistered checkpoint folder(s) under %s", len(dropped),
                 result.path)
    return dropped


def latest_history(result: Any, best_state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-epoch metrics of the whole run (from the latest checkpoint when readable)."""
    try:
        ckpt = result.checkpoint
        if ckpt is not None:
            with ckpt.as_directory() as d:
                return list(_torch_load(os.path.join(d, _STATE_FILE))["history"])
    except Exception:  # noqa: BLE001 - the best checkpoint's history is a fine fallback
        pass
    return list(best_state.get("history", []))


def train_family(run: TwinsRunConfig, *, extra_loop_config: Mapping[str, Any] | None = None,
                 on_result: Callable[[PairResult], None] | None = None) -> list[PairResult]:
    """Train every (encoder, seed) pair of ``run`` with Ray Train; returns their outcomes.

    Pairs whose exported model already exists are skipped unless ``run.overwrite``.
    Raises :class:`TrainingFailed` (after all pairs ran) when any pair failed.
    """
    from ..data.sessions import load_sessions
    from ..store import ResultStore

    if not run.data:
        raise ConfigError("data: a sessions URI is required")
    load_sessions(run.data)  # fail fast, naming the bad session, before any worker starts
    init_ray(run.address)
    store = ResultStore(run.out)
    store.write_manifest(f"twins-train-{time.strftime('%Y%m%dT%H%M%S')}",
                         {"kind": "twins-train", "config": run.to_dict()})
    pairs = [(e, s) for e in run.encoders for s in run.seeds]
    todo, results = [], []
    for e, s in pairs:
        if not run.overwrite and store.exists(f"twins/best/{pair_key(e, s)}.pt"):
            results.append(PairResult(e, s, "skipped",
                                      model_uri=store.uri_of(f"twins/best/{pair_key(e, s)}.pt")))
        else:
            todo.append((e, s))
    lock = threading.Lock()

    def one(pair: tuple[str, int]) -> PairResult:
        e, s = pair
        t0 = time.time()
        try:
            r = _run_pair(run, e, s, extra_loop_config)
        except Exception as exc:  # noqa: BLE001 - one failed pair must not stop the rest
            log.error("twin %s failed: %s", pair_key(e, s), exc)
            r = PairResult(e, s, "failed", seconds=time.time() - t0,
                           error=f"{type(exc).__name__}: {exc}")
        if on_result is not None:
            with lock:
                on_result(r)
        return r

    n_conc = run.max_concurrent or _auto_concurrency(run)
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, min(n_conc, len(todo)))) as ex:
            results.extend(ex.map(one, todo))
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise TrainingFailed(f"{len(failed)} of {len(results)} twins failed: " +
                             "; ".join(f"{pair_key(r.encoder, r.seed)}: {r.error}"
                                       for r in failed), results)
    return results
