"""Backbone truncation/freezing, the wide decoder and the shallow CNN."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cortexzoo.training.networks import (Decoder, ShallowCNN, backbone_blocks, build_network)
from cortexzoo.training.presets import ConfigError, load_preset


def test_vgg11_bn_blocks_are_conv_units():
    import torchvision

    with torch.device("meta"):  # no real weights needed to check the structure
        vgg = torchvision.models.vgg11_bn()
    stem, blocks = backbone_blocks(vgg, "vgg11_bn")
    assert stem == [] and len(blocks) == 8  # VGG11 has 8 conv layers
    convs = [[m.out_channels for m in b if isinstance(m, nn.Conv2d)] for b in blocks]
    assert convs == [[64], [128], [256], [256], [512], [512], [512], [512]]
    # 5 blocks (Table 2 of 000) = conv64,pool,conv128,pool,conv256,conv256,pool,conv512
    kinds = [type(m).__name__ for b in blocks[:5] for m in b]
    assert kinds.count("MaxPool2d") == 3 and kinds.count("BatchNorm2d") == 5
    # every module of vgg.features is used exactly once, in order
    flat = [m for b in blocks for m in b]
    assert flat == list(vgg.features)


def test_resnet_truncation_keeps_stem_and_stages():
    cfg = load_preset("resnet34-it", backbone="torchvision:resnet18@random", blocks=2, width=32,
                      image_size=32)
    b = build_network(cfg, 5)
    assert b.layer == "blocks:2/4" and b.n_blocks_available == 4
    assert b.feature_dim == 128  # resnet18 layer2 has 128 channels
    names = [type(m).__name__ for m in b.model.backbone.stem]
    assert names == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    # independently: torchvision's resnet18 (same seed) up to layer2
    import torchvision

    torch.manual_seed(0)
    ref = torchvision.models.resnet18().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = ref.layer2(ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))))
        got = b.model.backbone.eval()(x)
    torch.testing.assert_close(got, want)
    with pytest.raises(ConfigError, match="only 4 blocks"):
        build_network(cfg.replace(blocks=5), 5)


def test_decoder_is_the_wide_two_layer_mlp():
    d = Decoder(48, 7, width=100, dropout=0.3)
    kinds = [type(m).__name__ for m in d.head]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert [(m.in_features, m.out_features) for m in d.head if isinstance(m, nn.Linear)] == \
        [(48, 100), (100, 100), (100, 7)]
    assert all(m.p == 0.3 for m in d.head if isinstance(m, nn.Dropout))
    x = torch.randn(3, 48, 5, 5)
    d.eval()
    torch.testing.assert_close(d(x), d.head(x.mean(dim=(2, 3))))  # adaptive average pool


def test_frozen_backbone_gets_no_gradient_and_keeps_bn_stats():
    cfg = load_preset("resnet34-it", backbone="torchvision:resnet18@random", blocks=1, width=16,
                      image_size=32, frozen=True)
    m = build_network(cfg, 3).model
    m.train()
    assert not m.backbone.training and m.decoder.training
    bn = m.backbone.stem[1]
    before = bn.running_mean.clone()
    m(torch.randn(4, 3, 32, 32)).sum().backward()
    torch.testing.assert_close(bn.running_mean, before)
    assert all(p.grad is None for p in m.backbone.parameters())
    assert all(p.grad is not None for p in m.decoder.parameters())
    unfrozen = build_network(cfg.replace(frozen=False), 3).model
    assert all(p.requires_grad for p in unfrozen.backbone.parameters())


def test_shallow_cnn_16_32_64_128():
    net = ShallowCNN()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 4
    b = build_network(load_preset("shallow-cnn", image_size=32), 6)
    assert b.feature_dim == 128 and b.model.decoder.head[0].out_features == 6
    assert b.model(torch.randn(2, 3, 32, 32)).shape == (2, 6)


def test_baseline_backbone_is_rejected():
    with pytest.raises(ConfigError, match="non-network baseline"):
        build_network(load_preset("resnet34-it", backbone="baseline:pixels@none"), 2)
