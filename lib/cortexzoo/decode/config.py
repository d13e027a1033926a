"""What a decoding run is asked to do: :class:`DecodeConfig` (every flag of
``cortexzoo decode`` is one of its keys) and :class:`SplitConfig` (the image draws).

Defaults are paper 001's (SCIENCE.md section 6): 100 seeded splits of 100 training and
20 held-out images of the training domain and 50 images of every other domain, unit
counts on a log grid with repeated draws, the penultimate layer of each model.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..core.config import config_from_mapping, read_yaml_mapping

__all__ = ["DecodeConfig", "SplitConfig"]


def _positive_int(name: str, v: Any, minimum: int = 1) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")


@dataclass
class SplitConfig:
    """The images of each split, drawn stratified by category, seeded.

    ``group_column``: images that share a value of this column (e.g. ``source_id``: the
    renderings of one photo made by ``data domains``) are never split between the training
    images and the test images of one split; ``"auto"`` uses ``source_id`` when the
    stimulus table has it, ``None`` groups nothing.
    """

    n_splits: int = 100
    n_train: int = 100
    n_test_id: int = 20
    n_test_ood: int = 50
    seed: int = 0
    group_column: str | None = "auto"

    def __post_init__(self):
        _positive_int("splits.n_splits", self.n_splits)
        _positive_int("splits.n_train", self.n_train, 3)
        _positive_int("splits.n_test_id", self.n_test_id)
        _positive_int("splits.n_test_ood", self.n_test_ood)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"splits.seed must be an integer, got {self.seed!r}")


@dataclass
class DecodeConfig:
    """One out-of-domain decoding run (``cortexzoo decode``).

    Populations: every recorded region of ``data`` (or ``regions``; none with
    ``neural=False`` or on a stimulus set), each optionally filtered by split-half
    reliability (``min_reliability``), and the chosen layer of each of ``models``
    (``layers``: None for each model's penultimate layer; one name for every model; a list
    with one name per model; or a mapping spec -> layer).

    Reference: the population whose in-domain accuracy the models' unit counts are
    matched to: ``reference`` (a region or a model spec), by default the region ``IT``
    when there is one, else the first region, else the first model; ``reference_accuracy``
    replaces its measured in-domain accuracy by a given number (e.g. a published one).

    Unit counts: ``k_grid`` (explicit), else ``grid_points`` counts spaced evenly on a log
    scale from ``k_min`` to the population's size (which is always included); at each
    count ``draws`` independent unit subsets per split (one at the full size). A layer
    with more than ``max_units`` units is sampled down to that many in the forward hook
    (reduction ``units``), and draws come from that pool.
    """

    data: str = ""
    models: list[str] | None = None
    out: str = "cortexzoo-results"
    train_domain: str | None = None      # None: dataset.json's source_domain
    test_domains: list[str] | None = None  # None: every other domain
    layers: Any = None
    regions: list[str] | None = None
    neural: bool = True
    min_reliability: float | None = None
    reliability_splits: int = 100
    reference: str | None = None
    reference_accuracy: float | None = None
    splits: SplitConfig = field(default_factory=SplitConfig)
    draws: int = 5
    k_grid: list[int] | None = None
    grid_points: int = 10
    k_min: int = 1
    alphas: list[float] | None = None    # None: SCIENCE.md section 4's grid
    max_units: int = 20000
    seed: int = 0                        # unit draws
    engine: str = "ray"
    address: str | None = None
    batch_size: int = 16
    num_actors: int | None = None
    input_size: int | None = None
    cache_features: bool = True
    progress: bool = True
    plot: bool = True
    run_id: str | None = None

    def __post_init__(self):
        if isinstance(self.splits, dict):
            self.splits = config_from_mapping(SplitConfig, self.splits, what="splits key(s)")
        if isinstance(self.models, str):
            self.models = [m.strip() for m in self.models.split(",") if m.strip()]
        for key in ("regions", "test_domains"):
            v = getattr(self, key)
            if isinstance(v, str):
                setattr(self, key, [x.strip() for x in v.split(",") if x.strip()])
        if self.engine not in ("ray", "local"):
            raise ValueError(f"engine must be 'ray' or 'local', got {self.engine!r}")
        _positive_int("draws", self.draws)
        _positive_int("grid_points", self.grid_points)
        _positive_int("k_min", self.k_min)
        _positive_int("max_units", self.max_units)
        _positive_int("reliability_splits", self.reliability_splits)
        _positive_int("batch_size", self.batch_size)
        for key in ("num_actors", "input_size"):
            v = getattr(self, key)
            if v is not None:
                _positive_int(key, v)
        if self.k_grid is not None:
            ks = list(self.k_grid)
            for v in ks:
                _positive_int("k_grid entries", v)
            self.k_grid = sorted(set(int(v) for v in ks))
            if not self.k_grid:
                raise ValueError("k_grid is empty")
        if self.reference_accuracy is not None and not 0.0 < float(self.reference_accuracy) <= 1.0:
            raise ValueError(f"reference_accuracy is a 2AFC accuracy in (0, 1], got "
                             f"{self.reference_accuracy!r}")
        if self.min_reliability is not None and not -1.0 <= float(self.min_reliability) <= 1.0:
            raise ValueError(f"min_reliability must be in [-1, 1], got {self.min_reliability!r}")
        if self.alphas is not None:
            a = [float(x) for x in self.alphas]
            if not a or any(not (x > 0) or x == float("inf") for x in a):
                raise ValueError(f"alphas must be finite and > 0, got {self.alphas!r}")
            self.alphas = a

    @classmethod
    def from_dict(cls, d: dict, where: str | None = None) -> "DecodeConfig":
        return config_from_mapping(cls, d, what="decode config key(s)", where=where)

    @classmethod
    def from_yaml(cls, path: str) -> "DecodeConfig":
        return cls.from_dict(read_yaml_mapping(path, what="decode config"), where=path)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key_parts(self) -> dict:
        """Everything a unit's numbers depend on besides the population and k."""
        return {"splits": dataclasses.asdict(self.splits), "draws": self.draws,
                "alphas": self.alphas, "seed": self.seed, "train_domain": self.train_domain,
                "test_domains": self.test_domains}
