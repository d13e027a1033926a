"""Two real processes write overlapping and distinct units to one results URI at once.

Afterwards every unit's rows are there exactly once, each overlapping unit holds one
writer's complete version (last writer wins, whole), no temporary or partial file is
left, and a reader running during the writes never sees a half-written file. A rerun
changes nothing but the run ids of the units it rewrote.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from cortexzoo.store import ResultStore

N_ROWS = 500  # rows per unit: files of ~10 kB, so that a torn write would show

FRAME = r'''
import numpy as np
from cortexzoo.store import make_score_rows

def frame(unit, run_id, n_rows):
    # values depend on the unit only: both writers of a unit write the same numbers
    rng = np.random.default_rng(int(unit[1:]))
    common = dict(run_id=run_id, dataset="d", model="m" + unit, source="timm", weights="random",
                  layer="l", relative_depth=0.5, reduction="srp", method="ridge_gcv",
                  split="loo", seed=0, n_stimuli=10, n_neuroids=3)
    rows = [dict(region=f"r{i}", metric="pearson_r", value=float(v), ceiling=0.9)
            for i, v in enumerate(rng.random(n_rows))]
    return make_score_rows(common, rows)
'''

WRITER = FRAME + r'''
import json, os, random, sys, time
from cortexzoo.store import ResultStore

uri, name, units, rounds, sync = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
n_rows = int(sys.argv[6])
store = ResultStore(uri)
open(os.path.join(sync, name + ".ready"), "w").close()
while not os.path.exists(os.path.join(sync, "go")):
    time.sleep(0.01)
order = random.Random(name)
for r in range(rounds):
    units_r = list(units)
    order.shuffle(units_r)
    for u in units_r:
        store.write_scores(frame(u, f"{name}-{r}", n_rows), u)
'''
_ns: dict = {}
exec(FRAME, _ns)
frame = _ns["frame"]

A_UNITS = ["u0", "u1", "u2", "u3", "u4", "u5"]
B_UNITS = ["u3", "u4", "u5", "u6", "u7", "u8"]  # u3-u5 written by both


def expected_values(unit: str) -> np.ndarray:
    return np.random.default_rng(int(unit[1:])).random(N_ROWS)


def start_writer(uri, name, units, rounds, sync):
    from cortexzoo.store.provenance import code_version

    # one code version for both writers, even if a commit lands while the suite runs
    env = {**os.environ, "CORTEXZOO_CODE_VERSION": code_version()}
    return subprocess.Popen([sys.executable, "-c", WRITER, uri, name, json.dumps(units),
                             str(rounds), str(sync), str(N_ROWS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def check_unit_rows(df, units):
    """Each unit: exactly N_ROWS rows, one writer's version, the expected numbers."""
    assert set(df["unit_key"]) == set(units)
    assert not df.duplicated(["unit_key", "region", "method", "metric"]).any()
    for u, g in df.groupby("unit_key"):
        assert len(g) == N_ROWS, f"unit {u}: {len(g)} rows"
        assert g["run_id"].nunique() == 1, f"unit {u} mixes writers: {g['run_id'].unique()}"
        g = g.assign(i=g["region"].str[1:].astype(int)).sort_values("i")
        np.testing.assert_array_equal(g["i"], np.arange(N_ROWS))
        np.testing.assert_allclose(g["value"], expected_values(u), rtol=0, atol=0)


def stored_files(uri: str) -> list[str]:
    store = ResultStore(uri)
    root = store.root + "/scores"
    if store.is_local:
        return sorted(os.listdir(root))  # hidden temporary files included
    store.fs.invalidate_cache(root)
    return sorted(p.rsplit("/", 1)[-1] for p in store.fs.find(store.root))


@pytest.fixture(params=["local", "s3", "gs"])
def uri(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "results")
    return request.getfixturevalue({"s3": "s3_bucket", "gs": "gcs_bucket"}[request.param]) + "/shared/run"


def test_two_writers_never_corrupt_each_other(uri, tmp_path):
    sync = tmp_path / "sync"
    sync.mkdir()
    procs = [start_writer(uri, "A", A_UNITS, 2, sync), start_writer(uri, "B", B_UNITS, 2, sync)]
    deadline = time.time() + 60
    while not all((sync / f"{n}.ready").exists() for n in "AB"):
        assert time.time() < deadline, "writers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.02)
    (sync / "go").touch()

    # read while they write: whatever is visible is whole and consistent
    reader = ResultStore(uri)
    reads = 0
    while any(p.poll() is None for p in procs):
        df = reader.read_scores()
        if len(df):
            check_unit_rows(df, set(df["unit_key"]))
            reads += 1
        time.sleep(0.05)  # leave the CPU (and the in-process S3 server) to the writers
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    assert reads >= 1

    final = ResultStore(uri).read_scores()
    check_unit_rows(final, set(A_UNITS) | set(B_UNITS))
    winners = final.groupby("unit_key")["run_id"].first()
    assert all(winners[u].startswith("A-") for u in ("u0", "u1", "u2"))
    assert all(winners[u].startswith("B-") for u in ("u6", "u7", "u8"))
    # every writer's last round ends after its earlier ones: a unit holds a final version
    assert all(winners[u] in ("A-1", "B-1") for u in ("u3", "u4", "u5"))
    files = stored_files(uri)
    assert files == sorted(f"{u}.parquet" for u in set(A_UNITS) | set(B_UNITS)), files

    # a rerun of one writer's units is idempotent: same rows, same numbers, only its run ids
    store = ResultStore(uri)
    for u in A_UNITS:
        store.write_scores(frame(u, "A-rerun", N_ROWS), u)
    rerun = ResultStore(uri).read_scores()
    check_unit_rows(rerun, set(A_UNITS) | set(B_UNITS))
    key = ["unit_key", "region", "metric"]
    a = final.sort_values(key).reset_index(drop=True)
    b = rerun.sort_values(key).reset_index(drop=True)
    cols = [c for c in a.columns if c not in ("run_id", "created_at")]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert set(rerun.groupby("unit_key")["run_id"].first()[A_UNITS]) == {"A-rerun"}
    assert stored_files(uri) == files
