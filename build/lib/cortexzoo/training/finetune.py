"""The fine-tuning loop (SCIENCE.md §5) and a complete run that writes scores.

Training: MSE on the mean responses (standardized per neuroid with training-set
statistics, NaN cells masked), Adam/AdamW/SGD, StepLR per epoch, early stopping with
patience on the validation EV (mean over neuroids), best-epoch weights restored at the
end. Mixed precision (``torch.autocast``, bfloat16 where supported, else float16 with a
gradient scaler) is used only on CUDA.

EV and r are invariant to the per-neuroid affine standardization, so they are the same
in standardized and original units; predictions are reported in original units.
"""
from __future__ import annotations

import io
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from ..mapping.metrics import neuroid_metrics
from .loaders import Normalizer, PreparedData, prepare_data
from .networks import NetworkBundle, build_network
from .presets import FinetuneConfig
from .results import (METHOD, _unit_key, _value, bundle_info, common_columns, load_checkpoint,
                      load_or_make_splits, score_rows, split_relpath)
from .state import (TRAINING_STATE_VERSION, _check_resume, _constant_keys, _digest, _to_cpu,
                    load_training_state, save_training_state)

__all__ = [
    "METHOD",
    "TrainResult",
    "FinetuneResult",
    "train_network",
    "score_rows",
    "run_finetune",
    "default_device",
    "load_checkpoint",
    "save_training_state",
    "load_training_state",
    "load_or_make_splits",
    "split_relpath",
]

log = logging.getLogger("cortexzoo.training")



def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.mean(a[np.isfinite(a)])) if np.isfinite(a).any() else float("nan")


# --------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    """What a training run produced (predictions at the best epoch, original units)."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_ev: float = float("-inf")
    stopped_early: bool = False
    state_dict: dict[str, torch.Tensor] | None = None
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # split -> [n, n_neuroids]
    seconds: float = 0.0
    resumed_epoch: int = 0   # the epoch a resumed run continued after (0: a fresh run)
    _state: Callable[[], dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    def training_state(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly where it is (see
        :func:`train_network`'s ``resume``): weights, optimizer, scheduler, scaler, random
        generators, the best epoch so far and its predictions. Only during training
        (in ``on_epoch``).

        Weights that training never changes (a frozen backbone's) are left out and
        identified by a digest instead; at an improving epoch the current and the best
        weights are the same tensors, which ``torch.save`` writes once."""
        if self._state is None:
            raise RuntimeError("training_state() is available only during training (on_epoch)")
        return self._state()


#: Version of the dict :meth:`TrainResult.training_state` returns (2: constant weights
#: left out; version 1 states, with every weight, are still read).
def _amp_context(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype), dtype
    return torch.autocast("cpu", enabled=False), None


def _make_optimizer(cfg: FinetuneConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=0.9)


@torch.no_grad()
def _predict(model: torch.nn.Module, x_u8: np.ndarray, norm: Normalizer, batch: int,
             device: torch.device, amp: bool) -> np.ndarray:
    model.eval()
    out = []
    ctx, _ = _amp_context(device, amp)
    for s in range(0, len(x_u8), batch):
        xb = norm(torch.from_numpy(x_u8[s:s + batch]))
        with ctx:
            out.append(model(xb).float().cpu())
    return torch.cat(out).numpy().astype(np.float64)


def train_network(cfg: FinetuneConfig, data: PreparedData, bundle: NetworkBundle | None = None,
                  device: str | torch.device | None = None,
                  on_epoch: Callable[[dict[str, float], TrainResult], None] | None = None,
                  track_test: bool = False, resume: dict[str, Any] | None = None) -> TrainResult:
    """Train backbone + decoder on ``data``'s train split with early stopping on val EV.

    Parameters
    ----------
    cfg : the run's settings.
    data : images and targets per split (see :func:`prepare_data`).
    bundle : a network built by :func:`build_network` (built here when None).
    device : default CUDA when available, else CPU.
    on_epoch : called after every epoch with the epoch's metrics (epoch, train_loss,
        val_ev, val_r, best_val_ev, best_val_r, lr, seconds, improved) and the result so
        far (its ``predictions`` hold the best epoch's val -- and test, with
        ``track_test`` -- predictions).
    track_test : predict the test split at every improvement (for tuning, where a trial
        may be stopped at any epoch); otherwise test is predicted once at the end.
    resume : a state from :meth:`TrainResult.training_state` (taken in ``on_epoch`` of an
        earlier run with the same settings and data): training continues after that
        epoch, and on CPU ends exactly as the uninterrupted run would have.

    Returns
    -------
    TrainResult with the best epoch's state dict (CPU) and val/test predictions.
    """
    t0 = time.time()
    device = torch.device(device) if device is not None else default_device()
    torch.manual_seed(cfg.seed)
    bundle = bundle or build_network(cfg, data.n_outputs)
    model = bundle.model.to(device)
    pre = bundle.preprocess
    norm = Normalizer(pre.mean, pre.std, device)

    ytr = data.y["train"]
    mu = np.nanmean(ytr, axis=0)
    sd = np.nanstd(ytr, axis=0)
    if not np.all(np.isfinite(mu)):
        bad = [data.neuroid_ids[j] for j in np.flatnonzero(~np.isfinite(mu))]
        raise ValueError(f"neuroid(s) without any valid training response: {bad[:10]}")
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    z = (ytr - mu) / sd
    mask_t = torch.from_numpy(np.isfinite(z)).to(device)
    z_t = torch.from_numpy(np.nan_to_num(z, nan=0.0)).float().to(device)
    x_tr = torch.from_numpy(data.x["train"])

    params = [p for p in model.parameters() if p.requires_grad]
    opt = _make_optimizer(cfg, params)
    sched = torch.optim.lr_scheduler.StepLR(opt, cfg.step_size, cfg.gamma) if cfg.step_size else None
    ctx_amp, amp_dtype = _amp_context(device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    gen = torch.Generator().manual_seed(cfg.seed)

    res = TrainResult()
    best_val_r = float("nan")
    since_best = 0
    start = 1
    constant = _constant_keys(model)
    digest = _digest(model.state_dict(), constant) if constant else None
    if resume is not None:
        _check_resume(resume, cfg)
        omitted = list(resume.get("constant_keys") or [])
        if omitted:
            if omitted != constant or resume.get("constant_digest") != digest:
                raise ValueError(
                    "the training state was saved with other constant (frozen backbone) "
                    "weights than this network's: it cannot continue here")
            full = model.state_dict()
            fixed = {k: full[k] for k in omitted}
            resume = {**resume, "model": {**fixed, **resume["model"]}}
            if resume["best"]["state_dict"] is not None:
                resume["best"] = {**resume["best"], "state_dict": {
                    **_to_cpu(fixed), **resume["best"]["state_dict"]}}
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        if sched is not None:
            sched.load_state_dict(resume["scheduler"])
        if scaler is not None and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        gen.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        if device.type == "cuda" and resume.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(resume["cuda_rng"], device)
        best = resume["best"]
        res.best_val_ev, best_val_r, res.best_epoch = (float(best["val_ev"]), float(best["val_r"]),
                                                       int(best["epoch"]))
        res.state_dict = best["state_dict"]
        res.predictions = {k: v.numpy() for k, v in best["predictions"].items()}
        res.history = [dict(h) for h in resume["history"]]
        since_best = int(resume["since_best"])
        res.resumed_epoch = int(resume["epoch"])
        start = res.resumed_epoch + 1
        last = res.history[-1] if res.history else {}
        if (cfg.patience and since_best >= cfg.patience) or \
                not math.isfinite(float(last.get("train_loss", 0.0))):
            res.stopped_early = True   # the state is of the run's last epoch
            start = cfg.epochs + 1
        log.info("resuming after epoch %d (best epoch %d)", res.resumed_epoch, res.best_epoch)

    skip = set(constant)

    def snapshot(epoch: int) -> dict[str, Any]:
        weights = _to_cpu({k: v for k, v in model.state_dict().items() if k not in skip})
        if res.state_dict is None:
            best_weights = None
        elif res.best_epoch == epoch:   # the same values: share them (saved once)
            best_weights = weights
        else:
            best_weights = {k: v for k, v in res.state_dict.items() if k not in skip}
        return {
            "version": TRAINING_STATE_VERSION, "epoch": epoch, "seed": cfg.seed,
            "epochs": cfg.epochs,
            "constant_keys": list(constant), "constant_digest": digest,
            "model": weights,
            "optimizer": _to_cpu(opt.state_dict()),
            "scheduler": sched.state_dict() if sched is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "best": {"epoch": res.best_epoch, "val_ev": res.best_val_ev, "val_r": best_val_r,
                     "state_dict": best_weights,
                     "predictions": {k: torch.from_numpy(np.ascontiguousarray(v))
                                     for k, v in res.predictions.items()}},
            "history": [dict(h) for h in res.history], "since_best": since_best,
        }

    n = len(x_tr)
    for epoch in range(start, cfg.epochs + 1):
        te = time.time()
        model.train()
        perm = torch.randperm(n, generator=gen)
        tot, cnt = 0.0, 0
        for s in range(0, n, cfg.batch_size):
            bi = perm[s:s + cfg.batch_size]
            if bi.numel() < 2 and n >= 2:
                continue  # a 1-sample batch breaks BatchNorm in training mode
            xb = norm(x_tr[bi])
            yb, mb = z_t[bi.to(device)], mask_t[bi.to(device)]
            with ctx_amp:
                out = model(xb)
            diff = (out.float() - yb) ** 2
            loss = (diff * mb).sum() / mb.sum().clamp_min(1)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            tot += float(loss.detach()) * bi.numel()
            cnt += bi.numel()
        lr_now = opt.param_groups[0]["lr"]
        if sched is not None:
            sched.step()
        val_pred = _predict(model, data.x["val"], norm, max(cfg.batch_size, 64), device,
                            cfg.amp) * sd + mu
        ev, r = neuroid_metrics(data.y["val"], val_pred)
        val_ev, val_r = _nanmean(ev), _nanmean(r)
        if not math.isfinite(val_ev):
            val_ev = float("-inf")  # a diverged run never counts as an improvement
        improved = val_ev > res.best_val_ev
        if improved:
            res.best_val_ev, best_val_r, res.best_epoch = val_ev, val_r, epoch
            res.state_dict = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            res.predictions["val"] = val_pred
            if track_test:
                res.predictions["test"] = _predict(model, data.x["test"], norm,
                                                   max(cfg.batch_size, 64), device, cfg.amp) * sd + mu
            since_best = 0
        else:
            since_best += 1
        train_loss = tot / max(cnt, 1)
        m = dict(epoch=epoch, train_loss=train_loss, val_ev=val_ev, val_r=val_r,
                 best_val_ev=res.best_val_ev, best_val_r=best_val_r, best_epoch=res.best_epoch,
                 lr=lr_now, seconds=time.time() - te, improved=bool(improved))
        res.history.append(m)
        log.info("epoch %d: loss %.4f val EV %.4f r %.4f%s", epoch, train_loss, val_ev, val_r,
                 " *" if improved else "")
        res._state = lambda e=epoch: snapshot(e)
        if not math.isfinite(train_loss):
            log.warning("training loss is not finite at epoch %d; stopping", epoch)
            res.stopped_early = True
            if on_epoch is not None:
                on_epoch(m, res)
            break
        if on_epoch is not None:
            on_epoch(m, res)
        if cfg.patience and since_best >= cfg.patience:
            res.stopped_early = True
            break
    res._state = None
    if res.state_dict is not None:
        model.load_state_dict(res.state_dict)
    if "test" not in res.predictions:
        res.predictions["test"] = _predict(model, data.x["test"], norm, max(cfg.batch_size, 64),
                                           device, cfg.amp) * sd + mu
    if "val" not in res.predictions:
        res.predictions["val"] = _predict(model, data.x["val"], norm, max(cfg.batch_size, 64),
                                          device, cfg.amp) * sd + mu
    res.seconds = time.time() - t0
    return res


# --------------------------------------------------------------------------- full run
@dataclass
class FinetuneResult:
    """A finished run: where it was written and its headline numbers."""

    run_id: str
    unit_key: str
    scores: pd.DataFrame
    per_neuroid: pd.DataFrame
    history: list[dict]
    checkpoint_uri: str | None
    best_epoch: int
    val_ev: float
    test_ev: float
    test_r: float
    skipped: bool = False
    resumed_epoch: int = 0   # > 0: continued from the state saved after this epoch


def run_finetune(data_uri: str, cfg: FinetuneConfig, out: str, run_id: str | None = None,
                 device: str | None = None, force: bool = False,
                 save_checkpoint: bool = True, checkpoint_every: int = 1) -> FinetuneResult:
    """Train one network end to end and write its scores, per-neuroid values and checkpoint.

    Written under ``out`` (local folder or s3://):

    * ``scores/<unit_key>.parquet``: method "finetune", metrics explained_variance /
      pearson_r (+ medians), split val/test, per region; config columns (preset,
      config JSON, blocks, frozen, width, dropout, lr, weight_decay, optimizer).
    * ``finetune/<unit_key>/neuroids.parquet`` (per neuroid), ``history.json``,
      ``config.yaml``, ``splits.json`` and ``model.pt`` (``torch.save`` of the state dict).
    * ``plots/finetune-<unit_key>.png``: the learning curve.

    A unit already present is not recomputed unless ``force``. The split is the one stored
    at ``splits/<dataset fingerprint>-<split settings>.json`` when present (shared by all
    runs on the same dataset and settings), else a new one.

    Every ``checkpoint_every`` epochs (0: never) the complete training state is written to
    ``finetune/<unit_key>/training_state.pt``; a run killed before it finished continues
    from there when started again (unless ``force``), and ends exactly as an uninterrupted
    run would on CPU. The state is deleted once the unit's scores are written.
    """
    from cortexzoo.data import load_dataset
    from cortexzoo.store import ResultStore, make_score_rows

    store = ResultStore(out)
    ds = load_dataset(data_uri)
    fp = ds.fingerprint()
    ids = ds.stimuli["stimulus_id"].astype(str).tolist()
    splits = load_or_make_splits(store, split_relpath(fp, cfg), ids, cfg)
    unit = _unit_key(cfg, fp, splits)
    run_id = run_id or f"finetune-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    if not force and store.has_unit(unit):
        scores = store.read_scores(filters=[("unit_key", "==", unit)])
        old_run = str(scores["run_id"].iloc[0]) if len(scores) else run_id
        return FinetuneResult(old_run, unit, scores, pd.DataFrame(),
                              store.get_json(f"finetune/{unit}/history.json") or [], None, -1,
                              _value(scores, "val", "explained_variance"),
                              _value(scores, "test", "explained_variance"),
                              _value(scores, "test", "pearson_r"), skipped=True)
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 (0: no training state), got "
                         f"{checkpoint_every}")
    base = f"finetune/{unit}"
    state_rel = f"{base}/training_state.pt"
    resume = None
    if force:
        store.delete(state_rel)
    else:
        raw = store.get_bytes(state_rel)
        if raw is not None:
            try:
                resume = load_training_state(raw, name=store.uri_of(state_rel))
            except ValueError as e:
                raise ValueError(f"{e}; delete it, or pass force=True (--force) to start over") \
                    from e
    bundle = build_network(cfg, len(ds.neuroids) if cfg.region is None
                           else len(ds.region_index(cfg.region)))
    data = prepare_data(ds, splits, bundle.preprocess, cfg.region, seed=cfg.seed)

    def on_epoch(m: dict, r: TrainResult) -> None:
        if checkpoint_every and int(m["epoch"]) % checkpoint_every == 0:
            store.put_bytes(state_rel, save_training_state(r.training_state()))

    if resume is not None:
        log.info("%s: continuing from %s (after epoch %d)", unit, store.uri_of(state_rel),
                 int(resume["epoch"]))
    try:
        res = train_network(cfg, data, bundle, device=device, on_epoch=on_epoch, resume=resume)
    except ValueError as e:
        if resume is None:
            raise
        raise ValueError(f"cannot continue from {store.uri_of(state_rel)}: {e}; delete it, or "
                         "pass force=True (--force) to start over") from e
    rows, per = score_rows(data, res.predictions)
    info = bundle_info(bundle)
    common = common_columns(cfg, info, ds.name, run_id, splits)
    common.update(best_epoch=res.best_epoch, epochs_run=len(res.history),
                  trial_id=None, campaign=None)
    scores = make_score_rows(common, rows)
    ckpt_uri = None
    if save_checkpoint and res.state_dict is not None:
        buf = io.BytesIO()
        torch.save(res.state_dict, buf)
        ckpt_uri = store.put_bytes(f"{base}/model.pt", buf.getvalue())
    pbuf = io.BytesIO()
    per.assign(run_id=run_id, model=info["model"], unit_key=unit).to_parquet(pbuf, index=False)
    store.put_bytes(f"{base}/neuroids.parquet", pbuf.getvalue())
    store.put_json(f"{base}/history.json", res.history)
    store.put_bytes(f"{base}/config.yaml", cfg.to_yaml().encode())
    store.put_json(f"{base}/splits.json", splits.to_dict())
    store.put_json(f"{base}/network.json", {**info, "n_outputs": data.n_outputs,
                                            "neuroid_ids": data.neuroid_ids,
                                            "preprocess": bundle.preprocess.to_dict(),
                                            "seconds": res.seconds})
    try:
        from .plots import plot_history

        store.put_bytes(f"plots/finetune-{unit}.png",
                        plot_history(res.history, f"{cfg.preset or 'custom'}: {info['model']}"))
    except ImportError:  # matplotlib is optional for training itself
        log.warning("matplotlib is not installed: no learning-curve plot")
    # the scores file last: its presence marks the unit complete
    store.write_scores(scores, unit)
    store.delete(state_rel)
    return FinetuneResult(run_id, unit, scores, per, res.history, ckpt_uri, res.best_epoch,
                          _value(scores, "val", "explained_variance"),
                          _value(scores, "test", "explained_variance"),
                          _value(scores, "test", "pearson_r"), resumed_epoch=res.resumed_epoch)


