"""Scores of one layer's features against a dataset, as score-table rows.

Dataset-level quantities (mean responses, reliabilities, ceilings, neural RDMs, the
seeded stimulus halves) are computed once per scan in :class:`DatasetTargets` and
reused for every (model, layer).

Every layer is scored three times: on all stimuli (``split="loo"``: exact leave-one-out
ridge, RSA on all stimuli; the in-sample numbers and the per-neuroid table) and on each
of two seeded halves of the stimuli (``split="half_a"`` / ``"half_b"``, each scored
within its half). The leaderboard picks a model's layer on one half and reports it on
the other, and the reverse, averaged (Conwell et al. 2024; SCIENCE.md section 4), so
that a model with more layers is not favoured by the max over noisy in-sample scores.

Ceilings (SCIENCE.md section 2): a region's neuroid ceilings come from the dataset's own
``reliability`` column when it has one, else from split-half reliability of the
repetitions; a dataset with one repetition per stimulus has none, and its ceiled values
are NaN (never a division), with the reason logged and kept in the manifest.
"""
from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass, field

import numpy as np

from .. import mapping

log = logging.getLogger("cortexzoo")

METHOD_RIDGE = "ridge_gcv"
METHOD_RSA = "rsa"
METHODS = (METHOD_RIDGE, METHOD_RSA)
METHOD_INTER_ANIMAL = "inter_animal"
SPLIT_ALL, HALVES = "loo", ("half_a", "half_b")
#: Part of every scan key: bump when scoring changes the numbers.
SCORING_VERSION = "2"


@dataclass
class ScoringConfig:
    methods: tuple[str, ...] = METHODS
    alphas: tuple[float, ...] | None = None  # None: SCIENCE.md §4 default grid
    reliability_splits: int = 100
    min_reliability: float | None = None  # drop neuroids below this split-half reliability
    rsa_compare: str = "pearson"
    seed: int = 0
    # "auto": torch on the GPU in float32 (with the float64 refinement) where the scoring
    # process sees a GPU, numpy float64 otherwise; recorded in every row ("solver")
    backend: str = "auto"
    dtype: str = "auto"
    layer_split_seed: int = 0  # the seeded stimulus halves of the held-out layer choice
    inter_animal: bool = True  # inter-animal ceiling rows for regions with >= 2 subjects
    inter_animal_boot: int = 1000
    per_neuroid: bool = True   # keep ridge's per-neuroid r, EV, alpha and ceiling

    def __post_init__(self):
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ValueError(f"unknown scoring method(s) {bad}; choose from {list(METHODS)}")
        if not self.methods:
            raise ValueError("scoring needs at least one method")
        self.methods = tuple(self.methods)
        if self.alphas is not None:
            self.alphas = tuple(float(a) for a in self.alphas)
        if self.rsa_compare not in ("pearson", "spearman"):
            raise ValueError(f"rsa_compare must be 'pearson' or 'spearman', got {self.rsa_compare!r}")

    def key_parts(self) -> dict:
        return {"methods": list(self.methods), "alphas": self.alphas,
                "reliability_splits": self.reliability_splits,
                "min_reliability": self.min_reliability, "rsa_compare": self.rsa_compare,
                "seed": self.seed, "dtype": self.dtype, "layer_split_seed": self.layer_split_seed,
                "version": SCORING_VERSION}


#: Fewer stimuli than this: no held-out layer choice (each half too small to score).
MIN_HALVES_STIMULI = 8


def solver_settings(config: ScoringConfig) -> tuple[str, str, str | None]:
    """(backend, dtype, device) of the ridge solver in this process, resolving "auto"."""
    backend, dtype = config.backend, config.dtype
    device = None
    if backend == "auto":
        backend = "numpy"
        if _may_see_gpu():
            try:
                import torch

                if torch.cuda.is_available():
                    backend, device = "torch", "cuda"
            except ImportError:
                pass
    if dtype == "auto":
        dtype = "float32" if device == "cuda" else "float64"
    return backend, dtype, device


def _may_see_gpu() -> bool:
    """False when this process surely sees no GPU (no NVIDIA device, or Ray gave the task
    none), so that a CPU scoring task does not import torch (seconds) to find out."""
    import os
    import sys

    if "torch" in sys.modules:
        return True
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl")


def solver_label(config: ScoringConfig) -> str:
    backend, dtype, device = solver_settings(config)
    return f"{backend}-{device or 'cpu'}-{dtype}"


def stimulus_halves(stimulus_ids, seed: int = 0) -> dict[str, np.ndarray]:
    """Two seeded halves of the stimuli (row positions, sorted): stimuli ranked by
    ``sha256(f"{seed}:{stimulus_id}")``, the first ``n // 2`` form ``half_a``. The
    assignment of a stimulus depends on its id and the seed only, not on row order.
    Empty (no halves) below :data:`MIN_HALVES_STIMULI` stimuli; the leaderboard then
    ranks on the in-sample max and says so."""
    ids = [str(s) for s in stimulus_ids]
    if len(ids) < MIN_HALVES_STIMULI:
        return {}
    keys = [hashlib.sha256(f"{int(seed)}:{s}".encode()).digest() for s in ids]
    order = sorted(range(len(ids)), key=keys.__getitem__)
    a = np.sort(np.asarray(order[:len(ids) // 2], dtype=np.int64))
    b = np.sort(np.asarray(order[len(ids) // 2:], dtype=np.int64))
    return {"half_a": a, "half_b": b}


@dataclass
class Ceiling:
    """A region's neuroid reliabilities on some stimuli and where they come from."""

    reliability: np.ndarray        # per kept neuroid (NaN where unknown)
    source: str                    # "split_half", "dataset" or "none"
    reason: str = ""               # why there is none


@dataclass
class PartTargets:
    """What one part of the stimuli (all, or a half) is compared with, for one region."""

    idx: np.ndarray                # stimulus rows
    ceiling: Ceiling
    rdm: "np.ndarray | mapping.RDMFactor | None" = None  # a factor for Pearson RSA (O(n m))
    rdm_reliability: float = float("nan")
    rdm_reason: str = ""


@dataclass
class RegionTargets:
    region: str
    columns: np.ndarray            # neuroid columns kept for this region
    neuroid_ids: np.ndarray
    parts: dict[str, PartTargets] = field(default_factory=dict)  # "loo", "half_a", "half_b"
    n_dropped: int = 0

    @property
    def reliability(self) -> np.ndarray:
        return self.parts[SPLIT_ALL].ceiling.reliability


@dataclass
class PublishedRDMs:
    """A region's RDMs shipped with the dataset (``rdms.npy``), one per subject or study."""

    region: str
    rdms: np.ndarray                          # [n_rdms, n, n]
    ceilings: dict[str, dict[str, float]]     # part -> comparison method -> ceiling


def _quiet_nanmean(a, axis):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def _neuroid_ceiling(R: np.ndarray | None, published: np.ndarray | None,
                     config: ScoringConfig) -> Ceiling:
    """Reliabilities of the neuroids of ``R`` [stimuli, reps, neuroids]."""
    if published is not None:
        return Ceiling(np.asarray(published, np.float64), "dataset")
    multi = (np.isfinite(R).sum(axis=1) >= 2)       # [stimuli, neuroids]
    if not multi.any():
        why = ("one repetition per stimulus" if R.shape[1] == 1 else
               "no stimulus has two valid repetitions")
        return Ceiling(np.full(R.shape[2], np.nan), "none",
                       f"{why}: no split-half reliability (a 'reliability' column in "
                       "neuroids.parquet would supply one)")
    rel = mapping.split_half_reliability(R, n_splits=config.reliability_splits, seed=config.seed)
    reason = "" if np.isfinite(rel).any() else "too few stimuli with two valid repetitions"
    return Ceiling(rel, "split_half" if not reason else "none", reason)


def _rdm_reliability(R: np.ndarray, config: ScoringConfig) -> tuple[float, str]:
    """Split-half reliability of the population RDM, on the stimuli where every neuroid
    has at least two valid repetitions (NaN-padded recordings show some stimuli once)."""
    ok = (np.isfinite(R).sum(axis=1) >= 2).all(axis=1)
    if ok.sum() < 3:
        return float("nan"), ("fewer than 3 stimuli with two valid repetitions of every "
                              "neuroid: no RDM split-half reliability")
    try:
        rel = mapping.rdm_split_half_reliability(
            R[ok], n_splits=min(config.reliability_splits, 20), seed=config.seed)
    except ValueError as e:
        return float("nan"), f"no RDM split-half reliability ({e})"
    note = "" if ok.all() else f"on the {int(ok.sum())} stimuli with two valid repetitions"
    return float(rel), note


@dataclass
class DatasetTargets:
    """What every layer is compared with: mean responses, per-region ceilings and RDMs,
    on all stimuli and on each seeded half."""

    Y: np.ndarray | None  # [n_stimuli, n_neuroids] mean over repetitions
    halves: dict[str, np.ndarray] = field(default_factory=dict)
    regions: dict[str, RegionTargets] = field(default_factory=dict)
    published: dict[str, PublishedRDMs] = field(default_factory=dict)
    notes: dict[str, dict] = field(default_factory=dict)  # region -> ceiling sources/reasons
    subjects: np.ndarray | None = None

    def parts(self, n: int) -> dict[str, np.ndarray]:
        return {SPLIT_ALL: np.arange(n), **self.halves}

    @classmethod
    def from_dataset(cls, dataset, config: ScoringConfig) -> "DatasetTargets":
        out = cls(Y=None, halves=stimulus_halves(dataset.stimuli["stimulus_id"],
                                                 config.layer_split_seed))
        if not out.halves:
            log.warning("%d stimuli: too few for the held-out layer choice (at least %d); "
                        "leaderboards rank on the in-sample max", dataset.n_stimuli,
                        MIN_HALVES_STIMULI)
        parts = out.parts(dataset.n_stimuli)
        if getattr(dataset, "rdms", None) is not None and METHOD_RSA in config.methods:
            table = dataset.rdm_table.reset_index(drop=True)
            for region, rows in table.groupby("region", sort=True):
                rdms = np.asarray(dataset.rdms[rows.index.to_numpy()], dtype=np.float64)
                ceil = {}
                for part, idx in parts.items():
                    sub = rdms[:, idx][:, :, idx]
                    ceil[part] = {m: (float(mapping.rdm_ceiling(sub, m)) if len(rdms) > 1
                                      else float("nan")) for m in ("pearson", "spearman")}
                out.published[str(region)] = PublishedRDMs(str(region), rdms, ceil)
                if len(rdms) < 2:
                    out.notes.setdefault(str(region), {})["rdms"] = (
                        "one published RDM: no leave-one-subject-out ceiling")
        R = dataset.responses
        if R is None:
            return out
        Y = dataset.mean_responses()
        out.Y = Y
        out.subjects = dataset.neuroids["subject"].astype(str).to_numpy()
        published = dataset.published_reliability()
        ids = dataset.neuroids["neuroid_id"].astype(str).to_numpy()
        for region in dataset.regions:
            if region not in set(dataset.neuroids["region"].astype(str)):
                continue  # a region known only from published RDMs
            keep, dropped = dataset.complete_neuroids(region)
            if dropped.size:
                log.warning("region %r: %d neuroid(s) lack a response to some stimulus and are "
                            "not scored", region, dropped.size)
            if keep.size == 0:
                raise ValueError(f"region {region!r}: no neuroid has a response to every stimulus")
            full = _neuroid_ceiling(R[:, :, keep], None if published is None else published[keep],
                                    config)
            if config.min_reliability is not None:
                if not np.isfinite(full.reliability).any():
                    raise ValueError(
                        f"region {region!r}: min_reliability={config.min_reliability} needs "
                        f"reliabilities, and there are none ({full.reason})")
                ok = full.reliability >= config.min_reliability
                if not ok.any():
                    raise ValueError(
                        f"region {region!r}: no neuroid reaches min_reliability="
                        f"{config.min_reliability} (max {np.nanmax(full.reliability):.3f})")
                keep = keep[ok]
                full = Ceiling(full.reliability[ok], full.source, full.reason)
            rt = RegionTargets(region, keep, ids[keep], n_dropped=int(dataset.region_index(region).size
                                                                      - keep.size))
            for part, idx in parts.items():
                ceil = full if part == SPLIT_ALL else _neuroid_ceiling(
                    R[idx][:, :, keep], None if published is None else published[keep], config)
                pt = PartTargets(idx, ceil)
                if METHOD_RSA in config.methods and keep.size >= 2:
                    # Pearson RSA from RDM factors: no n x n matrix at any stimulus count
                    pt.rdm = (mapping.RDMFactor(Y[idx][:, keep]) if config.rsa_compare == "pearson"
                              else mapping.rdm(Y[idx][:, keep]))
                    pt.rdm_reliability, pt.rdm_reason = _rdm_reliability(R[idx][:, :, keep], config)
                rt.parts[part] = pt
            out.regions[region] = rt
            note = {"neuroids_scored": int(keep.size), "neuroids_dropped": rt.n_dropped,
                    "ceiling_source": full.source}
            if full.reason:
                note["ceiling_reason"] = full.reason
            if METHOD_RSA in config.methods:
                allp = rt.parts[SPLIT_ALL]
                note["rdm_ceiling"] = ("none: " + allp.rdm_reason if not np.isfinite(allp.rdm_reliability)
                                       else "split_half" + (f" ({allp.rdm_reason})" if allp.rdm_reason else ""))
            out.notes.setdefault(region, {}).update(note)
            if full.source == "none":
                log.warning("region %r: no ceiling, ceiled values are NaN: %s", region, full.reason)
            elif full.source == "dataset":
                log.info("region %r: ceilings from the dataset's reliability column", region)
        return out

    def inter_animal_rows(self, config: ScoringConfig) -> list[dict]:
        """Inter-animal ceiling rows (SCIENCE.md section 2): each neuroid of one subject
        predicted from the same region's neuroids of every other subject with the scan's
        own regression (exact leave-one-out ridge over the scan's alphas); the region's mean
        Pearson r with a 95% bootstrap interval over neuroids. Regions with one subject
        have no row."""
        rows = []
        if self.Y is None or not config.inter_animal:
            return rows
        for region, rt in self.regions.items():
            subs = self.subjects[rt.columns]
            if np.unique(subs).size < 2:
                continue
            summary, _ = mapping.inter_animal_ceiling(
                self.Y[:, rt.columns], subs, np.full(subs.shape, region), regression="gcv",
                alphas=config.alphas, n_boot=config.inter_animal_boot, seed=config.seed)
            s = summary.loc[region]
            rows.append(dict(region=region, method=METHOD_INTER_ANIMAL, metric="pearson_r",
                             value=float(s["mean"]), ceiling=float("nan"),
                             ci_low=float(s["ci_low"]), ci_high=float(s["ci_high"]),
                             n_neuroids=int(s["n_neuroids"]), k_units=int(s["n_subjects"]),
                             alpha=float("nan"), split=SPLIT_ALL, ceiling_source="none"))
        return rows

    def manifest(self, stimulus_ids) -> dict:
        """The split and the ceilings, for the run's manifest."""
        ids = np.asarray([str(s) for s in stimulus_ids])
        return {"layer_split": {"method": "sha256 rank of 'seed:stimulus_id', first half "
                                          "half_a", **{h: ids[i].tolist() for h, i in self.halves.items()}},
                "ceilings": self.notes}


def _ridge_rows(solver, Y: np.ndarray, rt: RegionTargets, part: str, config: ScoringConfig):
    """Rows for one region and part, and the per-neuroid results (on all stimuli)."""
    pt = rt.parts[part]
    res = solver.loo(Y[:, rt.columns], return_predictions=False)
    r, ev, alpha = res.pearson, res.ev, res.alpha
    ceil = mapping.population_ceilings(pt.ceiling.reliability)
    common = dict(region=rt.region, method=METHOD_RIDGE, n_neuroids=int(rt.columns.size),
                  alpha=float(np.median(alpha)), split=part, ceiling_source=pt.ceiling.source,
                  n_stimuli=int(pt.idx.size), solver=solver_label(config))
    rows = [dict(common, metric="pearson_r", value=float(np.nanmean(r)), ceiling=ceil["r"]),
            dict(common, metric="pearson_r_median", value=float(np.nanmedian(r)),
                 ceiling=ceil["r_median"]),
            dict(common, metric="explained_variance", value=float(np.nanmean(ev)),
                 ceiling=ceil["ev"])]
    return rows, (r, ev, alpha)


def _neuroid_rows(rt: RegionTargets, r, ev, alpha, subjects) -> list[dict]:
    rel = rt.reliability
    with np.errstate(invalid="ignore"):
        c_r = np.where(rel > 0, np.sqrt(np.clip(rel, 0, None)), np.nan)
        c_ev = np.where(rel > 0, rel, np.nan)
    subs = subjects[rt.columns] if subjects is not None else np.full(rt.columns.size, "")
    out = []
    for metric, vals, ceil in (("pearson_r", r, c_r), ("explained_variance", ev, c_ev),
                               ("alpha", alpha, np.full(rt.columns.size, np.nan))):
        out.append({"region": rt.region, "neuroid_id": rt.neuroid_ids, "subject": subs,
                    "metric": metric, "value": np.asarray(vals, np.float64),
                    "ceiling": np.asarray(ceil, np.float64)})
    return out


def _rsa_ceiling(pt: PartTargets) -> float:
    rel = pt.rdm_reliability  # an RDM reliability at or below 0 has no ceiling
    return float(np.sqrt(rel)) if np.isfinite(rel) and rel > 0 else float("nan")


def score_layer(X: np.ndarray, targets: DatasetTargets, config: ScoringConfig
                ) -> tuple[list[dict], list[dict]]:
    """(score rows, per-neuroid column blocks) for one layer's features ``X`` [stimuli, k].

    Rows hold region, method, metric, split, value and ceiling (the store computes the
    ceiled value); the per-neuroid blocks hold ridge's r, EV and alpha per neuroid on all
    stimuli, with each neuroid's ceiling."""
    X = np.asarray(X, dtype=np.float64)
    if not np.all(np.isfinite(X)):
        raise ValueError("features contain NaN or inf")
    n = X.shape[0]
    rows: list[dict] = []
    neuroids: list[dict] = []
    parts = targets.parts(n)
    want_ridge = METHOD_RIDGE in config.methods and targets.regions
    want_rsa = METHOD_RSA in config.methods
    # a dense model RDM only where one is compared with dense RDMs (published, Spearman)
    model_rdm = mapping.rdm(X) if want_rsa and (targets.published or config.rsa_compare != "pearson"
                                               ) else None
    backend, dtype, device = solver_settings(config)
    for part, idx in parts.items():
        solver = None
        if want_ridge:
            solver = mapping.GCVSolver(X[idx], alphas=config.alphas, backend=backend, dtype=dtype,
                                       device=device)
        sub_rdm = None if model_rdm is None else model_rdm[np.ix_(idx, idx)]
        factor = (mapping.RDMFactor(X[idx]) if want_rsa and config.rsa_compare == "pearson"
                  else None)
        for region, rt in targets.regions.items():
            pt = rt.parts[part]
            if solver is not None:
                r_rows, per = _ridge_rows(solver, targets.Y[idx], rt, part, config)
                rows += r_rows
                if part == SPLIT_ALL and config.per_neuroid:
                    neuroids += _neuroid_rows(rt, *per, targets.subjects)
            if want_rsa and pt.rdm is not None:
                v = (mapping.rdm_pearson(factor, pt.rdm) if factor is not None
                     else float(mapping.compare_rdms(sub_rdm, pt.rdm, method=config.rsa_compare)))
                rows.append(dict(region=region, method=METHOD_RSA,
                                 metric=f"rsa_{config.rsa_compare}", n_neuroids=int(rt.columns.size),
                                 value=v, ceiling=_rsa_ceiling(pt), alpha=float("nan"),
                                 split=part, n_stimuli=int(idx.size),
                                 ceiling_source="split_half" if np.isfinite(pt.rdm_reliability)
                                 else "none"))
        if sub_rdm is not None:
            for region, pub in targets.published.items():
                sub = pub.rdms[:, idx][:, :, idx]
                for how in ("pearson", "spearman"):
                    v = float(np.nanmean(mapping.score_rdms(sub_rdm, sub, method=how)))
                    c = pub.ceilings[part][how]  # leave-one-subject-out, same scale as the score
                    rows.append(dict(region=region, method=METHOD_RSA, metric=f"rdms_{how}",
                                     n_neuroids=0, value=v, ceiling=c, alpha=float("nan"),
                                     k_units=int(len(pub.rdms)), split=part,
                                     n_stimuli=int(idx.size),
                                     ceiling_source="loso_rdms" if np.isfinite(c) else "none"))
    return rows, neuroids
