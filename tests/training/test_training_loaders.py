"""Seeded splits (disjoint, deterministic, order-independent) and streamed image tensors."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import torch

from cortexzoo.data import load_dataset, write_dataset
from cortexzoo.training.loaders import (Normalizer, SplitError, Splits, clear_memory_cache,
                                        load_image_tensor, make_splits)


def _ids(n):
    return [f"stim_{i:04d}" for i in range(n)]


@pytest.mark.parametrize("n, vf, tf", [(10, 0.1, 0.1), (101, 0.15, 0.2), (1000, 0.1, 0.1)])
def test_splits_partition_the_stimuli(n, vf, tf):
    ids = _ids(n)
    sp = make_splits(ids, vf, tf, seed=3)
    tr, va, te = set(sp.train), set(sp.val), set(sp.test)
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert tr | va | te == set(ids)
    assert len(te) == max(1, round(tf * n)) and len(va) == max(1, round(vf * n))


def test_splits_are_seeded_and_independent_of_row_order():
    ids = _ids(200)
    a = make_splits(ids, 0.1, 0.1, seed=0)
    b = make_splits(list(reversed(ids)), 0.1, 0.1, seed=0)
    assert a.to_dict() == b.to_dict()
    c = make_splits(ids, 0.1, 0.1, seed=1)
    assert set(c.test) != set(a.test)
    # independent re-derivation of the rule: the 20 smallest sha256("0:<id>") are test
    rank = sorted(ids, key=lambda s: hashlib.sha256(f"0:{s}".encode()).digest())
    assert sorted(rank[:20]) == a.test and sorted(rank[20:40]) == a.val
    # a stored split round-trips and maps to row positions of a shuffled table
    back = Splits.from_dict(a.to_dict())
    perm = np.random.default_rng(0).permutation(ids).tolist()
    idx = back.indices(perm)
    assert [perm[i] for i in idx["test"]] == sorted(a.test, key=perm.index)


def test_split_errors():
    with pytest.raises(SplitError, match="duplicate stimulus ids: \\['a'\\]"):
        make_splits(["a", "b", "a", "c"], 0.2, 0.2)
    with pytest.raises(SplitError, match="too few"):
        make_splits(["a", "b"], 0.3, 0.3)
    with pytest.raises(SplitError, match="overlap: \\['b \\(train and test\\)'\\]"):
        Splits(train=["a", "b"], val=["c"], test=["b"])
    sp = make_splits(_ids(20), 0.1, 0.1)
    with pytest.raises(SplitError, match="absent from the dataset"):
        sp.indices(_ids(10))


def _write(uri, n=12, size=20):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(n, size, size + 4, 3), dtype=np.uint8)  # not square
    ids = _ids(n)
    write_dataset(uri, meta={"name": "tiny"},
                  stimuli=pd.DataFrame({"stimulus_id": ids, "image": [f"{s}.png" for s in ids]}),
                  neuroids=pd.DataFrame({"neuroid_id": ["n0", "n1"], "subject": "s",
                                         "region": "IT"}),
                  responses=rng.normal(size=(n, 2, 2)).astype(np.float32),
                  images={f"{s}.png": im for s, im in zip(ids, imgs)}, overwrite=True)
    return imgs


@pytest.mark.parametrize("where", ["local", "s3", "gs"])
def test_image_tensor_streams_and_matches_preprocess(where, tmp_path, monkeypatch, request):
    from cortexzoo.zoo import PreprocessConfig

    monkeypatch.setenv("CORTEXZOO_TRAIN_CACHE", str(tmp_path / "cache"))
    uri = str(tmp_path / "ds") if where == "local" else \
        request.getfixturevalue({"s3": "s3_bucket", "gs": "gcs_bucket"}[where]) + "/ds"
    imgs = _write(uri)
    ds = load_dataset(uri)
    pre = PreprocessConfig(16, 18, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), "bilinear")
    idx = np.array([5, 0, 7])
    clear_memory_cache()
    x = load_image_tensor(ds, idx, pre, chunk=2)  # three chunks of at most 2
    assert x.dtype == np.uint8 and x.shape == (3, 3, 16, 16)
    # independently: the model's own preprocessing of the same images
    ref = pre.apply([imgs[i] for i in idx])
    got = Normalizer(pre.mean, pre.std)(torch.from_numpy(x)).numpy()
    # uint8 storage costs at most half a grey level before normalization
    assert np.max(np.abs(got - ref) * np.array(pre.std)[None, :, None, None]) <= 0.5 / 255 + 1e-6
    # the disk cache serves a new process (simulated by clearing the memory cache)
    clear_memory_cache()
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    x2 = load_image_tensor(ds, idx, pre)
    np.testing.assert_array_equal(x, x2)
