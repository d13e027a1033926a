"""Per-frame visual encoders of the twin family (SCIENCE.md section 8, paper A.2).

Every encoder maps grayscale frames ``[b, 1, H, W]`` to ``[b, D]``: a torchvision
architecture with random initialisation, its first convolution replaced by a
one-channel stem (same width, kernel, stride and padding as the original) and its
classifier replaced by a ``D``-output linear layer, plus the three-block CNN of Xu et
al. (2023).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["ENCODERS", "XuCNN", "build_encoder", "UnknownEncoderError"]


class UnknownEncoderError(ValueError):
    """An encoder name that is not one of :data:`ENCODERS`."""


class XuCNN(nn.Module):
    """Three conv blocks (conv -> batch norm -> ReLU -> dropout), flatten, linear to D.

    Defaults follow the vision stream of Xu et al. (2023): widths 128/64/32, kernels
    7/5/3, stride 2 (the paper text lost the numbers; all are configurable).
    ``batch_norm=False`` swaps batch norm for identity (used where per-worker batch
    statistics would make data-parallel runs differ from single-worker ones).
    """

    def __init__(self, out_dim: int, input_hw: tuple[int, int],
                 channels: tuple[int, ...] = (128, 64, 32),
                 kernels: tuple[int, ...] = (7, 5, 3), stride: int = 2,
                 dropout: float = 0.5, batch_norm: bool = True) -> None:
        super().__init__()
        if len(channels) != len(kernels):
            raise ValueError(f"channels {channels} and kernels {kernels} differ in length")
        layers: list[nn.Module] = []
        c_in = 1
        for c, k in zip(channels, kernels):
            layers += [nn.Conv2d(c_in, c, k, stride=stride, padding=k // 2),
                       nn.BatchNorm2d(c) if batch_norm else nn.Identity(),
                       nn.ReLU(inplace=True), nn.Dropout(dropout)]
            c_in = c
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            n_flat = self.features(torch.zeros(1, 1, *input_hw)).numel()
        self.fc = nn.Linear(n_flat, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


def _gray_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A one-channel copy of ``conv``'s geometry (fresh random weights)."""
    return nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     dilation=conv.dilation, groups=1, bias=conv.bias is not None)


def _resnet18(d: int, **_) -> nn.Module:
    from torchvision.models import resnet18

    m = resnet18(weights=None)
    m.conv1 = _gray_conv(m.conv1)
    m.fc = nn.Linear(m.fc.in_features, d)
    return m


def _efficientnet_b0(d: int, **_) -> nn.Module:
    from torchvision.models import efficientnet_b0

    m = efficientnet_b0(weights=None)
    m.features[0][0] = _gray_conv(m.features[0][0])
    m.classifier[-1] = nn.Linear(m.classifier[-1].in_features, d)
    return m


def _mobilenet_v2(d: int, **_) -> nn.Module:
    from torchvision.models import mobilenet_v2

    m = mobilenet_v2(weights=None)
    m.features[0][0] = _gray_conv(m.features[0][0])
    m.classifier[-1] = nn.Linear(m.classifier[-1].in_features, d)
    return m


def _alexnet(d: int, **_) -> nn.Module:
    from torchvision.models import alexnet

    m = alexnet(weights=None)
    m.features[0] = _gray_conv(m.features[0])
    # the last max pool would shrink small frames to nothing (paper A.2)
    assert isinstance(m.features[-1], nn.MaxPool2d)
    m.features = nn.Sequential(*list(m.features)[:-1])
    m.classifier[-1] = nn.Linear(m.classifier[-1].in_features, d)
    return m


def _squeezenet1_1(d: int, **_) -> nn.Module:
    from torchvision.models import squeezenet1_1

    m = squeezenet1_1(weights=None)
    m.features[0] = _gray_conv(m.features[0])
    # classifier = dropout, 1x1 conv, ReLU, global average pool: D channels before pooling
    m.classifier[1] = nn.Conv2d(m.classifier[1].in_channels, d, kernel_size=1)
    m.num_classes = d
    return m


def _shufflenet_v2_x1_0(d: int, **_) -> nn.Module:
    from torchvision.models import shufflenet_v2_x1_0

    m = shufflenet_v2_x1_0(weights=None)
    m.conv1[0] = _gray_conv(m.conv1[0])
    m.fc = nn.Linear(m.fc.in_features, d)
    return m


def _regnet_y_400mf(d: int, **_) -> nn.Module:
    from torchvision.models import regnet_y_400mf

    m = regnet_y_400mf(weights=None)
    m.stem[0] = _gray_conv(m.stem[0])
    m.fc = nn.Linear(m.fc.in_features, d)
    return m


def _cnn(d: int, input_hw: tuple[int, int] = (36, 64), **kw) -> nn.Module:
    return XuCNN(d, input_hw, **kw)


#: Encoder name -> builder ``f(D, input_hw=..., **encoder_kwargs) -> nn.Module``.
ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "cnn": _cnn,
    "resnet18": _resnet18,
    "efficientnet_b0": _efficientnet_b0,
    "mobilenet_v2": _mobilenet_v2,
    "alexnet": _alexnet,
    "squeezenet1_1": _squeezenet1_1,
    "shufflenet_v2_x1_0": _shufflenet_v2_x1_0,
    "regnet_y_400mf": _regnet_y_400mf,
}


def build_encoder(name: str, out_dim: int = 256, input_hw: tuple[int, int] = (36, 64),
                  **kwargs) -> nn.Module:
    """Build encoder ``name`` (random init) mapping ``[b, 1, H, W]`` to ``[b, out_dim]``.

    ``kwargs`` go to the CNN (``channels``, ``kernels``, ``stride``, ``dropout``,
    ``batch_norm``); torchvision encoders accept none.
    """
    if name not in ENCODERS:
        raise UnknownEncoderError(f"unknown encoder {name!r}; known: {sorted(ENCODERS)}")
    if name != "cnn" and kwargs:
        raise ValueError(f"encoder {name!r} takes no options, got {sorted(kwargs)}")
    return ENCODERS[name](out_dim, input_hw=tuple(input_hw), **kwargs)
