"""Layer enumeration: exact lists for known architectures and for hand-built toys."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cortexzoo.zoo import enumerate_layers


def _meta(builder):
    with torch.device("meta"):
        return builder()


def test_resnet18_exact():
    import torchvision

    expected = ["conv1", "bn1", "relu", "maxpool"]
    expected += [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    expected += ["avgpool", "fc"]
    m = _meta(lambda: torchvision.models.resnet18())
    assert enumerate_layers(m, 224) == expected
    # the real (CPU) forward gives the same list as the meta one
    real = torchvision.models.resnet18()
    assert enumerate_layers(real, 64) == expected


def test_vgg16_exact_drops_dropout():
    import torchvision

    expected = [f"features.{i}" for i in range(31)] + [
        "avgpool", "classifier.0", "classifier.1", "classifier.3", "classifier.4", "classifier.6"]
    assert enumerate_layers(_meta(lambda: torchvision.models.vgg16()), 224) == expected


def test_timm_efficientnet_lite0_exact():
    import timm

    # EfficientNet-Lite0 stages repeat 1, 2, 2, 3, 3, 4, 1 blocks (TF lite builder)
    repeats = [1, 2, 2, 3, 3, 4, 1]
    expected = ["conv_stem", "bn1"]
    expected += [f"blocks.{i}.{j}" for i, r in enumerate(repeats) for j in range(r)]
    expected += ["conv_head", "bn2", "global_pool", "classifier"]
    m = _meta(lambda: timm.create_model("tf_efficientnet_lite0"))
    assert enumerate_layers(m, 224) == expected


def test_inception_aux_head_dropped_and_blocks_kept():
    import torchvision

    m = _meta(lambda: torchvision.models.googlenet(init_weights=True, aux_logits=True))
    layers = enumerate_layers(m, 224)
    assert not any(n.startswith("aux") for n in layers)  # aux heads are not called in eval
    # parallel-branch blocks stay single layers
    assert "inception3a" in layers and not any(n.startswith("inception3a.") for n in layers)
    assert layers[-2:] == ["avgpool", "fc"]


def test_vit_stage_expanded_into_blocks():
    import torchvision

    m = _meta(lambda: torchvision.models.vit_b_16())
    layers = enumerate_layers(m, 224)
    assert layers == (["conv_proj"] + [f"encoder.layers.encoder_layer_{i}" for i in range(12)]
                      + ["encoder.ln", "heads.head"])


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = nn.ReLU()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return self.shared(self.lin(self.shared(x)))


class _TupleOut(nn.Module):
    def forward(self, x):
        return x * 2, "meta"


class _DictOut(nn.Module):
    def forward(self, x):
        return {"x": x}


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.5)
        self.body = nn.Sequential(nn.Linear(4, 4), nn.Identity(), nn.Sequential(nn.Tanh(), nn.Linear(4, 4)))
        self.twice = _Twice()
        self.tup = _TupleOut()
        self.dic = _DictOut()
        self.aux = nn.Linear(4, 4)  # never called
        self.flat = nn.Flatten()
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        x = x.flatten(1)[:, :4]
        x = self.head(self.flat(self.dic(self.tup(self.twice(self.body(self.drop(self.stem(x)))))[0])["x"]))
        return x


def test_toy_rules():
    # called once, in call order; Dropout/Identity/Flatten, never-called, twice-called
    # (inside _Twice the ReLU is called twice but _Twice itself is one block) and
    # non-tensor outputs are dropped; tuple outputs with a tensor first are kept.
    assert enumerate_layers(_Toy(), 2) == [
        "stem", "body.0", "body.2.0", "body.2.1", "twice", "tup", "head"]


def test_module_called_twice_at_top_level_dropped():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 3, 1)
            self.act = nn.ReLU()
            self.b = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.act(self.b(self.act(self.a(x))))

    assert enumerate_layers(M(), 8) == ["a", "b"]


def test_hooks_removed_and_mode_restored():
    import torchvision

    m = torchvision.models.resnet18()
    m.train()
    enumerate_layers(m, 32)
    assert m.training
    assert all(len(mod._forward_hooks) == 0 for mod in m.modules())


def test_failed_meta_forward_is_reported():
    from cortexzoo.zoo import LayerEnumerationError

    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return self.lin(x.mean((2, 3))) if float(x.sum()) > -1 else x

    with pytest.raises(LayerEnumerationError):
        enumerate_layers(_meta(Bad), 4)
    assert enumerate_layers(Bad(), 4) == ["lin"]  # real tensors work
