"""Sessions format, validation, clip loader and the synthetic generator."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cortexzoo.data.sessions import (
    InterleavedClips,
    SessionFormatError,
    load_sessions,
    make_segments,
    write_session,
    write_sessions_index,
)
from cortexzoo.data.sessions_synth import make_synthetic_sessions


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("sessions"))
    idx = make_synthetic_sessions(root, n_animals=3, n_neurons=(4, 5, 6), n_frames=600,
                                  height=12, width=16, seed=3)
    return root, idx


def test_segments_cover_session_and_split_80_20():
    doc = make_segments(1000, n_segments=10, train_fraction=0.8, test_segments=(4, 9))
    ivs = doc["intervals"]
    covered = np.zeros(1000, int)
    for iv in ivs:
        covered[iv["start"]:iv["stop"]] += 1
    assert (covered == 1).all()
    tr = [iv for iv in ivs if iv["split"] == "train"]
    va = [iv for iv in ivs if iv["split"] == "val"]
    te = [iv for iv in ivs if iv["split"] == "test"]
    assert [iv["segment"] for iv in te] == [4, 9] and len(tr) == len(va) == 8
    for a, b in zip(tr, va):  # first 80 % of the segment trains, the rest validates
        assert (a["start"], a["stop"], b["start"], b["stop"]) == (
            100 * a["segment"], 100 * a["segment"] + 80, 100 * a["segment"] + 80,
            100 * a["segment"] + 100)


def test_load_roundtrip_and_noise_ceiling(synth):
    root, idx = synth
    coll = load_sessions(root)
    assert coll.animals == ["mouse00", "mouse01", "mouse02"]
    assert coll.n_neurons() == {"mouse00": 4, "mouse01": 5, "mouse02": 6}
    s = coll.sessions[1]
    assert s.frames.dtype == np.uint8 and s.frames.shape == (600, 12, 16)
    assert s.responses.dtype == np.float32 and s.rates is not None
    # responses are Poisson draws of the stored rates: mean matches, variance ~ mean
    assert abs(s.responses.mean() / s.rates.mean() - 1) < 0.1
    # the stored ceiling is the correlation of rate and response on the test targets
    t = s.targets("test", 5)
    ceil = json.load(open(os.path.join(root, s.name, "session.json")))["noise_ceiling"]
    r, y = s.rates[t].astype(float).ravel(), s.responses[t].astype(float).ravel()
    assert ceil["overall_pearson_r"] == pytest.approx(np.corrcoef(r, y)[0, 1], abs=1e-9)
    assert 0.2 < ceil["chunked_pearson_r"] < 1.0


def test_clip_is_previous_frames_and_target_is_next_bin(synth):
    root, _ = synth
    coll = load_sessions(root)
    it = InterleavedClips(coll, "train", 8, shuffle=True, seed=1)
    k, x, y = next(iter(it))
    idx = it.schedule()[0][1]
    ds = it.datasets[k]
    s = ds.sessions[0]
    t = ds.target_bins[idx[0]]
    lo, hi = float(s.frames.min()), float(s.frames.max())
    expect = (s.frames[t - 5:t].astype(np.float32) - lo) / (hi - lo)
    np.testing.assert_allclose(x[0, :, 0].numpy(), expect, rtol=1e-6)
    np.testing.assert_array_equal(y[0].numpy(), s.responses[t])
    assert x.shape == (8, 5, 1, 12, 16) and y.shape == (8, coll.n_neurons()[coll.animals[k]])
    # clips never reach into another split
    train_iv = [iv for iv in s.intervals if iv["split"] == "train"]
    tb = ds.target_bins
    assert all(any(iv["start"] + 5 <= b < iv["stop"] for iv in train_iv) for b in tb)


def test_batches_alternate_animals_and_shards_partition_global_batch(synth):
    root, _ = synth
    coll = load_sessions(root)
    one = InterleavedClips(coll, "train", 8, seed=2)
    one.set_epoch(3)
    ks = [k for k, _ in one.schedule()]
    assert ks[:6] == [0, 1, 2, 0, 1, 2]
    shards = []
    for r in range(2):
        it = InterleavedClips(coll, "train", 8, seed=2, rank=r, world_size=2)
        it.set_epoch(3)
        shards.append(list(it))
    full = list(one)
    assert len(shards[0]) == len(shards[1]) == len(full)
    for (k, x, y), (k0, x0, y0), (k1, x1, y1) in zip(full, *shards):
        assert k == k0 == k1 and len(y0) == len(y1) == 4
        np.testing.assert_array_equal(y.numpy(), np.concatenate([y0.numpy(), y1.numpy()]))
    one.set_epoch(4)
    assert not np.array_equal(one.schedule()[0][1], InterleavedClips(
        coll, "train", 8, seed=2).schedule()[0][1])


def _write(tmp_path, **over):
    rng = np.random.default_rng(0)
    arrays = dict(frames=rng.integers(0, 255, (200, 8, 8), dtype=np.uint8),
                  responses=rng.poisson(1.0, (200, 3)).astype(np.float32))
    arrays.update(over)
    root = str(tmp_path)
    write_session(root, "good", arrays["frames"], arrays["responses"], animal_id="m0")
    write_sessions_index(root, ["good"])
    return root


def test_validation_errors_name_session_and_file(tmp_path):
    root = _write(tmp_path)
    assert load_sessions(root).animals == ["m0"]
    # a shorter responses.npy than frames.npy
    np.save(os.path.join(root, "good", "responses.npy"), np.zeros((150, 3), np.float32))
    with pytest.raises(SessionFormatError, match=r"session 'good'.*responses\.npy.*150"):
        load_sessions(root)
    np.save(os.path.join(root, "good", "responses.npy"), np.zeros((200, 3), np.float32))
    os.remove(os.path.join(root, "good", "frames.npy"))
    with pytest.raises(SessionFormatError, match=r"session 'good'.*missing.*frames\.npy"):
        load_sessions(root)
    with pytest.raises(SessionFormatError, match=r"session 'bad'.*negative"):
        write_session(root, "bad", np.zeros((200, 4, 4), np.uint8),
                      -np.ones((200, 2), np.float32), animal_id="m1")
    with pytest.raises(SessionFormatError, match=r"session 'bad'.*frames\.npy must be uint8"):
        write_session(root, "bad", np.zeros((200, 4, 4), np.float32),
                      np.zeros((200, 2), np.float32), animal_id="m1")
    segs = make_segments(200)
    segs["intervals"][1]["stop"] = 500
    with pytest.raises(SessionFormatError, match=r"session 'bad'.*segments\.json.*500"):
        write_session(root, "bad", np.zeros((200, 4, 4), np.uint8),
                      np.zeros((200, 2), np.float32), animal_id="m1", segments=segs)


def test_index_names_unknown_session(tmp_path):
    root = _write(tmp_path)
    write_sessions_index(root, ["good", "ghost"])
    with pytest.raises(SessionFormatError, match=r"session 'ghost'.*missing"):
        load_sessions(root)


@pytest.mark.parametrize("bucket", ["s3_bucket", "gcs_bucket"])
def test_sessions_on_object_storage(bucket, request):
    root = request.getfixturevalue(bucket) + "/sessions"
    make_synthetic_sessions(root, n_animals=2, n_neurons=3, n_frames=300, height=8, width=8)
    coll = load_sessions(root)
    assert coll.n_neurons() == {"mouse00": 3, "mouse01": 3} and coll.frame_shape == (8, 8)
