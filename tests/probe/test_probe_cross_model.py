"""The cross-model table and its statistics from score rows written here by hand."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cortexzoo.probe.cross_model import (HEADLINE, architecture_means, build_cross_model,
                                         cross_model_stats, spearman_exact)


def _scores(values: dict[tuple[str, int], dict[str, float]]) -> pd.DataFrame:
    rows = []
    for (enc, seed), d in values.items():
        m = f"twin:{enc}#seed{seed}"
        rows.append({"model": m, "method": "twin", "metric": "chunked_pearson_r",
                     "animal": "all", "value": d["neural"]})
        rows.append({"model": m, "method": "twin", "metric": "chunked_pearson_r",
                     "animal": "mouse00", "value": -9.0})   # per-animal rows are not used
        for col, metric in HEADLINE.items():
            method = {"median_gosi": "tuning", "median_f1_f0": "tuning", "median_c50": "tuning",
                      "alpha_gru": "eigenspectrum"}.get(col, "probe")
            if col in d:
                rows.append({"model": m, "method": method, "metric": metric, "animal": None,
                             "value": d[col]})
    return pd.DataFrame(rows)


def test_cross_model_rows_take_each_metric_of_their_twin():
    rng = np.random.default_rng(0)
    vals = {(e, s): {"neural": rng.uniform(), **{c: rng.uniform() for c in HEADLINE}}
            for e in ("cnn", "resnet18") for s in (0, 1)}
    del vals[("resnet18", 1)]["motion_nauc"]                 # a missing unit: NaN
    pairs = [(f"{e}-seed{s}", e, s) for e, s in vals] + [("alexnet-seed0", "alexnet", 0)]
    cross = build_cross_model(_scores(vals), pairs)
    assert list(zip(cross["architecture"], cross["seed"])) == [
        ("cnn", 0), ("cnn", 1), ("resnet18", 0), ("resnet18", 1)]   # alexnet: no probe rows
    for _, r in cross.iterrows():
        v = vals[(r["architecture"], r["seed"])]
        assert r["neural_prediction"] == v["neural"]
        for c in HEADLINE:
            if c in v:
                assert r[c] == v[c]
            else:
                assert np.isnan(r[c])


def test_statistics_over_architecture_means_match_scipy():
    rng = np.random.default_rng(1)
    archs = ["a", "b", "c", "d", "e"]
    vals = {(e, s): {"neural": rng.uniform(), "contrast_nauc": rng.uniform(),
                     "alpha_gru": rng.uniform()} for e in archs for s in (0, 1, 2)}
    pairs = [(f"{e}-seed{s}", e, s) for e, s in vals]
    cross = build_cross_model(_scores(vals), pairs)
    means = architecture_means(cross).set_index("architecture")
    for e in archs:
        assert means.at[e, "contrast_nauc"] == pytest.approx(
            np.mean([vals[(e, s)]["contrast_nauc"] for s in (0, 1, 2)]))
        assert means.at[e, "contrast_nauc_sd"] == pytest.approx(
            np.std([vals[(e, s)]["contrast_nauc"] for s in (0, 1, 2)], ddof=1))
    st = cross_model_stats(cross).set_index("endpoint")
    x, y = means["neural_prediction"].to_numpy(), means["contrast_nauc"].to_numpy()
    row = st.loc["contrast_nauc"]
    assert row["n"] == 5
    slope, intercept = np.polyfit(x, y, 1)
    assert (row["slope"], row["intercept"]) == pytest.approx((slope, intercept))
    assert (row["pearson_r"], row["pearson_p"]) == pytest.approx(tuple(stats.pearsonr(x, y)))
    assert row["spearman_rho"] == pytest.approx(stats.spearmanr(x, y)[0])
    assert st.loc["motion_nauc", "n"] == 0 and np.isnan(st.loc["motion_nauc", "pearson_r"])


def test_exact_spearman_p_values():
    # 3 points in perfect order: 2 of the 6 orderings are as extreme
    assert spearman_exact([1, 2, 3], [4, 5, 6]) == pytest.approx((1.0, 1 / 3))
    assert spearman_exact([1, 2, 3, 4], [1, 2, 3, 4])[1] == pytest.approx(2 / 24)
    # brute force on 6 points
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=6), rng.normal(size=6)
    rho = stats.spearmanr(x, y)[0]
    count = sum(abs(stats.spearmanr(x, p)[0]) >= abs(rho) - 1e-12
                for p in itertools.permutations(y))
    assert spearman_exact(x, y) == pytest.approx((rho, count / 720))
    # many points: scipy's approximation
    x, y = rng.normal(size=20), rng.normal(size=20)
    assert spearman_exact(x, y) == pytest.approx(tuple(stats.spearmanr(x, y)))
