"""Encoders, the twin, its loss and optimizer groups, the metrics, and fitting in-process."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from cortexzoo.twins.encoders import ENCODERS, UnknownEncoderError, build_encoder
from cortexzoo.twins.evaluate import chunked_pearson, overall_pearson, predict_split, score_twin
from cortexzoo.twins.model import ConfigError, Twin, TwinConfig, param_groups, twin_loss

PAPER_ENCODERS = {"cnn", "resnet18", "efficientnet_b0", "mobilenet_v2", "alexnet",
                  "squeezenet1_1", "shufflenet_v2_x1_0", "regnet_y_400mf"}


def test_all_eight_encoders_map_gray_frames_to_d():
    assert set(ENCODERS) == PAPER_ENCODERS
    torch.manual_seed(0)
    x = torch.rand(2, 1, 36, 64)
    for name in sorted(ENCODERS):
        enc = build_encoder(name, out_dim=24, input_hw=(36, 64)).eval()
        first = next(m for m in enc.modules() if isinstance(m, torch.nn.Conv2d))
        assert first.in_channels == 1, name
        with torch.no_grad():
            y = enc(x)
        assert y.shape == (2, 24), name
        assert torch.isfinite(y).all(), name
    alex = build_encoder("alexnet", 8)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in alex.features) == 2  # last removed
    with pytest.raises(UnknownEncoderError, match="vgg"):
        build_encoder("vgg")


def test_twin_shapes_loss_and_param_groups():
    cfg = TwinConfig(feature_dim=8, hidden_dim=6, gamma=0.5,
                     encoder_kwargs={"channels": [4, 4, 4]})
    torch.manual_seed(0)
    m = Twin(cfg, ["a", "b"], [3, 5], (12, 16))
    x = torch.rand(4, 5, 1, 12, 16)
    pa, pb = m(x, 0), m(x, 1)
    assert pa.shape == (4, 3) and pb.shape == (4, 5) and (pb > 0).all()
    y = torch.poisson(torch.ones(4, 5))
    loss = twin_loss(m, pb, y, 1, cfg)
    # by hand: mean(pred - y log(pred + eps)) + gamma * mean |W_b|
    expect = (pb - y * torch.log(pb + 1e-8)).mean() + 0.5 * m.readouts[1].weight.abs().mean()
    assert float(loss.detach()) == pytest.approx(float(expect.detach()), rel=1e-6)
    groups = {g["name"]: g for g in param_groups(m, cfg)}
    assert (groups["encoder"]["lr"], groups["encoder"]["weight_decay"]) == (1e-4, 1e-4)
    assert (groups["gru"]["lr"], groups["gru"]["weight_decay"]) == (1e-3, 1e-4)
    assert (groups["readout"]["lr"], groups["readout"]["weight_decay"]) == (1e-3, 0.0)
    n_all = sum(p.numel() for p in m.parameters())
    assert sum(p.numel() for g in groups.values() for p in g["params"]) == n_all
    m.init_bias(0, torch.tensor([0.5, 2.0, 0.01]))
    with torch.no_grad():
        m.readouts[0].weight.zero_()
    np.testing.assert_allclose(m(x, 0)[0].detach().numpy(), [0.5, 2.0, 0.01], rtol=1e-4)
    with pytest.raises(ConfigError, match="encoder"):
        TwinConfig(encoder="nope")
    with pytest.raises(ConfigError, match="unknown twin config keys"):
        TwinConfig.from_dict({"lr": 1})


def test_chunked_correlation_matches_hand_computation():
    rng = np.random.default_rng(0)
    t, n = 537, 4
    true = rng.poisson(2.0, (t, n)).astype(float)
    pred = true + rng.normal(0, 2.0, (t, n))
    pred[:100, 2] = 1.0  # a constant chunk: undefined, left out of neuron 2's average
    expect = []
    for j in range(n):
        rs = []
        for c in range(t // 100):  # 5 full chunks; the last 37 samples are dropped
            p, y = pred[c * 100:(c + 1) * 100, j], true[c * 100:(c + 1) * 100, j]
            if np.std(p) > 0 and np.std(y) > 0:
                rs.append(np.corrcoef(p, y)[0, 1])
        expect.append(np.mean(rs))
    got = chunked_pearson(pred, true, chunk=100)
    np.testing.assert_allclose(got, expect, rtol=1e-10)
    assert overall_pearson(pred, true) == pytest.approx(
        np.corrcoef(pred.ravel(), true.ravel())[0, 1], rel=1e-12)
    # fewer samples than a chunk: one chunk of everything
    np.testing.assert_allclose(chunked_pearson(pred[:50], true[:50]),
                               [np.corrcoef(pred[:50, j], true[:50, j])[0, 1] if j != 2
                                else np.nan for j in range(n)], rtol=1e-10)


def test_twin_fits_synthetic_sessions_above_chance(tmp_path):
    from cortexzoo.data.sessions import load_sessions
    from cortexzoo.data.sessions_synth import make_synthetic_sessions
    from cortexzoo.twins.train import fit_local, load_twin, save_twin_bytes

    torch.set_num_threads(1)
    root = str(tmp_path / "s")
    make_synthetic_sessions(root, n_animals=2, n_neurons=(8, 10), n_frames=1500, height=18,
                            width=32, rate_scale=3.0, seed=0)
    twin = dict(encoder="cnn", feature_dim=32, hidden_dim=32, batch_size=32, max_epochs=4,
                lr_encoder=3e-3, lr_gru=3e-3, lr_readout=3e-3,
                encoder_kwargs={"channels": [16, 16, 16], "dropout": 0.0})
    out = fit_local(twin, root)
    reports = out["reports"]
    assert [r["epoch"] for r in reports] == [0, 1, 2, 3]
    assert reports[-1]["val_loss"] < reports[0]["val_loss"]
    model, blob = load_twin(save_twin_bytes(out["best"]))
    assert blob["epoch"] == int(np.argmin([r["val_loss"] for r in reports]))
    preds = predict_split(model, load_sessions(root), "test")
    rows = {(r["animal"], r["metric"]): r for r in score_twin(preds)}
    r_all = rows[("all", "chunked_pearson_r")]["value"]
    assert r_all > 0.3, r_all
    assert rows[("all", "chunked_pearson_r")]["ceiling"] > r_all
    # chance: the same predictions against time-shuffled targets give ~0
    rng = np.random.default_rng(0)
    shuffled = [chunked_pearson(v["pred"], v["y"][rng.permutation(len(v["y"]))])
                for v in preds.values()]
    assert abs(float(np.nanmean(np.concatenate(shuffled)))) < 0.1


def test_plot_per_encoder_with_seed_spread():
    import pandas as pd

    from cortexzoo.twins.plots import plot_twins

    rows = [{"method": "twin", "metric": "chunked_pearson_r", "animal": "all", "encoder": e,
             "model": f"twin:{e}#seed{s}", "seed": s, "value": v + 0.01 * s, "ceiling": 0.8}
            for e, v in (("cnn", 0.4), ("resnet18", 0.35), ("alexnet", 0.3)) for s in range(3)]
    png = plot_twins(pd.DataFrame(rows))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    with pytest.raises(ValueError, match="no twin scores"):
        plot_twins(pd.DataFrame(rows), metric="overall_pearson_r")


def test_cnn_options_of_a_family_config_go_to_the_cnn_only():
    """configs/twins_demo.yaml trains the CNN and ShuffleNet with the CNN's channels:
    the torchvision encoder is built without them (it takes none)."""
    import yaml

    from cortexzoo.twins.model import Twin, TwinConfig

    demo = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "..", "configs",
                                            "twins_demo.yaml")))
    for enc in demo["encoders"]:
        cfg = TwinConfig.from_dict({**demo["twin"], "encoder": enc})
        twin = Twin(cfg, ["a"], [3], (36, 64))
        out = twin(torch.zeros(2, cfg.clip_len, 1, 36, 64), 0)
        assert out.shape == (2, 3)
