"""Model spec strings: parsing, canonical form, keys and errors."""
from __future__ import annotations

import dataclasses

import pytest

from cortexzoo.zoo import ModelSpec, SpecError, parse_spec


@pytest.mark.parametrize(
    "text, source, name, weights, seed",
    [
        ("timm:resnet18@random", "timm", "resnet18", "random", 0),
        ("timm:resnet18@random#7", "timm", "resnet18", "random", 7),
        ("torchvision:alexnet@trained", "torchvision", "alexnet", "trained", 0),
        ("TorchVision:alexnet", "torchvision", "alexnet", "trained", 0),
        ("timm:vit_base_patch16_224.augreg_in21k@trained", "timm",
         "vit_base_patch16_224.augreg_in21k", "trained", 0),
        ("pixels", "baseline", "pixels", "none", 0),
        ("baseline:pixels16@none", "baseline", "pixels16", "none", 0),
    ],
)
def test_parse_fields(text, source, name, weights, seed):
    s = parse_spec(text)
    assert (s.source, s.name, s.weights, s.seed) == (source, name, weights, seed)
    # canonical round trip: str -> parse -> same spec, and str is a fixed point
    assert parse_spec(str(s)) == s
    assert str(parse_spec(str(s))) == str(s)


def test_canonical_strings():
    assert str(parse_spec("pixels")) == "baseline:pixels@none"
    assert str(parse_spec("timm:resnet18@random#0")) == "timm:resnet18@random"
    assert str(parse_spec("timm:resnet18@random#3")) == "timm:resnet18@random#3"
    assert str(parse_spec("torchvision:alexnet")) == "torchvision:alexnet@trained"


def test_key_is_filesystem_safe():
    assert parse_spec("timm:resnet18@random").key == "timm-resnet18-random0"
    assert parse_spec("timm:resnet18@random#12").key == "timm-resnet18-random12"
    assert parse_spec("torchvision:alexnet@trained").key == "torchvision-alexnet-trained"
    k = parse_spec("torchvision:resnet18@/some dir/w eights.pth").key
    assert "/" not in k and " " not in k and k.startswith("torchvision-resnet18-file-")
    # different paths with the same file name get different keys
    k2 = parse_spec("torchvision:resnet18@/other/w eights.pth").key
    assert k != k2


def test_weights_file_and_is_trained():
    s = parse_spec("torchvision:resnet18@/path/to/w.pth")
    assert s.weights == "file" and s.weights_file == "/path/to/w.pth" and s.is_trained
    assert str(s) == "torchvision:resnet18@/path/to/w.pth"
    assert parse_spec("timm:resnet18@w.safetensors").weights_file == "w.safetensors"
    assert parse_spec("timm:resnet18@trained").is_trained
    assert not parse_spec("timm:resnet18@random").is_trained
    assert not parse_spec("pixels").is_trained


def test_frozen_and_hashable():
    s = parse_spec("timm:resnet18@random")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 3  # type: ignore[misc]
    assert len({s, parse_spec("timm:resnet18@random#0")}) == 1
    assert ModelSpec("timm", "resnet18", "random", 0) == s


def test_unknown_source_names_spec():
    with pytest.raises(SpecError, match="tim:resnet18@random") as ei:
        parse_spec("tim:resnet18@random")
    assert "timm" in str(ei.value)
    assert isinstance(ei.value, ValueError)


def test_unknown_architecture_suggests_close_names():
    with pytest.raises(SpecError) as ei:
        parse_spec("torchvision:resnt18@trained")
    msg = str(ei.value)
    assert "torchvision:resnt18@trained" in msg and "resnet18" in msg
    with pytest.raises(SpecError, match="vit_base_patch16_224"):
        parse_spec("timm:vit_base_patch16_22@random")


@pytest.mark.parametrize(
    "bad",
    ["timm:resnet18@pretrained", "timm:resnet18@random#x", "timm:resnet18@", "",
     "resnet18@random", "timm:resnet18@none", "baseline:pixels@trained", "baseline:nosuch"],
)
def test_bad_specs_raise_value_error(bad):
    with pytest.raises(ValueError):
        parse_spec(bad)


def test_bad_weights_message_names_spec():
    with pytest.raises(SpecError, match=r"timm:resnet18@pretrained"):
        parse_spec("timm:resnet18@pretrained")


def test_read_spec_list(tmp_path):
    from cortexzoo.zoo import read_spec_list

    p = tmp_path / "zoo.txt"
    p.write_text("# my zoo\ntimm:resnet18@random#3   # seeded\n\ntorchvision:alexnet\npixels\n")
    specs = read_spec_list(str(p))
    assert [str(s) for s in specs] == [
        "timm:resnet18@random#3", "torchvision:alexnet@trained", "baseline:pixels@none"]
    p.write_text("timm:resnet18@random\ntimm:resnet81@random\n")
    with pytest.raises(SpecError, match=r"zoo.txt:2:.*resnet81"):
        read_spec_list(str(p))
