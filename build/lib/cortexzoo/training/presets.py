"""Fine-tuning configurations and the published presets of paper 000 (SCIENCE.md §5).

A :class:`FinetuneConfig` fixes everything a training run needs: the backbone (any zoo
spec, or ``custom:shallow_cnn``), truncation and freezing, the decoder, the optimizer and
schedule, early stopping, the image size and the data split. Presets are named configs;
``load_preset`` also reads a preset YAML written by a tuning campaign.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ..core.config import config_from_mapping

__all__ = [
    "ConfigError",
    "FinetuneConfig",
    "PRESETS",
    "SHALLOW_CNN",
    "load_preset",
    "list_presets",
    "config_fields",
]

#: Backbone name of the data-driven shallow CNN (not a zoo model).
SHALLOW_CNN = "custom:shallow_cnn"

OPTIMIZERS = ("adam", "adamw", "sgd")
DECODERS = ("mlp", "linear")


class ConfigError(ValueError):
    """A fine-tuning config or preset is malformed; the message names the offending key."""


@dataclass
class FinetuneConfig:
    """Everything that defines one fine-tuning run (all fields are plain, YAML-able values).

    Parameters
    ----------
    backbone : str
        Zoo spec ``SOURCE:NAME@WEIGHTS`` (trained or random) or ``custom:shallow_cnn``.
    blocks : int or None
        Keep the backbone's first `blocks` blocks (see
        :func:`cortexzoo.training.networks.backbone_blocks`); None keeps them all.
    frozen : bool
        Freeze the backbone (no gradients, BatchNorm statistics fixed).
    decoder : {"mlp", "linear"}
        "mlp": the wide two-layer decoder of 000 (pool, flatten,
        Linear(d, w)-ReLU-Dropout-Linear(w, w)-ReLU-Dropout-Linear(w, n)); "linear": pool,
        flatten, Linear(d, n) (the shallow CNN's head).
    width, dropout : decoder width w and dropout p.
    optimizer : {"adam", "adamw", "sgd"}; lr, weight_decay : its settings.
    step_size, gamma : StepLR (per epoch); step_size 0 disables the schedule.
    epochs, patience : maximum epochs; stop after `patience` epochs without a better
        validation EV (0 disables early stopping).
    batch_size : int
    image_size : int or None
        Side of the network input; None uses the backbone's own preprocessing (224 for
        most ImageNet models). Smaller sizes resize the whole image (no crop).
    val_fraction, test_fraction, split_seed : the seeded stimulus split (shared by all
        trials of a campaign).
    seed : initialization and data-order seed.
    amp : mixed precision (bfloat16 autocast) -- only ever used on CUDA.
    region : restrict the targets to the neuroids of one region (None: all neuroids).
    """

    backbone: str = "torchvision:resnet34@trained"
    blocks: int | None = None
    frozen: bool = False
    decoder: str = "mlp"
    width: int = 7000
    dropout: float = 0.5
    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 1e-5
    step_size: int = 15
    gamma: float = 0.5
    epochs: int = 60
    patience: int = 10
    batch_size: int = 32
    image_size: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0
    amp: bool = True
    region: str | None = None
    preset: str | None = field(default=None, metadata={"doc": "name of the preset it came from"})

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> "FinetuneConfig":
        """Coerce numeric types and raise ConfigError naming the first bad field."""
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"fine-tuning config: {name}={getattr(self, name)!r} {why}")

        for name in ("width", "epochs", "patience", "batch_size", "step_size", "seed",
                     "split_seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
                raise bad(name, "must be an integer")
            setattr(self, name, int(v))
        for name in ("dropout", "lr", "weight_decay", "gamma", "val_fraction", "test_fraction"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise bad(name, "must be a number")
            setattr(self, name, float(v))
        for name in ("frozen", "amp"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "must be true or false")
        if not isinstance(self.backbone, str) or not self.backbone.strip():
            raise bad("backbone", "must be a zoo spec SOURCE:NAME@WEIGHTS or custom:shallow_cnn")
        if self.blocks is not None:
            if isinstance(self.blocks, bool) or not isinstance(self.blocks, (int, float)) \
                    or int(self.blocks) != self.blocks or self.blocks < 1:
                raise bad("blocks", "must be a positive integer or null (all blocks)")
            self.blocks = int(self.blocks)
        if self.image_size is not None:
            if isinstance(self.image_size, bool) or not isinstance(self.image_size, (int, float)) \
                    or int(self.image_size) != self.image_size or self.image_size < 8:
                raise bad("image_size", "must be an integer >= 8 or null (the backbone's own)")
            self.image_size = int(self.image_size)
        if self.decoder not in DECODERS:
            raise bad("decoder", f"must be one of {DECODERS}")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"must be one of {OPTIMIZERS}")
        if self.width < 1:
            raise bad("width", "must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "must lie in [0, 1)")
        if self.lr <= 0:
            raise bad("lr", "must be > 0")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        if self.step_size < 0 or not 0 < self.gamma <= 1:
            raise ConfigError(f"fine-tuning config: StepLR needs step_size >= 0 and gamma in "
                              f"(0, 1], got step_size={self.step_size}, gamma={self.gamma}")
        if self.epochs < 1 or self.patience < 0 or self.batch_size < 1:
            raise ConfigError(f"fine-tuning config: need epochs >= 1, patience >= 0, "
                              f"batch_size >= 1; got epochs={self.epochs}, "
                              f"patience={self.patience}, batch_size={self.batch_size}")
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ConfigError(f"fine-tuning config: val_fraction={self.val_fraction} and "
                              f"test_fraction={self.test_fraction} must be in (0, 1) and sum "
                              "to less than 1")
        return self

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> "FinetuneConfig":
        """A copy with `changes` applied (unknown keys raise ConfigError)."""
        return FinetuneConfig.from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "config") -> "FinetuneConfig":
        """Build from a mapping; an unknown key raises ConfigError naming it."""
        return config_from_mapping(cls, d, what="setting(s)", where=where, error=ConfigError)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text_or_path: str) -> "FinetuneConfig":
        """From YAML text or a file (local or any fsspec URI)."""
        return cls.from_dict(_read_yaml(text_or_path), where=_where(text_or_path))

    @property
    def is_shallow_cnn(self) -> bool:
        return self.backbone.strip().lower() in (SHALLOW_CNN, "shallow_cnn")


def config_fields() -> set[str]:
    """Names of every FinetuneConfig setting."""
    return {f.name for f in fields(FinetuneConfig)}


def _where(text_or_path: str) -> str:
    return text_or_path if "\n" not in text_or_path and len(text_or_path) < 300 else "YAML"


def _read_yaml(text_or_path: str) -> Any:
    import yaml

    s = str(text_or_path)
    if "\n" not in s and (os.path.exists(s) or "://" in s):
        import fsspec

        with fsspec.open(s, "rt") as f:
            s = f.read()
    elif "\n" not in s and s.endswith((".yaml", ".yml")):
        raise ConfigError(f"YAML file {s!r} does not exist")
    try:
        return yaml.safe_load(s)
    except yaml.YAMLError as e:
        raise ConfigError(f"{_where(str(text_or_path))}: invalid YAML: {e}") from e


# Table 2 of 000: VGG11_BN truncated after 5 blocks (a block = conv-BN-ReLU plus the
# max-pool that follows it), unfrozen, 7000-wide decoder.
_VGG = FinetuneConfig(
    backbone="torchvision:vgg11_bn@trained", blocks=5, frozen=False, decoder="mlp", width=7000,
    dropout=0.47, optimizer="adamw", lr=1e-4, weight_decay=1e-5, step_size=15, gamma=0.5,
    epochs=60, patience=7, preset="vgg11bn-5blocks-it")

# Table 3 of 000: full ResNet-34 trunk, unfrozen.
_RESNET = FinetuneConfig(
    backbone="torchvision:resnet34@trained", blocks=None, frozen=False, decoder="mlp",
    width=7000, dropout=0.52, optimizer="adam", lr=1e-4, weight_decay=1e-5, step_size=15,
    gamma=0.5, epochs=60, patience=10, preset="resnet34-it")

# 000 gives the architecture only (16-32-64-128, GAP, linear, no dropout); the optimizer
# settings here are this project's defaults (Adam 1e-3, no weight decay, StepLR(15, 0.5)).
_SHALLOW = FinetuneConfig(
    backbone=SHALLOW_CNN, blocks=None, frozen=False, decoder="linear", width=1, dropout=0.0,
    optimizer="adam", lr=1e-3, weight_decay=0.0, step_size=15, gamma=0.5, epochs=60,
    patience=10, batch_size=32, preset="shallow-cnn")

#: Named presets (paper 000 Tables 2 and 3, and the shallow CNN).
PRESETS: dict[str, FinetuneConfig] = {
    "resnet34-it": _RESNET,
    "vgg11bn-5blocks-it": _VGG,
    "shallow-cnn": _SHALLOW,
}

_ALIASES = {"resnet34": "resnet34-it", "vgg11bn-5blocks": "vgg11bn-5blocks-it",
            "vgg11_bn-5blocks": "vgg11bn-5blocks-it", "vgg-it": "vgg11bn-5blocks-it",
            "shallow_cnn": "shallow-cnn"}


def list_presets() -> list[str]:
    return sorted(PRESETS)


def load_preset(name_or_path: str, **overrides: Any) -> FinetuneConfig:
    """A preset by name (``resnet34-it``, ``vgg11bn-5blocks-it``, ``shallow-cnn``) or a
    preset YAML (local path or URI, e.g. one written by a tuning campaign), with overrides.

    Raises
    ------
    ConfigError
        Unknown preset name (the known ones are listed) or a bad YAML/override.
    """
    key = _ALIASES.get(name_or_path, name_or_path)
    if key in PRESETS:
        cfg = PRESETS[key]
        return cfg.replace(**overrides) if overrides else FinetuneConfig.from_dict(cfg.to_dict())
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml", ".json")) or "/" in s:
        d = _read_yaml(s)
        if isinstance(d, Mapping) and "config" in d and isinstance(d["config"], Mapping):
            d = d["config"]  # a campaign's best-preset file wraps the config
        if isinstance(d, Mapping):
            d = {**d, **overrides}
            d.setdefault("preset", os.path.splitext(os.path.basename(s))[0])
        return FinetuneConfig.from_dict(d, where=s)
    raise ConfigError(f"unknown preset {name_or_path!r}; known presets: {list_presets()} "
                      "(or give a preset YAML path)")
