"""``cortexzoo results``: filtered, projected reads of the scores dataset, checked against
pandas on the full table; pushdown shown by files that cannot be read but need not be."""
import argparse
import io
import json
import os
from contextlib import redirect_stdout

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cortexzoo.cli.report import cmd_results
from cortexzoo.report.query import QueryError, glob_to_regex, query_scores
from cortexzoo.store import ResultStore, make_score_rows

ARCHS = ["alexnet", "resnet18", "vgg11", "convnext_t"]
REGIONS = ["V4", "IT"]


def write_fixture_scores(uri: str, seed: int = 0) -> pd.DataFrame:
    """One unit per (model, region), 4 layers, ridge (ceiled) and RSA (no ceiling)."""
    rng = np.random.default_rng(seed)
    store = ResultStore(uri)
    frames = []
    for arch in ARCHS:
        for weights in ("trained", "random"):
            model = f"timm:{arch}@{weights}"
            for region in REGIONS:
                rows = []
                for i in range(4):
                    lay = dict(layer=f"l{i}", relative_depth=i / 3)
                    r = rng.uniform(0.1, 0.7) if weights == "trained" else rng.uniform(0.0, 0.3)
                    rows.append(dict(lay, method="ridge_gcv", metric="pearson_r", value=r,
                                     ceiling=0.8))
                    rows.append(dict(lay, method="rsa", metric="rsa_pearson",
                                     value=rng.uniform(0.0, 0.5), ceiling=np.nan))
                common = dict(run_id="r1", dataset="toy", region=region, model=model,
                              source="timm", weights=weights, reduction="none", n_neuroids=20,
                              n_stimuli=30, split="cv", seed=0)
                df = make_score_rows(common, rows)
                key = f"{arch}-{weights}-{region}"
                store.write_scores(df, key)
                frames.append(df.assign(unit_key=key))
    return pd.concat(frames, ignore_index=True)


def _sorted(df):
    cols = ["model", "region", "method", "metric", "layer"]
    return df.sort_values(cols).reset_index(drop=True)


def _expected_top(full: pd.DataFrame, n: int) -> pd.DataFrame:
    """Independent leaderboard: max over layers of ceiled ridge and raw RSA, mean, top n."""
    ridge = full[full.method == "ridge_gcv"].assign(v=lambda d: d.value / d.ceiling)
    rsa = full[full.method == "rsa"].assign(v=lambda d: d.value)
    a = ridge.groupby(["region", "model"])["v"].max().rename("ridge")
    b = rsa.groupby(["region", "model"])["v"].max().rename("rsa")
    both = pd.concat([a, b], axis=1).reset_index()
    both["score"] = (both.ridge + both.rsa) / 2
    both = both.sort_values(["region", "score"], ascending=[True, False])
    return both.groupby("region").head(n).reset_index(drop=True)


@pytest.fixture(scope="module")
def local_results(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("res"))
    full = write_fixture_scores(uri)
    # a crashed writer's leftover: garbage that must be skipped
    with open(os.path.join(uri, "scores", ".tmp-alexnet-x.parquet-123"), "wb") as f:
        f.write(b"not parquet")
    return uri, full


def test_filters_match_pandas(local_results):
    uri, full = local_results
    got = query_scores(uri, region="IT", model="timm:res*", method="ridge_gcv")
    want = full[(full.region == "IT") & full.model.str.startswith("timm:res")
                & (full.method == "ridge_gcv")]
    assert len(want) == 8
    pd.testing.assert_frame_equal(_sorted(got)[list(want.columns)], _sorted(want),
                                  check_dtype=False)
    # several globs, projection, metric
    got = query_scores(uri, model=["*@random", "timm:vgg11@trained"], metric="rsa_pearson",
                       columns=["model", "region", "layer", "value"])
    assert list(got.columns) == ["model", "region", "layer", "value"]
    sel = full[(full.model.str.endswith("@random") | (full.model == "timm:vgg11@trained"))
               & (full.metric == "rsa_pearson")]
    assert len(got) == len(sel) == 5 * 2 * 4
    np.testing.assert_allclose(np.sort(got.value.to_numpy()), np.sort(sel.value.to_numpy()))
    assert query_scores(uri, region="nowhere").empty
    assert len(query_scores(uri)) == len(full)


def test_top_matches_independent_leaderboard(local_results):
    uri, full = local_results
    got = query_scores(uri, top=3)
    want = _expected_top(full, 3)
    assert list(got.region) == list(want.region)
    assert list(got.model) == list(want.model)
    np.testing.assert_allclose(got.score, want.score)
    np.testing.assert_allclose(got.ridge, want.ridge)
    assert set(got["rank"]) == {1, 2, 3}
    # top within a filter: trained models only, one method
    got = query_scores(uri, model="*@trained", method="rsa", top=2, region="V4")
    sub = full[(full.method == "rsa") & (full.region == "V4") & full.model.str.endswith("@trained")]
    best = sub.groupby("model").value.max().sort_values(ascending=False).head(2)
    assert list(got.model) == list(best.index)
    np.testing.assert_allclose(got.score, best.to_numpy())
    # the best layer is the argmax layer
    m0 = best.index[0]
    assert got.layer.iloc[0] == sub[sub.model == m0].set_index("layer").value.idxmax()


def _corrupt_column_chunks(path, columns=None):
    """Overwrite the pages of column chunks (all, or those named) with garbage; the footer
    (schema and statistics) stays intact, so only a reader that decodes them fails."""
    meta = pq.ParquetFile(path).metadata
    with open(path, "r+b") as f:
        for rg in range(meta.num_row_groups):
            for ci in range(meta.num_columns):
                col = meta.row_group(rg).column(ci)
                if columns is not None and col.path_in_schema not in columns:
                    continue
                start = col.data_page_offset
                if col.has_dictionary_page and col.dictionary_page_offset:
                    start = min(start, col.dictionary_page_offset)
                f.seek(start)
                f.write(b"\xff" * col.total_compressed_size)


def test_filters_and_projection_are_pushed_down(tmp_path):
    uri = str(tmp_path)
    full = write_fixture_scores(uri)
    bad = os.path.join(uri, "scores", "vgg11-random-IT.parquet")
    _corrupt_column_chunks(bad)
    with pytest.raises(Exception):
        pd.read_parquet(bad)
    with pytest.raises(ValueError, match="vgg11-random-IT"):
        ResultStore(uri).read_scores()  # the eager reader must touch it
    # equality filters prune that file's row group by its statistics: never decoded
    got = query_scores(uri, model="timm:vgg11@trained")
    want = full[full.model == "timm:vgg11@trained"]
    assert len(got) == len(want) == 16
    np.testing.assert_allclose(_sorted(got).value, _sorted(want).value)
    got = query_scores(uri, region="V4", method="rsa")
    assert len(got) == len(full[(full.region == "V4") & (full.method == "rsa")])
    # reading it does fail, with a clear error
    with pytest.raises(ValueError, match="corrupt"):
        query_scores(uri, model="timm:vgg11@random", region="IT")
    # projection: a corrupt column that is not asked for is never read
    uri2 = str(tmp_path / "p")
    full2 = write_fixture_scores(uri2)
    for name in os.listdir(os.path.join(uri2, "scores")):
        _corrupt_column_chunks(os.path.join(uri2, "scores", name), columns={"created_at"})
    got = query_scores(uri2, columns=["model", "layer", "value"], method="ridge_gcv")
    assert len(got) == len(full2) // 2
    np.testing.assert_allclose(np.sort(got.value), np.sort(full2[full2.method == "ridge_gcv"].value))
    with pytest.raises(ValueError):
        query_scores(uri2, columns=["model", "created_at"])


def test_s3_matches_pandas(s3_bucket):
    uri = s3_bucket + "/exp"
    full = write_fixture_scores(uri, seed=3)
    got = query_scores(uri, region="V4", model="timm:alexnet@*")
    want = full[(full.region == "V4") & full.model.str.startswith("timm:alexnet@")]
    assert len(got) == len(want) == 16
    np.testing.assert_allclose(_sorted(got).value, _sorted(want).value)
    top = query_scores(uri, top=2)
    exp = _expected_top(full, 2)
    assert list(top.model) == list(exp.model)
    np.testing.assert_allclose(top.score, exp.score)
    # a results URI that does not exist is an error, not an empty table
    with pytest.raises(FileNotFoundError, match="does not exist"):
        query_scores(s3_bucket + "/empty")


def test_bad_input_and_glob():
    assert glob_to_regex("timm:res*@[!r]?") == r"^timm:res.*@[^r].$"
    with pytest.raises(QueryError, match="top"):
        query_scores("/nonexistent-cz", top=0)
    with pytest.raises(QueryError, match="metric"):
        query_scores("/nonexistent-cz", top=2, metric="pearson_r")
    with pytest.raises(QueryError, match="nope"):
        query_scores("/nonexistent-cz", columns=["model", "nope"])


def test_cmd_results_formats(local_results):
    uri, full = local_results

    def run(**kw):
        args = argparse.Namespace(results=uri, region=None, top=None, format="table",
                                  model=None, method=None, metric=None)
        vars(args).update(kw)
        buf = io.StringIO()
        with redirect_stdout(buf):
            assert cmd_results(args) == 0
        return buf.getvalue()

    recs = json.loads(run(format="json", region="IT", method="rsa", model="timm:alexnet@trained"))
    want = full[(full.region == "IT") & (full.method == "rsa") & (full.model == "timm:alexnet@trained")]
    assert len(recs) == 4
    assert sorted(r["value"] for r in recs) == pytest.approx(sorted(want.value))
    csv = pd.read_csv(io.StringIO(run(format="csv", top=1)))
    exp = _expected_top(full, 1)
    assert list(csv.model) == list(exp.model)
    np.testing.assert_allclose(csv.score, exp.score)
    table = run(top=2)
    assert all(m in table for m in _expected_top(full, 2).model)
    assert "(no scores match)" in run(region="nowhere")
    with pytest.raises(QueryError, match="xml"):
        run(format="xml")
