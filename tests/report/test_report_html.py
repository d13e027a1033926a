"""The self-contained HTML report: structure, statistics vs scipy, escaping, and a real
headless browser render (skipped unless ``chromium`` is on PATH)."""
import base64
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cortexzoo.report import leaderboard
from cortexzoo.report.html import paired_stats, rank_agreement, write_html_report
from cortexzoo.store import ResultStore, make_score_rows

sys.path.insert(0, os.path.dirname(__file__))
from test_report_query import write_fixture_scores  # noqa: E402

FIGURES = {"fig-ranking", "fig-depth", "fig-trained-random", "fig-rank-agreement"}
ODD_MODEL = 'custom:<b>x</b>&"y"@trained'


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.cells, self.urls, self.tags = [], [], [], []
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(a)
        for k in ("src", "href"):
            if k in a and tag != "img":
                self.urls.append(a[k])
        self._in_td = tag == "td"

    def handle_endtag(self, tag):
        self._in_td = False

    def handle_data(self, data):
        if self._in_td:
            self.cells.append(data)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("res"))
    full = write_fixture_scores(uri, seed=1)
    # a model whose name needs escaping (and that has no random twin)
    rows = [dict(layer=f"l{i}", relative_depth=i / 2, method=m, metric=k, value=0.1 * (i + 1),
                 ceiling=c) for i in range(3) for m, k, c in
            (("ridge_gcv", "pearson_r", 0.8), ("rsa", "rsa_pearson", np.nan))]
    odd = make_score_rows(dict(run_id="r1", dataset="toy", region="IT", model=ODD_MODEL,
                               source="custom", weights="trained", reduction="none",
                               n_neuroids=20, n_stimuli=30, split="cv", seed=0), rows)
    ResultStore(uri).write_scores(odd, "odd")
    full = pd.concat([full, odd.assign(unit_key="odd")], ignore_index=True)
    where = write_html_report(uri)
    assert where.endswith("report.html")
    text = ResultStore(uri).get_bytes("report.html").decode("utf-8")
    return uri, full, text


def test_structure_figures_and_tables(report):
    uri, full, text = report
    p = _Collect()
    p.feed(text)
    ids = {a.get("id") for a in p.imgs}
    assert ids == FIGURES
    for a in p.imgs:
        m = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", a["src"])
        assert m, a.get("id")
        w, h = _png_size(base64.b64decode(m.group(1), validate=True))
        assert w > 100 and h > 100
    # nothing external: no URLs but data: ones, and the CSP forbids the rest
    assert not p.urls and "link" not in p.tags
    assert "default-src &#x27;none&#x27;" in text
    assert not re.search(r"(src|href)=\"(https?:|//)", text)
    # every model appears in a leaderboard cell; every region has a leaderboard
    cells = set(p.cells)
    for model in full["model"].unique():
        assert model in cells, model
    for region in full["region"].unique():
        assert f'id="board-{region}"' in text
    # escaping: the odd name never appears raw
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;&amp;&quot;y&quot;" in text


def test_statistics_match_scipy(report):
    _, full, _ = report
    board = leaderboard(full)
    ps = paired_stats(board).set_index(["region", "measure"])
    agree = rank_agreement(board).set_index("region")
    for region in ("IT", "V4"):
        # independent: best ceiled ridge / raw RSA per model, mean, paired over archs
        sub = full[full.region == region]
        ridge = (sub[sub.method == "ridge_gcv"].assign(v=lambda d: d.value / d.ceiling)
                 .groupby("model").v.max())
        rsa = sub[sub.method == "rsa"].groupby("model").value.max()
        score = (ridge + rsa) / 2
        archs = sorted({m.split("@")[0] for m in score.index if m.endswith("@random")})
        tr = np.array([score[a + "@trained"] for a in archs])
        rn = np.array([score[a + "@random"] for a in archs])
        res = stats.ttest_rel(tr, rn)
        row = ps.loc[(region, "score")]
        assert row.n_pairs == len(archs) == 4
        assert row.t == pytest.approx(res.statistic) and row.p == pytest.approx(res.pvalue)
        sd_av = np.sqrt((tr.var(ddof=1) + rn.var(ddof=1)) / 2)
        g = (tr - rn).mean() / sd_av * (1 - 3 / (4 * 2 * len(tr) - 9))
        assert row.hedges_g == pytest.approx(g)
        both = pd.concat([ridge, rsa], axis=1).dropna()
        rho = stats.spearmanr(both.iloc[:, 0], both.iloc[:, 1]).statistic
        assert agree.loc[region, "n_models"] == len(both)
        assert agree.loc[region, "spearman_rho"] == pytest.approx(rho)


def test_local_out_path_and_s3(tmp_path, s3_bucket):
    uri = s3_bucket + "/exp"
    write_fixture_scores(uri, seed=2)
    out = tmp_path / "r.html"
    assert write_html_report(uri, out) == str(out)
    assert out.read_text().count("data:image/png;base64,") == 4
    assert write_html_report(uri) == uri + "/report.html"
    assert ResultStore(uri).get_bytes("report.html").startswith(b"<!DOCTYPE html>")
    with pytest.raises(ValueError, match="does not exist"):
        write_html_report(uri, tmp_path / "nope" / "r.html")


def _chromium_dom(path: str, tmp_path) -> str:
    cmd = [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--no-first-run",
           f"--user-data-dir={tmp_path / 'chrome-profile'}", "--dump-dom", f"file://{path}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_renders_in_headless_chromium(report, tmp_path):
    _, _, text = report
    good = tmp_path / "report.html"
    good.write_text(text)
    dom = _chromium_dom(str(good), tmp_path)
    assert 'data-images-checked="4"' in dom
    imgs = re.findall(r"<img\b[^>]*>", dom)
    assert len(imgs) == 4
    for tag in imgs:
        assert 'data-loaded="ok"' in tag, re.sub(r'src="[^"]*"', "", tag)
        assert int(re.search(r'data-natural-width="(\d+)"', tag).group(1)) > 100
    # the check can fail: a corrupted image is reported as such
    bad = tmp_path / "bad.html"
    bad.write_text(text.replace("base64,iVBOR", "base64,AAAAiVBOR", 1))
    dom = _chromium_dom(str(bad), tmp_path)
    assert dom.count('data-loaded="error"') == 1 and dom.count('data-loaded="ok"') == 3
