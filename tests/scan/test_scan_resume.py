"""A real scan process killed midway, then started again on the same results URI."""
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from cortexzoo.scan.planted import make_planted_dataset
from cortexzoo.store import ResultStore

PIX = "baseline:pixels@none"  # the canonical spec of `pixels`


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("resume") / "ds")
    make_planted_dataset(uri, model="pixels", n_stimuli=120, image_size=64, n_neuroids=12,
                         n_reps=4, seed=2)
    return uri


def _scan_cmd(data, out):
    # pixels first (one fast layer), then a model slow enough to be killed mid-extraction
    return [sys.executable, "-m", "cortexzoo.cli", "scan", "--engine", "local", "--data", data,
            "--models", "pixels,torchvision:resnet18@random", "--out", out, "--quiet",
            "--input-size", "160", "--k", "512"]


def test_killed_scan_resumes_without_loss_or_duplicates(dataset, tmp_path):
    out = str(tmp_path / "results")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(_scan_cmd(dataset, out), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    store = ResultStore(out)
    deadline = time.time() + 120
    try:
        # the inter-animal ceiling is the scan's first unit; wait for a model's
        while time.time() < deadline and len(store.completed_units()) < 2:
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.05)
        assert store.completed_units(), "no unit was written in time"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = store.read_scores()
    before = before[before.model != "inter_animal"]
    assert set(before.model) == {PIX}, "the kill came too late to test a resume"
    written_at = before.set_index(["layer", "metric", "split"])["created_at"]

    done = subprocess.run(_scan_cmd(dataset, out), env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    after = store.read_scores()
    key = ["model", "layer", "region", "method", "metric", "split"]
    assert not after.duplicated(key).any()
    from cortexzoo.zoo import load_model

    assert set(after[~after.model.isin([PIX, "inter_animal"])].layer) == set(
        load_model("torchvision:resnet18@random").layers)
    # The units written before the kill were kept, not redone.
    kept = after[after.model == PIX].set_index(["layer", "metric", "split"])["created_at"]
    pd.testing.assert_series_equal(kept.sort_index(), written_at.sort_index())
