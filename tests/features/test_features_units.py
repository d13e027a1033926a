"""The ``units`` reduction: a layer's own units (channels x positions), all of them or a
seeded uniform sample made in the forward hook, against the flattened activations."""
import numpy as np
import torch

from cortexzoo.features import LayerReducer, ReductionConfig, layer_seed
from cortexzoo.features.reduce import unit_sample


def test_units_are_the_flattened_activations_or_a_seeded_sample():
    act = torch.randn(5, 8, 4, 3)  # [b, C, H, W]: 96 units per image
    flat = act.reshape(5, -1).numpy()
    every = LayerReducer(ReductionConfig(method="units", n_components=96), "m", "conv")(act)
    np.testing.assert_array_equal(every.numpy(), flat)
    cfg = ReductionConfig(method="units", n_components=20, seed=2)
    got = LayerReducer(cfg, "m", "conv")(act).numpy()
    idx = unit_sample(96, 20, layer_seed(2, "m", "conv"))
    assert got.shape == (5, 20) and len(set(idx)) == 20 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(got, flat[:, idx])
    # channel idx // (H*W) at position idx % (H*W): the same values by hand
    c, pos = idx // 12, idx % 12
    np.testing.assert_array_equal(got, act.numpy()[:, c, pos // 3, pos % 3])
    # the same units for every batch, and other units for another layer
    again = LayerReducer(cfg, "m", "conv")(act[:2]).numpy()
    np.testing.assert_array_equal(again, got[:2])
    assert not np.array_equal(unit_sample(96, 20, layer_seed(2, "m", "other")), idx)
    assert cfg.name == "units20"


def test_units_survive_inplace_ops_and_sample_uniformly():
    x = torch.randn(3, 10)
    out = LayerReducer(ReductionConfig(method="units", n_components=50), "m", "l")(x)
    x.relu_()  # a later in-place op must not change what was kept
    assert (out < 0).any()
    counts = np.zeros(1000)
    for s in range(400):
        counts[unit_sample(1000, 100, s)] += 1
    assert abs(counts.mean() - 40) < 1e-9 and counts.std() < 12  # binomial-ish, every unit drawn
