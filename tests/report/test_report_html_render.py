"""The self-contained HTML report: every figure embedded, every model listed, and
(where Debian's chromium is installed) rendered by a real headless browser."""
import base64
import re
import shutil
import subprocess

import pytest

from cortexzoo.report.html import write_html_report
from cortexzoo.store import ResultStore, make_score_rows

MODELS = [("timm:a@trained", "trained"), ("timm:a@random", "random"),
          ("timm:b@trained", "trained"), ("timm:b@random", "random")]


@pytest.fixture
def results(tmp_path):
    store = ResultStore(str(tmp_path / "r"))
    for k, (model, weights) in enumerate(MODELS):
        rows = []
        for i in range(3):
            base = (0.6 if weights == "trained" else 0.3) + 0.05 * k + 0.02 * i
            common = dict(region="V4", layer=f"l{i}", relative_depth=i / 2, n_neuroids=5)
            rows.append(dict(common, method="ridge_gcv", metric="pearson_r", value=base,
                             ceiling=1.0))
            rows.append(dict(common, method="rsa", metric="rsa_pearson", value=base / 2,
                             ceiling=1.0))
        df = make_score_rows(dict(run_id="r", dataset="d", model=model, source="timm",
                                  weights=weights, reduction="srp", split="loo", seed=0,
                                  n_stimuli=10), rows)
        store.write_scores(df, f"u{k}")
    return str(tmp_path / "r")


def test_report_embeds_figures_and_lists_models(results, tmp_path):
    out = tmp_path / "report.html"
    write_html_report(results, str(out))
    html = out.read_text()
    imgs = re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', html)
    assert len(imgs) >= 4
    for b64 in imgs:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in html and "https://" not in html
    for model, _ in MODELS:
        assert model in html


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed")
def test_report_renders_in_headless_chromium(results, tmp_path):
    out = tmp_path / "report.html"
    write_html_report(results, str(out))
    shot = tmp_path / "shot.png"
    done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--disable-component-update",
                           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                           f"--screenshot={shot}", "--window-size=1200,3000",
                           f"file://{out}"], capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20000, done.stderr[-2000:]
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                          "--disable-background-networking", "--disable-component-update",
                          "--no-first-run", f"--user-data-dir={tmp_path / 'profile2'}",
                          "--dump-dom", f"file://{out}"], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.count("<img") == len(re.findall(r"<img", out.read_text()))
