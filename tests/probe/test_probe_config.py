"""Probe settings: YAML example, named errors, CLI flags over the YAML (no Ray, no torch
work)."""
from __future__ import annotations

import argparse
import json
import os

import pytest

from cortexzoo.probe.config import FAMILIES, ProbeConfig, ProbeConfigError

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def test_the_example_config_spells_out_the_defaults():
    cfg = ProbeConfig.from_yaml(os.path.join(CONFIGS, "probe_default.yaml"))
    assert cfg.to_dict() == ProbeConfig().to_dict()
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()  # Ray ships it as a dict
    assert ProbeConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    demo = ProbeConfig.from_yaml(os.path.join(CONFIGS, "probe_demo.yaml"))
    assert demo.families == list(FAMILIES) and demo.eigenspectrum.ranks == [3, 24]
    d = ProbeConfig()
    assert d.orientation.n_classes == 8 and d.contrast.target_frames == 3
    assert (d.eigenspectrum.n_clips, d.eigenspectrum.n_components, d.eigenspectrum.ranks) == (
        5000, 256, [20, 200])


@pytest.mark.parametrize("d,match", [
    ({"families": ["orientation", "colour"]}, r"unknown probe family \['colour'\]"),
    ({"orientation": {"n_train": 5}}, r"orientation: unknown keys \['n_train'\]"),
    ({"orientation": {"ood": {"sf": [0.1, 0.2]}}}, r"orientation.ood: .*missing keys"),
    ({"orientation": {"id": {"sf": [0.2, 0.1], "contrast": [0, 1], "noise": [0, 0],
                             "blur": [0, 0], "mean": [0.5, 0.5]}}}, r"orientation.id.sf"),
    ({"contrast": {"eval_contrasts": [0.5, 0.1]}}, r"contrast.eval_contrasts"),
    ({"motion": {"eval_coherences": [0.0, 1.5]}}, r"motion.eval_coherences"),
    ({"motion": {"directions_deg": [0, 90, 180]}}, r"motion.directions_deg"),
    ({"tuning": {"qc": {"sf_r3": 0.5}}}, r"tuning.qc: unknown qc thresholds \['sf_r3'\]"),
    ({"tuning": {"sf_max": 0.7}}, r"tuning.sf_min/sf_max"),
    ({"eigenspectrum": {"ranks": [20]}}, r"eigenspectrum.ranks"),
    ({"eigenspectrum": {"splits": ["train", "holdout"]}}, r"eigenspectrum.splits: unknown"),
    ({"linear": {"l2_grid": [-1.0]}}, r"linear.l2_grid"),
    ({"encoders": ["cnn", "vgg99"]}, r"encoders: unknown \['vgg99'\]"),
    ({"colour": 1}, r"unknown probe config keys \['colour'\]"),
])
def test_bad_settings_are_named(d, match):
    with pytest.raises(ProbeConfigError, match=match):
        ProbeConfig.from_dict(d)


def test_families_keep_their_canonical_order():
    assert ProbeConfig(families=["tuning", "orientation"]).families == ["orientation", "tuning"]


def test_cli_flags_override_the_yaml(tmp_path):
    from cortexzoo.cli.twins import probe_config_from_args, register_cli

    p = argparse.ArgumentParser()
    register_cli(p.add_subparsers(dest="cmd"))
    cfg_file = tmp_path / "p.yaml"
    cfg_file.write_text("data: d\nout: o\nseed: 3\nfamilies: [orientation, tuning]\n"
                        "orientation: {n_val: 64}\n")
    args = p.parse_args(["twins", "probe", "--config", str(cfg_file), "--out", "o2",
                         "--families", "tuning", "--seeds", "1,2", "--no-use-gpu",
                         "--gpus-per-task", "0.5"])
    assert args.func.__name__ == "cmd_probe"
    cfg = probe_config_from_args(args)
    assert (cfg.data, cfg.out, cfg.seed, cfg.families, cfg.seeds, cfg.use_gpu,
            cfg.gpus_per_task) == ("d", "o2", 3, ["tuning"], [1, 2], False, 0.5)
    assert cfg.orientation.n_val == 64 and cfg.orientation.n_test == 1024
    with pytest.raises(ProbeConfigError, match="unknown probe family"):
        probe_config_from_args(p.parse_args(["twins", "probe", "--families", "colour"]))
