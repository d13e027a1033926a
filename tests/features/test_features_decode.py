"""The scan's decode stage: 8-bit resize/crop without torch, normalization in the actor."""
import os
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from torchvision import transforms as T

from cortexzoo.data import write_dataset
from cortexzoo.data.images import decode_crop_batch, encode_image, read_and_crop, resize_center_crop
from cortexzoo.zoo.preprocess import PreprocessConfig

MODES = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
         "nearest": T.InterpolationMode.NEAREST}


@pytest.mark.parametrize("interp", sorted(MODES))
@pytest.mark.parametrize("sizes", [(256, 224), (36, 32), (40, 40)])
def test_crop_equals_torchvision_pil_transforms(interp, sizes):
    resize, crop = sizes
    photos = [skimage.data.chelsea(), skimage.data.camera(), skimage.data.coffee()[:, :57]]
    for img in photos:
        pil = Image.fromarray(img).convert("RGB")
        ref = np.asarray(T.Compose([T.Resize(resize, interpolation=MODES[interp]),
                                    T.CenterCrop(crop)])(pil))
        got = resize_center_crop(pil, resize, crop, interp)
        assert got.dtype == np.uint8 and got.shape == (crop, crop, 3)
        np.testing.assert_array_equal(got, ref)


def test_normalize_uint8_equals_to_tensor_and_normalize():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    pre = PreprocessConfig(32, 36, mean, std)
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    ref = torch.stack([T.Normalize(mean, std)(T.ToTensor()(c)) for c in crops])
    got = pre.normalize_uint8(crops)
    assert got.dtype == torch.float32 and got.shape == (3, 3, 32, 32)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        pre.normalize_uint8(crops.astype(np.float32))


def test_scan_path_close_to_float_path():
    # The float pipeline (torch antialias) differs only by 8-bit rounding for bilinear.
    pil = Image.fromarray(skimage.data.astronaut())
    pre = PreprocessConfig(224, 256)
    a = pre.normalize_uint8(resize_center_crop(pil, 256, 224)[None]).numpy()
    b = pre.apply([pil])
    step = 1.0 / 255.0 / min(pre.std)
    assert np.abs(a - b).max() <= 1.01 * step


def test_decode_worker_never_imports_torch(tmp_path):
    import pandas as pd

    imgs = {f"{k}.png": np.full((20, 30, 3), v, np.uint8) for k, v in (("a", 10), ("b", 200))}
    write_dataset(str(tmp_path / "ds"), meta={"name": "tiny"},
                  stimuli=pd.DataFrame({"stimulus_id": ["a", "b"], "image": list(imgs)}),
                  neuroids=pd.DataFrame({"neuroid_id": ["n0"], "subject": ["s"], "region": ["V4"]}),
                  responses=np.ones((2, 1, 1), np.float32), images=imgs)
    code = (
        "import sys, json\n"
        "from cortexzoo.data import load_dataset\n"
        "from cortexzoo.data.images import decode_crop_batch\n"
        f"ds = load_dataset({str(tmp_path / 'ds')!r})\n"
        "out = decode_crop_batch({'idx': [0, 1], 'uri': [ds.image_uri(0), ds.image_uri(1)]},\n"
        "                        {'input_size': 8, 'resize_size': 10, 'interpolation': 'bilinear'})\n"
        "print(json.dumps([out['pixels'].shape, int(out['pixels'][1].min()), 'torch' in sys.modules]))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert res.returncode == 0, res.stderr
    import json

    shape, v, torch_loaded = json.loads(res.stdout.strip().splitlines()[-1])
    assert shape == [2, 8, 8, 3] and v == 200
    assert torch_loaded is False


def test_read_and_crop_names_broken_image(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(encode_image(np.zeros((12, 12, 3), np.uint8)))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    geo = {"input_size": 8, "resize_size": 8, "interpolation": "bilinear"}
    assert read_and_crop([str(good)], geo).shape == (1, 8, 8, 3)
    with pytest.raises(ValueError, match="bad.png"):
        decode_crop_batch({"idx": [0, 1], "uri": [str(good), str(bad)]}, geo)
    with pytest.raises(ValueError, match="interpolation"):
        resize_center_crop(Image.new("RGB", (9, 9)), 8, 8, "lanczos")
