"""Load test in CI size: tiny models scanned several at once, no lost or duplicated rows;
the scan's summary (time, throughput, rows, store retries); store errors during a scan."""
from __future__ import annotations

import json
import logging
import time
import uuid

import pytest

from cortexzoo.data import load_dataset
from cortexzoo.features.reduce import ReductionConfig
from cortexzoo.scan import ScanConfig, ScanFailed, run_scan
from cortexzoo.scan.planted import make_planted_dataset
from cortexzoo.scan.scoring import ScoringConfig
from cortexzoo.store import ResultStore, StoreAccessError, StoreNotFoundError
from faults import FaultProxy
from cortexzoo.zoo import describe_model, parse_spec

#: (method, metric) pairs a scan writes per region (README, "Results")
METRICS = {("ridge_gcv", "pearson_r"), ("ridge_gcv", "pearson_r_median"),
           ("ridge_gcv", "explained_variance"), ("rsa", "rsa_pearson")}
KEY = ["model", "layer", "region", "method", "metric", "split"]
COMMON = dict(input_size=32, batch_size=12, reduction=ReductionConfig(n_components=64),
              scoring=ScoringConfig(reliability_splits=5), progress=False, plot=False)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("load") / "ds")
    make_planted_dataset(uri, model="pixels", n_stimuli=24, image_size=32, n_neuroids=6,
                         n_reps=3, seed=4)
    return uri


SPLITS = ("loo", "half_a", "half_b")  # all stimuli, and each half of the held-out choice


def expected(specs, data) -> set[tuple]:
    """Rows a full scan must write: the models' layer lists x regions x metrics x splits,
    and the inter-animal ceiling of each region recorded in two or more subjects."""
    ds = load_dataset(data)
    regions = set(ds.neuroids["region"])
    rows = {(str(parse_spec(s)), layer, r, meth, met, split) for s in specs
            for layer in describe_model(s).layers for r in regions for meth, met in METRICS
            for split in SPLITS}
    multi = ds.neuroids.groupby("region")["subject"].nunique()
    return rows | {("inter_animal", "", r, "inter_animal", "pearson_r", "loo")
                   for r in multi[multi >= 2].index}


def assert_exactly(scores, want: set[tuple]) -> None:
    got = list(scores[KEY].itertuples(index=False, name=None))
    assert len(got) == len(set(got)), "duplicated rows"
    assert set(got) == want, (f"lost {len(want - set(got))}, unexpected {len(set(got) - want)}")


@pytest.mark.ray
def test_concurrent_ray_scan_loses_and_duplicates_nothing(ray_local, tiny_data, tmp_path):
    specs = ["timm:test_byobnet@random", "timm:test_convnext2@random",
             "timm:test_convnext3@random", "timm:test_byobnet@random#1"]
    want = expected(specs, tiny_data)
    out = str(tmp_path / "r")
    res = run_scan(ScanConfig(data=tiny_data, models=specs, out=out, engine="ray",
                              max_concurrent_models=2, **COMMON))
    assert_exactly(ResultStore(out).read_scores(), want)
    s = res.summary
    n_units = len({k[:2] for k in want if k[0] != "inter_animal"})
    assert s["units_written"] == res.written_units == n_units
    assert s["rows_written"] == len(want) and s["models_scanned"] == 4
    assert s["max_concurrent_models"] == 2 and s["models_failed"] == 0
    assert s["layers_per_s"] == pytest.approx(n_units / s["seconds"], rel=1e-2)
    # two models really ran at the same time
    w = sorted(s["model_windows"].values())
    assert any(a[1] > b[0] for a, b in zip(w, w[1:])), w

    # a rerun is idempotent: nothing scored again, the same rows exactly once
    again = run_scan(ScanConfig(data=tiny_data, models=specs, out=out, engine="ray",
                                max_concurrent_models=2, **COMMON))
    assert again.written_units == 0 and again.skipped_units == n_units
    assert again.summary["models_skipped"] == 4
    assert_exactly(ResultStore(out).read_scores(), want)


def test_concurrent_local_scan_one_broken_model_costs_only_itself(tiny_data, tmp_path, caplog):
    good = ["pixels", "timm:test_byobnet@random", "timm:test_convnext2@random#2"]
    broken = "timm:test_byobnet@/nonexistent/weights.pth"
    out = str(tmp_path / "r")
    caplog.set_level(logging.INFO, logger="cortexzoo")
    with pytest.raises(ScanFailed) as ei:
        run_scan(ScanConfig(data=tiny_data, models=good[:2] + [broken] + good[2:], out=out,
                            engine="local", max_concurrent_models=3, **COMMON))
    assert list(ei.value.failures) == [broken]
    assert "nonexistent" in ei.value.failures[broken]
    assert_exactly(ResultStore(out).read_scores(), expected(good, tiny_data))
    # the manifest's summary agrees with what is in the store
    (man,) = ResultStore(out).read_manifests()
    s = man["summary"]
    assert s["models_failed"] == 1 and s["models_scanned"] == 3 and s["models"] == 4
    assert s["rows_written"] == len(expected(good, tiny_data))
    assert s["store"]["retries"] == 0
    line = [r.message for r in caplog.records if " done in " in r.message]
    assert len(line) == 1 and "1 failed" in line[0] and "layers/s" in line[0]


def test_scan_summary_reports_store_retries(tiny_data, s3_bucket, s3_server, monkeypatch, caplog):
    proxy = FaultProxy(s3_server)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("CORTEXZOO_S3_RETRY_BASE", "0.01")
        proxy.inject("503", 2, method="PUT", path=r"/scores/")
        proxy.inject("500", 1, method="GET", path=r"list-type=2")
        caplog.set_level(logging.INFO, logger="cortexzoo")
        out = s3_bucket + "/scan"
        res = run_scan(ScanConfig(data=tiny_data, models=["pixels"], out=out, engine="local",
                                  **COMMON))
        assert proxy.injected() == 3
        assert res.summary["store"]["retries"] == 3
        assert res.summary["store"]["by_error"] == {"SlowDown": 2, "InternalError": 1}
    finally:
        proxy.close()
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    man = ResultStore(out).read_manifests()[0]  # straight to moto, past the proxy
    assert man["summary"]["store"]["retries"] == 3
    assert man["summary"]["rows_written"] == len(expected(["pixels"], tiny_data))
    assert any("3 retries" in r.message for r in caplog.records)


def test_store_errors_stop_the_scan_at_once(tiny_data, s3_server, s3_bucket, monkeypatch):
    missing = f"s3://cz-missing-{uuid.uuid4().hex[:8]}/x"
    t0 = time.monotonic()
    with pytest.raises(StoreNotFoundError, match=missing):
        run_scan(ScanConfig(data=tiny_data, models=["pixels"], out=missing, engine="local",
                            **COMMON))
    assert time.monotonic() - t0 < 10
    # permission lost mid-scan: not a per-model failure but a stop; the manifest stays
    proxy = FaultProxy(s3_server)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        proxy.inject("403", 1000, method="PUT", path=r"/scores/")
        with pytest.raises(StoreAccessError, match="credentials"):
            run_scan(ScanConfig(data=tiny_data, models=["pixels", "timm:test_byobnet@random"],
                                out=s3_bucket + "/scan", engine="local",
                                max_concurrent_models=2, **COMMON))
    finally:
        proxy.close()
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    kept = ResultStore(s3_bucket + "/scan")
    assert len(kept.read_manifests()) == 1 and kept.completed_units() == set()
    json.dumps(kept.read_manifests()[0])


def test_local_scan_with_gcs_data_and_results(tiny_data, gcs_bucket, tmp_path):
    """gs:// end to end: the dataset read and every score written through gcsfs (a GCS
    emulator on loopback) equal a scan of the same data between local folders."""
    import fsspec
    import numpy as np

    fsspec.filesystem("gs").put(tiny_data + "/", gcs_bucket[5:] + "/ds/", recursive=True)
    models = ["pixels", "timm:test_byobnet@random"]
    remote = run_scan(ScanConfig(data=gcs_bucket + "/ds", models=models,
                                 out=gcs_bucket + "/scan", engine="local", **COMMON))
    local = run_scan(ScanConfig(data=tiny_data, models=models, out=str(tmp_path / "r"),
                                engine="local", **COMMON))
    got = ResultStore(gcs_bucket + "/scan").read_scores()
    assert_exactly(got, expected(models, tiny_data))
    a = got.sort_values(KEY).reset_index(drop=True)
    b = local.scores.sort_values(KEY).reset_index(drop=True)
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-5, atol=1e-6)
    assert remote.summary["rows_written"] == len(got)
    man = ResultStore(gcs_bucket + "/scan").read_manifests()
    assert len(man) == 1 and man[0]["summary"]["rows_written"] == len(got)
