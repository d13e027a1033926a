"""Scores of one layer's features against a dataset, as score-table rows.

Dataset-level quantities (mean responses, reliabilities, neural RDMs) are computed
once per scan in :class:`DatasetTargets` and reused for every (model, layer).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .. import mapping

log = logging.getLogger("cortexzoo")

METHOD_RIDGE = "ridge_gcv"
METHOD_RSA = "rsa"
METHODS = (METHOD_RIDGE, METHOD_RSA)
METHOD_RDMS = "rsa_rdms"  # RSA against a dataset's own (published) RDMs, with method "rsa"


@dataclass
class ScoringConfig:
    methods: tuple[str, ...] = METHODS
    alphas: tuple[float, ...] | None = None  # None: SCIENCE.md §4 default grid
    reliability_splits: int = 100
    min_reliability: float | None = None  # drop neuroids below this split-half reliability
    rsa_compare: str = "pearson"
    seed: int = 0
    backend: str = "numpy"   # "torch" uses every core (and a GPU) for the decomposition
    dtype: str = "float64"

    def __post_init__(self):
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ValueError(f"unknown scoring method(s) {bad}; choose from {list(METHODS)}")
        self.methods = tuple(self.methods)
        if self.alphas is not None:
            self.alphas = tuple(float(a) for a in self.alphas)

    def key_parts(self) -> dict:
        return {"methods": list(self.methods), "alphas": self.alphas,
                "reliability_splits": self.reliability_splits,
                "min_reliability": self.min_reliability, "rsa_compare": self.rsa_compare,
                "seed": self.seed, "dtype": self.dtype}


@dataclass
class RegionTargets:
    region: str
    columns: np.ndarray          # neuroid columns kept for this region
    reliability: np.ndarray      # split-half (Spearman-Brown) per kept neuroid
    rdm: np.ndarray | None = None
    rdm_reliability: float = float("nan")
    n_dropped: int = 0


@dataclass
class PublishedRDMs:
    """A region's RDMs shipped with the dataset (``rdms.npy``), one per subject or study."""

    region: str
    rdms: np.ndarray              # [n_rdms, n, n]
    ceilings: dict[str, float]    # per comparison method; NaN with a single RDM


@dataclass
class DatasetTargets:
    """What every layer is compared with: mean responses and per-region ceilings."""

    Y: np.ndarray | None  # [n_stimuli, n_neuroids] mean over repetitions
    regions: dict[str, RegionTargets] = field(default_factory=dict)
    published: dict[str, PublishedRDMs] = field(default_factory=dict)

    @classmethod
    def from_dataset(cls, dataset, config: ScoringConfig) -> "DatasetTargets":
        out = cls(Y=None)
        if getattr(dataset, "rdms", None) is not None and METHOD_RSA in config.methods:
            table = dataset.rdm_table.reset_index(drop=True)
            for region, rows in table.groupby("region", sort=True):
                rdms = np.asarray(dataset.rdms[rows.index.to_numpy()], dtype=np.float64)
                ceil = {m: (float(mapping.rdm_ceiling(rdms, m)) if len(rdms) > 1 else float("nan"))
                        for m in ("pearson", "spearman")}
                out.published[str(region)] = PublishedRDMs(str(region), rdms, ceil)
        R = dataset.responses
        if R is None:
            return out
        Y = np.nanmean(R, axis=1).astype(np.float64)
        rel = mapping.split_half_reliability(R, n_splits=config.reliability_splits,
                                             seed=config.seed)
        out.Y = Y
        complete = np.isfinite(Y).all(axis=0)
        for region in dataset.regions:
            cols = dataset.region_index(region)
            if cols.size == 0:  # a region known only from RDMs
                continue
            # A neuroid missing every repetition of some stimulus has no target there.
            keep = cols[complete[cols]]
            if keep.size < cols.size:
                log.warning("region %r: %d neuroid(s) lack a response to some stimulus and are "
                            "not scored", region, cols.size - keep.size)
            if config.min_reliability is not None:
                keep = keep[rel[keep] >= config.min_reliability]
                if keep.size == 0:
                    raise ValueError(
                        f"region {region!r}: no neuroid reaches min_reliability="
                        f"{config.min_reliability} (max {np.nanmax(rel[cols]):.3f})")
            if keep.size == 0:
                raise ValueError(f"region {region!r}: no neuroid has a response to every stimulus")
            rt = RegionTargets(region, keep, rel[keep], n_dropped=int(cols.size - keep.size))
            if METHOD_RSA in config.methods:
                rt.rdm = mapping.rdm(Y[:, keep])
                rt.rdm_reliability = float(mapping.rdm_split_half_reliability(
                    R[:, :, keep], n_splits=min(config.reliability_splits, 20), seed=config.seed))
            out.regions[region] = rt
        return out


def score_layer(X: np.ndarray, targets: DatasetTargets, config: ScoringConfig) -> list[dict]:
    """Rows (region, method, metric, value, ceiling, ceiled_value, ...) for one layer."""
    X = np.asarray(X, dtype=np.float64)
    if not np.all(np.isfinite(X)):
        raise ValueError("features contain NaN or inf")
    rows: list[dict] = []
    solver = None
    if METHOD_RIDGE in config.methods and targets.regions:
        solver = mapping.GCVSolver(X, alphas=config.alphas, backend=config.backend,
                                   dtype=config.dtype)
    model_rdm = mapping.rdm(X) if METHOD_RSA in config.methods else None
    for region, rt in targets.regions.items():
        n = int(rt.columns.size)
        if solver is not None:
            res = solver.loo(targets.Y[:, rt.columns], return_predictions=False)
            r, ev, alpha = res.pearson, res.ev, res.alpha
            ceil = mapping.population_ceilings(rt.reliability)
            common = dict(region=region, method=METHOD_RIDGE, n_neuroids=n,
                          alpha=float(np.median(alpha)))
            rows.append(dict(common, metric="pearson_r", value=float(np.nanmean(r)),
                             ceiling=ceil["r"]))
            rows.append(dict(common, metric="pearson_r_median", value=float(np.nanmedian(r)),
                             ceiling=ceil["r_median"]))
            rows.append(dict(common, metric="explained_variance", value=float(np.nanmean(ev)),
                             ceiling=ceil["ev"]))
        if model_rdm is not None and rt.rdm is not None:
            v = float(mapping.compare_rdms(model_rdm, rt.rdm, method=config.rsa_compare))
            # an RDM reliability at or below 0 has no ceiling (NaN, never sqrt of 0)
            rel = rt.rdm_reliability
            c = float(np.sqrt(rel)) if np.isfinite(rel) and rel > 0 else float("nan")
            rows.append(dict(region=region, method=METHOD_RSA, metric=f"rsa_{config.rsa_compare}",
                             n_neuroids=n, value=v, ceiling=c, alpha=float("nan")))
    if model_rdm is not None:
        for region, pub in targets.published.items():
            for how in ("pearson", "spearman"):
                per = mapping.score_rdms(model_rdm, pub.rdms, method=how)
                v = float(np.nanmean(per))
                c = pub.ceilings[how]  # leave-one-subject-out, same scale as the score
                rows.append(dict(region=region, method=METHOD_RSA, metric=f"rdms_{how}",
                                 n_neuroids=0, value=v, ceiling=c, alpha=float("nan"),
                                 k_units=int(len(pub.rdms))))
    return rows
