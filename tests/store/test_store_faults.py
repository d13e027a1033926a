"""Object-store faults: transient errors are retried with backoff, permanent ones fail fast.

A small HTTP proxy on loopback sits in front of a real S3 API (moto) and answers the
first k matching requests itself with 500 InternalError, 503 SlowDown or a dropped
connection. Credentials are checked by a second moto server with IAM auth turned on.
"""
from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
import urllib.request
import uuid

import numpy as np
import pandas as pd
import pytest

from cortexzoo.store import (
    ResultStore,
    RetryPolicy,
    StoreAccessError,
    StoreNotFoundError,
    StoreUnavailableError,
    classify,
    make_score_rows,
)
from faults import FaultProxy
from cortexzoo.store.retry import RetryStats, call_with_retry

from conftest import free_port

FAST = RetryPolicy(retries=6, base_delay=0.02, max_delay=0.2, deadline=20.0)
#: a policy that would take minutes if a permanent error were retried
SLOW = RetryPolicy(retries=8, base_delay=30.0, max_delay=60.0, deadline=600.0)

@pytest.fixture
def proxy(s3_server):
    p = FaultProxy(s3_server)
    yield p
    p.close()


def unit(model: str, layer: str, value: float = 0.5) -> pd.DataFrame:
    common = dict(run_id="r1", dataset="d", model=model, source="timm", weights="random",
                  reduction="srp", split="loo", seed=0, n_stimuli=20, layer=layer,
                  relative_depth=0.5, method="ridge_gcv", n_neuroids=4)
    rows = [dict(region=r, metric="pearson_r", value=value + i / 10, ceiling=0.8)
            for i, r in enumerate(["V1", "V4"])]
    return make_score_rows(common, rows)


def store_via(proxy: FaultProxy, bucket: str, policy: RetryPolicy = FAST) -> ResultStore:
    return ResultStore(bucket + "/res", retry=policy, endpoint_url=proxy.url)


# --------------------------------------------------------------------- policy


def test_backoff_grows_exponentially_within_jitter_bounds():
    p = RetryPolicy(retries=10, base_delay=0.1, max_delay=1.0, deadline=100, jitter=1.0)
    rng = random.Random(0)
    for i in range(10):
        full = min(1.0, 0.1 * 2 ** i)
        d = [p.backoff(i, rng) for _ in range(200)]
        assert min(d) >= full / 2 - 1e-12 and max(d) <= full + 1e-12
        assert np.std(d) > 0  # jittered
    assert RetryPolicy(jitter=0.0, base_delay=0.3).backoff(2) == pytest.approx(1.2)


def test_call_with_retry_counts_and_honours_bounds():
    sleeps: list[float] = []
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] <= 3:
            raise ConnectionResetError("reset by peer")
        return "ok"

    stats = RetryStats()
    p = RetryPolicy(retries=5, base_delay=1.0, max_delay=3.0, deadline=1e9, jitter=0.0)
    assert call_with_retry(flaky, policy=p, stats=stats, sleep=sleeps.append) == "ok"
    assert sleeps == [1.0, 2.0, 3.0]  # doubled, capped at max_delay
    assert stats.as_dict() == {"retries": 3, "operations_retried": 1, "recovered": 1,
                               "gave_up": 0, "by_error": {"ConnectionResetError": 3}}

    # out of retries: the error names the operation and the tries; the cause is kept
    def always():
        raise TimeoutError("read timed out")

    sleeps.clear()
    with pytest.raises(StoreUnavailableError, match=r"writing s3://b/x failed after 3 tries") as ei:
        call_with_retry(always, policy=RetryPolicy(retries=2, base_delay=0.5, jitter=0.0),
                        stats=stats, what="writing s3://b/x", sleep=sleeps.append)
    assert isinstance(ei.value.__cause__, TimeoutError) and sleeps == [0.5, 1.0]
    assert stats.as_dict()["gave_up"] == 1

    # the deadline stops a retry whose backoff would end past it (a fake clock that
    # advances with the sleeps: 1 + 2 fit in 6 s, a third backoff of 4 s would not)
    now = {"t": 0.0}

    def fake_sleep(s):
        sleeps.append(s)
        now["t"] += s

    sleeps.clear()
    with pytest.raises(StoreUnavailableError, match="after 3 tries"):
        call_with_retry(always, policy=RetryPolicy(retries=50, base_delay=1.0, max_delay=100,
                                                   deadline=6.0, jitter=0.0),
                        sleep=fake_sleep, clock=lambda: now["t"])
    assert sleeps == [1.0, 2.0]


def test_permanent_errors_are_not_retried():
    calls = {"n": 0}

    def denied():
        calls["n"] += 1
        raise PermissionError("AccessDenied")

    with pytest.raises(PermissionError):
        call_with_retry(denied, policy=SLOW, sleep=lambda s: pytest.fail("slept"))
    assert calls["n"] == 1
    for exc in (FileNotFoundError("x"), ValueError("bad"), OSError(28, "No space left")):
        assert classify(exc) != "transient"
    # an operation that already used up its retries is not retried again by an outer one
    try:
        try:
            raise TimeoutError("t")
        except TimeoutError as e:
            raise StoreUnavailableError("gave up", attempts=3, seconds=1.0) from e
    except StoreUnavailableError as outer:
        assert classify(outer) == "permanent"


def test_policy_from_env_and_bad_values():
    p = RetryPolicy.from_env({"CORTEXZOO_S3_RETRIES": "2", "CORTEXZOO_S3_RETRY_BASE": "0.5",
                              "CORTEXZOO_S3_RETRY_MAX": "4", "CORTEXZOO_S3_RETRY_DEADLINE": "30"})
    assert p == RetryPolicy(retries=2, base_delay=0.5, max_delay=4.0, deadline=30.0)
    assert RetryPolicy.from_env({}) == RetryPolicy()
    with pytest.raises(ValueError, match="CORTEXZOO_S3_RETRIES"):
        RetryPolicy.from_env({"CORTEXZOO_S3_RETRIES": "many"})
    with pytest.raises(ValueError, match="CORTEXZOO_S3_RETRY_BASE"):
        RetryPolicy.from_env({"CORTEXZOO_S3_RETRY_BASE": "-1"})


def test_store_reads_policy_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CORTEXZOO_S3_RETRIES", "3")
    assert ResultStore(str(tmp_path)).retry_policy.retries == 3


# ------------------------------------------------- transient faults on moto


@pytest.mark.parametrize("fault", ["503", "500", "drop"])
def test_writes_survive_transient_faults(proxy, s3_bucket, fault):
    store = store_via(proxy, s3_bucket)
    proxy.inject(fault, 3, method="PUT")
    df = unit("m", "l1")
    store.write_scores(df, "u1")
    assert proxy.injected(fault) == 3
    st = store.retry_stats()
    if fault == "drop":
        # aiohttp silently resends once when a reused keep-alive connection was dropped,
        # so the store sees at least one and at most all of the three drops
        assert 1 <= st["retries"] <= 3
    else:
        assert st["retries"] == 3
    assert st["recovered"] == 1 and st["gave_up"] == 0
    # read back without the proxy: the object is whole
    back = ResultStore(s3_bucket + "/res").read_scores()
    np.testing.assert_allclose(back.sort_values("region")["value"], [0.5, 0.6])


def test_reads_lists_and_checks_are_retried(proxy, s3_bucket):
    direct = ResultStore(s3_bucket + "/res")
    for i in range(3):
        direct.write_scores(unit("m", f"l{i}", i), f"u{i}")
    direct.put_json("layers/x.json", {"a": 1})
    store = store_via(proxy, s3_bucket)
    proxy.inject("503", 2, method="GET", path=r"list-type=2")   # listings
    proxy.inject("500", 2, method="GET", path=r"/res/scores/u1")  # one object read
    proxy.inject("503", 1, method="HEAD")                         # existence checks
    assert store.completed_units() == {"u0", "u1", "u2"}
    df = store.read_scores()
    assert sorted(df["unit_key"].unique()) == ["u0", "u1", "u2"] and len(df) == 6
    assert store.has_unit("u2")
    proxy.inject("503", 1, method="GET", path=r"layers/x.json")
    assert store.get_json("layers/x.json") == {"a": 1}
    assert proxy.injected() == 6
    assert store.retry_stats()["retries"] == 6


def test_backoff_is_slept(proxy, s3_bucket):
    policy = RetryPolicy(retries=5, base_delay=0.2, max_delay=5.0, deadline=60)
    store = store_via(proxy, s3_bucket, policy)
    proxy.inject("503", 3, method="PUT")
    t0 = time.monotonic()
    store.put_bytes("x.bin", b"abc")
    # three backoffs of at least half of 0.2, 0.4 and 0.8 s
    assert time.monotonic() - t0 >= 0.5 * (0.2 + 0.4 + 0.8)
    assert ResultStore(s3_bucket + "/res").get_bytes("x.bin") == b"abc"


def test_out_of_retries_fails_in_bounded_time_and_keeps_written_units(proxy, s3_bucket):
    store = store_via(proxy, s3_bucket, RetryPolicy(retries=3, base_delay=0.05, max_delay=0.2))
    store.write_scores(unit("m", "l0"), "u0")
    store.write_scores(unit("m", "l1"), "u1")
    proxy.inject("503", 1000, method="PUT")
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=r"u2\.parquet failed after 4 tries"):
        store.write_scores(unit("m", "l2"), "u2")
    assert time.monotonic() - t0 < 15  # 3 backoffs of at most 0.2 s, plus 4 requests
    assert proxy.injected("503") == 4
    assert store.retry_stats()["gave_up"] == 1
    proxy.clear()
    kept = ResultStore(s3_bucket + "/res")
    assert kept.completed_units() == {"u0", "u1"}
    assert len(kept.read_scores()) == 4


@pytest.mark.parametrize("proto", ["s3", "gs"])
def test_access_denied_fails_fast_and_keeps_written_units(proto, request):
    server = request.getfixturevalue({"s3": "s3_server", "gs": "gcs_server"}[proto])
    bucket = request.getfixturevalue({"s3": "s3_bucket", "gs": "gcs_bucket"}[proto])
    proxy = FaultProxy(server)
    try:
        store = store_via(proxy, bucket, SLOW)
        store.write_scores(unit("m", "l0"), "u0")
        proxy.inject("403", 1000)
        t0 = time.monotonic()
        with pytest.raises(StoreAccessError, match=re.escape(bucket + "/res")) as ei:
            store.write_scores(unit("m", "l1"), "u1")
        hint = {"s3": "AWS_ACCESS_KEY_ID", "gs": "GOOGLE_APPLICATION_CREDENTIALS"}[proto]
        with pytest.raises(StoreAccessError, match=hint):
            store.read_scores()
        assert time.monotonic() - t0 < 10  # SLOW would sleep >= 15 s before its first retry
        assert proxy.url in str(ei.value)
        assert proto == "gs" or "AccessDenied" in str(ei.value)
        assert store.retry_stats()["retries"] == 0
        proxy.clear()
    finally:
        proxy.close()
    kept = ResultStore(bucket + "/res")
    assert kept.completed_units() == {"u0"}
    np.testing.assert_allclose(sorted(kept.read_scores()["value"]), [0.5, 0.6])


@pytest.mark.parametrize("proto,server", [("s3", "s3_server"), ("gs", "gcs_server")])
def test_missing_bucket_fails_fast_with_slow_policy(proto, server, request):
    request.getfixturevalue(server)
    uri = f"{proto}://cz-missing-{uuid.uuid4().hex[:8]}/x"
    store = ResultStore(uri, retry=SLOW)
    t0 = time.monotonic()
    with pytest.raises(StoreNotFoundError, match=re.escape(uri) + ".*does not exist"):
        store.write_scores(unit("m", "l0"), "u0")
    with pytest.raises(StoreNotFoundError, match="bucket name"):
        store.read_scores()
    assert store.retry_stats()["retries"] == 0
    assert time.monotonic() - t0 < 10  # SLOW would sleep >= 15 s before its first retry


# ---------------------------------------------------- credentials (moto IAM)


@pytest.fixture(scope="module")
def auth_server():
    """A second moto server that checks credentials (after 3 unchecked requests:
    create a bucket, an IAM user without any policy and its access key)."""
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "moto_server")
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server with auth did not start")
                time.sleep(0.1)
        import boto3

        kw = dict(endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                  region_name="us-east-1")
        boto3.client("s3", **kw).create_bucket(Bucket="locked")
        iam = boto3.client("iam", **kw)
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        yield url, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_invalid_credentials_fail_fast(auth_server):
    url, _, _ = auth_server
    store = ResultStore("s3://locked/res", retry=SLOW, endpoint_url=url, key="AKIAWRONG",
                        secret="s3cr3t-value")
    t0 = time.monotonic()
    with pytest.raises(StoreAccessError) as ei:
        store.write_scores(unit("m", "l0"), "u0")
    msg = str(ei.value)
    assert "s3://locked/res" in msg and "InvalidAccessKeyId" in msg and "AWS_ACCESS_KEY_ID" in msg
    assert url in msg  # the endpoint to check
    assert "s3cr3t-value" not in msg
    with pytest.raises(StoreAccessError):
        store.completed_units()
    assert store.retry_stats()["retries"] == 0
    assert time.monotonic() - t0 < 10  # SLOW would sleep >= 15 s before its first retry


def test_valid_credentials_without_permission_fail_fast(auth_server):
    url, key, secret = auth_server
    store = ResultStore("s3://locked/res", retry=SLOW, endpoint_url=url, key=key, secret=secret)
    t0 = time.monotonic()
    with pytest.raises(StoreAccessError, match=r"AccessDenied.*'locked'") as ei:
        store.put_bytes("a.bin", b"x")
    assert secret not in str(ei.value)
    with pytest.raises(StoreAccessError):
        store.get_bytes("a.bin")
    assert time.monotonic() - t0 < 10  # SLOW would sleep >= 15 s before its first retry


# ------------------------------------------------------------ GCS (gcsfs, emulator)


@pytest.fixture
def gcs_proxy(gcs_server):
    p = FaultProxy(gcs_server)
    yield p
    p.close()


@pytest.mark.parametrize("status,kind", [(503, "transient"), (500, "transient"), (429, "transient"),
                                         ("503", "transient"), (408, "transient"),
                                         (401, "auth"), (403, "auth"), (404, "not_found"),
                                         (400, "permanent"), (None, "permanent")])
def test_classify_gcsfs_http_errors(status, kind):
    from gcsfs.retry import HttpError

    exc = HttpError({"code": status, "message": "x"})
    assert classify(exc) == kind
    try:  # as gcsfs's callers see it: re-raised inside another error
        try:
            raise exc
        except HttpError as inner:
            raise OSError("write failed") from inner
    except OSError as outer:
        assert classify(outer) == kind


def test_classify_gcs_credential_errors():
    import google.auth.exceptions as ge
    import requests.exceptions as rq

    assert classify(ge.DefaultCredentialsError("no ADC")) == "auth"
    assert classify(ge.RefreshError("token revoked")) == "auth"
    assert classify(OSError("Forbidden: https://x/b/o\nno storage.objects.create")) == "auth"
    assert classify(OSError("Forbidden by nobody")) == "permanent"  # not gcsfs's 403 form
    assert classify(rq.ProxyError()) == "transient"  # gcsfs's form of a 502
    assert classify(rq.ConnectionError()) == "transient"


def test_gcs_transient_fault_is_retried_by_gcsfs(gcs_proxy, gcs_bucket):
    store = ResultStore(gcs_bucket + "/res", retry=SLOW, endpoint_url=gcs_proxy.url)
    gcs_proxy.inject("503", 1, method="POST")  # the upload
    store.write_scores(unit("m", "l0", 0.25), "u0")
    assert gcs_proxy.injected() == 1
    got = ResultStore(gcs_bucket + "/res").read_scores()
    np.testing.assert_allclose(sorted(got["value"]), [0.25, 0.35])



def test_gcs_objects_only_role_on_an_empty_bucket(gcs_proxy, gcs_bucket):
    """Ray's GCP service account has roles/storage.objectAdmin: objects may be listed,
    read and written, but GET on the bucket itself answers 403. A new run on an empty
    bucket must not take that for a missing bucket."""
    # (GCS answers 404 for a missing bucket whoever asks, so only this bucket says 403)
    gcs_proxy.inject("403", 1000, method="GET", path=rf"/storage/v1/b/{gcs_bucket[5:]}(\?|$)")
    store = ResultStore(gcs_bucket + "/res", retry=SLOW, endpoint_url=gcs_proxy.url)
    assert store.completed_units() == set()
    assert store.get_json("manifest/none.json") is None
    store.write_scores(unit("m", "l0", 0.25), "u0")
    assert store.completed_units() == {"u0"}
    np.testing.assert_allclose(sorted(store.read_scores()["value"]), [0.25, 0.35])
    assert gcs_proxy.injected("403") >= 1  # the bucket was asked for, and refused
    missing = ResultStore(f"gs://cz-missing-{uuid.uuid4().hex[:8]}/x", retry=SLOW,
                          endpoint_url=gcs_proxy.url)
    with pytest.raises(StoreNotFoundError, match="does not exist"):
        missing.completed_units()
