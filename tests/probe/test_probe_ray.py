"""End to end: `cortexzoo twins probe` on two tiny trained twins (CPU, 18x32 frames) on a
local Ray instance; every number checked against an independent computation; resumed
runs skip finished units; the HTML report shows the probes."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.ray

TWINS = {"cnn": dict(encoder_kwargs={"channels": [8, 8, 8], "dropout": 0.0}),
         "shufflenet_v2_x1_0": {}}
TINY_YAML = """
batch_size: 128
orientation: {train_sizes: [16, 64, 256], n_val: 128, n_test: 256, n_ood: 256}
contrast: {n_train: 256, n_val: 128, n_test_per_contrast: 64, n_test_blank: 128,
           eval_contrasts: [0.0, 0.1, 0.3, 1.0]}
motion: {n_frames: 10, n_train: 256, n_val: 128, n_test_per_coherence: 64,
         eval_coherences: [0.0, 0.5, 1.0]}
tuning: {n_orientations: 8, n_phases: 6, n_sfs: 6, contrasts: [0.0, 0.1, 0.3, 0.6, 1.0]}
eigenspectrum: {n_clips: 300, ranks: [2, 12]}
linear: {l2_grid: [1.0e-3, 1.0e-1]}
"""
REPEAT = ((100, 300), (450, 650))


def _sessions(root: str) -> None:
    """Two animals; session00 shows frames 100-300 again at 450-650 (independent Poisson
    draws each time), listed as `repeats` in its session.json."""
    from cortexzoo.data.sessions import make_segments, write_session, write_sessions_index
    from cortexzoo.data.sessions_synth import make_movie, make_neurons, neuron_rates

    names = []
    for a, n in enumerate((6, 8)):
        rng = np.random.default_rng([5, a])
        frames = make_movie(800, 18, 32, seed=a)
        extra = {}
        if a == 0:
            (a0, b0), (a1, b1) = REPEAT
            frames[a1:b1] = frames[a0:b0]
            extra = {"repeats": [list(r) for r in REPEAT]}
        rates = neuron_rates(frames, make_neurons(n, 18, 32, 5, seed=10 + a)) * 3.0
        name = f"session{a:02d}"
        write_session(root, name, frames, rng.poisson(rates).astype(np.float32),
                      animal_id=f"mouse{a:02d}", segments=make_segments(800), rates=rates,
                      extra=extra)
        names.append(name)
    write_sessions_index(root, names)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Sessions and two twins trained in-process, exported as `twins train` does."""
    from cortexzoo.store import ResultStore
    from cortexzoo.twins.train import fit_local, pair_key, save_twin_bytes

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("probe_e2e")
    data, out = str(base / "sessions"), str(base / "results")
    _sessions(data)
    store = ResultStore(out)
    for enc, kw in TWINS.items():
        tw = dict(encoder=enc, feature_dim=16, hidden_dim=16, batch_size=32, max_epochs=2,
                  seed=0, **kw)
        r = fit_local(tw, data)
        store.put_bytes(f"twins/best/{pair_key(enc, 0)}.pt",
                        save_twin_bytes(r["best"], data=data, encoder=enc, seed=0))
    cfg = base / "probe.yaml"
    cfg.write_text(TINY_YAML)
    return {"data": data, "out": out, "config": str(cfg), "base": base}


@pytest.fixture(scope="module")
def probed(ray_local, trained):
    from cortexzoo.cli import main

    rc = main(["twins", "probe", "--data", trained["data"], "--out", trained["out"],
               "--config", trained["config"]])
    assert rc == 0
    return trained


def _store(out):
    from cortexzoo.store import ResultStore

    return ResultStore(out)


def _pq(store, rel):
    return pd.read_parquet(io.BytesIO(store.get_bytes(rel)))


def _config(trained):
    from cortexzoo.probe.config import ProbeConfig

    import yaml

    return ProbeConfig.from_dict({**yaml.safe_load(TINY_YAML), "data": trained["data"],
                                  "out": trained["out"]})


def test_every_unit_writes_scores_tables_and_timings(probed):
    from cortexzoo.probe.config import FAMILIES

    store = _store(probed["out"])
    units = store.completed_units()
    pairs = ["cnn-seed0", "shufflenet_v2_x1_0-seed0"]
    assert {f"probe-{p}-{f}" for p in pairs for f in FAMILIES} | {"probe-neural-cvpca"} <= units
    sc = store.read_scores()
    probe = sc[sc["method"].isin(["probe", "tuning", "eigenspectrum"])]
    assert set(probe["model"]) == {"twin:cnn#seed0", "twin:shufflenet_v2_x1_0#seed0",
                                   "neural:recorded"}
    assert set(probe.loc[probe["family"] == "tuning", "method"]) == {"tuning"}
    assert set(probe.loc[probe["family"] == "orientation", "method"]) == {"probe"}
    for p in pairs:
        for t in ("orientation", "contrast", "motion", "tuning", "tuning_curves",
                  "eigenspectrum"):
            assert store.exists(f"probes/{t}/{p}.parquet"), (p, t)
        for f in FAMILIES:
            tm = store.get_json(f"probes/timings/{p}-{f}.json")
            assert tm["timings"]["total_s"] > 0 and tm["info"]["device"] == "cpu"
    for name in ("cross_model", "probe_curves", "tuning", "eigenspectra"):
        assert store.get_bytes(f"probes/plots/{name}.png")[:8] == b"\x89PNG\r\n\x1a\n"


def test_cross_model_table_matches_independent_computations(probed):
    from cortexzoo.data.sessions import load_sessions
    from cortexzoo.mapping.metrics import chunked_pearson
    from cortexzoo.twins.evaluate import predict_split
    from cortexzoo.twins.train import load_twin

    store = _store(probed["out"])
    cross = _pq(store, "probes/cross_model.parquet").set_index("architecture")
    assert list(cross.index) == ["cnn", "shufflenet_v2_x1_0"]
    assert (cross["seed"] == 0).all()
    coll = load_sessions(probed["data"])
    for enc in TWINS:
        model, _ = load_twin(store.get_bytes(f"twins/best/{enc}-seed0.pt"))
        # neural prediction: chunked r over every neuron of every animal (twins eval was
        # missing, so the probe run evaluated the twin)
        preds = predict_split(model, coll, "test")
        r = np.concatenate([chunked_pearson(v["pred"], v["y"], 100) for v in preds.values()])
        assert cross.at[enc, "neural_prediction"] == pytest.approx(np.nanmean(r), abs=1e-6)
        ori = _pq(store, f"probes/orientation/{enc}-seed0.parquet")
        last = ori[ori["train_size"] == 256].set_index("split")["accuracy"]
        assert cross.at[enc, "orientation_id_accuracy"] == last["id"]
        assert cross.at[enc, "orientation_ood_accuracy"] == last["ood"]
        con = _pq(store, f"probes/contrast/{enc}-seed0.parquet").sort_values("contrast")
        x, y = con["contrast"].to_numpy(), con["balanced_accuracy"].to_numpy()
        assert cross.at[enc, "contrast_nauc"] == pytest.approx(np.trapezoid(y, x) / (x[-1] - x[0]))
        mot = _pq(store, f"probes/motion/{enc}-seed0.parquet").sort_values("coherence")
        x, y = mot["coherence"].to_numpy(), mot["accuracy"].to_numpy()
        assert cross.at[enc, "motion_nauc"] == pytest.approx(np.trapezoid(y, x) / (x[-1] - x[0]))
        tun = _pq(store, f"probes/tuning/{enc}-seed0.parquet")
        assert len(tun) == 16
        ok = tun["qc_orientation"].to_numpy(bool)
        assert cross.at[enc, "median_gosi"] == pytest.approx(np.median(tun["gosi"][ok]))
        ok = tun["qc_contrast"].to_numpy(bool)
        if ok.any():
            assert cross.at[enc, "median_c50"] == pytest.approx(np.median(tun["nr_c50"][ok]))


def test_gru_alpha_is_the_power_law_of_independently_extracted_states(probed):
    from cortexzoo.data.sessions import load_sessions
    from cortexzoo.mapping.eigenspectrum import eigenspectrum, powerlaw_alpha
    from cortexzoo.probe.geometry import reference_clips
    from cortexzoo.twins.train import load_twin

    store = _store(probed["out"])
    cross = _pq(store, "probes/cross_model.parquet").set_index("architecture")
    cfg = _config(probed)
    sess = load_sessions(probed["data"]).sessions[0]
    ds, idx = reference_clips(sess, cfg, 5)
    assert len(idx) == 300 and len(set(idx)) == 300
    # the clips come from the train and test targets of the session, nothing else
    allowed = set(sess.targets("train", 5)) | set(sess.targets("test", 5))
    assert set(ds.target_bins[idx]) <= allowed
    for enc in TWINS:
        model, _ = load_twin(store.get_bytes(f"twins/best/{enc}-seed0.pt"))
        x, _ = ds.get_batch(idx)
        with torch.no_grad():
            h = model.hidden(x).numpy()
        alpha = powerlaw_alpha(eigenspectrum(h, 256), (2, 12))
        assert cross.at[enc, "alpha_gru"] == pytest.approx(alpha, abs=1e-3)


def test_neural_cvpca_reference_of_the_repeated_session(probed):
    from cortexzoo.data.sessions import load_sessions
    from cortexzoo.mapping.eigenspectrum import cvpca, powerlaw_alpha

    store = _store(probed["out"])
    sc = store.read_scores()
    row = sc[sc["model"] == "neural:recorded"]
    assert list(row["metric"]) == ["alpha_cvpca"] and list(row["session"]) == ["session00"]
    resp = load_sessions(probed["data"]).sessions[0].responses.astype(float)
    (a0, b0), (a1, b1) = REPEAT
    lam = cvpca(resp[a0:b0], resp[a1:b1], n_components=256, n_shuffles=5, seed=0)
    assert row["value"].iloc[0] == pytest.approx(powerlaw_alpha(lam, (2, 12)), nan_ok=True)
    spec = _pq(store, "probes/eigenspectrum/neural-cvpca.parquet")
    np.testing.assert_allclose(spec["eigenvalue"], lam, rtol=1e-9)


def test_a_unit_recomputed_in_process_gives_the_same_numbers(probed):
    from cortexzoo.probe.extract import FeatureExtractor
    from cortexzoo.probe.tasks import orientation_task
    from cortexzoo.twins.train import load_twin

    store = _store(probed["out"])
    model, blob = load_twin(store.get_bytes("twins/best/cnn-seed0.pt"))
    res = orientation_task(FeatureExtractor(model, tuple(blob["input_hw"]), 128, "cpu"),
                           _config(probed), 0)
    ray_curve = _pq(store, "probes/orientation/cnn-seed0.parquet")
    np.testing.assert_array_equal(res.tables["orientation"]["accuracy"].to_numpy(),
                                  ray_curve["accuracy"].to_numpy())


def test_rerun_skips_finished_units_and_redoes_a_deleted_one(probed):
    from cortexzoo.probe.run import probe_family

    store = _store(probed["out"])
    cfg = _config(probed)
    before = _pq(store, "probes/cross_model.parquet")
    run = probe_family(cfg)
    assert {r.status for r in run.results} == {"skipped"} and len(run.results) == 10
    assert store.forget_units(["probe-cnn-seed0-motion"]) == 1
    seen = []
    run = probe_family(cfg, on_unit=seen.append)
    assert [(r.pair, r.family, r.status) for r in seen] == [("cnn-seed0", "motion", "done")]
    assert sum(r.status == "skipped" for r in run.results) == 9
    after = _pq(store, "probes/cross_model.parquet")
    pd.testing.assert_frame_equal(before, after)


def test_html_report_shows_the_probes(probed, tmp_path):
    from cortexzoo.report.html import write_html_report

    path = write_html_report(probed["out"], tmp_path / "r.html")
    text = open(path).read()
    assert 'id="probes"' in text
    for fig in ("cross-model", "probe-curves", "tuning", "eigenspectra"):
        assert f'id="fig-probes-{fig}"' in text
    cross = _pq(_store(probed["out"]), "probes/cross_model.parquet")
    assert f"{cross['neural_prediction'].iloc[0]:.3f}" in text
    assert "shufflenet_v2_x1_0" in text


def test_bad_input_is_named(trained, tmp_path):
    from cortexzoo.cli import main
    from cortexzoo.probe.config import ProbeConfig
    from cortexzoo.probe.run import probe_family

    empty = str(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no trained twins under .*twins/best"):
        probe_family(ProbeConfig(data=trained["data"], out=empty))
    with pytest.raises(ValueError, match="sessions root .*nowhere: missing file .*index.json"):
        probe_family(ProbeConfig(data=str(tmp_path / "nowhere"), out=trained["out"]))
    with pytest.raises(FileNotFoundError, match="resnet18-seed0"):
        probe_family(ProbeConfig(data=trained["data"], out=trained["out"],
                                 encoders=["cnn", "resnet18"], seeds=[0]))
    with pytest.raises(ValueError, match="reference_session: no session 'nope'"):
        probe_family(ProbeConfig(data=trained["data"], out=trained["out"],
                                 eigenspectrum={"reference_session": "nope"}))
    assert main(["twins", "probe", "--data", trained["data"], "--out", empty]) == 2
