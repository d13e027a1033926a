"""One results store for many datasets and runs: never mixed, compacted, exactly once."""
import io

import numpy as np
import pandas as pd
import pytest

from cortexzoo.features.reduce import ReductionConfig
from cortexzoo.report import leaderboard, plot_depth, scan_label, with_scan
from cortexzoo.report.query import query_scores, store_listing
from cortexzoo.scan import ScanConfig, run_scan
from cortexzoo.scan.planted import make_planted_dataset
from cortexzoo.scan.scoring import ScoringConfig
from cortexzoo.store import ResultStore
from cortexzoo.store.results import PART_PREFIX

MODELS = ["pixels", "timm:test_byobnet@random"]
KEY = ["model", "layer", "region", "method", "metric", "split"]


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    a = make_planted_dataset(str(root / "a"), model="pixels", n_stimuli=40, image_size=32,
                             n_neuroids=6, n_reps=3, seed=1)
    b = make_planted_dataset(str(root / "b"), model="pixels", n_stimuli=36, image_size=32,
                             n_neuroids=5, n_reps=3, seed=2)
    return a, b


def _cfg(data, out, **kw):
    return ScanConfig(data=data, models=MODELS, out=out, engine="local", input_size=32,
                      reduction=ReductionConfig(n_components=kw.pop("k", 64)), progress=False,
                      plot=kw.pop("plot", False), scoring=ScoringConfig(reliability_splits=5),
                      **kw)


def _board_key(board):
    cols = [c for c in board.columns if c not in ("dataset", "scan")]
    return board[cols].sort_values(["region", "model"]).reset_index(drop=True)


def test_two_datasets_and_two_configs_never_mix(two_datasets, tmp_path):
    a, b = two_datasets
    shared = str(tmp_path / "shared")
    runs = [(a, {}), (b, {}), (a, {"k": 32}), (a, {"stimulus": "crop"})]
    alone = []
    for i, (data, kw) in enumerate(runs):
        run_scan(_cfg(data, shared, plot=True, **dict(kw)))
        alone.append(run_scan(_cfg(data, str(tmp_path / f"alone{i}"), **dict(kw))))
    scores = ResultStore(shared).read_scores()
    board = leaderboard(scores)
    groups = board.groupby(["dataset", "scan"])
    assert len(groups) == 4  # one leaderboard per (dataset, scan configuration)
    for res in alone:
        own = res.scores["scan_key"].iloc[0]
        mine = board[board["scan"] == own]
        # every leaderboard row equals that scan's own, read alone
        pd.testing.assert_frame_equal(_board_key(mine), _board_key(res.leaderboard),
                                      check_dtype=False)
        # and so does its plot
        label = scan_label(res.scores["dataset"].iloc[0], own)
        png = ResultStore(shared).get_bytes(f"plots/{label}/depth.png")
        assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
        assert png == plot_depth(res.scores)
        # queries filtered to it return exactly its rows
        q = query_scores(shared, scan=label)
        assert len(q) == len(res.scores)
    listing = store_listing(shared)
    assert len(listing) == 4 and set(listing["dataset"]) == {s.scores["dataset"].iloc[0] for s in alone}
    assert (listing["rows"].to_numpy() > 0).all()
    # the query verb filters by dataset without mixing
    ds_b = alone[1].scores["dataset"].iloc[0]
    assert set(query_scores(shared, dataset=ds_b)["scan_key"]) == {alone[1].scores["scan_key"].iloc[0]}


def test_a_run_leaves_few_files_and_old_stores_still_read(two_datasets, tmp_path):
    a, _ = two_datasets
    out = str(tmp_path / "r")
    res = run_scan(_cfg(a, out))
    store = ResultStore(out)
    names = store._list("scores")
    assert names and all(n.startswith(PART_PREFIX) for n in names), names
    assert len(names) <= 2 and len(store._list("neuroid_scores")) <= 2
    assert len(store.read_scores()) == len(res.scores)
    # an old store (one file per unit) reads the same, and compacts on request
    old = str(tmp_path / "old")
    run_scan(_cfg(a, old, compact=False))
    ostore = ResultStore(old)
    n_units = len(ostore._list("scores"))
    assert n_units == ostore.read_scores()["unit_key"].nunique() > 2
    before = ostore.read_scores().sort_values(KEY).reset_index(drop=True)
    ostore.compact()
    after = ostore.read_scores().sort_values(KEY).reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)
    assert all(n.startswith(PART_PREFIX) for n in ostore._list("scores"))


class _Killed(BaseException):
    """Stands for the process dying (not an Exception: nothing catches it)."""


@pytest.mark.parametrize("deaths_after", [0, 3])
def test_scan_killed_during_compaction_loses_and_duplicates_nothing(two_datasets, tmp_path,
                                                                    monkeypatch, deaths_after):
    """Killed after the part files are written and ``deaths_after`` unit files deleted:
    every row is in the store exactly once; the next run redoes nothing and finishes."""
    a, _ = two_datasets
    out = str(tmp_path / "r")
    ref = run_scan(_cfg(a, str(tmp_path / "ref"))).scores
    deleted = []
    real = ResultStore.delete

    def dying_delete(self, relpath):
        if len(deleted) >= deaths_after:
            raise _Killed()
        deleted.append(relpath)
        return real(self, relpath)

    monkeypatch.setattr(ResultStore, "delete", dying_delete)
    with pytest.raises(_Killed):
        run_scan(_cfg(a, out))
    monkeypatch.undo()
    store = ResultStore(out)
    names = store._list("scores")
    assert any(n.startswith(PART_PREFIX) for n in names)  # the part was written...
    assert any(not n.startswith(PART_PREFIX) for n in names)  # ...and unit files remain
    got = store.read_scores()
    assert not got.duplicated(KEY).any()
    assert set(map(tuple, got[KEY].itertuples(index=False))) == \
        set(map(tuple, ref[KEY].itertuples(index=False)))
    nr = store.read_neuroid_scores()
    assert not nr.duplicated(["model", "layer", "neuroid_id", "metric"]).any()
    # the next run redoes nothing and completes the compaction
    again = run_scan(_cfg(a, out))
    assert again.written_units == 0
    got = store.read_scores()
    assert not got.duplicated(KEY).any() and len(got) == len(ref)
    assert all(n.startswith(PART_PREFIX) for n in store._list("scores"))
    np.testing.assert_allclose(got.sort_values(KEY)["value"], ref.sort_values(KEY)["value"])


def test_corrupt_score_file_is_redone_on_resume_with_a_warning(two_datasets, tmp_path, caplog):
    a, _ = two_datasets
    out = str(tmp_path / "r")
    first = run_scan(_cfg(a, out, compact=False))
    store = ResultStore(out)
    victim = sorted(n for n in store._list("scores") if n.startswith("timm"))[1]
    store.put_bytes(f"scores/{victim}", b"PAR1 not really parquet")
    with pytest.raises(ValueError, match=victim):
        store.read_scores()  # a read names it
    again = run_scan(_cfg(a, out, compact=False))
    assert again.written_units == 1  # that unit, and only that unit, redone
    assert any("corrupt" in r.getMessage() and victim in r.getMessage() for r in caplog.records)
    got = store.read_scores()
    assert len(got) == len(first.scores) and not got.duplicated(KEY).any()


def test_plots_and_html_report_per_dataset(two_datasets, tmp_path):
    from cortexzoo.report.html import render_html_report

    a, b = two_datasets
    out = str(tmp_path / "r")
    run_scan(_cfg(a, out))
    run_scan(_cfg(b, out))
    scores = ResultStore(out).read_scores()
    html = render_html_report(scores)
    for (ds, scan), _ in with_scan(scores).groupby(["dataset", "scan"]):
        assert f"Dataset {ds} (scan {scan_label(ds, scan)})" in html
    assert html.count("<h2 id=\"scan-") == 2
    assert isinstance(io.BytesIO(html.encode()).getvalue(), bytes)

