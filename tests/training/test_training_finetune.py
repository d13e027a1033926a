"""End-to-end fine-tuning on a planted dataset, pixel baselines, metrics and the leaderboard."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import pearsonr
from sklearn.linear_model import RidgeCV
from sklearn.metrics import explained_variance_score

from cortexzoo.data import load_dataset
from cortexzoo.store import ResultStore, make_score_rows
from cortexzoo.training.baselines import run_pixel_baselines
from cortexzoo.training.demo import make_planted_dataset
from cortexzoo.mapping.metrics import neuroid_metrics
from cortexzoo.training.finetune import (load_checkpoint, run_finetune,
                                         split_relpath, train_network)
from cortexzoo.training.leaderboard import finetune_leaderboard, format_finetune_leaderboard
from cortexzoo.training.loaders import Splits, make_splits, prepare_data
from cortexzoo.training.networks import build_network
from cortexzoo.training.presets import load_preset


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return make_planted_dataset(str(tmp_path_factory.mktemp("planted") / "ds"), n_stimuli=160,
                                size=32, blocks=2, n_neuroids=20)


@pytest.fixture(scope="module")
def shallow_run(planted, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("results"))
    cfg = load_preset("shallow-cnn", image_size=32, epochs=12, lr=3e-3)
    return out, cfg, run_finetune(planted, cfg, out, run_id="ft-test")


def test_preset_reaches_positive_ev_and_scores_are_right(planted, shallow_run):
    out, cfg, res = shallow_run
    assert res.test_ev > 0.3 and res.val_ev > 0.3 and not res.skipped
    scores = ResultStore(out).read_scores()
    ft = scores[scores["method"] == "finetune"]
    assert set(ft["split"]) == {"val", "test"}
    assert {"explained_variance", "pearson_r"} <= set(ft["metric"])
    assert set(ft["model"]) == {"custom:shallow_cnn@random"} and set(ft["preset"]) == {"shallow-cnn"}
    # independent check: rebuild from the stored checkpoint, preprocess the raw test images
    # with the model's own config, and score with scikit-learn / scipy
    ds = load_dataset(planted)
    splits = Splits.from_dict(ResultStore(out).get_json(f"finetune/{res.unit_key}/splits.json"))
    test_idx = splits.indices(ds.stimuli["stimulus_id"].tolist())["test"]
    model = load_checkpoint(out, res.unit_key)
    pre = build_network(cfg, ds.n_neuroids).preprocess
    x = torch.from_numpy(pre.apply(ds.read_images(test_idx.tolist())))
    with torch.no_grad():
        z = model(x).double().numpy()
    y = ds.mean_responses()
    train_idx = splits.indices(ds.stimuli["stimulus_id"].tolist())["train"]
    mu, sd = y[train_idx].mean(0), y[train_idx].std(0)
    pred = z * sd + mu
    yt = y[test_idx]
    ev = explained_variance_score(yt, pred, multioutput="raw_values")
    r = np.array([pearsonr(yt[:, j], pred[:, j])[0] for j in range(yt.shape[1])])
    row = ft[(ft["split"] == "test") & (ft["metric"] == "explained_variance")]
    assert row["value"].iloc[0] == pytest.approx(ev.mean(), abs=2e-3)
    row_r = ft[(ft["split"] == "test") & (ft["metric"] == "pearson_r")]
    assert row_r["value"].iloc[0] == pytest.approx(r.mean(), abs=2e-3)
    assert row["n_stimuli"].iloc[0] == len(test_idx)
    per = pd.read_parquet(io.BytesIO(ResultStore(out).get_bytes(
        f"finetune/{res.unit_key}/neuroids.parquet")))
    np.testing.assert_allclose(per[per["split"] == "test"]["explained_variance"], ev, atol=2e-3)
    assert ResultStore(out).get_bytes(f"plots/finetune-{res.unit_key}.png")[:4] == b"\x89PNG"
    # a finished unit is not recomputed
    again = run_finetune(planted, cfg, out)
    assert again.skipped and again.test_ev == pytest.approx(res.test_ev)


def test_early_stopping_steplr_and_best_state(planted):
    ds = load_dataset(planted)
    ds.responses = np.random.default_rng(0).poisson(5, ds.responses.shape).astype(np.float32)
    ds.responses[:40:3, :, 0] = np.nan  # cells without any repetition: masked, not fatal
    cfg = load_preset("shallow-cnn", image_size=32, epochs=40, patience=3, lr=1e-2, step_size=2,
                      gamma=0.5)
    b = build_network(cfg, ds.n_neuroids)
    data = prepare_data(ds, make_splits(ds.stimuli["stimulus_id"], 0.1, 0.1), b.preprocess)
    res = train_network(cfg, data, b)
    h = res.history
    # pure-noise targets: no real progress, so patience stops the run early
    assert res.stopped_early and len(h) == res.best_epoch + 3 < 40
    assert [x["lr"] for x in h[:4]] == pytest.approx([1e-2, 1e-2, 5e-3, 5e-3])
    assert res.best_val_ev == max(x["val_ev"] for x in h)
    # the best epoch's weights are restored: re-predicting val gives the best epoch's EV
    from cortexzoo.training.finetune import _predict
    from cortexzoo.training.loaders import Normalizer

    ytr = data.y["train"]
    assert np.isnan(ytr[:, 0]).any()
    z = _predict(b.model, data.x["val"], Normalizer(b.preprocess.mean, b.preprocess.std), 64,
                 torch.device("cpu"), False)
    ev, _ = neuroid_metrics(data.y["val"], z * np.nanstd(ytr, 0) + np.nanmean(ytr, 0))
    assert np.nanmean(ev) == pytest.approx(res.best_val_ev, abs=1e-6)
    assert np.isfinite(res.history[0]["train_loss"])


def test_neuroid_metrics_skip_nan_like_sklearn():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(30, 3))
    p = y + rng.normal(size=y.shape)
    y[[2, 5], 1] = np.nan
    ev, r = neuroid_metrics(y, p)
    ok = np.isfinite(y[:, 1])
    assert ev[1] == pytest.approx(explained_variance_score(y[ok, 1], p[ok, 1]))
    assert r[1] == pytest.approx(pearsonr(y[ok, 1], p[ok, 1])[0])
    assert ev[0] == pytest.approx(explained_variance_score(y[:, 0], p[:, 0]))


def test_score_rows_per_region_with_ceilings():
    from cortexzoo.training.finetune import score_rows
    from cortexzoo.training.loaders import PreparedData

    rng = np.random.default_rng(2)
    y = {s: rng.normal(size=(12, 3)) for s in ("val", "test")}
    pred = {s: y[s] + rng.normal(size=(12, 3)) for s in ("val", "test")}
    rel = {"val": np.array([0.81, 0.64, 0.25]), "test": np.array([0.81, 0.64, 0.25])}
    data = PreparedData(x={}, y=y, splits=None, index={}, neuroid_ids=["a", "b", "c"],
                        regions=["V4", "V4", "IT"], preprocess=None,
                        reliability_by_split=rel)
    rows, per = score_rows(data, pred)
    df = pd.DataFrame(rows).set_index(["split", "region", "metric"])
    ev = explained_variance_score(y["test"], pred["test"], multioutput="raw_values")
    r0 = df.loc[("test", "V4", "explained_variance")]
    assert r0["value"] == pytest.approx(ev[:2].mean()) and r0["n_neuroids"] == 2
    assert r0["ceiling"] == pytest.approx((0.81 + 0.64) / 2)  # EV ceiling: mean reliability
    assert df.loc[("test", "V4", "pearson_r"), "ceiling"] == pytest.approx((0.9 + 0.8) / 2)
    assert df.loc[("val", "IT", "explained_variance"), "n_neuroids"] == 1
    assert len(per) == 6 and set(per["split"]) == {"val", "test"}


def test_pixel_baselines_match_sklearn(planted, shallow_run):
    out, cfg, _ = shallow_run
    df = run_pixel_baselines(planted, out, size=8, cfg=cfg, run_id="px-test")
    assert set(df["method"]) == {"linear", "pca_linear", "ridge_kfold", "pca_ridge_kfold"}
    assert set(df["split"]) == {"test"} and set(df["model"]) == {"baseline:pixels8@none"}
    # the same stored split as the fine-tuned network
    ds = load_dataset(planted)
    stored = ResultStore(out).get_json(split_relpath(ds.fingerprint(), cfg))
    sp = Splits.from_dict(stored).indices(ds.stimuli["stimulus_id"].tolist())
    fit = np.r_[sp["train"], sp["val"]]
    X = np.stack([np.asarray(im.resize((8, 8), resample=2), dtype=np.float64).transpose(2, 0, 1).ravel()
                  for im in ds.read_images()]) / 255.0
    y = ds.mean_responses()
    from cortexzoo.mapping import default_alphas

    ref = RidgeCV(alphas=default_alphas(), cv=5).fit(X[fit], y[fit])
    ev = explained_variance_score(y[sp["test"]], ref.predict(X[sp["test"]]),
                                  multioutput="raw_values").mean()
    row = df[(df["method"] == "ridge_kfold") & (df["metric"] == "explained_variance")]
    assert row["alpha"].iloc[0] == pytest.approx(ref.alpha_)
    # PIL's resize vs torch's antialiased resize differ slightly
    assert row["value"].iloc[0] == pytest.approx(ev, abs=0.03)
    pca = df[(df["method"] == "pca_ridge_kfold")]
    assert set(pca["n_components"]) == {min(len(fit), 192)}  # capped at n_train (<1000)


def test_leaderboard_orders_like_table_1():
    common = dict(dataset="d", region="IT", source="x", weights="trained", layer="all",
                  relative_depth=1.0, reduction="gap", n_neuroids=5, n_stimuli=10, seed=0,
                  ceiling=np.nan)
    rows = []

    def add(model, method, split, ev, r, **kw):
        for metric, v in (("explained_variance", ev), ("pearson_r", r)):
            rows.append(dict(common, model=model, method=method, split=split, metric=metric,
                             value=v, run_id=kw.pop("run_id", "r"), **kw))

    for m, ev in (("pca_ridge_kfold", 0.0924), ("linear", -0.0334), ("ridge_kfold", 0.0933),
                  ("pca_linear", -0.0881)):
        add("baseline:pixels32@none", m, "test", ev, 0.2, unit_key=f"px-{m}", preset="pixel-baselines")
    add("torchvision:resnet50@trained", "ridge_gcv", "loo", 0.407, 0.63, unit_key="s1")
    add("custom:shallow_cnn@random", "finetune", "val", 0.25, 0.5, unit_key="sh", preset="shallow-cnn")
    add("custom:shallow_cnn@random", "finetune", "test", 0.2283, 0.47, unit_key="sh", preset="shallow-cnn")
    add("torchvision:resnet34@trained", "finetune", "val", 0.47, 0.68, unit_key="rn", preset="resnet34-it")
    add("torchvision:resnet34@trained", "finetune", "test", 0.4654, 0.6709, unit_key="rn", preset="resnet34-it")
    # a campaign: trial b has the better validation EV but the worse test EV; b must be chosen
    for tid, val, test in (("a", 0.30, 0.44), ("b", 0.35, 0.40)):
        add("torchvision:vgg11_bn@trained", "finetune", "val", val, 0.6, unit_key=f"t-{tid}",
            preset="tune:c", campaign="c", trial_id=tid)
        add("torchvision:vgg11_bn@trained", "finetune", "test", test, 0.6, unit_key=f"t-{tid}",
            preset="tune:c", campaign="c", trial_id=tid)
    scores = make_score_rows({}, rows)
    board = finetune_leaderboard(scores)
    assert board["label"].tolist() == [
        "Linear", "Linear + PCA", "Ridge Regression", "Ridge Regression + PCA",
        "torchvision:resnet50@trained (all)", "Shallow CNN",
        "torchvision:vgg11_bn@trained (tuned: c, trial b)",
        "torchvision:resnet34@trained (resnet34-it)"]
    assert board["ev_pct"].tolist() == pytest.approx([-3.34, -8.81, 9.33, 9.24, 40.7, 22.83, 40.0, 46.54])
    assert board["group"].tolist()[:4] == ["pixels"] * 4
    assert "Ridge Regression + PCA" in format_finetune_leaderboard(board)


def test_cli_finetune_with_pixel_baselines_to_s3(planted, s3_bucket, capsys):
    import argparse

    from cortexzoo.cli.training import register_cli

    parser = argparse.ArgumentParser(prog="cortexzoo")
    register_cli(parser.add_subparsers(dest="cmd", required=True))
    out = s3_bucket + "/res"  # checkpoint, scores and per-neuroid values in object storage
    args = parser.parse_args(["finetune", "--data", planted, "--preset", "shallow-cnn,pixels",
                              "--set", "image_size=32", "--set", "epochs=2", "--out", out,
                              "--pixel-size", "8"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "Shallow CNN" in text and "Ridge Regression + PCA" in text
    scores = ResultStore(out).read_scores()
    assert {"finetune", "linear", "ridge_kfold"} <= set(scores["method"])
    unit = scores[scores.method == "finetune"]["unit_key"].iloc[0]
    state = torch.load(io.BytesIO(ResultStore(out).get_bytes(f"finetune/{unit}/model.pt")))
    assert "decoder.head.0.weight" in state
    model = load_checkpoint(out, unit)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 20)
    bad = parser.parse_args(["finetune", "--data", planted, "--preset", "nope", "--out", out])
    assert bad.func(bad) == 2


@pytest.mark.parametrize("stop_after,frozen,lr,improving", [
    (2, False, 3e-3, True), (5, False, 3e-3, True), (3, True, 3e-3, True),
    (7, True, 3e-3, True), (4, False, 3e-2, False)])
def test_resume_from_training_state_equals_uninterrupted_run(planted, tmp_path, stop_after,
                                                             frozen, lr, improving):
    """A run continued from the state saved after epoch k (through a file, loaded with
    weights_only) ends exactly as the run that was never interrupted: same per-epoch
    losses and EVs, best epoch, weights and predictions. Dropout (the global torch RNG),
    the shuffling generator, Adam's moments and StepLR all have to be restored for that.
    A frozen backbone's weights are not in the state (the rebuilt network has them)."""
    from cortexzoo.training.finetune import load_training_state, save_training_state

    ds = load_dataset(planted)
    cfg = load_preset("shallow-cnn", image_size=32, epochs=7, patience=3, lr=lr,
                      decoder="mlp", width=64, dropout=0.3, step_size=2, gamma=0.5,
                      frozen=frozen)
    splits = make_splits(ds.stimuli["stimulus_id"], 0.15, 0.15)

    def fresh():
        b = build_network(cfg, ds.n_neuroids)
        return b, prepare_data(ds, splits, b.preprocess)

    b, data = fresh()
    full = train_network(cfg, data, b, track_test=True)

    path = str(tmp_path / "state.pt")

    class Crash(Exception):
        pass

    def save_then_crash(m, res):
        if m["epoch"] == stop_after:
            save_training_state(res.training_state(), path)
            raise Crash   # the worker dies right after its checkpoint

    b, data = fresh()
    with pytest.raises(Crash):
        train_network(cfg, data, b, track_test=True, on_epoch=save_then_crash)
    state = load_training_state(path)
    assert state["epoch"] == stop_after
    every_key = list(b.model.state_dict())
    backbone = [k for k in every_key if k.startswith("backbone.")]
    assert backbone and any(k.startswith("decoder.") for k in every_key)
    if frozen:   # only what training changes is saved
        assert state["constant_keys"] == backbone
        assert sorted(state["model"]) == sorted(set(every_key) - set(backbone))
    else:
        assert state["constant_keys"] == [] and list(state["model"]) == every_key
    # improving: the current weights are the best ones, stored once; else both are saved
    assert (state["best"]["epoch"] == stop_after) == improving
    if improving:
        for k, v in state["model"].items():
            assert state["best"]["state_dict"][k].untyped_storage().data_ptr() == \
                v.untyped_storage().data_ptr(), k
    torch.manual_seed(12345)   # a new process: the global RNG is elsewhere
    b, data = fresh()
    seen = []
    resumed = train_network(cfg, data, b, track_test=True, resume=state,
                            on_epoch=lambda m, r: seen.append(m["epoch"]))
    assert resumed.resumed_epoch == stop_after
    assert seen == list(range(stop_after + 1, len(full.history) + 1))
    keys = ("epoch", "train_loss", "val_ev", "val_r", "best_val_ev", "lr")
    assert [[h[k] for k in keys] for h in resumed.history] == \
        [[h[k] for k in keys] for h in full.history]
    assert (resumed.best_epoch, resumed.best_val_ev, resumed.stopped_early) == \
        (full.best_epoch, full.best_val_ev, full.stopped_early)
    assert list(resumed.state_dict) == list(full.state_dict)
    for k, v in full.state_dict.items():
        assert torch.equal(resumed.state_dict[k], v), k
    for split in ("val", "test"):
        np.testing.assert_array_equal(resumed.predictions[split], full.predictions[split])
    # the dropout and shuffling really matter: the uninterrupted run is not a fixed point
    assert len({round(h["train_loss"], 12) for h in full.history}) == len(full.history)


def test_training_state_errors(planted, tmp_path):
    from cortexzoo.training.finetune import (TrainResult, load_training_state,
                                             save_training_state)

    with pytest.raises(RuntimeError, match="only during training"):
        TrainResult().training_state()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_training_state(str(bad))
    ds = load_dataset(planted)
    cfg = load_preset("shallow-cnn", image_size=32, epochs=3, lr=3e-3)
    b = build_network(cfg, ds.n_neuroids)
    data = prepare_data(ds, make_splits(ds.stimuli["stimulus_id"], 0.15, 0.15), b.preprocess)
    states = []
    run = train_network(cfg, data, b, on_epoch=lambda m, r: states.append(r.training_state()))
    with pytest.raises(ValueError, match="seed 0, 3 epochs.*seed 1"):
        train_network(cfg.replace(seed=1), data, build_network(cfg, ds.n_neuroids),
                      resume=states[0])
    # a state of the run's last epoch resumes to the same end without training more
    again = train_network(cfg, data, build_network(cfg, ds.n_neuroids), resume=states[-1])
    assert len(again.history) == 3 and again.resumed_epoch == 3
    # a version-1 state (every weight saved) is still read
    v1 = {**states[0], "version": 1}
    v1.pop("constant_keys"), v1.pop("constant_digest")
    v1 = load_training_state(save_training_state(v1))
    old = train_network(cfg, data, build_network(cfg, ds.n_neuroids), resume=v1)
    assert old.resumed_epoch == 1 and old.best_val_ev == run.best_val_ev
    assert all(torch.equal(old.state_dict[k], v) for k, v in run.state_dict.items())
    with pytest.raises(ValueError, match="version 1 or 2"):
        load_training_state(save_training_state({**states[0], "version": 9}))
    # a frozen backbone's weights are left out of the state and checked by digest: a
    # network whose frozen weights differ cannot continue from it
    fcfg = cfg.replace(frozen=True)
    fstates = []
    train_network(fcfg, data, build_network(fcfg, ds.n_neuroids),
                  on_epoch=lambda m, r: fstates.append(r.training_state()))
    other = build_network(fcfg, ds.n_neuroids)
    with torch.no_grad():
        next(other.model.backbone.parameters()).add_(1e-3)
    with pytest.raises(ValueError, match="frozen backbone"):
        train_network(fcfg, data, other, resume=fstates[0])


def test_killed_finetune_run_continues_from_its_training_state(planted, tmp_path, monkeypatch):
    """run_finetune saves its training state every epoch; a run killed right after the
    state of epoch 3 was written continues from there when started again, and writes
    exactly the scores and history of a run that was never killed. The state is gone once
    the unit is complete; a corrupt one is a clear error; --force starts over."""
    cfg = load_preset("shallow-cnn", image_size=32, epochs=6, lr=3e-3, decoder="mlp", width=32,
                      dropout=0.2)
    ref = run_finetune(planted, cfg, str(tmp_path / "ref"))
    out = str(tmp_path / "killed")
    store = ResultStore(out)

    class Killed(BaseException):
        pass

    put, saved = ResultStore.put_bytes, []

    def put_then_die(self, relpath, data):
        uri = put(self, relpath, data)
        if relpath.endswith("/training_state.pt"):
            saved.append(relpath)
            if len(saved) == 3:
                raise Killed
        return uri

    monkeypatch.setattr(ResultStore, "put_bytes", put_then_die)
    with pytest.raises(Killed):
        run_finetune(planted, cfg, out)
    monkeypatch.setattr(ResultStore, "put_bytes", put)
    state_rel = saved[-1]
    assert store.exists(state_rel) and not store.completed_units()
    good = store.get_bytes(state_rel)
    store.put_bytes(state_rel, good[:100])   # e.g. a copy cut short by hand
    with pytest.raises(ValueError, match=r"training_state\.pt.*--force"):
        run_finetune(planted, cfg, out)
    store.put_bytes(state_rel, good)

    again = run_finetune(planted, cfg, out)
    assert again.resumed_epoch == 3 and not again.skipped
    assert again.unit_key == ref.unit_key
    drop = lambda hs: [{k: v for k, v in h.items() if k != "seconds"} for h in hs]  # noqa: E731
    assert drop(again.history) == drop(ref.history)
    assert (again.best_epoch, again.val_ev, again.test_ev, again.test_r) == \
        (ref.best_epoch, ref.val_ev, ref.test_ev, ref.test_r)
    cols = ["region", "split", "metric", "value"]
    pd.testing.assert_frame_equal(again.scores[cols].reset_index(drop=True),
                                  ref.scores[cols].reset_index(drop=True))
    assert not store.exists(state_rel)   # the unit is complete

    # --force retrains from the first epoch, to the same numbers
    forced = run_finetune(planted, cfg, out, force=True)
    assert forced.resumed_epoch == 0 and drop(forced.history) == drop(ref.history)
