"""Search-space YAML schema and fine-tuning configs/presets (no torch, no Ray)."""
from __future__ import annotations

import glob
import os

import pytest

from cortexzoo.training.presets import ConfigError, FinetuneConfig, load_preset
from cortexzoo.training.space import SpaceError, load_space

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOOD = """
name: t
base: shallow-cnn
fixed: {epochs: 3}
params:
  lr: {type: loguniform, low: 1e-5, high: 1.0e-3}
  width: {type: choice, values: [64, 128]}
  blocks: {type: randint, low: 1, high: 3}
points_to_evaluate:
  - {lr: 1.0e-4, width: 64}
"""


def test_shipped_spaces_are_valid():
    files = sorted(glob.glob(os.path.join(ROOT, "tune_spaces", "*.yaml")))
    names = {os.path.basename(f) for f in files}
    assert {"resnet_decoder.yaml", "vgg_decoder.yaml", "tiny.yaml"} <= names
    for f in files:
        sp = load_space(f)
        assert sp.params and sp.name
    vgg = load_space(os.path.join(ROOT, "tune_spaces", "vgg_decoder.yaml"))
    assert (vgg.params["blocks"].low, vgg.params["blocks"].high) == (1, 7)
    res = load_space(os.path.join(ROOT, "tune_spaces", "resnet_decoder.yaml"))
    # SCIENCE.md section 5 ranges
    assert (res.params["dropout"].low, res.params["dropout"].high) == (0.2, 0.6)
    assert (res.params["lr"].low, res.params["lr"].high) == (1e-5, 1e-3)
    assert (res.params["weight_decay"].low, res.params["weight_decay"].high) == (1e-6, 1e-3)
    assert res.params["frozen"].values == [False, True]


def test_good_space_parses_and_coerces_exponent_strings():
    sp = load_space(GOOD)
    assert sp.params["lr"].low == pytest.approx(1e-5)  # YAML 1.1 reads '1e-5' as a string
    assert sp.base.epochs == 3 and sp.base.preset == "shallow-cnn"
    assert sp.metric == "best_val_ev"
    cfg = sp.config_for({"lr": 3e-4, "width": 128, "blocks": 2})
    assert (cfg.lr, cfg.width, cfg.blocks, cfg.epochs) == (3e-4, 128, 2, 3)
    dom = sp.param_space()
    assert set(dom) == {"lr", "width", "blocks"}
    # randint's upper bound is inclusive in the YAML, exclusive in Ray
    assert dom["blocks"].upper == 4


@pytest.mark.parametrize("patch, needle", [
    ("bogus: 1\n", "unknown key(s) ['bogus']"),
    ("params:\n  lr: {type: loguniform, low: 1.0e-3, high: 1.0e-3}\n", "params.lr: empty range"),
    ("params:\n  lr: {type: uniform, low: 0.5, high: 0.1}\n", "params.lr: empty range"),
    ("params:\n  width: {type: choice, values: []}\n", "params.width: empty range"),
    ("params:\n  blocks: {type: randint, low: 4, high: 2}\n", "params.blocks: empty range"),
    ("params:\n  lr: {type: loguniform, low: 0, high: 1}\n", "low > 0"),
    ("params:\n  lr: {type: gaussian, low: 0, high: 1}\n", "unknown type 'gaussian'"),
    ("params:\n  lr: {type: uniform, low: 0, high: 1, step: 2}\n", "unknown key(s) ['step']"),
    ("params:\n  learning_rate: {type: uniform, low: 0, high: 1}\n", "unknown setting 'learning_rate'"),
    ("params:\n  split_seed: {type: randint, low: 0, high: 3}\n", "split_seed cannot be searched"),
    ("params:\n  dropout: {type: uniform, low: 0.5, high: 1.5}\n", "params.dropout value 1.5"),
    ("params:\n  lr: {type: uniform, low: 0.1, high: 0.2}\npoints_to_evaluate: [{lr: 0.9}]\n",
     "points_to_evaluate[0].lr=0.9 lies outside"),
    ("params:\n  lr: {type: uniform, low: 0.1, high: 0.2}\nscheduler: {type: asha, patience: 2}\n",
     "unknown key(s) ['patience']"),
    ("params:\n  lr: {type: uniform, low: 0.1, high: 0.2}\nfixed: {epoch: 3}\n",
     "fixed: unknown setting(s) ['epoch']"),
    ("params: {}\n", "'params' must be a non-empty mapping"),
    ("params:\n  lr: {type: uniform, low: 0.1, high: 0.2}\nmetric: loss\n", "metric 'loss' unknown"),
])
def test_schema_errors_name_the_offending_item(patch, needle):
    doc = "name: t\nbase: shallow-cnn\n" + patch
    if "params" not in patch:
        doc += "params:\n  lr: {type: uniform, low: 0.1, high: 0.2}\n"
    with pytest.raises(SpaceError) as ei:
        load_space(doc)
    assert needle in str(ei.value)
    assert isinstance(ei.value, ValueError)


def test_space_file_errors_name_the_file(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("params:\n  dropout: {type: uniform, low: 0.6, high: 0.2}\n")
    with pytest.raises(SpaceError, match=r"broken\.yaml: params\.dropout: empty range"):
        load_space(str(p))
    with pytest.raises(SpaceError, match="does not exist"):
        load_space(str(tmp_path / "missing.yaml"))


def test_presets_match_paper_000_tables():
    vgg = load_preset("vgg11bn-5blocks-it")  # Table 2
    assert (vgg.backbone, vgg.blocks, vgg.frozen, vgg.width, vgg.dropout) == \
        ("torchvision:vgg11_bn@trained", 5, False, 7000, 0.47)
    assert (vgg.optimizer, vgg.lr, vgg.weight_decay, vgg.step_size, vgg.gamma, vgg.epochs,
            vgg.patience) == ("adamw", 1e-4, 1e-5, 15, 0.5, 60, 7)
    res = load_preset("resnet34-it")  # Table 3
    assert (res.backbone, res.blocks, res.frozen, res.width, res.dropout) == \
        ("torchvision:resnet34@trained", None, False, 7000, 0.52)
    assert (res.optimizer, res.lr, res.weight_decay, res.step_size, res.gamma, res.epochs,
            res.patience) == ("adam", 1e-4, 1e-5, 15, 0.5, 60, 10)
    sh = load_preset("shallow-cnn")
    assert sh.decoder == "linear" and sh.backbone == "custom:shallow_cnn"
    # presets are copies: changing one does not change the registry
    res.width = 1
    assert load_preset("resnet34-it").width == 7000


def test_config_errors_and_yaml_roundtrip(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_preset("nope")
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['widht'\]"):
        load_preset("resnet34-it", widht=3)
    with pytest.raises(ConfigError, match="dropout"):
        FinetuneConfig(dropout=1.2)
    with pytest.raises(ConfigError, match="optimizer"):
        FinetuneConfig(optimizer="lbfgs")
    cfg = load_preset("vgg11bn-5blocks-it", epochs=3)
    p = tmp_path / "p.yaml"
    p.write_text(cfg.to_yaml())
    back = load_preset(str(p))
    assert back.to_dict() == cfg.to_dict()
