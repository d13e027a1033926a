"""Networks that predict neuroids from images (SCIENCE.md §5, paper 000).

``NeuralPredictor = Backbone (any zoo model, optionally truncated and frozen) + decoder``.
The decoder is the wide two-layer MLP of 000::

    AdaptiveAvgPool2d(1) -> Flatten -> Linear(d, w) -> ReLU -> Dropout(p)
                         -> Linear(w, w) -> ReLU -> Dropout(p) -> Linear(w, n_neuroids)

or a linear head (pool, flatten, Linear(d, n)) as used by the shallow CNN baseline
(four blocks conv3x3 16-32-64-128, ReLU, 2x2 max pool).

Truncation counts *blocks*, per architecture family (:func:`backbone_blocks`):

* VGG (torchvision ``vgg*``): a block is one conv(-BN)-ReLU unit plus the max-pool that
  follows it (VGG11_BN has 8; 000's best network keeps 5).
* ResNet family (anything with ``layer1``..``layer4``; torchvision and timm): the stem is
  always kept; the blocks are the four stages ``layer1``..``layer4``.
* timm models with ``stages`` (ConvNeXt, RegNet, ...) or ``conv_stem`` + ``blocks``
  (EfficientNet, MobileNet): stem kept, blocks = stages.
* torchvision models with a ``features`` Sequential (AlexNet, MobileNet, EfficientNet,
  DenseNet, ConvNeXt): blocks = the children of ``features``.
* Any other timm model: the full ``forward_features`` trunk (``blocks`` must be None).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .presets import ConfigError, FinetuneConfig

__all__ = [
    "ShallowCNN",
    "Backbone",
    "Decoder",
    "NeuralPredictor",
    "NetworkBundle",
    "backbone_blocks",
    "build_backbone",
    "build_network",
]


class ShallowCNN(nn.Module):
    """The shallow CNN trunk of 000: four blocks conv3x3 -> ReLU -> 2x2 max pool.

    Only the trunk; the head (global average pool + linear) is the ``linear`` decoder.
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128), in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for k in channels:
            layers.append(nn.Sequential(nn.Conv2d(c, k, 3, padding=1), nn.ReLU(inplace=True),
                                        nn.MaxPool2d(2)))
            c = k
        self.blocks = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class _ForwardFeatures(nn.Module):
    """Wraps a timm model so that calling it runs ``forward_features`` only."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def backbone_blocks(module: nn.Module, name: str = "") -> tuple[list[nn.Module], list[nn.Module]]:
    """Split a classification network into ``(stem, blocks)`` for truncation.

    Parameters
    ----------
    module : the network (a torchvision or timm classifier, or a ShallowCNN).
    name : the architecture name (used to recognize VGG).

    Returns
    -------
    stem : modules always kept, in forward order.
    blocks : truncatable blocks, in forward order.

    Raises
    ------
    ConfigError
        When the architecture has no recognized block structure; the caller may then use
        the whole ``forward_features`` trunk.
    """
    if isinstance(module, ShallowCNN):
        return [], list(module.blocks)
    children = dict(module.named_children())
    feats = children.get("features")
    if isinstance(feats, nn.Sequential) and name.lower().startswith("vgg"):
        blocks: list[nn.Module] = []
        current: list[nn.Module] = []
        for m in feats:
            if isinstance(m, nn.Conv2d) and current:
                blocks.append(nn.Sequential(*current))
                current = []
            current.append(m)
        if current:
            blocks.append(nn.Sequential(*current))
        return [], blocks
    if all(f"layer{i}" in children for i in range(1, 5)):
        stem = []
        for n, m in module.named_children():
            if n == "layer1":
                break
            stem.append(m)
        return stem, [children[f"layer{i}"] for i in range(1, 5)]
    if isinstance(children.get("stages"), nn.Sequential):
        stem = [children["stem"]] if "stem" in children else []
        return stem, list(children["stages"])
    if "conv_stem" in children and isinstance(children.get("blocks"), nn.Sequential):
        stem = [children["conv_stem"]] + ([children["bn1"]] if "bn1" in children else [])
        return stem, list(children["blocks"])
    if isinstance(feats, nn.Sequential):
        return [], list(feats)
    raise ConfigError(f"backbone {name or type(module).__name__!r} has no recognized block "
                      "structure (VGG, ResNet layer1-4, timm stages/blocks, or a 'features' "
                      "Sequential); set blocks: null to use its whole feature trunk")


class Backbone(nn.Module):
    """Stem plus the first k blocks, applied in order."""

    def __init__(self, stem: list[nn.Module], blocks: list[nn.Module]):
        super().__init__()
        self.stem = nn.Sequential(*stem)
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class _Pool(nn.Module):
    """Global average pool of [b, c, h, w] maps or [b, tokens, d] sequences to [b, d]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        if x.ndim == 3:
            return x.mean(dim=1)
        if x.ndim == 2:
            return x
        raise ValueError(f"cannot pool backbone output of shape {tuple(x.shape)}")


class Decoder(nn.Module):
    """Pool + flatten + the wide two-layer MLP of 000 (or a linear head)."""

    def __init__(self, in_features: int, n_outputs: int, width: int = 7000,
                 dropout: float = 0.5, kind: str = "mlp"):
        super().__init__()
        self.pool = _Pool()
        if kind == "mlp":
            self.head = nn.Sequential(
                nn.Linear(in_features, width), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Linear(width, width), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Linear(width, n_outputs))
        elif kind == "linear":
            self.head = nn.Sequential(nn.Linear(in_features, n_outputs))
        else:
            raise ConfigError(f"unknown decoder {kind!r}; use 'mlp' or 'linear'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(x))


class NeuralPredictor(nn.Module):
    """Backbone + decoder; a frozen backbone stays in eval mode (fixed BN statistics)."""

    def __init__(self, backbone: nn.Module, decoder: Decoder, frozen: bool = False):
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.frozen = frozen
        for p in self.backbone.parameters():
            p.requires_grad_(not frozen)

    def train(self, mode: bool = True) -> "NeuralPredictor":
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            with torch.no_grad():
                f = self.backbone(x)
            return self.decoder(f)
        return self.decoder(self.backbone(x))


@dataclass
class NetworkBundle:
    """A built network and what it needs: preprocessing and a description."""

    model: NeuralPredictor
    preprocess: "object"  # cortexzoo.zoo.PreprocessConfig
    model_name: str       # the backbone spec as written to score rows
    source: str
    weights: str
    n_blocks_available: int | None
    feature_dim: int
    layer: str            # "blocks:k/n" or "all"


def build_backbone(cfg: FinetuneConfig) -> tuple[nn.Module, "object", str, str, str, int | None, str]:
    """The (possibly truncated) backbone of `cfg` and its preprocessing.

    Returns (backbone, preprocess, model_name, source, weights, n_blocks_available, layer).
    """
    from cortexzoo.zoo import PreprocessConfig, load_model, parse_spec
    from cortexzoo.zoo.preprocess import IMAGENET_MEAN, IMAGENET_STD

    if cfg.is_shallow_cnn:
        torch.manual_seed(cfg.seed)
        net = ShallowCNN()
        size = cfg.image_size or 128
        pre = PreprocessConfig(size, size, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
        model_name, source, weights, arch = "custom:shallow_cnn@random", "custom", "random", "shallow_cnn"
        if cfg.seed:
            model_name = f"custom:shallow_cnn@random#{cfg.seed}"
    else:
        spec = parse_spec(cfg.backbone)
        if spec.source == "baseline":
            raise ConfigError(f"backbone {cfg.backbone!r} is a non-network baseline; fine-tuning "
                              "needs a torchvision or timm network (or custom:shallow_cnn)")
        loaded = load_model(spec)
        net = loaded.module
        pre = loaded.preprocess
        if cfg.image_size is not None:
            pre = PreprocessConfig(cfg.image_size, cfg.image_size, pre.mean, pre.std,
                                   pre.interpolation)
        model_name, source, weights, arch = str(spec), spec.source, spec.weights, spec.arch
    try:
        stem, blocks = backbone_blocks(net, arch)
    except ConfigError:
        if cfg.blocks is not None or not hasattr(net, "forward_features"):
            raise
        return _ForwardFeatures(net), pre, model_name, source, weights, None, "all"
    n = len(blocks)
    if cfg.blocks is not None and cfg.blocks > n:
        raise ConfigError(f"blocks={cfg.blocks} but backbone {model_name} has only {n} blocks")
    k = n if cfg.blocks is None else cfg.blocks
    layer = "all" if k == n else f"blocks:{k}/{n}"
    return Backbone(stem, blocks[:k]), pre, model_name, source, weights, n, layer


def build_network(cfg: FinetuneConfig, n_outputs: int) -> NetworkBundle:
    """Build backbone + decoder for `n_outputs` neuroids (on CPU, in train mode)."""
    if n_outputs < 1:
        raise ConfigError(f"need at least one neuroid to predict, got n_outputs={n_outputs}")
    backbone, pre, name, source, weights, n_avail, layer = build_backbone(cfg)
    backbone.eval()
    with torch.no_grad():
        probe = backbone(torch.zeros(1, 3, pre.input_size, pre.input_size))
    feat = _Pool()(probe)
    d = int(feat.shape[1])
    torch.manual_seed(cfg.seed)  # decoder init depends on the seed only
    decoder = Decoder(d, n_outputs, cfg.width, cfg.dropout, cfg.decoder)
    model = NeuralPredictor(backbone, decoder, frozen=cfg.frozen)
    model.train()
    return NetworkBundle(model, pre, name, source, weights, n_avail, d, layer)
