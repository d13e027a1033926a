"""Ray Tune + Optuna + ASHA campaigns: search beats a bad start, outputs, resume from s3."""
from __future__ import annotations

import io
import os
import signal

import numpy as np
import pandas as pd
import pytest

from cortexzoo.store import ResultStore
from cortexzoo.training.demo import make_planted_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "tune_spaces", "tiny.yaml")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return make_planted_dataset(str(tmp_path_factory.mktemp("planted_tune") / "ds"),
                                n_stimuli=120, size=32, blocks=2, n_neuroids=16)


def _interrupter(n: int, marker: str):
    """A Tune callback that interrupts the campaign (like Ctrl+C) once `n` trials finished
    and the next one has saved its first checkpoint; the marker file names that trial."""
    from ray import tune

    class InterruptAfter(tune.Callback):
        def __init__(self):
            self.done = 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            if self.done >= n and not os.path.exists(marker):
                with open(marker, "w") as f:
                    f.write(str(trial.trial_id))
                # Tune's driver handles SIGUSR1 like SIGINT: stop, save state, return
                os.kill(os.getpid(), signal.SIGUSR1)

    return InterruptAfter()


def _checkpoint_dirs(store) -> list[str]:
    """Trial folders (named after their trial ids) that hold a checkpoint."""
    store.fs.invalidate_cache()   # s3fs caches listings; Tune wrote through pyarrow
    return [p.split("/")[-2] for p in store.fs.glob(store.root + "/tune/tiny/*/checkpoint_*")]


def _uninterrupted(store, planted, trial_config: str):
    """The training history of a trial's config, run here in one go, as Tune runs it."""
    import json

    import torch

    from cortexzoo.data import load_dataset
    from cortexzoo.training.finetune import load_or_make_splits, train_network
    from cortexzoo.training.loaders import split_reliability
    from cortexzoo.training.presets import FinetuneConfig
    from cortexzoo.training.tune import _trial_inputs

    base = FinetuneConfig.from_dict(store.get_json("campaigns/tiny/space.json")["base"])
    ds = load_dataset(planted)
    splits = load_or_make_splits(store, "campaigns/tiny/splits.json",
                                 ds.stimuli["stimulus_id"].astype(str).tolist(), base)
    rel = split_reliability(ds, splits, base.region, seed=base.seed)
    cfg, data, bundle = _trial_inputs(json.loads(trial_config), planted, base.to_dict(),
                                      splits.to_dict(), rel)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as the trial's actor (half a CPU)
    try:
        return train_network(cfg, data, bundle, track_test=True).history
    finally:
        torch.set_num_threads(threads)


def test_trial_resources(ray_local):
    from cortexzoo.training.tune import TuneError, trial_resources

    n_gpu = ray_local.cluster_resources().get("GPU", 0)
    if n_gpu == 0:
        assert trial_resources() == {"cpu": 0.5}  # no GPU: fractional CPUs
        assert trial_resources(cpus_per_trial=1) == {"cpu": 1.0}
    else:
        assert trial_resources()["gpu"] == 1.0  # one trial per GPU
    with pytest.raises(TuneError, match="GPU"):
        trial_resources(gpus_per_trial=n_gpu + 1)
    with pytest.raises(TuneError, match="cpus_per_trial"):
        trial_resources(cpus_per_trial=100)


def test_campaign_interrupt_and_resume_from_s3(ray_local, s3_bucket, planted, tmp_path):
    from ray.tune.schedulers import AsyncHyperBandScheduler

    from cortexzoo.cli import main
    from cortexzoo.training.space import load_space
    from cortexzoo.training.tune import TuneError, _make_scheduler, run_tune

    sp = load_space(TINY)
    sched = _make_scheduler(sp)
    assert isinstance(sched, AsyncHyperBandScheduler)
    out = s3_bucket + "/results"
    marker = str(tmp_path / "interrupted")
    first = run_tune(planted, sp, 4, out, cpus_per_trial=1, max_concurrent=1, verbose=0,
                     callbacks=[_interrupter(2, marker)])
    assert os.path.exists(marker) and first.interrupted
    t1 = first.trials
    done1 = t1[t1["status"] == "TERMINATED"]
    assert 2 <= len(done1) < 4
    cut = open(marker).read()   # the trial interrupted after its first checkpoint
    assert t1.set_index("trial_id").loc[cut, "status"] == "INTERRUPTED"
    store = ResultStore(out)
    units1 = {u for u in store.completed_units() if u.startswith("tune-tiny-")}
    assert units1 == {f"tune-tiny-{t}" for t in done1["trial_id"]}
    stamps1 = store.read_scores().groupby("unit_key")["created_at"].first()
    # the experiment directory lives in object storage; finished trials' checkpoints
    # are deleted, the interrupted trial's is kept
    assert store.fs.exists(store.root + "/tune/tiny/tuner.pkl")
    kept = _checkpoint_dirs(store)
    assert kept and all(cut in d for d in kept)

    with pytest.raises(TuneError, match="already exists"):
        run_tune(planted, sp, 4, out, verbose=0)

    rc = main(["tune", "--data", planted, "--space", TINY, "--out", out, "--resume",
               "--cpus-per-trial", "1", "--quiet"])
    assert rc == 0
    trials = pd.read_parquet(io.BytesIO(store.get_bytes("campaigns/tiny/trials.parquet")))
    assert len(trials) == 4 and trials["trial_id"].is_unique
    assert set(trials["status"]) == {"TERMINATED"}
    # finished trials were not repeated: same results, score files untouched
    again = trials.set_index("trial_id").loc[done1["trial_id"]]
    assert again["epochs_run"].tolist() == done1["epochs_run"].tolist()
    assert again["best_val_ev"].tolist() == pytest.approx(done1["best_val_ev"].tolist())
    scores = store.read_scores()
    stamps2 = scores.groupby("unit_key")["created_at"].first()
    for u in units1:
        assert stamps2[u] == stamps1[u]
    assert {f"tune-tiny-{t}" for t in trials["trial_id"]} <= set(scores["unit_key"])
    # the interrupted trial continued from its checkpoint (after epoch 1), and ended as
    # if it had never been interrupted
    resumed = trials.set_index("trial_id").loc[cut]
    assert resumed["resumed_epoch"] == 1 and resumed["epochs_run"] >= 2
    hist = _uninterrupted(store, planted, resumed["config"])[:int(resumed["epochs_run"])]
    assert resumed["best_val_ev"] == max(h["val_ev"] for h in hist)
    assert resumed["best_epoch"] == max(hist, key=lambda h: h["val_ev"])["epoch"]
    assert (trials.drop(index=trials.index[trials["trial_id"] == cut])["resumed_epoch"] == 0).all()
    assert not _checkpoint_dirs(store)   # the campaign is finished: no checkpoint is left

    # the search beats the deliberately bad first configuration (lr 1e-6) clearly
    bad = trials[np.isclose(trials["param_lr"], 1e-6)]
    assert len(bad) == 1 and int(bad["trial_index"].iloc[0]) == 0  # tried first
    best = trials["best_val_ev"].max()
    assert best > 0.2 and best > float(bad["best_val_ev"].iloc[0]) + 0.15
    # every trial shares the campaign's split, and rows carry config columns
    tune_rows = scores[scores["unit_key"].str.startswith("tune-tiny-")]
    assert tune_rows["split_digest"].nunique() == 1
    assert set(tune_rows["method"]) == {"finetune"} and set(tune_rows["split"]) == {"val", "test"}
    assert set(tune_rows["campaign"]) == {"tiny"}
    # the best configuration is a ready preset, and the plot exists
    from cortexzoo.training.presets import load_preset

    preset = load_preset(store.uri_of("presets/tiny-best.yaml"))
    best_row = trials.loc[trials["best_val_ev"].idxmax()]
    assert preset.lr == pytest.approx(best_row["param_lr"]) and preset.epochs == 6
    png = store.get_bytes("plots/tune-tiny.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_campaign_with_results_on_gcs(ray_local, gcs_bucket, planted):
    """Tune's experiment folder and the campaign's tables on gs://, through gcsfs as the
    result store (pyarrow's own GCS client would ignore the emulator)."""
    from cortexzoo.training.space import load_space
    from cortexzoo.training.tune import run_tune

    out = gcs_bucket + "/results"
    res = run_tune(planted, load_space(TINY), 2, out, cpus_per_trial=1, max_concurrent=1,
                   verbose=0)
    store = ResultStore(out)
    assert store.fs.exists(store.root + "/tune/tiny/tuner.pkl")
    trials = pd.read_parquet(io.BytesIO(store.get_bytes("campaigns/tiny/trials.parquet")))
    assert len(trials) == 2 and set(trials["status"]) == {"TERMINATED"}
    assert {f"tune-tiny-{t}" for t in trials["trial_id"]} <= store.completed_units()
    np.testing.assert_allclose(sorted(trials["best_val_ev"]), sorted(res.trials["best_val_ev"]))
