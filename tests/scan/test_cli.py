"""The `cortexzoo` command line: listing, clear errors, config files."""
import pytest
import yaml

from cortexzoo.cli import main
from cortexzoo.cli.scan import expand_models
from cortexzoo.scan import ScanConfig


def test_zoo_list_pattern(capsys):
    assert main(["zoo", "list", "torchvision:resnet18@*"]) == 0
    out = capsys.readouterr().out
    assert "torchvision:resnet18@random" in out and "torchvision:resnet18@trained" in out
    # resnet18: conv1 bn1 relu maxpool + 8 blocks + avgpool fc
    line = [l for l in out.splitlines() if l.startswith("torchvision:resnet18@random")][0]
    assert line.split()[-1] == "14"


def test_zoo_curated_has_100():
    from cortexzoo.zoo import list_models

    entries = list_models(curated=True, count=False)
    assert len(entries) >= 100
    assert {"torchvision", "timm"} <= {e.source for e in entries}


def test_bad_spec_is_a_clear_error_before_any_work(tmp_path, capsys):
    rc = main(["scan", "--engine", "local", "--models", "timm:resnet18@random,timm:not_a_net@random",
               "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "not_a_net" in err
    assert not (tmp_path / "r" / "scores").exists()


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    rc = main(["scan", "--engine", "local", "--data", str(tmp_path / "nope"), "--models", "pixels",
               "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 2
    assert "nope" in capsys.readouterr().err


def test_expand_models_from_list_file_and_pattern(tmp_path):
    f = tmp_path / "models.txt"
    f.write_text("# my zoo\ntimm:resnet18@random#3\npixels  # baseline\n\n")
    got = expand_models([str(f), "torchvision:alexnet@random", "timm:resnet18@random"])
    assert got == ["timm:resnet18@random#3", "baseline:pixels@none", "torchvision:alexnet@random",
                   "timm:resnet18@random"]
    pat = expand_models(["torchvision:vgg1[16]@random"])
    assert pat == ["torchvision:vgg11@random", "torchvision:vgg16@random"]


def test_config_file_rejects_unknown_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"data": "x", "modles": ["pixels"]}))
    with pytest.raises(ValueError, match="modles"):
        ScanConfig.from_yaml(str(p))
