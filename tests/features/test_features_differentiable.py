"""The differentiable path: same activations as the scan's hooks, gradients to the pixels,
later layers never run when the graph can be cut."""
import numpy as np
import pytest
import torch
from torch import nn

from cortexzoo.features.differentiable import LayerForward, normalize, reduce
from cortexzoo.features.extract import FeatureExtractor
from cortexzoo.features.reduce import LayerReducer, ReductionConfig
from cortexzoo.zoo import load_model, register_model
from cortexzoo.zoo.preprocess import PreprocessConfig

LAYERS = ["layer1.0", "layer2.1"]


@pytest.fixture(scope="module")
def resnet():
    return load_model("torchvision:resnet18@random", input_size=48)


def _plain_hooks(module, names, x):
    """Reference: a full forward pass with grad, outputs kept by plain hooks."""
    got = {}
    mods = dict(module.named_modules())
    hs = [mods[n].register_forward_hook(lambda m, i, o, n=n: got.setdefault(n, o)) for n in names]
    try:
        module(x)
    finally:
        for h in hs:
            h.remove()
    return got


@pytest.mark.parametrize("trace", [True, False])
def test_activations_and_gradients_equal_a_plain_forward(resnet, trace):
    lf = LayerForward(resnet, LAYERS, trace=trace)
    assert lf.truncated is trace
    torch.manual_seed(0)
    x = torch.randn(3, 3, 48, 48, requires_grad=True)
    out = lf(x)
    w = {n: torch.randn_like(out[n]) for n in LAYERS}
    sum((out[n] * w[n]).sum() for n in LAYERS).backward()
    g = x.grad.clone()

    x2 = x.detach().clone().requires_grad_(True)
    ref = _plain_hooks(resnet.module, LAYERS, x2)
    sum((ref[n] * w[n]).sum() for n in LAYERS).backward()
    for n in LAYERS:
        torch.testing.assert_close(out[n], ref[n], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g, x2.grad, rtol=1e-4, atol=1e-6)
    assert g.abs().sum() > 0


def test_graph_is_cut_after_the_last_layer(resnet):
    calls = []
    h = resnet.module.fc.register_forward_hook(lambda *a: calls.append("fc"))
    try:
        LayerForward(resnet, LAYERS)(torch.randn(1, 3, 48, 48))
        assert calls == []  # later layers never ran, and nothing was raised to stop them
        LayerForward(resnet, LAYERS, trace=False)(torch.randn(1, 3, 48, 48))
        assert calls == ["fc"]  # the hook path runs the whole network
    finally:
        h.remove()


def test_normalize_and_reduce_give_the_scan_features(resnet):
    """Through the differentiable path, 8-bit pixels give the scan's reduced features."""
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, size=(2, 48, 48, 3), dtype=np.uint8)
    red = ReductionConfig(n_components=32, seed=3)
    ref = FeatureExtractor(resnet, ["layer2.1"], red)(resnet.preprocess.normalize_uint8(u8))
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255
    act = LayerForward(resnet, ["layer2.1"])(normalize(resnet.preprocess, x))["layer2.1"]
    got = reduce(LayerReducer(red, resnet.spec.key, "layer2.1"), act).detach().numpy()
    np.testing.assert_allclose(got, ref["layer2.1"], rtol=1e-4, atol=1e-4 * np.abs(ref["layer2.1"]).max())


class _Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3)
        self.b = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        y = self.a(x)
        if float(y.detach().sum()) > 0:
            y = y * 2
        return self.b(y).mean((2, 3))


def test_untraceable_model_falls_back_to_hooks():
    register_model("branchy_diff_test", _Branchy, PreprocessConfig(16, 16), overwrite=True)
    m = load_model("custom:branchy_diff_test@random")
    lf = LayerForward(m, ["b"])
    assert not lf.truncated
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    lf(x)["b"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_layer_and_description_are_clear_errors(resnet):
    with pytest.raises(ValueError, match="unknown layer"):
        LayerForward(resnet, ["nope"])
    from cortexzoo.zoo import describe_model

    with pytest.raises(ValueError, match="loaded network"):
        LayerForward(describe_model("torchvision:resnet18@random"), LAYERS)
