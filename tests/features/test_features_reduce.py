"""Sparse random projection and hook extraction, against closed forms."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cortexzoo.features import FeatureExtractor, LayerReducer, ReductionConfig, layer_seed, srp_matrix


def test_srp_matrix_entries_and_density():
    p, k = 2500, 512
    m = srp_matrix(p, k, seed=3).to_dense().numpy()
    d = 1 / math.sqrt(p)
    scale = math.sqrt(1 / (d * k))
    nz = m[m != 0]
    assert m.shape == (k, p)
    np.testing.assert_allclose(np.abs(nz), scale, rtol=1e-6)
    # Binomial(k*p, d): mean k*p*d, sd sqrt(k*p*d*(1-d)); allow 5 sd.
    mean, sd = k * p * d, math.sqrt(k * p * d * (1 - d))
    assert abs(nz.size - mean) < 5 * sd
    # signs balanced
    assert abs((nz > 0).mean() - 0.5) < 0.02


def test_srp_deterministic_per_seed():
    a = srp_matrix(300, 64, seed=1).to_dense()
    b = srp_matrix(300, 64, seed=1).to_dense()
    c = srp_matrix(300, 64, seed=2).to_dense()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert layer_seed(0, "m", "l1") == layer_seed(0, "m", "l1") != layer_seed(0, "m", "l2")


def _srp_reference(p, k, seed):
    """The matrix drawn whole: every gap of the round at once, then every sign."""
    rng = np.random.default_rng(seed)
    d = 1 / math.sqrt(p)
    mean = k * p * d
    gaps = rng.geometric(d, size=int(mean + 6 * math.sqrt(mean) + 64))
    pos = np.cumsum(gaps) - 1
    assert pos[-1] >= k * p  # one round suffices at these sizes
    pos = pos[pos < k * p]
    signs = np.where(rng.random(pos.size) < 0.5, -1.0, 1.0) * math.sqrt(1 / (d * k))
    dense = np.zeros(k * p, dtype=np.float32)
    dense[pos] = signs
    return dense.reshape(k, p)


@pytest.mark.parametrize("block", [None, 100, 4097])
def test_srp_drawn_in_blocks_equals_drawn_whole(monkeypatch, block):
    # blocks bound the generator's memory; they must not change a single entry, or every
    # cached feature of every scan would silently change meaning
    import cortexzoo.features.reduce as reduce

    if block:
        monkeypatch.setattr(reduce, "_GEN_BLOCK", block)
    for p, k, seed in [(2500, 512, 3), (10, 300, 0), (40000, 64, 11)]:
        np.testing.assert_array_equal(srp_matrix(p, k, seed=seed).to_dense().numpy(),
                                      _srp_reference(p, k, seed))


def test_srp_preserves_norms_and_distances():
    # Johnson-Lindenstrauss: E||Rx||^2 = ||x||^2 and distances within ~eps for k=4096.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5000)).astype(np.float32)
    R = srp_matrix(5000, 4096, seed=0)
    Z = (R @ torch.from_numpy(X).T).T.numpy()
    from scipy.spatial.distance import pdist

    ratio = pdist(Z) / pdist(X)
    assert abs(ratio.mean() - 1) < 0.02
    assert np.all(np.abs(ratio - 1) < 0.1)


def test_srp_upsamples_small_layers():
    R = srp_matrix(10, 4096, seed=0)
    assert R.shape == (4096, 10)
    assert R._nnz() > 0


def test_reducer_batches_equal_whole():
    rng = np.random.default_rng(1)
    act = torch.from_numpy(rng.standard_normal((12, 3, 8, 8)).astype(np.float32))
    red = LayerReducer(ReductionConfig(n_components=256), "m", "l")
    whole = red(act)
    red2 = LayerReducer(ReductionConfig(n_components=256), "m", "l")
    parts = torch.cat([red2(act[:5]), red2(act[5:])])
    torch.testing.assert_close(whole, parts)
    dense = srp_matrix(192, 256, seed=layer_seed(0, "m", "l")).to_dense()
    torch.testing.assert_close(whole, act.reshape(12, -1) @ dense.T, rtol=1e-4, atol=1e-4)


def test_reducer_gap_and_flatten():
    act = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 2, 2)
    gap = LayerReducer(ReductionConfig(method="gap"), "m", "l")(act)
    np.testing.assert_allclose(gap.numpy(), act.numpy().mean(axis=(2, 3)))
    flat = LayerReducer(ReductionConfig(method="flatten"), "m", "l")(act)
    np.testing.assert_array_equal(flat.numpy(), act.numpy().reshape(2, -1))
    with pytest.raises(ValueError, match="max_flatten"):
        LayerReducer(ReductionConfig(method="flatten", max_flatten=5), "m", "big")(act)
    with pytest.raises(ValueError, match="unknown reduction"):
        ReductionConfig(method="pca9")


def _toy_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
                        nn.Conv2d(4, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    layers = ["0", "1", "2", "3"]
    return SimpleNamespace(module=net, layers=layers,
                           relative_depth={n: i / 3 for i, n in enumerate(layers)},
                           spec=SimpleNamespace(key="toy"))


def test_extractor_hooks_see_pre_inplace_outputs():
    model = _toy_model()
    x = torch.randn(5, 3, 6, 6)
    with torch.no_grad():
        conv0 = model.module[0](x)               # before the in-place ReLU
        relu = torch.relu(conv0)
        conv2 = model.module[2](relu)
    ext = FeatureExtractor(model, ["0", "1", "2"], ReductionConfig(method="flatten"))
    out = ext(x.numpy())
    np.testing.assert_allclose(out["0"], conv0.reshape(5, -1).numpy(), atol=1e-6)
    np.testing.assert_allclose(out["1"], relu.reshape(5, -1).numpy(), atol=1e-6)
    np.testing.assert_allclose(out["2"], conv2.reshape(5, -1).numpy(), atol=1e-5)


def test_extractor_unknown_layer_named():
    with pytest.raises(ValueError, match="nope"):
        FeatureExtractor(_toy_model(), ["0", "nope"])


def test_extractor_cache_budget_regenerates_identically():
    model = _toy_model()
    x = torch.randn(4, 3, 6, 6).numpy()
    full = FeatureExtractor(model, ["0", "2"], ReductionConfig(n_components=64))
    tight = FeatureExtractor(model, ["0", "2"], ReductionConfig(n_components=64), cache_bytes=0)
    a, b = full(x), tight(x)
    b2 = tight(x)  # matrices were released and regenerated
    for n in ("0", "2"):
        np.testing.assert_allclose(a[n], b[n], rtol=1e-5)
        np.testing.assert_allclose(b[n], b2[n], rtol=1e-5)


def test_extractor_holds_kept_matrices_plus_one(monkeypatch):
    # a layer's matrix beyond the budget is dropped right after its layer, not at the end
    # of the pass: a VGG16 pass would otherwise hold every layer's (1.4 GB)
    model = _toy_model()
    x = torch.randn(4, 3, 6, 6).numpy()
    layers = ["0", "1", "2"]
    red = ReductionConfig(n_components=64)
    full = FeatureExtractor(model, layers, red)
    want = full(x)
    sizes = {n: full.reducers[n].nbytes for n in layers}
    budget = sizes["0"]
    ext = FeatureExtractor(model, layers, red, cache_bytes=budget)
    held = []
    call = LayerReducer.__call__

    def spy(self, act):
        out = call(self, act)
        held.append(sum(r.nbytes for r in ext.reducers.values()))
        return out

    monkeypatch.setattr(LayerReducer, "__call__", spy)
    for _ in range(2):
        got = ext(x)
        for n in layers:
            np.testing.assert_allclose(got[n], want[n], rtol=1e-5)
    assert [ext.reducers[n].nbytes > 0 for n in layers] == [True, False, False]
    assert max(held) <= budget + max(sizes["1"], sizes["2"])
    assert max(held) < sum(sizes.values())
