"""The digital twin: shared per-frame encoder -> GRU -> per-animal readout + softplus.

Also its configuration (:class:`TwinConfig`, YAML-loadable), the loss
(Poisson NLL with non-log predictions + L1 on the active readout) and the AdamW
parameter groups of SCIENCE.md section 8.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..core.config import config_from_mapping
from .encoders import ENCODERS, build_encoder

__all__ = ["TwinConfig", "Twin", "poisson_loss", "twin_loss", "param_groups", "ConfigError"]


class ConfigError(ValueError):
    """A twin configuration value is invalid; the message names the key."""


@dataclass
class TwinConfig:
    """Model and training hyperparameters of one twin (defaults: SCIENCE.md section 8).

    ``encoder_kwargs`` go to the CNN encoder only (``channels``, ``kernels``,
    ``stride``, ``dropout``, ``batch_norm``).
    """

    encoder: str = "cnn"
    feature_dim: int = 256
    hidden_dim: int = 256
    clip_len: int = 5
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    # loss
    gamma: float = 1e-3
    eps: float = 1e-8
    # optimisation
    batch_size: int = 64
    max_epochs: int = 50
    lr_encoder: float = 1e-4
    wd_encoder: float = 1e-4
    lr_gru: float = 1e-3
    wd_gru: float = 1e-4
    lr_readout: float = 1e-3
    wd_readout: float = 0.0
    grad_clip: float = 1.0
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    min_lr: float = 1e-6
    early_stop_patience: int = 5
    #: cap on batches per animal per epoch (None: all); for smoke runs and benchmarks
    max_batches_per_animal: int | None = None
    #: start each readout's bias at softplus^-1(mean training response) of its neuron
    init_readout_bias: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ConfigError(f"encoder: unknown {self.encoder!r}; known: {sorted(ENCODERS)}")
        for k in ("feature_dim", "hidden_dim", "clip_len", "batch_size", "max_epochs"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) < 1:
                raise ConfigError(f"{k}: must be a positive integer, got {getattr(self, k)!r}")
        for k in ("gamma", "lr_encoder", "lr_gru", "lr_readout", "wd_encoder", "wd_gru",
                  "wd_readout", "grad_clip", "min_lr"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"{k}: must be a non-negative number, got {v!r}")
        if not 0 < self.plateau_factor < 1:
            raise ConfigError(f"plateau_factor: must be in (0, 1), got {self.plateau_factor}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TwinConfig":
        return config_from_mapping(cls, d, what="twin config keys", error=ConfigError)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Twin(nn.Module):
    """Clips ``[B, L, 1, H, W]`` of one animal -> predicted responses ``[B, N_animal]``.

    Each frame goes through the shared encoder; the ``L`` feature vectors go through
    a single-layer GRU; the final hidden state goes through the animal's linear
    readout and a softplus. Readouts are indexed by the animal's position in
    ``animals`` (``nn.ModuleList``, so animal ids need not be identifiers).
    """

    def __init__(self, cfg: TwinConfig, animals: Sequence[str], n_neurons: Sequence[int],
                 input_hw: tuple[int, int]) -> None:
        super().__init__()
        if len(animals) != len(n_neurons) or not animals:
            raise ValueError("animals and n_neurons must be non-empty and of one length")
        self.animals = list(animals)
        self.clip_len = cfg.clip_len
        # encoder_kwargs configure the CNN (documented above): a family config that trains
        # the CNN beside torchvision encoders gives them to the CNN only
        self.encoder = build_encoder(cfg.encoder, cfg.feature_dim, tuple(input_hw),
                                     **(cfg.encoder_kwargs if cfg.encoder == "cnn" else {}))
        self.gru = nn.GRU(cfg.feature_dim, cfg.hidden_dim, num_layers=1, batch_first=True)
        self.readouts = nn.ModuleList(nn.Linear(cfg.hidden_dim, int(n)) for n in n_neurons)

    def init_bias(self, animal: int, mean_response: torch.Tensor) -> None:
        """Set the readout bias so that a zero drive predicts ``mean_response``."""
        m = torch.as_tensor(mean_response, dtype=torch.float32).clamp_min(1e-3)
        with torch.no_grad():
            self.readouts[animal].bias.copy_(m + torch.log(-torch.expm1(-m)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder outputs ``[B, L, D]`` of clips ``[B, L, 1, H, W]``."""
        b, l = x.shape[:2]
        return self.encoder(x.reshape(b * l, *x.shape[2:])).reshape(b, l, -1)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Final GRU hidden state ``[B, H]``."""
        _, h = self.gru(self.features(x))
        return h[-1]

    def forward(self, x: torch.Tensor, animal: int) -> torch.Tensor:
        return nn.functional.softplus(self.readouts[animal](self.hidden(x)))


def poisson_loss(pred: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean Poisson negative log-likelihood with non-log predictions (constant dropped)."""
    return (pred - y * torch.log(pred + eps)).mean()


def twin_loss(model: Twin, pred: torch.Tensor, y: torch.Tensor, animal: int,
              cfg: TwinConfig) -> torch.Tensor:
    """Poisson loss + ``gamma * mean(|W|)`` of the active animal's readout weights."""
    w = model.readouts[animal].weight
    return poisson_loss(pred, y, cfg.eps) + cfg.gamma * w.abs().mean()


def param_groups(model: Twin, cfg: TwinConfig) -> list[dict[str, Any]]:
    """AdamW groups: encoder, GRU, readouts, each with its lr and weight decay."""
    return [
        {"params": list(model.encoder.parameters()), "lr": cfg.lr_encoder,
         "weight_decay": cfg.wd_encoder, "name": "encoder"},
        {"params": list(model.gru.parameters()), "lr": cfg.lr_gru,
         "weight_decay": cfg.wd_gru, "name": "gru"},
        {"params": list(model.readouts.parameters()), "lr": cfg.lr_readout,
         "weight_decay": cfg.wd_readout, "name": "readout"},
    ]
