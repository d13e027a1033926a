"""Leaderboard (max over layers) and plots, on a hand-made scores table."""
import logging

import numpy as np
import pandas as pd

from cortexzoo.core.progress import Progress
from cortexzoo.report import best_layers, leaderboard, plot_depth


def _scores():
    rows = []
    # model A: ridge best at layer l2 (0.9), rsa best at l1 (0.5); model B flat 0.3/0.2
    for model, weights, ridge, rsa in (("t:A@trained", "trained", [0.2, 0.5, 0.9, 0.4], [0.1, 0.5, 0.3, 0.2]),
                                       ("t:A@random", "random", [0.3] * 4, [0.2] * 4)):
        for i, (r, s) in enumerate(zip(ridge, rsa)):
            common = dict(model=model, source="t", weights=weights, region="V4", layer=f"l{i}",
                          relative_depth=i / 3, n_neuroids=10)
            rows.append(dict(common, method="ridge_gcv", metric="pearson_r", value=r / 2,
                             ceiling=0.5, ceiled_value=r))
            rows.append(dict(common, method="rsa", metric="rsa_pearson", value=s, ceiling=np.nan,
                             ceiled_value=np.nan))
    return pd.DataFrame(rows)


def test_best_layers_and_leaderboard():
    s = _scores()
    b = best_layers(s, "ridge_gcv").set_index("model")
    assert b.loc["t:A@trained", "layer"] == "l2"
    assert b.loc["t:A@trained", "relative_depth"] == 2 / 3
    board = leaderboard(s).set_index("model")
    assert board.loc["t:A@trained", "ridge"] == 0.9
    assert board.loc["t:A@trained", "rsa_layer"] == "l1"
    # overall score = mean of ridge max (ceiled) and rsa max (raw: no ceiling)
    assert board.loc["t:A@trained", "score"] == (0.9 + 0.5) / 2
    assert board.loc["t:A@trained", "rank"] == 1 and board.loc["t:A@random", "rank"] == 2


def test_plot_depth_png():
    png = plot_depth(_scores())
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_progress_logs_without_terminal(caplog):
    caplog.set_level(logging.INFO, logger="cortexzoo")
    with Progress(3, "layers", unit="layer", log_every=0.0) as bar:
        for _ in range(3):
            bar.update(1)
    msgs = [r.getMessage() for r in caplog.records]
    assert any("layers: 3/3 layer" in m for m in msgs)
    assert any("layers: 3 layer in" in m for m in msgs)
