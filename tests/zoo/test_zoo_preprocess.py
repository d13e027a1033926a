"""Preprocessing: hand computations on tiny images, config sources, pickling."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from PIL import Image

from cortexzoo.zoo import PreprocessConfig, PreprocessError
from cortexzoo.zoo.preprocess import timm_config, torchvision_config

MEAN = (0.1, 0.2, 0.3)
STD = (0.5, 0.25, 2.0)


def test_center_crop_and_normalize_by_hand():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)  # H=4 (short side), W=6
    cfg = PreprocessConfig(input_size=2, resize_size=4, mean=MEAN, std=STD)
    out = cfg.apply(img[None])
    assert out.shape == (1, 3, 2, 2) and out.dtype == np.float32
    # no resize (short side already 4); crop rows 1:3, cols 2:4
    crop = img[1:3, 2:4, :].astype(np.float64) / 255.0
    expected = np.stack([(crop[..., c] - MEAN[c]) / STD[c] for c in range(3)])
    np.testing.assert_allclose(out[0], expected, atol=1e-6)


def _pil_bilinear_weights_1d(n_in: int, n_out: int) -> np.ndarray:
    """PIL's antialiased bilinear (triangle) resampling matrix, computed by hand."""
    scale = n_in / n_out
    support = 1.0 * scale
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = (i + 0.5) * scale
        for j in range(n_in):
            d = abs((j + 0.5) - center) / scale
            if (j + 0.5) > center - support and (j + 0.5) < center + support:
                w[i, j] = max(0.0, 1.0 - d)
        w[i] /= w[i].sum()
    return w


def test_downsample_by_two_matches_hand_filter():
    # 8x8 float image varying along width only; resize to 4 then keep 4.
    col = np.linspace(0.0, 0.7, 8)
    img = np.tile(col, (8, 1))[..., None].repeat(3, axis=-1)  # [8, 8, 3] in [0, 1]
    cfg = PreprocessConfig(4, 4, (0.0,) * 3, (1.0,) * 3, "bilinear")
    out = cfg.apply(img[None].astype(np.float32))[0]
    w = _pil_bilinear_weights_1d(8, 4)
    # interior weights are the textbook 1/8, 3/8, 3/8, 1/8
    np.testing.assert_allclose(w[1, 1:5], [1 / 8, 3 / 8, 3 / 8, 1 / 8])
    expected_row = w @ col
    for c in range(3):
        for r in range(4):
            np.testing.assert_allclose(out[c, r], expected_row, atol=1e-6)


def test_grayscale_repeated_and_pil_equals_array():
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, size=(2, 10, 12), dtype=np.uint8)
    cfg = PreprocessConfig(6, 8, MEAN, STD, "bicubic")
    a = cfg.apply(gray)
    b = cfg.apply(np.repeat(gray[..., None], 3, axis=-1))
    np.testing.assert_array_equal(a, b)
    c = cfg.apply([Image.fromarray(g) for g in gray])  # mode "L" PIL images
    np.testing.assert_allclose(a, c, atol=1e-6)
    assert a.shape == (2, 3, 6, 6)


def test_mixed_sizes_in_a_list_keep_order():
    cfg = PreprocessConfig(4, 4, (0,) * 3, (1,) * 3)
    imgs = [np.full((4, 4, 3), 10, np.uint8), np.full((8, 6, 3), 200, np.uint8),
            np.full((4, 4, 3), 30, np.uint8)]
    out = cfg.apply(imgs)
    np.testing.assert_allclose(out[:, 0, 0, 0], np.array([10, 200, 30]) / 255.0, atol=1e-6)


def test_matches_torchvision_pipeline_on_a_real_photo():
    import skimage.data
    import torch
    from torchvision import transforms as T

    img = Image.fromarray(skimage.data.coffee())  # 400 x 600
    cfg = PreprocessConfig(224, 256, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")
    ref = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                     T.Normalize(cfg.mean, cfg.std)])(img)
    ours = torch.from_numpy(cfg.apply([img])[0])
    assert ours.shape == ref.shape
    # PIL rounds the resized image to uint8: differences are within one grey level.
    assert float((ours - ref).abs().max()) < 2.5 / 255 / 0.224


def test_bad_inputs_raise():
    cfg = PreprocessConfig(4, 4)
    with pytest.raises(PreprocessError, match="float images"):
        cfg.apply(np.full((1, 4, 4, 3), 2.0, np.float32))
    with pytest.raises(PreprocessError, match="shape"):
        cfg.apply(np.zeros((4, 4), np.uint8))
    with pytest.raises(PreprocessError):
        cfg.apply(np.zeros((1, 4, 4, 3), np.int64))
    with pytest.raises(ValueError, match="resize_size"):
        PreprocessConfig(8, 4)
    with pytest.raises(ValueError, match="interpolation"):
        PreprocessConfig(4, 4, interpolation="lanczos")


def test_pickle_roundtrip():
    cfg = PreprocessConfig(224, 256, MEAN, STD, "bicubic")
    back = pickle.loads(pickle.dumps(cfg))
    assert back == cfg
    img = np.random.default_rng(2).integers(0, 256, (1, 300, 280, 3), dtype=np.uint8)
    np.testing.assert_array_equal(back.apply(img), cfg.apply(img))


def test_config_sources():
    tv = torchvision_config("resnet18")
    assert (tv.input_size, tv.resize_size, tv.interpolation) == (224, 256, "bilinear")
    np.testing.assert_allclose(tv.mean, (0.485, 0.456, 0.406))
    inc = torchvision_config("inception_v3")
    assert (inc.input_size, inc.resize_size) == (299, 342)

    from timm.data import resolve_data_config
    import timm

    for name in ("vit_base_patch16_224", "tf_efficientnet_b3", "resnet18"):
        ref = resolve_data_config({}, pretrained_cfg=timm.models.get_pretrained_cfg(name).to_dict())
        cfg = timm_config(name)
        assert cfg.input_size == ref["input_size"][-1]
        assert cfg.resize_size == math.floor(ref["input_size"][-1] / ref["crop_pct"])
        np.testing.assert_allclose(cfg.mean, ref["mean"])
        np.testing.assert_allclose(cfg.std, ref["std"])
    vit = timm_config("vit_base_patch16_224")
    assert vit.mean == (0.5, 0.5, 0.5) and vit.interpolation == "bicubic"
