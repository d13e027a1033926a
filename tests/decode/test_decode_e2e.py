"""End to end on Ray: `cortexzoo data domains` renders real photos (scikit-image's LFW
subset: faces and non-faces) in six domains; a recorded "IT" population is planted on
that stimulus set; `cortexzoo decode` decodes it with a trained network, its random
init and pixels (Ray Data extraction, Ray tasks per unit), then the stimulus set alone
(model-only, features from the cache), and resumes."""
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from cortexzoo.cli import main
from cortexzoo.data import load_dataset, write_dataset
from cortexzoo.decode import DecodeConfig, run_decode
from cortexzoo.mapping import matched_units

skimage = pytest.importorskip("skimage")
pytestmark = pytest.mark.ray

MODELS = "timm:tf_efficientnet_lite0@trained,timm:tf_efficientnet_lite0@random,pixels"
TRAINED, RANDOM, PIXELS = ("timm:tf_efficientnet_lite0@trained", "timm:tf_efficientnet_lite0@random",
                           "baseline:pixels@none")
DOMAINS = ["hvm", "lines", "silhouette", "blur", "noise", "mosaic"]
FLAGS = ["--train-domain", "hvm", "--splits", "10", "--n-train", "40", "--n-test-id", "20",
         "--n-test-ood", "20", "--draws", "2", "--grid-points", "6", "--input-size", "64", "--quiet"]


def _lfw_folder(root, per_class=60):
    faces = np.load(os.path.join(os.path.dirname(skimage.__file__), "data", "lfw_subset.npy"))
    for i, img in enumerate(faces):  # 100 faces, then 100 non-faces
        cat = "face" if i < 100 else "nonface"
        if i % 100 >= per_class:
            continue
        os.makedirs(root / cat, exist_ok=True)
        Image.fromarray((img * 255).round().astype(np.uint8)).save(root / cat / f"{i:03d}.png")
    return str(root)


def _with_it(stim_set, out, seed=0, n_sites=30):
    """The stimulus set plus 30 'IT' sites (3 repetitions): a category code shared by every
    domain, each photo's own identity signal shared by its renderings, noise."""
    src = load_dataset(stim_set)
    st = src.stimuli
    rng = np.random.default_rng(seed)
    lab = (st["category"] == "face").to_numpy().astype(int)
    sid = pd.factorize(st["source_id"])[0]
    mean = 0.2 * rng.normal(size=(2, n_sites))[lab] + 0.5 * rng.normal(size=(sid.max() + 1, n_sites))[sid]
    R = mean[:, None, :] + 0.6 * rng.normal(size=(len(st), 3, n_sites))
    shutil.copytree(os.path.join(stim_set, "images"), os.path.join(out, "images"))
    meta = {k: v for k, v in src.meta.items() if k != "stimulus_set"}
    meta["name"] = "lfw-domains-it"
    neu = pd.DataFrame({"neuroid_id": [f"it{i}" for i in range(n_sites)], "subject": "m1", "region": "IT"})
    return write_dataset(out, meta=meta, stimuli=st, neuroids=neu, responses=R.astype(np.float32))


def test_decode_real_photos_with_a_trained_net_its_random_init_and_pixels(ray_local, tmp_path, capsys):
    src = _lfw_folder(tmp_path / "src")
    assert main(["data", "domains", src, str(tmp_path / "dom"), "--domains",
                 "lines,silhouette,blur,noise,mosaic", "--size", "64", "--source-domain", "hvm",
                 "--quiet"]) == 0
    neural = _with_it(str(tmp_path / "dom"), str(tmp_path / "neural"))
    out = str(tmp_path / "R")
    assert main(["decode", "--data", neural, "--models", MODELS, "--out", out,
                 "--min-reliability", "0.3", *FLAGS]) == 0
    printed = capsys.readouterr().out
    assert "scaling factors" in printed and "accuracy at matched counts" in printed

    rows = pd.read_parquet(os.path.join(out, "scores"))
    assert set(rows["method"]) == {"decode_2afc"}
    assert set(rows["population"]) == {"IT", TRAINED, RANDOM, PIXELS}
    assert set(rows["domain"]) == set(DOMAINS)
    assert (rows["split_count"] == 10).all()
    assert set(rows.loc[rows["population"] == TRAINED, "layer"]) == {"global_pool"}  # penultimate
    full = rows[rows["k_units"] == rows["population_size"]]
    ind = full[full["domain"] == "hvm"].set_index("population")["value"]
    ood = full[full["domain"] != "hvm"].groupby("population")["value"].mean()
    assert ind[TRAINED] > 0.85 and ind[TRAINED] > ind[RANDOM]       # ImageNet features help
    assert (ind > 0.6).all() and (ood > 0.5).all()                  # above chance everywhere
    assert int(full.loc[full["population"] == TRAINED, "population_size"].iloc[0]) == 1280

    tables = printed.split("tables in ")[1].split()[0].rstrip("/")
    summary = json.load(open(os.path.join(tables, "summary.json")))
    ref_acc = summary["reference_accuracy"]
    assert summary["reference"] == "IT" and ref_acc == pytest.approx(ind["IT"])
    scaling = pd.read_csv(os.path.join(tables, "scaling.csv"))
    assert set(scaling["population"]) == {TRAINED, RANDOM, PIXELS}
    for r in scaling.itertuples():
        c = json.loads(r.curve)
        want = matched_units([k for k, _ in c], [a for _, a in c], ref_acc)
        assert (np.isnan(want) and np.isnan(r.matched_k)) or r.matched_k == pytest.approx(want)
    tests = pd.read_csv(os.path.join(tables, "tests.csv"))
    it = full[(full["population"] == "IT") & (full["domain"] != "hvm")].set_index("domain")["value"]
    for r in scaling[scaling["reached"]].itertuples():
        m = rows[(rows["population"] == r.population) & (rows["k_units"] == r.k_used)
                 & (rows["domain"] != "hvm")].set_index("domain")["value"].reindex(it.index)
        t = tests[(tests["test"] == "ttest_two_sample") & (tests["population"] == r.population)]
        assert t["statistic"].iloc[0] == pytest.approx(stats.ttest_ind(m, it).statistic, rel=1e-9)
    for name in ("domains", "units"):
        assert open(os.path.join(out, "plots", f"decode-{name}.png"), "rb").read(4) == b"\x89PNG"

    # model-only, on the stimulus set itself: the features come from the cache in `out`
    res = run_decode(DecodeConfig(data=str(tmp_path / "dom"), models=MODELS.split(","), out=out,
                                  train_domain="hvm", splits=dict(n_splits=10, n_train=40, n_test_id=20,
                                                                  n_test_ood=20),
                                  draws=2, grid_points=6, input_size=64, progress=False))
    assert res.reference == TRAINED and set(res.scaling["population"]) == {RANDOM, PIXELS}
    assert res.summary["populations"] == {TRAINED: 1280, RANDOM: 1280, PIXELS: 3072}
    # the same stimuli and settings: every model unit of the run with IT is reused
    n_model_units = rows[rows["population"] != "IT"]["unit_key"].nunique()
    assert res.skipped_units >= 18 and res.written_units <= 2
    assert res.skipped_units + res.written_units >= n_model_units - 3
    assert (res.scores["population"] != "IT").all()

    # resumable: nothing left to decode
    assert main(["decode", "--data", neural, "--models", MODELS, "--out", out,
                 "--min-reliability", "0.3", *FLAGS]) == 0
    assert "0 units decoded" in capsys.readouterr().out
