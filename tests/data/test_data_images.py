"""Image decoding and batched reading."""
from __future__ import annotations

import io

import fsspec
import numpy as np
import pytest
from PIL import Image

from cortexzoo.data import DatasetError, ImageDecodeError, decode_image, encode_image, read_images


def png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG") if mode else \
        Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(12, 9, 3), dtype=np.uint8)


def test_decode_modes():
    img = decode_image(png(RGB), "a.png")
    assert img.mode == "RGB" and img.size == (9, 12)
    np.testing.assert_array_equal(np.asarray(img), RGB)
    gray = RGB[:, :, 0]
    out = np.asarray(decode_image(png(gray), "g.png"))
    assert out.shape == (12, 9, 3)
    for c in range(3):  # grayscale repeated to 3 channels
        np.testing.assert_array_equal(out[:, :, c], gray)
    rgba = np.concatenate([RGB, np.full((12, 9, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(np.asarray(decode_image(png(rgba), "a.png")), RGB)
    # 16-bit grayscale is rescaled by its maximum, not clipped at 255
    g16 = (np.arange(12 * 9, dtype=np.uint16).reshape(12, 9) * 600)
    out16 = np.asarray(decode_image(png(g16), "g16.png"))[:, :, 0]
    expected = np.clip(g16 / g16.max() * 255 + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out16, expected)
    # JPEG is lossy but close
    err = np.abs(np.asarray(decode_image(jpeg(RGB * 0 + 128), "j.jpg")).astype(int) - 128)
    assert err.max() <= 2


@pytest.mark.parametrize("data, what", [
    (b"", "empty"),
    (b"this is not an image at all", "cannot be decoded"),
    (None, "cannot be decoded"),  # truncated JPEG, built below
])
def test_decode_errors_name_the_file(data, what):
    if data is None:
        data = jpeg(RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8))[:400]
    with pytest.raises(ImageDecodeError, match=f"'stimuli/bad_17.jpg'.*|.*{what}") as err:
        decode_image(data, "stimuli/bad_17.jpg")
    assert "stimuli/bad_17.jpg" in str(err.value) and what in str(err.value)
    assert isinstance(err.value, ValueError)


def test_encode_image_arrays_and_floats():
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_image(RGB)))), RGB)
    f = np.linspace(0, 1, 12 * 9, dtype=np.float32).reshape(12, 9)
    out = np.asarray(Image.open(io.BytesIO(encode_image(f))))
    np.testing.assert_array_equal(out, np.clip(f * 255 + 0.5, 0, 255).astype(np.uint8))
    with pytest.raises(DatasetError, match=r"\(4, 4, 5\)"):
        encode_image(np.zeros((4, 4, 5), np.uint8))


def test_read_images_local_and_s3_in_order(tmp_path, s3_bucket):
    blobs = [png(RNG.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)) for _ in range(5)]
    uris = []
    for i, b in enumerate(blobs):
        if i % 2:
            u = f"{s3_bucket}/imgs/{i}[x].png"  # glob characters must not be expanded
            fsspec.filesystem("s3").pipe_file(u, b)
        else:
            u = str(tmp_path / f"{i}.png")
            with open(u, "wb") as f:
                f.write(b)
        uris.append(u)
    order = [3, 0, 4, 1, 2, 3]
    assert read_images([uris[i] for i in order]) == [blobs[i] for i in order]
    with pytest.raises(DatasetError, match=r"2 image file\(s\) could not be read: .*missing_a.png.*"
                                           r"missing_b.png"):
        read_images([uris[0], str(tmp_path / "missing_a.png"), f"{s3_bucket}/missing_b.png"])
