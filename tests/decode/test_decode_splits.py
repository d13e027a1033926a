"""The image draws (seeded, stratified, disjoint, grouped) and the clear errors of a
decoding run, each naming the offending item."""
import numpy as np
import pandas as pd
import pytest

from cortexzoo.cli import main
from cortexzoo.decode import DecodeConfig, DecodeDataError, SplitConfig, draw_splits, run_decode
from cortexzoo.decode.populations import PopulationError, resolve_layers
from cortexzoo.decode.run import unit_grid
from decode_planted import planted_recording


def _stimuli(per=None, classes=("a", "b", "c"), groups=False):
    per = per or {"hvm": [40, 30, 20], "x": [10, 10, 10], "y": [8, 12, 10]}
    rows = []
    for d, counts in per.items():
        for c, n in zip(classes, counts):
            rows += [(f"{d}-{c}-{i}", d, c, f"g{c}{i % 25}") for i in range(n)]
    st = pd.DataFrame(rows, columns=["stimulus_id", "domain", "category", "source_id"])
    return st if groups else st.drop(columns="source_id")


def test_splits_are_stratified_disjoint_and_seeded():
    st = _stimuli()
    cfg = SplitConfig(n_splits=12, n_train=45, n_test_id=18, n_test_ood=15, seed=4)
    sp = draw_splits(st, cfg, "hvm", ["x", "y"])
    assert sp.domains == ["hvm", "x", "y"] and sp.classes == ["a", "b", "c"]
    cat = st["category"].to_numpy()
    dom = st["domain"].to_numpy()
    for s in range(12):
        tr, te = sp.train[s], sp.test[s]
        assert len(set(tr)) == 45 and not set(tr) & set(te) and len(set(te)) == te.size
        assert (dom[tr] == "hvm").all()
        # proportional to the domain's categories (40:30:20 -> 20:15:10 of 45)
        assert [int((cat[tr] == c).sum()) for c in "abc"] == [20, 15, 10]
        held = te[sp.test_domain == 0]
        assert (dom[held] == "hvm").all() and len(held) == 18
        for j, d in ((1, "x"), (2, "y")):
            block = te[sp.test_domain == j]
            assert (dom[block] == d).all() and len(block) == 15
        assert [int((cat[te[sp.test_domain == 2]] == c).sum()) for c in "abc"] == [4, 6, 5]
    again = draw_splits(st, cfg, "hvm", ["x", "y"])
    np.testing.assert_array_equal(again.train, sp.train)
    more = draw_splits(st, SplitConfig(n_splits=20, n_train=45, n_test_id=18, n_test_ood=15, seed=4),
                       "hvm", ["x", "y"])
    np.testing.assert_array_equal(more.test[:12], sp.test)  # split s does not depend on their number
    other = draw_splits(st, SplitConfig(n_splits=12, n_train=45, n_test_id=18, n_test_ood=15, seed=5),
                        "hvm", ["x", "y"])
    assert not np.array_equal(other.train, sp.train)


def test_groups_never_straddle_train_and_test():
    st = _stimuli({"hvm": [60, 60, 60], "x": [60, 60, 60]}, groups=True)
    sp = draw_splits(st, SplitConfig(n_splits=5, n_train=15, n_test_id=9, n_test_ood=9), "hvm", ["x"])
    g = st["source_id"].to_numpy()
    for s in range(5):
        assert not set(g[sp.train[s]]) & set(g[sp.test[s]])
    none = draw_splits(st, SplitConfig(n_splits=5, n_train=15, n_test_id=9, n_test_ood=9,
                                       group_column=None), "hvm", ["x"])
    assert any(set(g[none.train[s]]) & set(g[none.test[s]]) for s in range(5))


def test_too_few_images_names_the_domain_and_category():
    st = _stimuli()
    with pytest.raises(DecodeDataError, match=r"domain 'x' has 30 image\(s\).*50 test images"):
        draw_splits(st, SplitConfig(n_train=45, n_test_id=10, n_test_ood=50), "hvm", ["x", "y"])
    with pytest.raises(DecodeDataError, match=r"domain 'hvm' has 0 image\(s\) available.*held-out"):
        draw_splits(st, SplitConfig(n_train=90, n_test_id=10, n_test_ood=5), "hvm", ["x"])
    with pytest.raises(DecodeDataError, match="without a training image"):
        draw_splits(_stimuli({"hvm": [40, 1, 40], "x": [5, 5, 5]}), SplitConfig(n_train=20, n_test_id=5,
                    n_test_ood=5), "hvm", ["x"])
    g = _stimuli({"hvm": [30, 30, 30], "x": [30, 30, 30]}, groups=True)  # 25 groups per category
    with pytest.raises(DecodeDataError, match=r"domain 'x', category '\w': needs \d+ test image\(s\) "
                                              r"that share no 'source_id'"):
        draw_splits(g, SplitConfig(n_splits=3, n_train=66, n_test_id=6, n_test_ood=27), "hvm", ["x"])
    extra = pd.concat([_stimuli(), pd.DataFrame([("x-z", "x", "zebra")],
                                                columns=["stimulus_id", "domain", "category"])])
    with pytest.raises(DecodeDataError, match="categories the training domain 'hvm' lacks: zebra"):
        draw_splits(extra, SplitConfig(n_train=45, n_test_id=5, n_test_ood=5), "hvm", ["x"])


def test_unit_grid_and_layer_choice():
    cfg = DecodeConfig(grid_points=8)
    g = unit_grid(1280, cfg)
    assert g[0] == 1 and g[-1] == 1280 and len(g) == 8 and g == sorted(set(g))
    assert np.allclose(np.diff(np.log(g)), np.log(1280) / 7, rtol=0.35)
    assert unit_grid(3, cfg) == [1, 2, 3]
    assert unit_grid(50, DecodeConfig(k_grid=[5, 100, 20])) == [5, 20, 50]
    m = ["timm:a@trained", "pixels"]
    assert resolve_layers(m, None) == {m[0]: None, m[1]: None}
    assert resolve_layers(m, ["fc"]) == {m[0]: "fc", m[1]: "fc"}
    assert resolve_layers(m, ["fc", "pixels"]) == {m[0]: "fc", m[1]: "pixels"}
    assert resolve_layers(m, ["pixels=pixels"]) == {m[0]: None, m[1]: "pixels"}
    with pytest.raises(PopulationError, match="3 layers for 2 models"):
        resolve_layers(m, ["a", "b", "c"])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return planted_recording(tmp_path_factory.mktemp("small") / "ds", per_class={
        "hvm": 30, "d1": 8, "d2": 8, "d3": 8, "d4": 8}, with_kinds=("inv",))


def _run(small, tmp_path, **kw):
    base = dict(data=small, out=str(tmp_path / "r"), engine="local", progress=False, plot=False,
                splits=dict(n_splits=2, n_train=40, n_test_id=10, n_test_ood=10), k_grid=[10])
    base.update(kw)
    return run_decode(DecodeConfig(**base))


def test_run_errors_name_the_offending_item(small, tmp_path, capsys):
    with pytest.raises(DecodeDataError, match="unknown training domain 'coco'; domains: hvm, d1"):
        _run(small, tmp_path, train_domain="coco")
    with pytest.raises(DecodeDataError, match=r"name the training domain \(--train-domain\)"):
        _run(small, tmp_path)
    with pytest.raises(DecodeDataError, match="unknown test domain"):
        _run(small, tmp_path, train_domain="hvm", test_domains=["d1", "mosaic"])
    with pytest.raises(PopulationError, match=r"unknown region\(s\) \['V4'\]"):
        _run(small, tmp_path, train_domain="hvm", regions=["V4"])
    with pytest.raises(PopulationError, match="reference 'V1' is neither"):
        _run(small, tmp_path, train_domain="hvm", reference="V1")
    with pytest.raises(PopulationError, match=r"baseline:pixels@none: unknown layer 'conv9'; layers: \['pixels'\]"):
        _run(small, tmp_path, train_domain="hvm", models=["pixels"], layers="conv9", neural=False)
    assert not (tmp_path / "r" / "scores").exists()  # every error came before any work
    with pytest.raises(DecodeDataError, match=r"domain 'd1' has 40 image\(s\)"):
        _run(small, tmp_path, train_domain="hvm", splits=dict(n_splits=2, n_train=40, n_test_id=10,
                                                              n_test_ood=50))
    # the CLI turns them into one line and exit code 2
    rc = main(["decode", "--data", small, "--train-domain", "nope", "--engine", "local",
               "--out", str(tmp_path / "c"), "--quiet"])
    assert rc == 2 and "unknown training domain 'nope'" in capsys.readouterr().err


def test_missing_columns_name_them(tmp_path):
    from cortexzoo.data import write_dataset

    st = pd.DataFrame({"stimulus_id": ["a", "b"], "image": ["i.png", "i.png"], "category": ["x", "y"]})
    write_dataset(str(tmp_path / "d"), meta={"name": "nodomain", "stimulus_set": True}, stimuli=st,
                  neuroids=pd.DataFrame({"neuroid_id": [], "subject": [], "region": []}),
                  responses=None, images={"i.png": np.zeros((8, 8), np.uint8)})
    with pytest.raises(DecodeDataError, match=r"lacks the column\(s\) domain that decoding needs"):
        run_decode(DecodeConfig(data=str(tmp_path / "d"), out=str(tmp_path / "r"), models=["pixels"],
                                engine="local", progress=False))


def test_config_file_and_flags(tmp_path):
    import yaml

    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"data": "x", "splits": {"n_splits": 7}, "draws": 3}))
    cfg = DecodeConfig.from_yaml(str(f))
    assert cfg.splits.n_splits == 7 and cfg.draws == 3 and cfg.splits.n_train == 100
    f.write_text(yaml.safe_dump({"splits": {"n_split": 7}}))
    with pytest.raises(ValueError, match=r"unknown splits key\(s\) \['n_split'\]"):
        DecodeConfig.from_yaml(str(f))
    with pytest.raises(ValueError, match="reference_accuracy"):
        DecodeConfig(reference_accuracy=73)
    with open("configs/decode_default.yaml") as fh:
        DecodeConfig.from_dict(yaml.safe_load(fh))
