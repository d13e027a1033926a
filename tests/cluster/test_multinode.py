"""A scan, a tuning campaign and a twin training survive the loss of a worker node.

``multinode.py`` (run once per module, in a subprocess, so that this process keeps its
session Ray) starts a real multi-node Ray cluster on loopback: a head without CPUs and two
one-CPU worker nodes, so every task, actor, trial and training worker runs on a worker
node. In each scenario it kills a worker node (SIGKILL to all of its processes) while the
job provably runs on it, adds a replacement node, and lets the job finish. The tests
check the job's own outputs: every score exactly once, and equal to what an
uninterrupted in-process run computes. Before any fix, the tuning campaign did not
survive (``FailureConfig(max_failures=0)``: the dead node's trials ended in ERROR and
left no scores); ``run_tune(max_failures=2)`` is now the default.
"""
from __future__ import annotations

import glob
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import pytest


HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import multinode  # noqa: E402

TIMEOUT_S = 540


def _ours(marker: str) -> list[int]:
    """Live processes whose command line names our private temp dir."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
            with open(f"/proc/{d}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):
            continue
        if marker in cmd and not zombie:
            pids.append(int(d))
    return pids


def _sweep(marker: str, grace_s: float = 10.0) -> list[int]:
    """Give our cluster's processes ``grace_s`` to exit (Ray workers leave on their own
    soon after their raylet), then SIGKILL those left; returns their pids."""
    deadline = time.time() + grace_s
    while (left := _ours(marker)) and time.time() < deadline:
        time.sleep(0.5)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return left


@pytest.fixture(scope="module")
def cluster_run():
    """Run every scenario on one local multi-node cluster; yields (report, log tail)."""
    # Ray's unix socket paths must stay short: a private dir directly under /tmp
    tmp = tempfile.mkdtemp(prefix="czmn-", dir="/tmp")
    work = os.path.join(tmp, "work")
    log_path = os.path.join(tmp, "multinode.log")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = tmp  # the cluster's sessions and its address file stay in here
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "multinode.py"), work],
                                cwd=multinode.ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=TIMEOUT_S)
        except BaseException as e:  # a timeout, or Ctrl+C: the cluster must not outlive us
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
            if not isinstance(e, subprocess.TimeoutExpired):
                _sweep(tmp, grace_s=0)
                raise
        finally:
            elapsed = time.time() - t0
            leftovers = _sweep(tmp)
    with open(log_path, errors="replace") as f:
        # Ray's raylet state dumps drown the scenario's own lines and tracebacks
        tail = "".join(line for line in f if "[state-dump]" not in line)[-8000:]
    path = os.path.join(work, "report.json")
    report = json.load(open(path)) if os.path.exists(path) else {}
    report.update(rc=rc, elapsed_s=elapsed, leftover_processes=leftovers)
    print(f"multi-node run: {elapsed:.0f} s, cluster start-up "
          f"{report.get('startup_s', float('nan')):.0f} s; " + "; ".join(
              f"{n} {report[n].get('total_s', float('nan')):.0f} s"
              for n in multinode.SCENARIOS if n in report))
    yield report, tail
    shutil.rmtree(tmp, ignore_errors=True)


def _scenario(cluster_run, name: str) -> dict:
    report, tail = cluster_run
    r = report.get(name)
    assert r is not None, f"scenario {name} did not run (rc {report['rc']}):\n{tail}"
    assert r["ok"], f"scenario {name} failed:\n{r.get('error')}\n--- log tail ---\n{tail}"
    assert r["killer_error"] is None, r["killer_error"]
    kill = r["kill"]
    assert kill["killed"], f"{name}: no worker node was killed mid-job: {kill}"
    # the victim ran the job's work when it died, and a replacement node joined
    assert kill["processes"] and all(
        re.search(multinode.WORK_TITLES[name], t) for t in kill["processes"])
    assert kill.get("replacement") and kill["replacement"] != kill["node_id"]
    return r


@pytest.mark.ray
@pytest.mark.slow
def test_cluster_shut_down_cleanly(cluster_run):
    report, tail = cluster_run
    assert report["rc"] == 0, tail
    # every process of every node (killed, replaced or not) was gone once the run ended
    assert report["leftover_processes"] == []


@pytest.mark.ray
@pytest.mark.slow
def test_scan_survives_worker_node_loss(cluster_run, tmp_path):
    from cortexzoo.zoo import describe_model

    r = _scenario(cluster_run, "scan")
    # killed during the second model's extraction: only the first model's units existed
    assert r["kill"]["units_done"] == 1
    assert all(t.endswith(".submit") for t in r["kill"]["processes"])  # mid-batch

    scores = pd.read_parquet(r["out"] + "/scores/")
    scores = scores[scores.model != "inter_animal"]  # the dataset-level ceiling, not a unit
    key = ["model", "layer", "region", "method", "metric", "split"]
    assert not scores.duplicated(key).any(), scores[scores.duplicated(key, keep=False)][key]
    # every (model, layer, region, method, metric) is there: layers from the zoo's own
    # enumeration, regions from the dataset's neuroid table
    regions = set(pd.read_parquet(os.path.join(r["data"], "neuroids.parquet"))["region"])
    metrics = {"pearson_r", "pearson_r_median", "explained_variance"}
    expected = {(str(m.spec), layer, reg, "ridge_gcv", met, split)
                for m in (describe_model(s, input_size=multinode.SCAN_INPUT)
                          for s in multinode.SCAN_MODELS)
                for layer in m.layers for reg in regions for met in metrics
                for split in ("loo", "half_a", "half_b")}
    assert set(map(tuple, scores[key].itertuples(index=False))) == expected
    assert r["written_units"] == scores["unit_key"].nunique() and r["skipped_units"] == 0

    # the numbers equal an uninterrupted in-process scan of the same data
    _assert_equals_local_scan(scores, r["data"], tmp_path, key)


def _assert_equals_local_scan(scores, data, tmp_path, key):
    """The rows (by ``key``) and values equal an uninterrupted in-process scan of ``data``."""
    from cortexzoo.scan import run_scan

    ref = run_scan(multinode.scan_config(data, str(tmp_path / "ref"), "local")).scores
    ref = ref[ref.model != "inter_animal"]
    a = scores.sort_values(key).reset_index(drop=True)
    b = ref.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[key], b[key])
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-4, atol=1e-5)


@pytest.mark.ray
@pytest.mark.slow
def test_scan_survives_worker_node_loss_while_scoring(cluster_run, tmp_path):
    """Scoring runs as Ray tasks on the workers: a node dies while one of them runs; the
    lost unit is scored again (Ray retries the task) and every row is there exactly once,
    equal to an uninterrupted in-process scan."""
    from cortexzoo.store import ResultStore

    r = _scenario(cluster_run, "scan_scoring")
    scores = ResultStore(r["out"]).read_scores()
    scores = scores[scores.model != "inter_animal"]
    key = ["model", "layer", "region", "method", "metric", "split"]
    assert not scores.duplicated(key).any(), scores[scores.duplicated(key, keep=False)][key]
    _assert_equals_local_scan(scores, r["data"], tmp_path, key)
    assert r["written_units"] == scores["unit_key"].nunique() and r["skipped_units"] == 0


@pytest.mark.ray
@pytest.mark.slow
def test_tune_campaign_survives_worker_node_loss(cluster_run):
    from cortexzoo.store import ResultStore

    r = _scenario(cluster_run, "tune")
    # killed while trials that had reported an epoch trained on the node; those trials
    # were run again, not given up
    killed = set(r["kill"]["trials"])
    assert killed and killed <= set(r["recovered"])
    assert not r["interrupted"] and r["n_trials"] == multinode.TUNE_TRIALS

    store = ResultStore(r["out"])
    trials = pd.read_parquet(io.BytesIO(store.get_bytes("campaigns/mn/trials.parquet")))
    assert len(trials) == multinode.TUNE_TRIALS and trials["trial_id"].is_unique
    assert set(trials["status"]) == {"TERMINATED"}, trials[["trial_id", "status", "error"]]
    assert set(r["recovered"]) <= set(trials["trial_id"])
    assert np.isfinite(trials["best_val_ev"]).all()
    # the killed trial continued from the checkpoint of the epoch it was killed at
    at = trials.set_index("trial_id")["resumed_epoch"]
    for tid, epoch in r["kill"]["trials"].items():
        assert at[tid] == epoch, (tid, epoch, at.to_dict())
    # every trial's val/test rows exactly once, in one unit per trial
    scores = store.read_scores()
    rows = scores[scores["unit_key"].str.startswith("tune-mn-")]
    assert set(rows["unit_key"]) == {f"tune-mn-{t}" for t in trials["trial_id"]}
    key = ["unit_key", "region", "split", "metric"]
    assert not rows.duplicated(key).any()
    per_trial = rows.groupby("unit_key").size()
    assert per_trial.nunique() == 1 and set(rows["split"]) == {"val", "test"}
    # the table's best validation EV is the one each trial's scores carry
    val = rows[(rows["split"] == "val") & (rows["metric"] == "explained_variance")]
    got = val.set_index("trial_id")["value"].sort_index()
    want = trials.set_index("trial_id")["best_val_ev"].sort_index()
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-6)


@pytest.mark.ray
@pytest.mark.slow
def test_twin_training_survives_worker_node_loss(cluster_run):
    from cortexzoo.store import ResultStore
    from cortexzoo.twins.evaluate import evaluate_family
    from cortexzoo.twins.train import fit_local, load_twin

    r = _scenario(cluster_run, "twins")
    epochs = multinode.TWIN["max_epochs"]
    (res,) = r["results"]
    assert res["status"] == "trained" and res["epochs_run"] == epochs
    assert res["n_resumes"] >= 1
    store = ResultStore(r["out"])
    hist = store.get_json("twins/runs/cnn-seed0.json")["history"]
    # every epoch exactly once, all on 2 workers (one per worker node); the attempt after
    # the kill resumed after the checkpoint registered before it
    assert [h["epoch"] for h in hist] == list(range(epochs))
    assert {h["world_size"] for h in hist} == {2}
    resumed = [h for h in hist if h["n_resumes"] >= 1]
    assert resumed and resumed[0]["start_epoch"] >= r["kill"]["registered_epoch"] + 1

    # only the checkpoints Ray Train holds are left (the one a dying node uploaded, or
    # that the restored run forgot, is deleted)
    (run_dir,) = glob.glob(os.path.join(r["out"], "twins", "ray", "*", ""))
    with open(os.path.join(run_dir, "checkpoint_manager_snapshot.json")) as f:
        snap = json.load(f)
    held = {c["checkpoint_dir_name"] for c in snap["checkpoint_results"]}
    left = {os.path.basename(p) for p in glob.glob(os.path.join(run_dir, "checkpoint_*"))
            if os.path.isdir(p)}
    assert held and left == held

    # the interrupted 2-node run ends exactly where an uninterrupted in-process run does
    local = fit_local(dict(multinode.TWIN), r["data"])
    np.testing.assert_allclose([h["val_loss"] for h in hist],
                               [x["val_loss"] for x in local["reports"]], rtol=1e-5)
    model, blob = load_twin(store.get_bytes("twins/best/cnn-seed0.pt"))
    assert blob["epoch"] == local["best"]["epoch"]
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v.numpy(), local["best"]["model"][k].numpy(), atol=1e-5,
                                   err_msg=k)

    # its evaluation writes each score once
    evaluate_family(r["data"], r["out"])
    sc = store.read_scores()
    key = ["model", "animal", "metric", "split"]
    assert not sc.duplicated(key).any()
    assert set(sc["model"]) == {"twin:cnn#seed0"} and len(sc) == 3 * 2  # 2 animals + all


def test_tune_max_failures_from_flag_config_and_default(monkeypatch, tmp_path):
    """``cortexzoo tune`` hands ``--max-failures`` (or the config's key) to run_tune."""
    import cortexzoo.cli as cli
    import cortexzoo.cli.training as cli_training
    import cortexzoo.training.tune as tune_mod

    seen = []

    def fake_run_tune(data, space, n, out, **kw):
        seen.append(kw["max_failures"])
        raise tune_mod.TuneError("stop before any work")

    monkeypatch.setattr(cli_training, "init_ray", lambda address: None)
    monkeypatch.setattr(tune_mod, "run_tune", fake_run_tune)
    common = ["tune", "--data", "d", "--space", "s", "--out", "o"]
    assert cli.main(common + ["--max-failures", "5"]) == 2
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: d\nspace: s\nout: o\nmax_failures: 0\n")
    assert cli.main(["tune", "--config", str(cfg)]) == 2
    assert cli.main(common) == 2
    assert seen == [5, 0, 2]
