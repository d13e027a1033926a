"""Cache keys hold what the numbers depend on: a replaced weights file or another stimulus
presentation is new work; changing nothing reuses every feature and score."""
import numpy as np
import pytest
import timm
import torch

import cortexzoo.scan.model as scan_model
from cortexzoo.features.reduce import ReductionConfig
from cortexzoo.scan import ScanConfig, run_scan
from cortexzoo.scan.planted import make_planted_dataset
from cortexzoo.scan.scoring import ScoringConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("keys") / "ds")
    make_planted_dataset(uri, model="pixels", n_stimuli=32, image_size=32, n_neuroids=4,
                         n_reps=3, seed=3)
    return uri


@pytest.fixture
def extractions(monkeypatch):
    """Counts the layers extracted (the scan's local engine)."""
    calls = []
    real = scan_model.extract_local

    def counting(dataset, model, layers=None, **kw):
        calls.extend(layers)
        return real(dataset, model, layers=layers, **kw)

    monkeypatch.setattr(scan_model, "extract_local", counting)
    return calls


def _weights(path, seed):
    torch.manual_seed(seed)
    torch.save(timm.create_model("test_byobnet", pretrained=False).state_dict(), path)


def _cfg(data, out, spec, **kw):
    return ScanConfig(data=data, models=[spec], out=out, engine="local", input_size=32,
                      reduction=ReductionConfig(n_components=64), progress=False, plot=False,
                      scoring=ScoringConfig(reliability_splits=5, inter_animal=False), **kw)


def test_replaced_weights_file_and_other_presentation_are_new_work(data, tmp_path, extractions):
    w = str(tmp_path / "w.pth")
    _weights(w, 1)
    spec = f"timm:test_byobnet@{w}"
    out = str(tmp_path / "r")
    first = run_scan(_cfg(data, out, spec))
    n = first.written_units
    assert n > 0 and len(extractions) == n

    # nothing changed: every unit and every feature reused
    extractions.clear()
    again = run_scan(_cfg(data, out, spec))
    assert again.written_units == 0 and again.skipped_units == n and extractions == []

    # the same path, other weights: features and scores recomputed, not the stale ones
    _weights(w, 2)
    third = run_scan(_cfg(data, out, spec))
    assert third.written_units == n and len(extractions) == n
    key = ["layer", "method", "metric", "split"]
    a = first.scores.sort_values(key)["value"].to_numpy()
    b = third.scores[third.scores.run_id == third.run_id].sort_values(key)["value"].to_numpy()
    assert a.shape == b.shape and not np.allclose(a, b)
    # the store holds both weights' rows; a leaderboard counts only the newest weights
    from cortexzoo.report import leaderboard
    from cortexzoo.store import ResultStore

    board = leaderboard(ResultStore(out).read_scores())
    assert len(board) == 1
    assert board["ridge_insample"].iloc[0] == pytest.approx(
        leaderboard(third.scores)["ridge_insample"].iloc[0])
    assert board["ridge_insample"].iloc[0] != pytest.approx(
        leaderboard(first.scores)["ridge_insample"].iloc[0])

    # another stimulus presentation: new work too, and the rows say which
    extractions.clear()
    crop = run_scan(_cfg(data, out, spec, stimulus="crop"))
    assert crop.written_units == n and len(extractions) == n
    assert set(crop.scores["stimulus"]) == {"crop"}
    assert set(first.scores["stimulus"]) == {"whole"}
    assert first.scores["scan_key"].iloc[0] != crop.scores["scan_key"].iloc[0]
