"""Real macaque V4 recordings (Cowley et al. 2023, session 210325).

Skipped when ../shared/data/cowley_v4_210325 is absent.
"""
import os

import pytest

from cortexzoo.data.cowley import convert_cowley_v4
from cortexzoo.scan import ScanConfig, run_scan
from cortexzoo.scan.scoring import ScoringConfig

COWLEY_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                                          "cowley_v4_210325"))

pytestmark = pytest.mark.skipif(not os.path.isdir(COWLEY_DIR), reason="Cowley V4 data absent")

TRAINED, RANDOM, PIXELS = ("timm:tf_efficientnet_lite0@trained", "timm:tf_efficientnet_lite0@random",
                           "baseline:pixels@none")


def test_trained_efficientnet_beats_random_twin_and_pixels_on_v4(tmp_path):
    data = convert_cowley_v4(COWLEY_DIR, str(tmp_path / "cowley"))
    # The images are 112 px; scoring them at their own size keeps the test quick.
    cfg = ScanConfig(data=data, models=[TRAINED, RANDOM, "pixels"], out=str(tmp_path / "r"),
                     engine="local", input_size=112, batch_size=64,
                     scoring=ScoringConfig(reliability_splits=20), progress=False, plot=False)
    res = run_scan(cfg)
    board = res.leaderboard.set_index("model")
    assert set(board.index) == {TRAINED, RANDOM, PIXELS}
    assert board.loc[TRAINED, "ridge"] > board.loc[RANDOM, "ridge"] + 0.05
    assert board.loc[TRAINED, "ridge"] > board.loc[PIXELS, "ridge"] + 0.05
    assert board.loc[TRAINED, "rsa"] > board.loc[RANDOM, "rsa"]
    # The data README reports median r ~0.56 for mid-level features of this network.
    s = res.scores
    med = s[(s.model == TRAINED) & (s.metric == "pearson_r_median")]["value"].max()
    assert 0.4 < med < 0.8
