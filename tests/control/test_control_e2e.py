"""End to end on a planted recording: a scan saves encoders, `control accentuate` sweeps
sites from seed images, `control controversial` pits two encoders, a lab's dataset
folder is made from the sweep's stimuli.parquet unchanged, and `control score` scores it
(and oracles) against hand computations; resumed per sweep on Ray."""
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cortexzoo.cli import main
from cortexzoo.control import ControlConfig, SynthConfig, run_control, run_score
from cortexzoo.data import load_dataset, write_dataset
from cortexzoo.scan.encoders import load_encoder

from control_planted import MODEL_A, MODEL_B, random_encoder

STEPS = 100


@pytest.fixture(scope="module")
def sweeps(planted_scan, tmp_path_factory):
    """4 sites x 3 seeds, regularized (defaults), and 2 x 2 of them unregularized."""
    root = tmp_path_factory.mktemp("sweeps")
    enc = load_encoder(planted_scan["a"])
    sites = enc.sites[:4]
    kw = dict(encoder=planted_scan["a"], seeds=planted_scan["data"], engine="local", progress=False)
    reg = run_control(ControlConfig(sites=sites, n_seeds=3, out=str(root / "reg"),
                                    synth=SynthConfig(steps=STEPS), **kw))
    unreg = run_control(ControlConfig(sites=sites[:2], n_seeds=2, out=str(root / "unreg"),
                                      synth=SynthConfig(steps=STEPS, reg_weight=0.0), **kw))
    return {"enc": enc, "sites": sites, "reg": reg, "unreg": unreg, "root": root}


def test_sweeps_step_from_suppressing_to_enhancing(sweeps):
    res = sweeps["reg"]
    st = res.stimuli
    assert res.written == 12 and len(st) == 12 * 11
    assert sorted(st["level"].unique()) == list(range(-5, 6))
    # the intended levels: seed prediction + {-5..5} x 0.2 SD of the site's responses
    sd = pd.Series(sweeps["enc"].site_stat("response_sd"), index=sweeps["enc"].sites)
    np.testing.assert_allclose(st["target"], st["seed_prediction"] + st["level"] * 0.2 * sd[st["site"]].to_numpy())
    rho = res.sweeps["spearman"]
    assert (rho >= 0.95).mean() >= 0.8, res.sweeps
    # within a tolerance of each target: a fifth of an SD (one level step) for 90% of images
    assert (np.abs(st["error_sd"]) <= 0.2).mean() >= 0.9, st[["site", "level", "error_sd"]]
    assert np.abs(st["error_sd"]).median() < 0.1
    # the seed's own level is the seed (up to the logit's clamp: a grey level)
    assert st.loc[st["level"] == 0, "distance_pixels"].max() < 2 / 255


def test_regularized_sweeps_stay_closer_to_the_seed_than_unregularized(sweeps):
    key = ["site", "seed_id"]
    reg = sweeps["reg"].sweeps.set_index(key)
    un = sweeps["unreg"].sweeps.set_index(key)
    both = reg.loc[un.index]
    assert (both["mean_distance_pixels"] < un["mean_distance_pixels"]).all(), (both, un)
    assert (both["mean_distance_layer"] < un["mean_distance_layer"]).all()
    assert (both["reg_layer"] == un["reg_layer"]).all()   # measured in the same layer
    assert (un["spearman"] >= 0.95).all()                 # both reach their levels


def test_the_folder_is_a_stimulus_set_with_pngs_tables_and_a_contact_sheet(sweeps):
    out = sweeps["reg"].out
    ds = load_dataset(out)                                  # validates every image
    assert ds.meta["stimulus_set"] is True and ds.n_stimuli == 132
    st = ds.stimuli
    assert st["stimulus_id"].is_unique and st["image"].str.match(r"images/accentuate/.+\.png").all()
    from PIL import Image

    im = Image.open(os.path.join(out, st["image"].iloc[0]))
    assert im.size == (64, 64) and im.mode == "RGB"
    table = pd.read_csv(os.path.join(out, "control", "accentuate.csv"))
    assert {"site", "seed_id", "target", "predicted", "distance_pixels", "distance_layer"} <= set(table.columns)
    assert len(table) == 132
    png = open(os.path.join(out, "plots", "control-accentuate.png"), "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and sweeps["reg"].plots["accentuate"].endswith(".png")
    # the achieved predictions are the encoder's on the PNGs as saved (8 bits)
    from cortexzoo.control.seeds import read_seeds
    from cortexzoo.control.site_model import SiteModel
    from cortexzoo.control.synth import from_uint8

    enc = sweeps["enc"]
    rows = st.iloc[:11]
    imgs = read_seeds([os.path.join(out, p) for p in rows["image"]], enc.meta["preprocessing"])
    m = SiteModel(enc, [rows["site"].iloc[0]])
    got = m.predict(from_uint8(np.stack([s.pixels for s in imgs])))[:, 0]
    np.testing.assert_allclose(got, rows["predicted"], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def controversial(planted_scan, sweeps):
    out = str(sweeps["root"] / "reg")   # into the same folder: one stimulus set for the lab
    return run_control(ControlConfig(kind="controversial", a=planted_scan["a"], b=planted_scan["b"],
                                     sites=sweeps["sites"][:2], seeds=planted_scan["data"], n_seeds=2,
                                     out=out, engine="local", progress=False,
                                     synth=SynthConfig(steps=STEPS)))


def test_controversial_pairs_split_the_two_models(controversial):
    con = controversial.stimuli[controversial.stimuli["kind"] == "controversial"]
    assert len(con) == 2 * 2 * 2
    a_hi = con[con["condition"] == "a_high"].set_index(["site", "seed_id"])
    b_hi = con[con["condition"] == "b_high"].set_index(["site", "seed_id"])
    # A's prediction exceeds B's on A's image and the reverse (in SDs from each one's seed)
    assert (a_hi["z_a"] > a_hi["z_b"]).all() and (b_hi["z_b"] > b_hi["z_a"]).all()
    assert (a_hi["z_a"] > 0.5).all() and (a_hi["z_b"] < -0.5).all()
    # and in the models' own units: A's image moves A up and B down relative to B's image
    assert (a_hi["pred_a"] > b_hi["pred_a"]).all() and (b_hi["pred_b"] > a_hi["pred_b"]).all()
    assert set(con["model"]) == {MODEL_A} and set(con["model_b"]) == {MODEL_B}
    assert len(controversial.stimuli) == 132 + 8   # the accentuation sweeps are kept
    sheet = os.path.join(controversial.out, "plots", "control-controversial.png")
    assert open(sheet, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(os.path.join(controversial.out, "control", "controversial.csv"))
    assert len(table) == 8 and {"z_a", "z_b", "pred_a", "pred_b"} <= set(table.columns)


def _lab_folder(src: str, dst: str, sites, seed=0):
    """What a lab brings back: the control folder's stimuli.parquet as it is, its images,
    and recordings (noisy, 3 repetitions) of the sites."""
    stim = pd.read_parquet(os.path.join(src, "stimuli.parquet"))
    shutil.copytree(os.path.join(src, "images"), os.path.join(dst, "images"))
    rng = np.random.default_rng(seed)
    R = rng.normal(size=(len(stim), 3, len(sites))).astype(np.float32)
    neuroids = pd.DataFrame({"neuroid_id": sites, "subject": "monkey", "region": "IT"})
    write_dataset(dst, meta={"name": "lab-recordings", "response_unit": "spikes/s"},
                  stimuli=stim, neuroids=neuroids, responses=R)
    return stim, R.mean(axis=1)


def test_control_score_of_recordings_equals_a_hand_computation(sweeps, controversial, tmp_path):
    src = sweeps["reg"].out
    sites = sweeps["sites"]
    stim, Y = _lab_folder(src, str(tmp_path / "lab"), sites)
    assert main(["control", "score", "--stimuli", src, "--responses", str(tmp_path / "lab")]) == 0
    res = run_score(src, responses=str(tmp_path / "lab"), out=str(tmp_path / "score"))
    resp = Y[np.arange(len(stim)), [sites.index(s) for s in stim["site"]]]
    acc = stim.assign(resp=resp)[stim["kind"] == "accentuate"]
    hand = {k: stats.pearsonr(g["target"], g["resp"])[0] for k, g in acc.groupby(["site", "seed_id"])}
    got = res.sweeps.set_index(["site", "seed_id"])["control_r"]
    assert len(got) == len(hand) == 12
    for k, r in hand.items():
        assert got[k] == pytest.approx(r, abs=1e-6)   # float32 recordings
    per_site = pd.Series(hand).groupby(level=0).mean()
    c = res.summary["control"]
    assert c["mean_r_over_sites"] == pytest.approx(per_site.mean())
    assert c["sd_r_over_sites"] == pytest.approx(per_site.std(ddof=1))
    assert c["mean_r_over_sweeps"] == pytest.approx(np.mean(list(hand.values())))
    con = stim.assign(resp=resp)[stim["kind"] == "controversial"]
    follows = [np.sign(g.loc[g.condition == "a_high", "resp"].iloc[0] - g.loc[g.condition == "b_high", "resp"].iloc[0])
               for _, g in con.groupby(["site", "seed_id"])]
    assert res.summary["controversial"]["fraction_follows_a"] == pytest.approx(np.mean(np.array(follows) > 0))
    for name in ("sweeps.csv", "sites.csv", "controversial.csv", "summary.json"):
        assert os.path.exists(tmp_path / "score" / name)
    # a neuroid table without the sites is a clear error
    with pytest.raises(ValueError, match="not neuroids"):
        bad = tmp_path / "bad"
        _lab_folder(src, str(bad), ["x1", "x2", "x3", "x4"])
        run_score(src, responses=str(bad))


def test_oracle_scores_near_one_for_the_generating_model_near_zero_for_unrelated(sweeps, controversial,
                                                                                 tmp_path):
    """The generating encoder as its own oracle: ~1. Unrelated oracles (random readouts of
    random-init networks, not fitted to any site): a sweep moves the image along one
    direction, so each sweep's r with such an oracle is large with a random sign, and only
    its mean over sweeps and readouts is ~0: averaged over 6 readouts x 12 sweeps (its
    standard error about 0.1) it must be within 0.3 of 0."""
    src = sweeps["reg"].out
    enc, sites = sweeps["enc"], sweeps["sites"]
    own = run_score(src, oracle=enc.uri, out=str(tmp_path / "own"), engine="local")
    print("generating oracle:", own.summary["control"])
    assert own.summary["control"]["mean_r_over_sites"] > 0.95
    assert own.summary["controversial"]["fraction_follows_a"] == 1.0   # A made the A-high images
    means, all_r = [], []
    for i, (spec, layer) in enumerate([("torchvision:resnet18@random#3", "layer3.0"),
                                       ("timm:test_byobnet@random#7", "stages.2.0")] * 3):
        uri = random_encoder(str(tmp_path / f"rnd{i}"), spec, layer, sites, seed=i, like=enc)
        s = run_score(src, oracle=uri, out=str(tmp_path / f"rnd{i}" / "score"), engine="local")
        means.append(s.summary["control"]["mean_r_over_sweeps"])
        all_r += s.sweeps["control_r"].tolist()
    print("unrelated oracles:", np.round(means, 3), "all:", round(float(np.mean(all_r)), 3))
    assert abs(np.mean(all_r)) < 0.3, means
    assert np.std(all_r) > 0.3          # per sweep, large either way
    assert own.summary["control"]["mean_r_over_sites"] - np.mean(all_r) > 0.6


@pytest.mark.ray
def test_oracle_predictions_as_ray_tasks_equal_local_ones(sweeps, controversial, ray_local,
                                                          tmp_path):
    from cortexzoo.control.score import oracle_responses, read_stimuli

    src, enc = sweeps["reg"].out, sweeps["enc"]
    stim = read_stimuli(src)
    local = oracle_responses(stim, src, enc.uri, engine="local")
    remote = oracle_responses(stim, src, enc.uri, engine="ray")
    assert len(set(stim["site"])) > 1
    np.testing.assert_allclose(remote, local, rtol=1e-5, atol=1e-6)
    # each image's own site: swapping two sites' rows changes what comes back
    other = stim.assign(site=stim["site"].map({a: b for a, b in zip(sorted(set(stim["site"])),
                                                                   sorted(set(stim["site"]))[::-1])}))
    swapped = oracle_responses(other, src, enc.uri, engine="ray")
    assert not np.allclose(swapped, local)
    from cortexzoo.scan.encoders import EncoderError

    with pytest.raises(EncoderError, match="nope"):   # in the driver, before any task
        oracle_responses(stim.assign(site="nope"), src, enc.uri, engine="ray")


@pytest.mark.ray
def test_resumes_per_sweep_as_ray_tasks_to_the_same_images(planted_scan, sweeps, ray_local, tmp_path):
    src = sweeps["unreg"].out
    out = str(tmp_path / "resume")
    shutil.copytree(src, out)
    st = pd.read_parquet(os.path.join(out, "stimuli.parquet"))
    key = st["sweep_key"].iloc[0]
    before = {p: open(os.path.join(out, p), "rb").read() for p in st.loc[st.sweep_key == key, "image"]}
    os.remove(os.path.join(out, "control", "sweeps", f"{key}.parquet"))
    shutil.rmtree(os.path.join(out, "images", "accentuate", key))
    res = run_control(ControlConfig(encoder=planted_scan["a"], sites=sweeps["sites"][:2],
                                    seeds=planted_scan["data"], n_seeds=2, out=out, engine="ray",
                                    progress=False, synth=SynthConfig(steps=STEPS, reg_weight=0.0)))
    assert (res.written, res.skipped) == (1, 3)
    for p, data in before.items():
        assert open(os.path.join(out, p), "rb").read() == data
    pd.testing.assert_frame_equal(res.stimuli.drop(columns=["code_version"]),
                                  sweeps["unreg"].stimuli.drop(columns=["code_version"]))


def test_the_example_config_is_a_control_config(tmp_path):
    from cortexzoo.core.config import read_yaml_mapping

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    d = read_yaml_mapping(os.path.join(root, "configs", "control_default.yaml"))
    cfg = ControlConfig.from_dict(d)
    assert cfg.synth == SynthConfig() and cfg.n_levels == 5 and cfg.step_sd == 0.2
    with pytest.raises(ValueError, match="unknown synth key"):
        ControlConfig.from_dict({**d, "synth": {"stpes": 3}})
    with pytest.raises(ValueError, match="needs two encoders"):
        ControlConfig(kind="controversial", a="x")


def test_cli_accentuate_and_clear_errors(planted_scan, tmp_path, capsys):
    out = str(tmp_path / "cli")
    enc = load_encoder(planted_scan["a"])

    def argv(**over):
        opts = {"--encoder": planted_scan["a"], "--top-sites": "1", "--seeds": planted_scan["data"],
                "--seed-ids": "stim_0005", "--out": out, "--steps": "5", "--n-levels": "2",
                "--engine": "local"}
        opts.update(over)
        return ["control", "accentuate", *[x for k, v in opts.items() if v is not None
                                           for x in (k, v)], "--quiet"]

    assert main(argv()) == 0
    st = pd.read_parquet(os.path.join(out, "stimuli.parquet"))
    best = enc.sites[int(np.argmax(enc.site_stat("r")))]
    assert len(st) == 5 and set(st["site"]) == {best} and set(st["seed_id"]) == {"stim_0005"}
    assert "1 sweeps made" in capsys.readouterr().out
    assert main(argv()) == 0 and "0 sweeps made, 1 already" in capsys.readouterr().out
    assert main(argv(**{"--sites": "nope"})) == 2
    assert "['nope'] not in the encoder" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"nope")
    assert main(argv(**{"--seeds": str(tmp_path / "bad.png"), "--seed-ids": None})) == 2
    assert "seed image(s) cannot be read" in capsys.readouterr().err
