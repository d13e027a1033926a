"""Settings of the probe battery (``cortexzoo twins probe``), loadable from YAML.

Paper 004 lost most of its numbers (sizes, grids, nuisance ranges); SCIENCE.md section 9
fixes what it can (8 orientation bins, 5-frame clips, the last 3 frames for the
flash, 5000 clips and ranks 20-200 for the eigenspectrum, <= 256 components). Every
other default below is ours, chosen so that the battery runs in minutes per twin on a
GPU and a few minutes on CPUs at 36x64 frames; all are settings.

A :class:`ProbeConfig` holds one section per family (``orientation``, ``contrast``,
``motion``, ``tuning``, ``eigenspectrum``) and ``linear`` (the probes' classifier).
Unknown keys, in any section, are errors that name them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..core.config import config_from_mapping, read_yaml_mapping

__all__ = ["FAMILIES", "ProbeConfigError", "ProbeConfig", "OrientationSettings",
           "ContrastSettings", "MotionSettings", "TuningSettings", "EigenspectrumSettings",
           "LinearSettings"]

#: The probe families, each one Ray task per twin (the order is their stimulus-seed index).
FAMILIES = ("orientation", "contrast", "motion", "tuning", "eigenspectrum")


class ProbeConfigError(ValueError):
    """A probe setting is invalid; the message names it."""


def _pair(v: Any, name: str) -> list[float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise ProbeConfigError(f"{name}: must be a [low, high] pair, got {v!r}")
    lo, hi = float(v[0]), float(v[1])
    if hi < lo:
        raise ProbeConfigError(f"{name}: low {lo} is above high {hi}")
    return [lo, hi]


def _positive_ints(v: Any, name: str) -> list[int]:
    if not isinstance(v, (list, tuple)) or not v or any(int(x) < 1 for x in v):
        raise ProbeConfigError(f"{name}: must be a non-empty list of positive integers, got {v!r}")
    return [int(x) for x in v]


def _grid(v: Any, name: str, lo: float, hi: float) -> list[float]:
    if not isinstance(v, (list, tuple)) or len(v) < 2:
        raise ProbeConfigError(f"{name}: must list at least 2 values, got {v!r}")
    g = [float(x) for x in v]
    if sorted(g) != g or len(set(g)) != len(g) or g[0] < lo or g[-1] > hi:
        raise ProbeConfigError(f"{name}: must increase strictly within [{lo}, {hi}], got {g}")
    return g


_NUISANCES = ("sf", "contrast", "noise", "blur", "mean")


def _nuisances(d: Any, name: str) -> dict[str, list[float]]:
    if not isinstance(d, Mapping):
        raise ProbeConfigError(f"{name}: must be a mapping of nuisance ranges")
    unknown = sorted(set(d) - set(_NUISANCES))
    missing = sorted(set(_NUISANCES) - set(d))
    if unknown or missing:
        raise ProbeConfigError(f"{name}: unknown keys {unknown}, missing keys {missing}; "
                               f"expected {list(_NUISANCES)}")
    return {k: _pair(d[k], f"{name}.{k}") for k in _NUISANCES}


@dataclass
class OrientationSettings:
    """8-way orientation of single-frame gratings, encoder output features.

    The training pool has ``max(train_sizes)`` images; each size trains on the pool's
    first ``size`` (balanced) images. ``id`` ranges make the train, validation and ID
    test sets, ``ood`` the shifted-nuisance test set."""

    n_classes: int = 8
    train_sizes: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256, 512, 1024, 2048])
    n_val: int = 512
    n_test: int = 1024
    n_ood: int = 1024
    id: dict[str, list[float]] = field(default_factory=lambda: {
        "sf": [0.04, 0.12], "contrast": [0.3, 1.0], "noise": [0.0, 0.05], "blur": [0.0, 1.0],
        "mean": [0.4, 0.6]})
    ood: dict[str, list[float]] = field(default_factory=lambda: {
        "sf": [0.12, 0.2], "contrast": [0.1, 0.3], "noise": [0.05, 0.1], "blur": [1.0, 2.0],
        "mean": [0.25, 0.4]})

    def __post_init__(self) -> None:
        if self.n_classes < 2:
            raise ProbeConfigError(f"orientation.n_classes: must be >= 2, got {self.n_classes}")
        self.train_sizes = sorted(set(_positive_ints(self.train_sizes, "orientation.train_sizes")))
        for k in ("n_val", "n_test", "n_ood"):
            if int(getattr(self, k)) < self.n_classes:
                raise ProbeConfigError(f"orientation.{k}: must be >= n_classes ({self.n_classes})")
        self.id = _nuisances(self.id, "orientation.id")
        self.ood = _nuisances(self.ood, "orientation.ood")


@dataclass
class ContrastSettings:
    """Flashed-Gabor detection, final GRU state of one clip. Half the training and
    validation clips are blank; target contrasts are log-uniform in ``train_contrast``.
    The test set has ``n_test_blank`` blank clips (correct rejections) and
    ``n_test_per_contrast`` target clips at each contrast of ``eval_contrasts``."""

    n_train: int = 2000
    n_val: int = 500
    n_test_per_contrast: int = 200
    n_test_blank: int = 400
    train_contrast: list[float] = field(default_factory=lambda: [0.05, 1.0])
    eval_contrasts: list[float] = field(default_factory=lambda: [0.0, 0.02, 0.05, 0.1, 0.2, 0.4,
                                                                 0.7, 1.0])
    target_frames: int = 3
    patch_center: list[float] = field(default_factory=lambda: [0.5, 0.5])
    patch_sigma: float = 0.12
    sf: list[float] = field(default_factory=lambda: [0.06, 0.12])
    noise: list[float] = field(default_factory=lambda: [0.05, 0.15])
    blur: list[float] = field(default_factory=lambda: [0.0, 1.0])
    mean: float = 0.5
    orientation_deg: float | None = 0.0

    def __post_init__(self) -> None:
        for k in ("n_train", "n_val", "n_test_per_contrast", "n_test_blank"):
            if int(getattr(self, k)) < 2:
                raise ProbeConfigError(f"contrast.{k}: must be >= 2")
        self.train_contrast = _pair(self.train_contrast, "contrast.train_contrast")
        if self.train_contrast[0] <= 0:
            raise ProbeConfigError("contrast.train_contrast: must be > 0 (log-uniform)")
        self.eval_contrasts = _grid(self.eval_contrasts, "contrast.eval_contrasts", 0.0, 10.0)
        for k in ("sf", "noise", "blur"):
            setattr(self, k, _pair(getattr(self, k), f"contrast.{k}"))
        pc = [float(v) for v in self.patch_center]
        if len(pc) != 2 or not all(0.0 <= v <= 1.0 for v in pc):
            raise ProbeConfigError(f"contrast.patch_center: [row, col] fractions in [0, 1] "
                                   f"needed, got {self.patch_center}")
        self.patch_center = pc
        if not 0 < self.patch_sigma:
            raise ProbeConfigError(f"contrast.patch_sigma: must be > 0, got {self.patch_sigma}")


@dataclass
class MotionSettings:
    """2-way RDK direction, last 5-frame chunk's final GRU state, standardized with the
    training set's mean and SD. Trained at coherences in ``train_coherence``, tested at
    each of ``eval_coherences``. ``carry_state``: run the GRU through the chunks in
    turn instead of from zero on each chunk (the paper's chunks are independent, so
    only the last one matters and only it is computed)."""

    n_frames: int = 20
    n_train: int = 1000
    n_val: int = 250
    n_test_per_coherence: int = 200
    train_coherence: list[float] = field(default_factory=lambda: [0.8, 1.0])
    eval_coherences: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.5, 0.7,
                                                                  1.0])
    directions_deg: list[float] = field(default_factory=lambda: [0.0, 180.0])
    density: float = 0.05
    lifetime: int = 6
    speed: float = 1.0
    dot_size: int = 1
    carry_state: bool = False

    def __post_init__(self) -> None:
        for k in ("n_train", "n_val", "n_test_per_coherence", "n_frames"):
            if int(getattr(self, k)) < 2:
                raise ProbeConfigError(f"motion.{k}: must be >= 2")
        for k in ("lifetime", "dot_size"):
            if int(getattr(self, k)) < 1:
                raise ProbeConfigError(f"motion.{k}: must be >= 1")
        self.train_coherence = _pair(self.train_coherence, "motion.train_coherence")
        if not 0 <= self.train_coherence[0] <= self.train_coherence[1] <= 1:
            raise ProbeConfigError("motion.train_coherence: must lie in [0, 1]")
        self.eval_coherences = _grid(self.eval_coherences, "motion.eval_coherences", 0.0, 1.0)
        if len(self.directions_deg) != 2:
            raise ProbeConfigError(f"motion.directions_deg: a 2-way task needs 2 directions, "
                                   f"got {self.directions_deg}")


@dataclass
class TuningSettings:
    """Full-field gratings at the encoder output: an orientation x phase x SF grid at
    ``contrast``, then contrast curves at each unit's preferred orientation and SF bin
    (averaged over phase). ``qc``: :class:`cortexzoo.mapping.tuning.QCThresholds` keys."""

    n_orientations: int = 12
    n_phases: int = 8
    sf_min: float = 0.01
    sf_max: float = 0.25
    n_sfs: int = 10
    contrast: float = 1.0
    mean: float = 0.5
    contrasts: list[float] = field(default_factory=lambda: [0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5,
                                                            0.75, 1.0])
    qc: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from ..mapping.tuning import QCThresholds

        if self.n_orientations < 2 or self.n_phases < 3 or self.n_sfs < 3:
            raise ProbeConfigError("tuning: need n_orientations >= 2, n_phases >= 3, n_sfs >= 3")
        if not 0 < self.sf_min < self.sf_max <= 0.5:
            raise ProbeConfigError(f"tuning.sf_min/sf_max: need 0 < sf_min < sf_max <= 0.5 "
                                   f"(cycles/pixel), got {self.sf_min}, {self.sf_max}")
        self.contrasts = _grid(self.contrasts, "tuning.contrasts", 0.0, 10.0)
        self.qc = dict(self.qc or {})
        config_from_mapping(QCThresholds, self.qc, what="qc thresholds", where="tuning.qc",
                            error=ProbeConfigError)

    def qc_thresholds(self):
        from ..mapping.tuning import QCThresholds

        return QCThresholds(**self.qc)


@dataclass
class EigenspectrumSettings:
    """Final GRU states (and, as a diagnostic, the last frame's encoder output) of
    ``n_clips`` clips drawn from ``splits`` of ``reference_session`` (default: the first
    session of the index); standardize, PCA, fit over ``ranks``. Sessions whose
    ``session.json`` lists ``repeats`` also get a cross-validated PCA spectrum of their
    recorded responses (the neural reference)."""

    n_clips: int = 5000
    n_components: int = 256
    ranks: list[int] = field(default_factory=lambda: [20, 200])
    reference_session: str | None = None
    splits: list[str] = field(default_factory=lambda: ["train", "test"])
    cvpca_shuffles: int = 5

    def __post_init__(self) -> None:
        if self.n_clips < 3 or self.n_components < 1:
            raise ProbeConfigError("eigenspectrum: need n_clips >= 3 and n_components >= 1")
        r = _positive_ints(self.ranks, "eigenspectrum.ranks")
        if len(r) != 2 or r[1] < r[0]:
            raise ProbeConfigError(f"eigenspectrum.ranks: must be [low, high], got {self.ranks}")
        self.ranks = r
        bad = [s for s in self.splits if s not in ("train", "val", "test")]
        if bad or not self.splits:
            raise ProbeConfigError(f"eigenspectrum.splits: unknown {bad}; use train/val/test")


@dataclass
class LinearSettings:
    """The probes' classifier: logistic regression (softmax for more than 2 classes),
    mean cross-entropy + ``l2 / 2 * |W|^2``, full-batch L-BFGS in float64; ``l2`` is
    the grid value with the best validation accuracy (ties: lower validation loss)."""

    l2_grid: list[float] = field(default_factory=lambda: [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    max_iter: int = 300

    def __post_init__(self) -> None:
        if not self.l2_grid or any(float(v) < 0 for v in self.l2_grid):
            raise ProbeConfigError(f"linear.l2_grid: non-negative values needed, "
                                   f"got {self.l2_grid}")
        self.l2_grid = sorted({float(v) for v in self.l2_grid}, reverse=True)


_SECTIONS = {"orientation": OrientationSettings, "contrast": ContrastSettings,
             "motion": MotionSettings, "tuning": TuningSettings,
             "eigenspectrum": EigenspectrumSettings, "linear": LinearSettings}


@dataclass
class ProbeConfig:
    """Everything ``cortexzoo twins probe`` needs.

    ``encoders`` / ``seeds`` select trained twins (default: every twin under
    ``OUT/twins/best/``); ``seed`` seeds the stimuli (with each twin's run seed, so the
    draws are matched across architectures within a run seed). Ray tasks take
    ``cpus_per_task`` CPUs and, where the cluster has GPUs (or ``use_gpu``),
    ``gpus_per_task`` GPUs.
    """

    data: str = ""
    out: str = "cortexzoo-results"
    families: list[str] = field(default_factory=lambda: list(FAMILIES))
    encoders: list[str] | None = None
    seeds: list[int] | None = None
    seed: int = 0
    address: str | None = None
    use_gpu: bool | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 1.0
    max_retries: int = 1
    overwrite: bool = False
    batch_size: int = 256
    chunk: int = 100
    plots: bool = True
    orientation: OrientationSettings = field(default_factory=OrientationSettings)
    contrast: ContrastSettings = field(default_factory=ContrastSettings)
    motion: MotionSettings = field(default_factory=MotionSettings)
    tuning: TuningSettings = field(default_factory=TuningSettings)
    eigenspectrum: EigenspectrumSettings = field(default_factory=EigenspectrumSettings)
    linear: LinearSettings = field(default_factory=LinearSettings)

    def __post_init__(self) -> None:
        fams = list(self.families or [])
        bad = [f for f in fams if f not in FAMILIES]
        if bad or not fams:
            raise ProbeConfigError(f"families: unknown probe family {bad}; known: {list(FAMILIES)}"
                                   if bad else "families: none given")
        self.families = [f for f in FAMILIES if f in fams]
        if self.encoders is not None:
            from ..twins.encoders import ENCODERS

            unknown = [e for e in self.encoders if e not in ENCODERS]
            if unknown:
                raise ProbeConfigError(f"encoders: unknown {unknown}; known: {sorted(ENCODERS)}")
        if self.seeds is not None:
            self.seeds = [int(s) for s in self.seeds]
        if self.batch_size < 1 or self.cpus_per_task <= 0 or self.gpus_per_task < 0:
            raise ProbeConfigError("batch_size >= 1, cpus_per_task > 0, gpus_per_task >= 0 needed")
        for name, cls in _SECTIONS.items():
            v = getattr(self, name)
            if isinstance(v, Mapping):
                setattr(self, name, config_from_mapping(cls, v, what="keys", where=name,
                                                        error=ProbeConfigError))
            elif v is None:
                setattr(self, name, cls())
            elif not isinstance(v, cls):
                raise ProbeConfigError(f"{name}: expected a mapping of settings, got "
                                       f"{type(v).__name__}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ProbeConfig":
        return config_from_mapping(cls, d, what="probe config keys", error=ProbeConfigError)

    @classmethod
    def from_yaml(cls, path: str) -> "ProbeConfig":
        return cls.from_dict(read_yaml_mapping(path, error=ProbeConfigError, what="probe config"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
