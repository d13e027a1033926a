"""Encoders a scan saves (--save-encoders): what the scan's ridge fitted, reloadable, safe."""
import json
import os

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from cortexzoo.data import load_dataset
from cortexzoo.scan import ScanConfig, run_scan
from cortexzoo.scan.encoders import EncoderError, choose_layers, load_encoder
from cortexzoo.scan.model import cached_features
from cortexzoo.store import ResultStore

from control_planted import MODEL_A, MODEL_B, PLANTED_LAYER


def test_best_is_the_leaderboards_heldout_layer(planted_scan):
    res = planted_scan["result"]
    board = res.leaderboard.set_index("model")
    for model in (MODEL_A, MODEL_B):
        saved = {e["layer"] for e in planted_scan["encoders"][model]}
        assert board.loc[model, "ridge_layer"] in saved
        assert all(e["chosen"].startswith("heldout:") for e in planted_scan["encoders"][model])
    assert planted_scan["encoders"][MODEL_A][0]["layer"] == PLANTED_LAYER
    index = ResultStore(planted_scan["cfg"].out).get_json(
        os.path.relpath(planted_scan["a"], planted_scan["cfg"].out).rsplit("/", 3)[0] + "/index.json")
    assert {e["uri"] for e in index} == {e["uri"] for v in planted_scan["encoders"].values() for e in v}


def test_reloaded_encoder_predicts_what_the_scans_ridge_fitted(planted_scan):
    """Independent reference: scikit-learn's Ridge at each site's chosen alpha, on the
    features the scan cached; alphas and r are the scan's per-neuroid ones."""
    cfg = planted_scan["cfg"]
    enc = load_encoder(planted_scan["a"])
    ds = load_dataset(planted_scan["data"])
    X = cached_features(ResultStore(cfg.out), ds, MODEL_A, enc.layer, cfg).astype(np.float64)
    Y = ds.mean_responses()
    cols = [ds.neuroids["neuroid_id"].tolist().index(s) for s in enc.sites]
    ours = enc.predict(X)
    X_new = X + np.random.default_rng(0).normal(0, X.std(), X.shape)   # images never fitted
    new = enc.predict(X_new)
    for j, c in enumerate(cols):
        ref = Ridge(alpha=enc.site_stat("alpha")[j]).fit(X, Y[:, c])
        np.testing.assert_allclose(ours[:, j], ref.predict(X), rtol=1e-7, atol=1e-7 * np.abs(Y).max())
        np.testing.assert_allclose(new[:, j], ref.predict(X_new), rtol=1e-6,
                                   atol=1e-6 * np.abs(ref.predict(X_new)).max())
        np.testing.assert_allclose(enc.coef[:, j], ref.coef_, rtol=1e-5, atol=1e-6 * np.abs(ref.coef_).max())
    per = ResultStore(cfg.out).read_neuroid_scores()
    per = per[(per.model == MODEL_A) & (per.layer == enc.layer)].pivot_table(
        index="neuroid_id", columns="metric", values="value")
    # the per-neuroid table keeps float32
    np.testing.assert_allclose(enc.site_stat("alpha"), per.loc[enc.sites, "alpha"], rtol=1e-6)
    np.testing.assert_allclose(enc.site_stat("r"), per.loc[enc.sites, "pearson_r"], rtol=1e-6)
    np.testing.assert_allclose(enc.x_mean, X.mean(0))
    np.testing.assert_allclose(enc.site_stat("response_sd"), Y[:, cols].std(0, ddof=1))
    assert enc.site_stat("r").mean() > 0.8   # the planted layer is well predicted


def test_encoder_records_what_prediction_from_pixels_needs(planted_scan):
    from cortexzoo.features.reduce import layer_seed
    from cortexzoo.zoo import describe_model, parse_spec
    from cortexzoo.zoo.weights import weights_identity

    m = load_encoder(planted_scan["a"]).meta
    assert m["format"] == "cortexzoo.encoder" and m["version"] == 1
    assert m["weights_id"] == weights_identity(MODEL_A) and m["model_key"] == parse_spec(MODEL_A).key
    pre = describe_model(MODEL_A, input_size=64, stimulus="whole").preprocess.to_dict()
    assert m["preprocessing"] == json.loads(json.dumps(pre))
    assert m["preprocessing"]["mode"] == "whole" and m["stimulus"] == "whole"
    r = m["reduction"]
    assert (r["method"], r["n_components"], r["seed"]) == ("srp", 256, 0)
    assert r["layer_seed"] == layer_seed(0, m["model_key"], m["layer"]) and "srp_matrix" in r["recipe"]
    assert m["standardization"] == {**m["standardization"], "center": True, "scale": False}
    assert m["dataset_fingerprint"] and m["scan_key"] and m["run_id"]


def test_weights_file_is_safetensors_and_tampering_is_caught(planted_scan, tmp_path):
    import shutil

    src = planted_scan["a"]
    blob = open(os.path.join(src, "weights.safetensors"), "rb").read()
    n = int.from_bytes(blob[:8], "little")          # safetensors: a length, a JSON header, raw data
    header = json.loads(blob[8:8 + n])
    assert header["coef"]["dtype"] == "F64" and "__metadata__" in header
    assert b"pickle" not in blob[:8 + n] and not blob.startswith(b"\x80")
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    with open(bad / "weights.safetensors", "r+b") as f:
        f.seek(len(blob) - 8)
        f.write(b"\x00" * 8)
    with pytest.raises(EncoderError, match="digest"):
        load_encoder(str(bad))
    meta = json.loads((bad / "encoder.json").read_text())
    (bad / "encoder.json").write_text(json.dumps(dict(meta, version=99)))
    with pytest.raises(EncoderError, match="version 99"):
        load_encoder(str(bad / "encoder.json"))
    with pytest.raises(EncoderError, match="no encoder"):
        load_encoder(str(tmp_path / "nothing"))


def test_listed_layers_and_rerun_keeps_saved_encoders(planted_scan, tmp_path):
    import dataclasses

    cfg = planted_scan["cfg"]
    res = planted_scan["result"]
    again = run_scan(dataclasses.replace(cfg, save_encoders=["stem", "stages.1.0"], models=[MODEL_A]))
    got = {(e["layer"], e["chosen"]) for e in again.summary["encoders"]}
    assert got == {("stem", "listed"), ("stages.1.0", "listed")}
    assert again.written_units == 0   # every unit was done: only encoders were added
    kept = run_scan(dataclasses.replace(cfg, models=[MODEL_A]))
    first = load_encoder(planted_scan["a"]).meta["created_at"]
    assert [e for e in kept.summary["encoders"] if e["uri"] == planted_scan["a"]]
    assert load_encoder(planted_scan["a"]).meta["created_at"] == first   # not fitted again
    with pytest.raises(ValueError, match="no scanned model has layer"):
        choose_layers(res.scores, ["nope"])
    with pytest.raises(ValueError, match="names no layer"):
        ScanConfig(save_encoders=",")
    assert choose_layers(pd.DataFrame(columns=res.scores.columns), "best") == {}


def test_cli_scan_saves_encoders(planted_scan, capsys):
    from cortexzoo.cli import main

    cfg = planted_scan["cfg"]
    argv = ["scan", "--data", cfg.data, "--models", MODEL_A, "--out", cfg.out, "--engine", "local",
            "--input-size", "64", "--k", "256", "--save-encoders", "best", "--quiet"]
    # the fixture's scoring settings differ from the CLI's defaults: a scan of its own
    assert main(argv) == 0
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if x.startswith(f"encoder {MODEL_A} {PLANTED_LAYER} planted")]
    assert line, out
    uri = line[0].rsplit(": ", 1)[1]
    assert load_encoder(uri).layer == PLANTED_LAYER


def test_an_encoder_round_trips_through_object_storage(planted_scan, s3_bucket):
    from cortexzoo.scan.encoders import write_encoder

    enc = load_encoder(planted_scan["a"])
    uri = write_encoder(ResultStore(s3_bucket), "encoders/copy/a", enc)
    assert uri == f"{s3_bucket}/encoders/copy/a"
    back = load_encoder(uri)
    assert back.meta == enc.meta
    for k in ("coef", "intercept", "x_mean"):
        np.testing.assert_array_equal(getattr(back, k), getattr(enc, k))


@pytest.mark.ray
def test_a_ray_scan_fits_its_encoders_on_the_workers(planted_scan, ray_local, tmp_path,
                                                     monkeypatch):
    """On Ray the encoders are fitted by tasks beside the scoring: the driver never reads a
    feature (its reads fail here; workers are other processes), and the readouts equal
    those the local scan fitted in one process."""
    import dataclasses

    from cortexzoo.features.cache import FeatureCache

    def no_reads(*a, **k):
        raise AssertionError("the driver read features")

    monkeypatch.setattr(FeatureCache, "read", no_reads)
    cfg = dataclasses.replace(planted_scan["cfg"], models=[MODEL_A], out=str(tmp_path / "ray"),
                              engine="ray")
    res = run_scan(cfg)
    assert res.written_units > 0 and not res.summary.get("failures")
    (entry,) = [e for e in res.summary["encoders"] if e["model"] == MODEL_A]
    ours, ref = load_encoder(entry["uri"]), load_encoder(planted_scan["a"])
    assert ours.layer == ref.layer == PLANTED_LAYER and ours.sites == ref.sites
    np.testing.assert_allclose(ours.site_stat("alpha"), ref.site_stat("alpha"))
    np.testing.assert_allclose(ours.x_mean, ref.x_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.coef, ref.coef, rtol=1e-4, atol=1e-5 * np.abs(ref.coef).max())
    np.testing.assert_allclose(ours.site_stat("r"), ref.site_stat("r"), atol=1e-5)
    assert ours.meta["ridge"]["dtype"] == "float64" and ours.meta["n_stimuli"] == 120
