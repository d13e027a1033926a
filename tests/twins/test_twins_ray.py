"""Ray Train: 2-worker DDP equals 1 worker, a killed worker is survived, eval and CLI.

One Ray Train run (2 gloo workers, checkpoints in S3 on a loopback moto server) serves
the tests of this module: a worker kills itself (os._exit) at the start of epoch 2 on
the first attempt; the run must resume from the epoch-1 checkpoint and finish with
exactly the weights of an uninterrupted single-worker in-process run (same global
batch). Batch norm and dropout are off in this config: per-worker batch statistics
and per-rank dropout masks would legitimately differ between 1 and 2 workers.
"""
from __future__ import annotations

import argparse
import json
import os
import uuid

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.ray

# paper learning rates: larger ones amplify float round-off (gloo's averaged gradients vs
# one mean) into visible differences within a few hundred steps
TWIN = dict(encoder="cnn", feature_dim=16, hidden_dim=16, batch_size=32, max_epochs=3,
            encoder_kwargs={"channels": [8, 8, 8], "dropout": 0.0, "batch_norm": False})


@pytest.fixture(scope="module")
def bucket(s3_server):
    import boto3

    name = "cz-twins-" + uuid.uuid4().hex[:8]
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    from cortexzoo.data.sessions_synth import make_synthetic_sessions

    root = str(tmp_path_factory.mktemp("twin_sessions"))
    make_synthetic_sessions(root, n_animals=2, n_neurons=(6, 8), n_frames=800, height=18,
                            width=32, rate_scale=3.0, seed=1)
    return root


@pytest.fixture(scope="module")
def local_run(sessions):
    from cortexzoo.twins.train import fit_local

    torch.set_num_threads(1)
    return fit_local(dict(TWIN), sessions)


@pytest.fixture(scope="module")
def ray_run(ray_local, bucket, sessions, tmp_path_factory):
    from cortexzoo.twins.train import TwinsRunConfig, train_family

    marker = str(tmp_path_factory.mktemp("fault") / "killed.txt")
    out = bucket + "/results"
    run = TwinsRunConfig(data=sessions, out=out, encoders=["cnn"], seeds=[0], twin=dict(TWIN),
                         num_workers=2, cpus_per_worker=1, max_failures=1)
    results = train_family(run, extra_loop_config={
        "fail_at_epoch": 2, "fail_rank": 1, "fail_marker": marker, "fail_delay_s": 3.0})
    return {"out": out, "marker": marker, "results": results, "run": run}


def _summary(out):
    from cortexzoo.store import ResultStore

    return ResultStore(out).get_json("twins/runs/cnn-seed0.json")


def test_two_worker_ddp_matches_single_worker(ray_run, local_run):
    from cortexzoo.store import ResultStore
    from cortexzoo.twins.train import load_twin

    hist = _summary(ray_run["out"])["history"]
    assert [h["world_size"] for h in hist] == [2, 2, 2]
    np.testing.assert_allclose([h["val_loss"] for h in hist],
                               [r["val_loss"] for r in local_run["reports"]], rtol=1e-5)
    assert len({round(h["val_loss"], 6) for h in hist}) == 3  # it did train
    model, blob = load_twin(ResultStore(ray_run["out"]).get_bytes("twins/best/cnn-seed0.pt"))
    assert blob["epoch"] == local_run["best"]["epoch"]
    ref = local_run["best"]["model"]
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v.numpy(), ref[k].numpy(), atol=1e-5, err_msg=k)


def test_killed_worker_resumes_from_last_checkpoint(ray_run):
    import s3fs

    assert open(ray_run["marker"]).read().startswith("killed rank 1 at epoch 2")
    (res,) = ray_run["results"]
    assert res.status == "trained" and res.epochs_run == 3 and res.n_resumes == 1
    s = _summary(ray_run["out"])
    # epochs 0 and 1 ran once (first attempt); the second attempt started at epoch 2
    assert [(h["epoch"], h["start_epoch"], h["n_resumes"]) for h in s["history"]] == [
        (0, 0, 0), (1, 0, 0), (2, 2, 1)]
    # checkpoints live in object storage, kept by validation loss
    fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    run_dir = ray_run["out"][5:] + "/twins/ray/cnn-seed0"
    ckpts = fs.glob(run_dir + "/checkpoint_*/state.pt")
    assert 1 <= len(ckpts) <= 3
    # exactly the ones Ray Train holds are left
    snap = json.loads(fs.cat(run_dir + "/checkpoint_manager_snapshot.json"))
    held = {c["checkpoint_dir_name"] for c in snap["checkpoint_results"]}
    assert {c.split("/")[-2] for c in ckpts} == held


def test_unregistered_checkpoint_folders_are_deleted(tmp_path):
    """Folders named like checkpoints that the result does not hold go; the held ones
    (best and latest) and everything else in the run folder stay."""
    from types import SimpleNamespace

    import pyarrow.fs as pafs

    from cortexzoo.twins.train import drop_unregistered_checkpoints

    run = tmp_path / "run"
    names = ["checkpoint_a", "checkpoint_b", "checkpoint_c", "checkpoint_d"]
    for n in names:
        (run / n).mkdir(parents=True)
        (run / n / "state.pt").write_bytes(b"x")
    (run / "checkpoint_manager_snapshot.json").write_text("{}")
    (run / "other").mkdir()
    ck = lambda n: SimpleNamespace(path=str(run / n))  # noqa: E731
    result = SimpleNamespace(filesystem=pafs.LocalFileSystem(), path=str(run),
                             best_checkpoints=[(ck("checkpoint_b"), {})],
                             checkpoint=ck("checkpoint_d"))
    assert sorted(drop_unregistered_checkpoints(result)) == ["checkpoint_a", "checkpoint_c"]
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint_b", "checkpoint_d", "checkpoint_manager_snapshot.json", "other"]
    assert (run / "checkpoint_b" / "state.pt").read_bytes() == b"x"
    # a run folder that is gone: nothing to do, no error
    gone = SimpleNamespace(filesystem=pafs.LocalFileSystem(), path=str(tmp_path / "nope"),
                           best_checkpoints=[], checkpoint=None)
    assert drop_unregistered_checkpoints(gone) == []


def test_eval_writes_scores_and_plot(ray_run, sessions):
    from cortexzoo.data.sessions import load_sessions
    from cortexzoo.store import ResultStore
    from cortexzoo.twins.evaluate import (chunked_pearson, evaluate_family, overall_pearson,
                                          predict_split)
    from cortexzoo.twins.train import load_twin

    out = ray_run["out"]
    evaluate_family(sessions, out)
    store = ResultStore(out)
    sc = store.read_scores()
    assert set(sc["model"]) == {"twin:cnn#seed0"} and set(sc["method"]) == {"twin"}
    assert set(sc["region"]) == {"V1"} and set(sc["split"]) == {"test"}
    assert sorted(set(sc["animal"])) == ["all", "mouse00", "mouse01"]
    assert set(sc["metric"]) == {"chunked_pearson_r", "overall_pearson_r"} and len(sc) == 6
    model, _ = load_twin(store.get_bytes("twins/best/cnn-seed0.pt"))
    preds = predict_split(model, load_sessions(sessions), "test")
    row = sc[(sc["animal"] == "mouse01") & (sc["metric"] == "chunked_pearson_r")].iloc[0]
    v = preds["mouse01"]
    assert row["value"] == pytest.approx(np.nanmean(chunked_pearson(v["pred"], v["y"])), abs=1e-9)
    assert row["ceiling"] == pytest.approx(np.nanmean(chunked_pearson(v["rate"], v["y"])),
                                           abs=1e-9)
    assert row["n_neuroids"] == 8 and row["seed"] == 0
    allrow = sc[(sc["animal"] == "all") & (sc["metric"] == "overall_pearson_r")].iloc[0]
    cat = lambda key: np.concatenate([preds[a][key].ravel() for a in ("mouse00", "mouse01")])
    assert allrow["value"] == pytest.approx(overall_pearson(cat("pred"), cat("y")), abs=1e-9)
    png = store.get_bytes("plots/twins.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # a second train call skips the finished pair
    from cortexzoo.twins.train import train_family

    assert [r.status for r in train_family(ray_run["run"])] == ["skipped"]


def test_cli_flags_override_yaml(tmp_path):
    from cortexzoo.cli.twins import config_from_args, register_cli

    cfg = tmp_path / "t.yaml"
    cfg.write_text("data: d\nout: o\nencoders: [cnn]\nseeds: [0]\nnum_workers: 2\n"
                   "twin: {batch_size: 64, max_epochs: 50, gamma: 0.01}\n")
    p = argparse.ArgumentParser()
    register_cli(p.add_subparsers(dest="cmd"))
    args = p.parse_args(["twins", "train", "--config", str(cfg), "--encoders", "cnn,resnet18",
                         "--seeds", "0,1,2", "--max-epochs", "3", "--no-use-gpu"])
    assert args.func.__name__ == "cmd_train"
    run = config_from_args(args)
    assert run.encoders == ["cnn", "resnet18"] and run.seeds == [0, 1, 2]
    assert run.num_workers == 2 and run.use_gpu is False
    tw = run.twin_config("resnet18", 1)
    assert (tw.max_epochs, tw.batch_size, tw.gamma, tw.encoder, tw.seed) == (
        3, 64, 0.01, "resnet18", 1)
    with pytest.raises(ValueError, match="unknown"):
        config_from_args(p.parse_args(["twins", "train", "--encoders", "vgg16"]))
