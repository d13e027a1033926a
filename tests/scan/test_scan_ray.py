"""Ray integration: the streaming pipeline equals in-process extraction, and a scan
runs on Ray with data and results in S3 (a real S3 API server on loopback)."""
import numpy as np
import pandas as pd
import pytest

from cortexzoo.data import load_dataset
from cortexzoo.features import ReductionConfig, extract_local, extract_ray
from cortexzoo.scan import ScanConfig, run_scan
from cortexzoo.scan.planted import make_planted_dataset
from cortexzoo.zoo import load_model
from cortexzoo.scan.scoring import ScoringConfig

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("ray") / "ds")
    make_planted_dataset(uri, model="torchvision:resnet18@random", layer="layer1.0",
                         n_stimuli=48, image_size=48, n_neuroids=8, n_reps=3, seed=3,
                         input_size=64)
    return uri


def test_ray_pipeline_equals_local(ray_local, small):
    ds = load_dataset(small)
    model = load_model("torchvision:resnet18@random", input_size=64)
    layers = ["conv1", "layer1.0", "layer4.1", "fc"]
    red = ReductionConfig(n_components=256)
    a = extract_local(ds, model, layers, red, batch_size=8, progress=False)
    b = extract_ray(ds, model, layers, red, batch_size=8, num_actors=2, progress=False)
    for name in layers:
        assert a.features[name].shape == (48, 256)
        np.testing.assert_allclose(b.features[name], a.features[name], rtol=1e-4, atol=1e-5)


def test_scan_on_ray_with_s3_data_and_results(ray_local, small, s3_bucket, tmp_path):
    import fsspec

    fs = fsspec.filesystem("s3")
    fs.put(small + "/", s3_bucket.replace("s3://", "") + "/ds/", recursive=True)
    data = s3_bucket + "/ds"
    common = dict(models=["torchvision:resnet18@random", "pixels"], input_size=64,
                  reduction=ReductionConfig(n_components=256),
                  scoring=ScoringConfig(reliability_splits=10), progress=False, plot=False)
    on_ray = run_scan(ScanConfig(data=data, out=s3_bucket + "/results", engine="ray",
                                 batch_size=8, **common))
    local = run_scan(ScanConfig(data=small, out=str(tmp_path / "r"), engine="local", **common))
    remote = pd.read_parquet(s3_bucket + "/results/scores/")
    key = ["model", "layer", "region", "method", "metric", "split"]
    a = remote.sort_values(key).reset_index(drop=True)
    b = local.scores.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) == len(on_ray.scores)
    pd.testing.assert_frame_equal(a[key], b[key])
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-4, atol=1e-5)
