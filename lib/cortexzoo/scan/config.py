"""What a scan is asked to do: :class:`ScanConfig` (every flag of ``cortexzoo scan``
is one of its keys) and the embedded default models and dataset."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from ..core.config import config_from_mapping, read_yaml_mapping
from ..core.uri import normalize_uri
from ..features.reduce import ReductionConfig
from ..zoo.preprocess import STIMULUS_MODES
from .scoring import ScoringConfig

__all__ = ["EMBEDDED", "ScanConfig", "default_models", "resolve_data"]

log = logging.getLogger("cortexzoo")

EMBEDDED = "embedded"


def default_models() -> list[str]:
    """The embedded default zoo: a timm and a torchvision net (trained where weights
    are available, and random) plus the pixel baseline."""
    from ..zoo import weights_available

    specs = ["timm:tf_efficientnet_lite0@trained", "timm:tf_efficientnet_lite0@random",
             "torchvision:resnet18@trained", "torchvision:resnet18@random", "pixels"]
    keep = []
    for s in specs:
        if s.endswith("@trained") and not weights_available(s):
            log.warning("skipping %s in the default zoo: its trained weights are not available "
                        "offline (pass it with --models to download it)", s)
            continue
        keep.append(s)
    return keep


@dataclass
class ScanConfig:
    data: str = EMBEDDED
    models: list[str] | None = None
    out: str = "cortexzoo-results"
    layers: str | list[str] = "all"
    reduction: ReductionConfig = field(default_factory=ReductionConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    engine: str = "ray"  # "ray" or "local"
    address: str | None = None
    batch_size: int = 16
    num_actors: int | None = None
    input_size: int | None = None  # override every model's input size (keeps resize/crop ratio)
    stimulus: str = "whole"  # "whole": the whole image resized to the input; "crop": eval transform
    cache_features: bool = True
    progress: bool = True
    plot: bool = True
    run_id: str | None = None
    max_concurrent_models: int = 1  # models extracted and scored at once (driver threads)
    compact: bool = True  # at the end, move the run's unit files into a few large files
    # Ray engine: "workers" scores each unit in a Ray task beside the extraction of the
    # next model (GPU solver where the cluster has GPUs); "driver" scores in this process
    score_on: str = "workers"
    chunk: int = 128  # stimuli per feature block a model actor writes (workers mode)
    # after the leaderboard: save encoding models (scan/encoders.py): "best" (the held-out
    # chosen layer per model and region) or a list of layers; None: none
    save_encoders: str | list[str] | None = None

    def __post_init__(self):
        if self.engine not in ("ray", "local"):
            raise ValueError(f"engine must be 'ray' or 'local', got {self.engine!r}")
        if (not isinstance(self.max_concurrent_models, int) or isinstance(self.max_concurrent_models, bool)
                or self.max_concurrent_models < 1):
            raise ValueError("max_concurrent_models must be an integer >= 1, got "
                             f"{self.max_concurrent_models!r}")
        if self.stimulus not in STIMULUS_MODES:
            raise ValueError(f"stimulus must be one of {STIMULUS_MODES}, got {self.stimulus!r}")
        if self.score_on not in ("workers", "driver"):
            raise ValueError(f"score_on must be 'workers' or 'driver', got {self.score_on!r}")
        for key in ("batch_size", "num_actors", "input_size", "chunk"):
            v = getattr(self, key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"{key} must be an integer >= 1, got {v!r}")
        # Ray workers run in other directories: local paths are made absolute
        if self.data != EMBEDDED:
            self.data = normalize_uri(self.data)
        self.out = normalize_uri(self.out)
        if isinstance(self.reduction, dict):
            self.reduction = ReductionConfig(**self.reduction)
        if isinstance(self.scoring, dict):
            self.scoring = ScoringConfig(**self.scoring)
        if isinstance(self.save_encoders, str) and self.save_encoders != "best":
            self.save_encoders = [x.strip() for x in self.save_encoders.split(",") if x.strip()]
        if isinstance(self.save_encoders, list) and not self.save_encoders:
            raise ValueError("save_encoders names no layer (use 'best' or layer names)")
        if isinstance(self.models, str):
            self.models = [m.strip() for m in self.models.split(",") if m.strip()]

    @classmethod
    def from_dict(cls, d: dict, where: str | None = None) -> "ScanConfig":
        return config_from_mapping(cls, d, what="scan config key(s)", where=where)

    @classmethod
    def from_yaml(cls, path: str) -> "ScanConfig":
        return cls.from_dict(read_yaml_mapping(path, what="scan config"), where=path)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_data(data: str) -> str:
    if data != EMBEDDED:
        return data
    from .planted import ensure_embedded_dataset

    return ensure_embedded_dataset()
