"""Cowley et al. V4 session 210325: conversion, pairing and reliability against the raw files."""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import COWLEY_DIR
from cortexzoo.data import DatasetError, load_dataset
from cortexzoo.data.cowley import convert_cowley_v4

RAW = os.path.join(COWLEY_DIR, "raw_210325.npy")
ZIP = os.path.join(COWLEY_DIR, "images_210325.zip")
pytestmark = pytest.mark.skipif(not (os.path.exists(RAW) and os.path.exists(ZIP)),
                                reason=f"Cowley V4 data not found in {COWLEY_DIR}")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = convert_cowley_v4(COWLEY_DIR, str(tmp_path_factory.mktemp("cowley") / "cowley_v4"))
    return load_dataset(out)


@pytest.fixture(scope="module")
def raw():
    return np.load(RAW)


def test_tables_and_meta(converted):
    ds = converted
    assert ds.responses.shape == (640, 10, 50) and ds.responses.dtype == np.float32
    assert ds.neuroids["neuroid_id"].tolist() == [f"cowley210325_n{j:02d}" for j in range(50)]
    assert set(ds.neuroids["subject"]) == {"monkey_210325"} and ds.regions == ["V4"]
    assert ds.stimuli["stimulus_id"].iloc[0] == "image0001"
    assert ds.stimuli["stimulus_id"].iloc[-1] == "image0640"
    assert ds.meta["license"] == "GPL-3.0" and "Cowley" in ds.meta["citation"]
    assert ds.meta["response_unit"] == "spike count per 100 ms"
    assert ds.stimuli["n_repeats"].between(6, 10).all()


def test_pairing_with_raw_arrays(converted, raw):
    ds = converted
    assert raw.shape == (50, 640, 10)
    # response [stimulus i, rep k, neuron j] == raw[j, i, k], NaN slots included
    np.testing.assert_array_equal(ds.responses, raw.transpose(1, 2, 0).astype(np.float32))
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(ZIP) as z:
        for i in [0, 639, *rng.integers(0, 640, size=5)]:
            name = f"image{i + 1:04d}.jpg"  # image i+1 pairs with response index i
            data = z.read(name)
            assert ds.read_image_bytes(i) == data  # copied unchanged
            np.testing.assert_array_equal(np.asarray(ds.read_image(i)),
                                          np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
            np.testing.assert_array_equal(ds.responses[i], raw[:, i, :].T)
            assert int((~np.isnan(raw[0, i])).sum()) == ds.stimuli["n_repeats"].iloc[i]
    assert np.asarray(ds.read_image(0)).shape == (112, 112, 3)
    np.testing.assert_allclose(ds.mean_responses(), np.nanmean(raw, axis=2).T)


def test_split_half_reliability_matches_readme(converted):
    r = converted.responses.astype(np.float64)
    odd = np.nanmean(r[:, 0::2], axis=1)  # repetition slots 1, 3, 5, ... (1-based)
    even = np.nanmean(r[:, 1::2], axis=1)
    rel = []
    for j in range(r.shape[2]):
        a, b = odd[:, j] - odd[:, j].mean(), even[:, j] - even[:, j].mean()
        c = (a @ b) / np.sqrt((a @ a) * (b @ b))
        rel.append(2 * c / (1 + c))
    assert abs(np.median(rel) - 0.77) < 0.03, np.median(rel)


def test_refuses_missing_source(tmp_path):
    with pytest.raises(DatasetError, match="raw_"):
        convert_cowley_v4(str(tmp_path), str(tmp_path / "out"))
