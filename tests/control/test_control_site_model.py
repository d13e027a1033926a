"""A saved encoder as a differentiable path from pixels: the scan's numbers, its projection
matrix, gradients through readout, projection and backbone, and clear errors."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cortexzoo.control.seeds import read_seeds
from cortexzoo.control.site_model import SiteModel, check_fits
from cortexzoo.control.synth import from_uint8
from cortexzoo.data import load_dataset
from cortexzoo.data.errors import DatasetError
from cortexzoo.features.differentiable import normalize, reduce
from cortexzoo.features.reduce import LayerReducer, ReductionConfig, layer_seed, srp_matrix
from cortexzoo.scan.encoders import EncoderError, load_encoder
from cortexzoo.scan.model import cached_features
from cortexzoo.store import ResultStore

from control_planted import MODEL_A, random_encoder


@pytest.fixture(scope="module")
def site_model(planted_scan):
    enc = load_encoder(planted_scan["a"])
    return SiteModel(enc, enc.sites[:3], reg_layers=["stages.0.0"])


def test_synthesis_uses_the_scans_projection_and_gives_its_features(planted_scan, site_model):
    cfg, enc = planted_scan["cfg"], site_model.encoder
    ds = load_dataset(planted_scan["data"])
    seeds = read_seeds(planted_scan["data"], enc.meta["preprocessing"], n_seeds=16)
    x = from_uint8(np.stack([s.pixels for s in seeds]))
    with torch.no_grad():
        feats, _ = site_model.features(x)
    cached = cached_features(ResultStore(cfg.out), ds, MODEL_A, enc.layer, cfg)[:16]
    tol = 1e-4 * np.abs(cached).max()
    np.testing.assert_allclose(feats.numpy(), cached, rtol=1e-4, atol=tol)
    # the matrix is the encoder's recipe: srp_matrix(p, k, layer_seed(seed, model key, layer))
    seed = layer_seed(0, enc.meta["model_key"], enc.layer)
    assert seed == enc.meta["reduction"]["layer_seed"]
    m = site_model.reducer._matrix.to_dense()
    ref = srp_matrix(m.shape[1], 256, seed).to_dense()
    assert torch.equal(m, ref)
    # another seed's projection gives other features: the comparison above can fail
    other = LayerReducer(ReductionConfig(n_components=256, seed=1), enc.meta["model_key"], enc.layer)
    with torch.no_grad():
        act = site_model.net(normalize(site_model.pre, x))[enc.layer]
        wrong = reduce(other, act).numpy()
    assert np.abs(wrong - cached).max() > 100 * tol
    # predictions: the encoder's readout of the scan's own features
    np.testing.assert_allclose(site_model.predict(x), enc.predict(cached, site_model.sites),
                               rtol=1e-4, atol=1e-4 * np.abs(enc.predict(cached)).max())


def test_gradients_flow_through_readout_projection_and_backbone(site_model):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    pred, _ = site_model(x)
    pred[:, 0].sum().backward()
    g = x.grad.clone()
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    # autograd's directional derivative agrees with finite differences (through everything)
    d = torch.randn_like(x)
    d /= d.norm()
    h = 1e-2
    with torch.no_grad():
        fd = (site_model(x + h * d)[0][:, 0].sum() - site_model(x - h * d)[0][:, 0].sum()) / (2 * h)
    assert float((g * d).sum()) == pytest.approx(float(fd), rel=0.05, abs=1e-4)
    # the readout's gradient is the encoder's weights; the projection's is its matrix
    feats = torch.randn(1, 256, requires_grad=True)
    (feats @ site_model.coef + site_model.intercept)[0, 1].backward()
    torch.testing.assert_close(feats.grad[0], site_model.coef[:, 1])
    act = torch.randn(1, 128, 4, 4, requires_grad=True)
    v = torch.randn(256)
    (reduce(site_model.reducer, act)[0] @ v).backward()
    M = site_model.reducer._matrix.to_dense()
    torch.testing.assert_close(act.grad.flatten(), M.T @ v, rtol=1e-5, atol=1e-5)


def test_a_site_not_in_the_encoder_is_named(planted_scan):
    enc = load_encoder(planted_scan["a"])
    with pytest.raises(EncoderError, match=r"\['nope'\] not in the encoder"):
        SiteModel(enc, [enc.sites[0], "nope"])


@pytest.mark.parametrize("field,value,match", [
    ("preprocessing", {"mean": [0.5, 0.5, 0.5]}, "other preprocessing.*mean"),
    ("preprocessing", {"interpolation": "bilinear"}, "other preprocessing.*interpolation"),
    ("weights_id", "random#0|timm==0.0.1", "weights/version"),
])
def test_an_encoder_saved_for_another_model_version_or_preprocessing_is_refused(
        planted_scan, tmp_path, field, value, match):
    bad = tmp_path / "enc"
    shutil.copytree(planted_scan["a"], bad)
    meta = json.loads((bad / "encoder.json").read_text())
    meta[field] = {**meta[field], **value} if isinstance(value, dict) else value
    (bad / "encoder.json").write_text(json.dumps(meta))
    enc = load_encoder(str(bad))
    with pytest.raises(EncoderError, match=match):
        check_fits(enc)
    with pytest.raises(EncoderError, match=match):
        SiteModel(enc, enc.sites[:1])


def test_seed_images_that_cannot_be_read_are_named(planted_scan, tmp_path):
    pre = load_encoder(planted_scan["a"]).meta["preprocessing"]
    good = tmp_path / "ok.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(good)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DatasetError, match=r"2 seed image\(s\).*broken.*missing"):
        read_seeds(f"{good},{tmp_path / 'broken.png'},{tmp_path / 'missing.jpg'}", pre)
    seeds = read_seeds(str(good), pre)
    assert seeds[0].seed_id == "ok" and seeds[0].pixels.shape == (64, 64, 3)
    with pytest.raises(DatasetError, match="no seed images"):
        read_seeds("", pre)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        read_seeds(str(folder), pre)
    with pytest.raises(DatasetError, match=r"seed id\(s\) \['x'\]"):
        read_seeds(planted_scan["data"], pre, seed_ids=["x"])


def test_crop_encoder_canvas_is_what_the_scan_presents_of_it(tmp_path):
    """A `crop` encoder's canvas is the model's resize size; the model sees its centre
    crop, pixel for pixel what the scan's decode path makes of the saved image."""
    from cortexzoo.data.images import present
    from cortexzoo.features.extract import FeatureExtractor

    uri = random_encoder(str(tmp_path), MODEL_A, "stages.1.0", ["s0", "s1"], stimulus="crop")
    enc = load_encoder(uri)
    m = SiteModel(enc, ["s0", "s1"])
    assert m.pre.mode == "crop" and m.canvas_size == m.pre.resize_size > m.pre.input_size
    canvas = np.random.default_rng(0).integers(0, 256, (m.canvas_size, m.canvas_size, 3), dtype=np.uint8)
    view = present(Image.fromarray(canvas), m.pre.geometry())           # the scan's presentation
    np.testing.assert_array_equal((m.present(from_uint8(canvas[None]))[0] * 255).round()
                                  .permute(1, 2, 0).byte().numpy(), view)
    ref = FeatureExtractor(m.model, [enc.layer], enc.reduction)(m.pre.normalize_uint8(view[None]))
    with torch.no_grad():
        got, _ = m.features(from_uint8(canvas[None]))
    np.testing.assert_allclose(got.numpy(), ref[enc.layer], rtol=1e-4,
                               atol=1e-4 * np.abs(ref[enc.layer]).max())
