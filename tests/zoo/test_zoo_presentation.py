"""Stimulus presentation: whole or cropped, normalized as the loaded weights were trained.

Each offline trained model classifies real photos (scikit-image's) correctly with the
preprocessing it records; a recording planted with a known preprocessing is recovered
better with that preprocessing than with any other."""
import dataclasses
import os

import numpy as np
import pytest
import torch
from PIL import Image

from cortexzoo.data.images import present, resize_center_crop, resize_whole
from cortexzoo.zoo import load_model
from cortexzoo.zoo.preprocess import IMAGENET_MEAN, IMAGENET_STD
from cortexzoo.zoo.weights import OFFLINE_WEIGHTS, offline_weights, parse_spec

skimage_data = pytest.importorskip("skimage.data")
PHOTOS = os.path.dirname(skimage_data.__file__)
#: ImageNet classes a correct top-1 may be, per photo
EXPECTED = {"chelsea.png": set(range(281, 286)),   # tabby, tiger cat, Persian, Siamese, Egyptian
            "coffee.png": {967, 968},              # espresso, cup
            "rocket.jpg": {657, 744, 812}}         # missile, projectile, space shuttle

OFFLINE = [f"{s}:{n}@trained" for (s, n) in OFFLINE_WEIGHTS
           if offline_weights(parse_spec(f"{s}:{n}@trained")) is not None]


@pytest.mark.parametrize("spec", OFFLINE)
def test_offline_weights_classify_real_photos_with_their_recorded_preprocessing(spec):
    model = load_model(spec)  # the weights' own evaluation transform, as recorded
    pre = model.preprocess
    for name, classes in EXPECTED.items():
        img = Image.open(os.path.join(PHOTOS, name)).convert("RGB")
        x = pre.normalize_uint8(present(img, pre.geometry())[None])
        with torch.no_grad():
            top1 = int(model.module(x).argmax())
        assert top1 in classes, (name, top1)


def test_efficientnet_lite0_offline_preprocessing_is_the_tf_checkpoints():
    # the package's weights are TensorFlow's Lite0 checkpoint: inputs (x - 127) / 128, a
    # bicubic resize; recorded with the weights, not looked up by the architecture's name
    if not OFFLINE:
        pytest.skip("offline weights package not installed")
    pre = load_model("timm:tf_efficientnet_lite0@trained").preprocess
    assert (pre.input_size, pre.resize_size, pre.interpolation) == (224, 253, "bicubic")
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5, 0.5, 0.5)
    assert pre.mode == "crop"  # a model's own config; scans present stimuli whole by default


def test_whole_keeps_the_border_and_crop_cuts_it():
    img = np.zeros((100, 160, 3), np.uint8)
    img[:, :20] = 255  # a bright left border
    whole = resize_whole(Image.fromarray(img), 64)
    crop = resize_center_crop(Image.fromarray(img), 73, 64)
    assert whole.shape == crop.shape == (64, 64, 3)
    assert whole[:, :4].mean() > 200 and crop[:, :4].mean() < 10


@pytest.mark.slow
def test_planted_preprocessing_is_recovered_best(tmp_path):
    """Neuroids planted on a trained network's block with the whole image and the
    weights' own normalization: that presentation predicts them better than a crop, than
    another normalization and interpolation (ImageNet's, bilinear), and than both."""
    if not OFFLINE:
        pytest.skip("offline weights package not installed")
    from cortexzoo.data import load_dataset
    from cortexzoo.features.pipeline import extract_local
    from cortexzoo.features.reduce import ReductionConfig
    from cortexzoo.mapping import GCVSolver
    from cortexzoo.scan.planted import make_planted_dataset
    spec, layer = "timm:tf_efficientnet_lite0@trained", "blocks.3.2"
    uri = make_planted_dataset(str(tmp_path / "ds"), model=spec, layer=layer, n_stimuli=150,
                               image_size=96, n_neuroids=12, n_reps=8, seed=0, input_size=96,
                               stimulus="whole", mean_rate=20.0)
    ds = load_dataset(uri)
    Y = ds.mean_responses()
    base = load_model(spec, input_size=96).preprocess  # the weights' own, at 96 px
    imagenet = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear")
    variants = {
        "truth": dataclasses.replace(base, mode="whole"),
        "crop": dataclasses.replace(base, mode="crop"),
        "imagenet": dataclasses.replace(base, mode="whole", **imagenet),
        "crop+imagenet": dataclasses.replace(base, mode="crop", **imagenet),
    }
    med = {}
    for name, pre in variants.items():
        model = load_model(spec, input_size=96)
        model.preprocess = pre
        X = extract_local(ds, model, layers=[layer], progress=False, batch_size=50,
                          reduction=ReductionConfig(n_components=1024, seed=11)).features[layer]
        med[name] = float(np.median(GCVSolver(X).loo(Y, return_predictions=False).pearson))
    for name in variants:
        if name != "truth":
            assert med["truth"] > med[name] + 0.01, med
