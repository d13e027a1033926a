"""`ray job submit` of jobs/scan.py against a real Ray head on loopback."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from cortexzoo.scan.planted import make_planted_dataset

from conftest import free_port

pytestmark = pytest.mark.ray
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(sys.executable)


@pytest.fixture
def ray_head(tmp_path):
    port, dash = free_port(), free_port()
    # every port of its own: the tests' Ray instance may hold the defaults (e.g. 52365)
    ports = {flag: free_port() for flag in (
        "--node-manager-port", "--object-manager-port", "--ray-client-server-port",
        "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port", "--metrics-export-port")}
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    log = open(tmp_path / "ray-start.log", "w")
    import tempfile

    short_tmp = tempfile.mkdtemp(prefix="czr", dir="/tmp")  # AF_UNIX paths: < 108 bytes
    # --block keeps `ray start` in the foreground; killing its process group stops this
    # cluster only (a plain `ray stop` would also stop the tests' own Ray instance).
    proc = subprocess.Popen([os.path.join(BIN, "ray"), "start", "--head", "--block",
                             f"--port={port}", "--num-cpus=2", "--dashboard-host=127.0.0.1",
                             f"--dashboard-port={dash}", "--include-dashboard=true",
                             f"--temp-dir={short_tmp}",
                             *[f"{k}={v}" for k, v in ports.items()]],
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    import urllib.request

    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(address + "/api/version", timeout=2)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail("the Ray head did not come up:\n" +
                            (tmp_path / "ray-start.log").read_text()[-3000:])
            time.sleep(1)
    yield address, env
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    shutil.rmtree(short_tmp, ignore_errors=True)


def test_ray_job_submit_runs_scan(ray_head, tmp_path):
    address, env = ray_head
    data = str(tmp_path / "ds")
    make_planted_dataset(data, model="pixels", n_stimuli=40, image_size=32, n_neuroids=6,
                         n_reps=3, seed=4)
    out = str(tmp_path / "results")
    cfg = tmp_path / "scan.yaml"
    cfg.write_text(yaml.safe_dump({"data": data, "models": ["pixels"], "out": out,
                                   "engine": "ray", "batch_size": 8, "plot": False,
                                   "reduction": {"n_components": 128},
                                   "scoring": {"reliability_splits": 5}}))
    done = subprocess.run([os.path.join(BIN, "ray"), "job", "submit", "--address", address,
                           "--working-dir", REPO, "--", sys.executable, "jobs/scan.py",
                           "--config", str(cfg), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    scores = pd.read_parquet(out + "/scores/")
    assert set(scores.model) - {"inter_animal"} == {"baseline:pixels@none"}
    assert set(scores.method) - {"inter_animal"} == {"ridge_gcv", "rsa"}
