"""The three linear-probe tasks of paper 004 (section 2.2, A.3) on one frozen twin.

* :func:`orientation_task`: 8-way orientation of single-frame gratings from the encoder
  output; a training-size sweep over nested balanced subsets of one pool; accuracy on
  an ID test set and on a shifted-nuisance OOD test set at every size; endpoints the
  accuracies at the largest size and the normalized AUC over ``log2(size)``.
* :func:`contrast_task`: flashed-Gabor detection from the final GRU state of a 5-frame
  clip (raw features); balanced accuracy ``(hit rate(c) + correct-rejection rate) / 2``
  at each contrast of the grid; endpoint its normalized AUC over contrast.
* :func:`motion_task`: 2-way RDK direction from the last 5-frame chunk's final GRU state,
  standardized with training statistics; trained at high coherence; accuracy at each
  coherence of the grid; endpoint its normalized AUC over coherence.

Stimuli are seeded by ``(config seed, run seed, family, split, block)`` only, never by
the architecture, so every twin of one run seed sees the same draws. Clips are
generated and passed through the twin in blocks of :data:`GEN_BLOCK`, whatever the
batch size. Each task returns a :class:`FamilyResult`: tables for ``OUT/probes/``,
score rows and a breakdown of where the time went.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..data import probe_stimuli as S
from .config import FAMILIES, ProbeConfig
from .extract import FeatureExtractor
from .linear import accuracy, fit_probe, normalized_auc, standardize

__all__ = ["FamilyResult", "orientation_task", "contrast_task", "motion_task", "stimulus_seed",
           "GEN_BLOCK"]

#: Clips per generation block (fixed, so that stimuli do not depend on batch sizes).
GEN_BLOCK = 256
_SPLITS = {"train": 0, "val": 1, "test": 2, "ood": 3}


@dataclass
class FamilyResult:
    """What one (twin, family) unit produces."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class _Clock:
    def __init__(self) -> None:
        self.t: dict[str, float] = {}

    def add(self, key: str, t0: float) -> float:
        now = time.perf_counter()
        self.t[key] = self.t.get(key, 0.0) + now - t0
        return now


def stimulus_seed(cfg: ProbeConfig, run_seed: int, family: str, split: str,
                  block: int = 0) -> list[int]:
    """The seed of one block of stimuli: architecture-free, so draws match across
    architectures within a run seed."""
    return [int(cfg.seed), int(run_seed), FAMILIES.index(family), _SPLITS[split], int(block)]


def _blocked(n: int, make: Callable[[slice, int], np.ndarray],
             featurize: Callable[[np.ndarray], np.ndarray], clock: _Clock) -> np.ndarray:
    """Generate ``n`` stimuli block by block and featurize each block."""
    feats = []
    for blk, i in enumerate(range(0, n, GEN_BLOCK)):
        t0 = time.perf_counter()
        x = make(slice(i, min(n, i + GEN_BLOCK)), blk)
        t0 = clock.add("stimuli_s", t0)
        feats.append(featurize(x))
        clock.add("forward_s", t0)
    return np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)


# ----------------------------------------------------------------------- orientation


def orientation_task(fx: FeatureExtractor, cfg: ProbeConfig, run_seed: int) -> FamilyResult:
    s, lin, clock = cfg.orientation, cfg.linear, _Clock()
    h, w = fx.hw
    K = s.n_classes
    sets = {"train": (max(s.train_sizes), s.id), "val": (s.n_val, s.id),
            "test": (s.n_test, s.id), "ood": (s.n_ood, s.ood)}
    X, Y = {}, {}
    for split, (n, ranges) in sets.items():
        t0 = time.perf_counter()
        st = S.orientation_stimuli(n, h, w, seed=stimulus_seed(cfg, run_seed, "orientation", split),
                                   n_classes=K, **ranges)
        t0 = clock.add("stimuli_s", t0)
        X[split], Y[split] = fx.encoder(st["images"]), st["labels"]
        clock.add("forward_s", t0)
    t0 = time.perf_counter()
    rows = []
    for size in s.train_sizes:
        fit = fit_probe(X["train"][:size], Y["train"][:size], X["val"], Y["val"], K,
                        lin.l2_grid, max_iter=lin.max_iter, device=fx.device)
        for split in ("test", "ood"):
            rows.append({"train_size": size, "split": "id" if split == "test" else "ood",
                         "accuracy": accuracy(fit.probe.predict(_t(X[split], fx)), Y[split]),
                         "l2": fit.l2, "val_accuracy": fit.val_accuracy,
                         "n_test": len(Y[split]), "chance": 1.0 / K})
    clock.add("probe_fit_s", t0)
    curve = pd.DataFrame(rows)
    chance = 1.0 / K
    x = np.log2(np.asarray(s.train_sizes, dtype=float))
    res = FamilyResult(tables={"orientation": curve}, timings=clock.t)
    d = X["train"].shape[1]
    for split, name in (("id", "test"), ("ood", "ood")):
        c = curve[curve["split"] == split].sort_values("train_size")
        acc = c["accuracy"].to_numpy()
        n_test = len(Y[name])
        res.rows.append(_row(f"orientation_accuracy_{split}", acc[-1], n_test, d, "encoder",
                             split, chance))
        if len(x) > 1:
            nauc = normalized_auc(x, acc)
            res.rows.append(_row(f"orientation_nauc_{split}", nauc, n_test, d, "encoder", split,
                                 chance))
            res.rows.append(_row(f"orientation_nauc_{split}_chance_adjusted",
                                 (nauc - chance) / (1 - chance), n_test, d, "encoder", split,
                                 chance))
    res.info = {"chance": chance, "largest_size": max(s.train_sizes)}
    return res


def _t(X: np.ndarray, fx: FeatureExtractor):
    import torch

    return torch.as_tensor(X, dtype=torch.float64, device=fx.device)


def _row(metric: str, value: float, n_stimuli: int, n_features: int, layer: str, split: str,
         chance: float) -> dict[str, Any]:
    return {"metric": metric, "value": float(value), "n_stimuli": int(n_stimuli),
            "n_neuroids": int(n_features), "layer": layer, "split": split, "chance": chance}


# -------------------------------------------------------------------------- contrast


def _contrast_design(cfg: ProbeConfig, split: str, n: int, run_seed: int):
    """(present, contrast) per clip: alternating blank / target for train and val, with
    log-uniform target contrasts; the test set is the blanks, then each grid contrast."""
    s = cfg.contrast
    if split == "test":
        present = np.r_[np.zeros(s.n_test_blank, bool),
                        np.ones(s.n_test_per_contrast * len(s.eval_contrasts), bool)]
        contrast = np.r_[np.zeros(s.n_test_blank),
                         np.repeat(s.eval_contrasts, s.n_test_per_contrast)]
        return present, contrast
    rng = np.random.default_rng(stimulus_seed(cfg, run_seed, "contrast", split) + [999])
    present = np.arange(n) % 2 == 1
    lo, hi = np.log(s.train_contrast[0]), np.log(s.train_contrast[1])
    contrast = np.where(present, np.exp(rng.uniform(lo, hi, n)), 0.0)
    return present, contrast


def contrast_task(fx: FeatureExtractor, cfg: ProbeConfig, run_seed: int,
                  clip_len: int = 5) -> FamilyResult:
    s, lin, clock = cfg.contrast, cfg.linear, _Clock()
    h, w = fx.hw
    n_test = s.n_test_blank + s.n_test_per_contrast * len(s.eval_contrasts)
    X, P, C = {}, {}, {}
    for split, n in (("train", s.n_train), ("val", s.n_val), ("test", n_test)):
        present, contrast = _contrast_design(cfg, split, n, run_seed)

        def make(sl: slice, blk: int, present=present, contrast=contrast, split=split):
            return S.contrast_detection_clips(
                present[sl], contrast[sl], h, w,
                seed=stimulus_seed(cfg, run_seed, "contrast", split, blk), clip_len=clip_len,
                target_frames=s.target_frames, patch_center=s.patch_center,
                patch_sigma=s.patch_sigma, sf=s.sf, noise=s.noise, blur=s.blur, mean=s.mean,
                orientation=None if s.orientation_deg is None else np.deg2rad(s.orientation_deg),
            )["clips"]

        X[split] = _blocked(len(present), make, fx.gru_final, clock)
        P[split], C[split] = present, contrast
    t0 = time.perf_counter()
    fit = fit_probe(X["train"], P["train"].astype(int), X["val"], P["val"].astype(int), 2,
                    lin.l2_grid, max_iter=lin.max_iter, device=fx.device)
    pred = fit.probe.predict(_t(X["test"], fx))
    clock.add("probe_fit_s", t0)
    blank = ~P["test"]
    cr = float(np.mean(pred[blank] == 0))
    rows = []
    for c in s.eval_contrasts:
        sel = P["test"] & (C["test"] == c)
        hit = float(np.mean(pred[sel] == 1))
        rows.append({"contrast": c, "hit_rate": hit, "cr_rate": cr,
                     "balanced_accuracy": (hit + cr) / 2.0, "n_target": int(sel.sum()),
                     "n_blank": int(blank.sum()), "l2": fit.l2,
                     "val_accuracy": fit.val_accuracy})
    curve = pd.DataFrame(rows)
    nauc = normalized_auc(curve["contrast"], curve["balanced_accuracy"])
    res = FamilyResult(tables={"contrast": curve}, timings=clock.t)
    res.rows.append(_row("contrast_nauc", nauc, n_test, X["train"].shape[1], "gru", "test", 0.5))
    res.rows.append(_row("contrast_balanced_accuracy_max_contrast",
                         curve["balanced_accuracy"].iloc[-1], n_test, X["train"].shape[1], "gru",
                         "test", 0.5))
    return res


# ---------------------------------------------------------------------------- motion


def motion_task(fx: FeatureExtractor, cfg: ProbeConfig, run_seed: int,
                clip_len: int = 5) -> FamilyResult:
    s, lin, clock = cfg.motion, cfg.linear, _Clock()
    h, w = fx.hw
    if s.n_frames < clip_len:
        raise ValueError(f"motion.n_frames ({s.n_frames}) is shorter than the twin's "
                         f"{clip_len}-frame clips")
    dirs = np.deg2rad(np.asarray(s.directions_deg, dtype=float))
    n_test = s.n_test_per_coherence * len(s.eval_coherences)
    X, Y, COH = {}, {}, {}
    for split, n in (("train", s.n_train), ("val", s.n_val), ("test", n_test)):
        label = np.arange(n) % 2
        if split == "test":
            coh = np.repeat(s.eval_coherences, s.n_test_per_coherence)
        else:
            rng = np.random.default_rng(stimulus_seed(cfg, run_seed, "motion", split) + [999])
            coh = rng.uniform(s.train_coherence[0], s.train_coherence[1], n)

        def make(sl: slice, blk: int, coh=coh, label=label, split=split):
            return S.rdk_clips(coh[sl], dirs[label[sl]], h, w,
                               seed=stimulus_seed(cfg, run_seed, "motion", split, blk),
                               n_frames=s.n_frames, density=s.density, lifetime=s.lifetime,
                               speed=s.speed, dot_size=s.dot_size)

        X[split] = _blocked(n, make, lambda c: fx.chunked_final(c, clip_len, s.carry_state),
                            clock)
        Y[split], COH[split] = label, coh
    t0 = time.perf_counter()
    Xtr, Xva, Xte = standardize(X["train"], X["val"], X["test"])
    fit = fit_probe(Xtr, Y["train"], Xva, Y["val"], 2, lin.l2_grid, max_iter=lin.max_iter,
                    device=fx.device)
    pred = fit.probe.predict(_t(Xte, fx))
    clock.add("probe_fit_s", t0)
    rows = []
    for c in s.eval_coherences:
        sel = COH["test"] == c
        rows.append({"coherence": c, "accuracy": accuracy(pred[sel], Y["test"][sel]),
                     "n_test": int(sel.sum()), "l2": fit.l2, "val_accuracy": fit.val_accuracy})
    curve = pd.DataFrame(rows)
    res = FamilyResult(tables={"motion": curve}, timings=clock.t)
    res.rows.append(_row("motion_nauc", normalized_auc(curve["coherence"], curve["accuracy"]),
                         n_test, X["train"].shape[1], "gru", "test", 0.5))
    res.rows.append(_row("motion_accuracy_max_coherence", curve["accuracy"].iloc[-1], n_test,
                         X["train"].shape[1], "gru", "test", 0.5))
    return res
