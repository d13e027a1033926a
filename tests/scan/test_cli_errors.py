"""Bad input as a user types it: exit code 2, one clear line naming what is wrong, no
traceback (unless --debug); nothing silently ignored."""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from cortexzoo.cli import main
from cortexzoo.scan.planted import make_planted_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("cli") / "ds")
    make_planted_dataset(uri, model="pixels", n_stimuli=24, image_size=24, n_neuroids=4,
                         n_reps=2, seed=0)
    return uri


def _run(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err


@pytest.mark.parametrize("argv, says", [
    (["--models", ""], "names no model"),
    (["--models", "timm:no_such_net_*"], "matches no registered model"),
    (["--k", "0"], "n_components"),
    (["--batch-size", "0"], "batch_size"),
    (["--num-actors", "0"], "num_actors"),
])
def test_scan_flags_are_checked_not_ignored(data, tmp_path, capsys, argv, says):
    rc, err = _run(["scan", "--data", data, "--out", str(tmp_path / "r"), "--engine", "local",
                    "--quiet", *argv], capsys)
    assert rc == 2 and says in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "r" / "scores")  # nothing ran


def test_results_and_report_on_a_missing_folder(tmp_path, capsys):
    for verb in ("results", "report"):
        rc, err = _run([verb, str(tmp_path / "nope")], capsys)
        assert rc == 2 and "does not exist" in err and str(tmp_path / "nope") in err


def test_out_naming_a_file(data, tmp_path, capsys):
    f = tmp_path / "a-file"
    f.write_text("not a folder")
    rc, err = _run(["scan", "--data", data, "--models", "pixels", "--out", str(f),
                    "--engine", "local", "--quiet"], capsys)
    assert rc == 2 and "a-file" in err and "Traceback" not in err
    assert f.read_text() == "not a folder"


def test_missing_credentials_and_unreachable_store_are_one_line(monkeypatch, s3_server, capsys):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/creds")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    rc, err = _run(["results", "s3://no-creds-bucket/x"], capsys)
    assert rc == 2 and "credentials" in err.lower() and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CORTEXZOO_S3_RETRY_DEADLINE", "2")
    monkeypatch.setenv("CORTEXZOO_S3_RETRY_BASE", "0.1")
    rc, err = _run(["results", "s3://bucket/x"], capsys)
    assert rc == 2 and "Traceback" not in err and "s3://bucket/x" in err
    assert len(err.strip().splitlines()) <= 2


def test_debug_shows_the_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cortexzoo.cli", "--debug", "results",
                          str(tmp_path / "nope")], capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" in out.stderr
    out = subprocess.run([sys.executable, "-m", "cortexzoo.cli", "results",
                          str(tmp_path / "nope")], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_validate_decodes_every_image_and_names_every_bad_one(data, tmp_path, capsys):
    from cortexzoo.data import load_dataset, write_dataset

    ds = load_dataset(data)
    images = {os.path.basename(p): open(os.path.join(ds.uri, p), "rb").read()
              for p in ds.stimuli["image"]}
    names = sorted(images)
    images[names[1]] = b""                          # zero bytes
    images[names[4]] = images[names[4]][:60]        # truncated
    images[names[7]] = b"this is a text file, not an image"
    uri = write_dataset(str(tmp_path / "bad"), meta=ds.meta, neuroids=ds.neuroids,
                        stimuli=ds.stimuli.assign(image=[os.path.basename(p) for p in ds.stimuli["image"]]),
                        responses=ds.responses, images=images)
    rc, err = _run(["data", "validate", uri, "--quiet"], capsys)
    assert rc == 2
    bad_ids = [n[:-4] for n in (names[1], names[4], names[7])]
    for sid in bad_ids:
        assert f"stimulus {sid}" in err
    assert "3 of 24" in err
    # the scan names the stimulus too, not only the file
    rc, err = _run(["scan", "--data", uri, "--models", "pixels", "--out", str(tmp_path / "r"),
                    "--engine", "local", "--quiet"], capsys)
    assert rc != 0 and f"stimulus {bad_ids[0]}" in err


def test_signed_urls_are_scrubbed_from_manifests(tmp_path):
    from cortexzoo.store import ResultStore

    url = ("https://b.s3.amazonaws.com/d?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
           "AKIAEXAMPLE%2F20261207&X-Amz-Signature=deadbeef&X-Amz-Expires=600")
    store = ResultStore(str(tmp_path / "r"))
    store.write_manifest("run1", {"config": {"data": url}, "note": f"see {url}"})
    text = open(tmp_path / "r" / "manifest" / "run1.json").read()
    assert "deadbeef" not in text and "AKIAEXAMPLE" not in text
    assert "X-Amz-Expires=600" in text  # what is not a secret stays


def test_relative_paths_are_made_absolute_for_ray_workers(tmp_path, monkeypatch):
    from cortexzoo.scan import ScanConfig
    from cortexzoo.twins.train import TwinsRunConfig

    monkeypatch.chdir(tmp_path)
    run = TwinsRunConfig(data="./sessions", out="results", encoders=["cnn"], seeds=[0])
    assert run.data == str(tmp_path / "sessions") and run.out == str(tmp_path / "results")
    cfg = ScanConfig(data="./v4", out="./r")
    assert cfg.data == str(tmp_path / "v4") and cfg.out == str(tmp_path / "r")
    assert ScanConfig(data="s3://b/v4").data == "s3://b/v4"
    assert ScanConfig().data == "embedded"
    assert np.isfinite(1.0)
