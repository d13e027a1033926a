"""Shared fixtures: a local Ray cluster, and real S3 and GCS API servers on loopback.

Environment variables must be set before Ray (or boto) is imported anywhere.
"""
from __future__ import annotations

import os
import socket

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
# gcsfs's default filesystem asks Google's storage-control API (real credentials, real
# network) for each bucket's type; the emulator has no such API
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import pytest  # noqa: E402

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
COWLEY_DIR = os.path.abspath(os.path.join(SHARED_DATA, "cowley_v4_210325"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole session (start-up costs 3-6 s)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False,
                 object_store_memory=1 << 30, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API (moto) on loopback; yields its endpoint URL.

    Credentials and endpoint are exported so that plain s3:// URIs work for
    s3fs, pandas, pyarrow and boto3 in this process (and in Ray workers started later).
    """
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                          "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)
    yield endpoint
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket; yields 's3://NAME'."""
    import uuid

    import boto3

    name = "cz-" + uuid.uuid4().hex[:12]
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    yield f"s3://{name}"


@pytest.fixture(scope="session")
def gcs_server():
    """A real GCS JSON API (gcp-storage-emulator, in memory) on loopback; yields its URL.

    STORAGE_EMULATOR_HOST is exported, which gcsfs (and Ray workers started later, see
    ``worker_env``) read, so plain gs:// URIs reach it without credentials.
    """
    import logging

    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    url = f"http://127.0.0.1:{port}"
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = url
    yield url
    server.stop()
    if old is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = old


@pytest.fixture
def gcs_bucket(gcs_server):
    """A fresh, empty bucket; yields 'gs://NAME'."""
    import uuid

    import fsspec

    name = "cz-" + uuid.uuid4().hex[:12]
    fsspec.filesystem("gs").mkdir(name)
    yield f"gs://{name}"


@pytest.fixture(scope="session")
def planted_scan(tmp_path_factory):
    """A planted recording and a scan that saves encoders, shared by the control tests
    (see tests/control_planted.py)."""
    from control_planted import MODEL_A, MODEL_B, PLANTED_LAYER

    from cortexzoo.features.reduce import ReductionConfig
    from cortexzoo.scan import ScanConfig, run_scan
    from cortexzoo.scan.planted import make_planted_dataset
    from cortexzoo.scan.scoring import ScoringConfig

    root = tmp_path_factory.mktemp("control")
    data = str(root / "planted")
    make_planted_dataset(data, model=MODEL_A, layer=PLANTED_LAYER, n_stimuli=120, image_size=64,
                         n_neuroids=12, n_reps=4, seed=1, input_size=64)
    cfg = ScanConfig(data=data, models=[MODEL_A, MODEL_B], out=str(root / "results"),
                     engine="local", input_size=64, reduction=ReductionConfig(n_components=256),
                     scoring=ScoringConfig(reliability_splits=10, inter_animal=False),
                     progress=False, plot=False, save_encoders="best")
    res = run_scan(cfg)
    enc = {}
    for e in res.summary["encoders"]:
        enc.setdefault(e["model"], []).append(e)
    return {"root": str(root), "data": data, "cfg": cfg, "result": res, "encoders": enc,
            "a": enc[MODEL_A][0]["uri"], "b": enc[MODEL_B][0]["uri"]}
