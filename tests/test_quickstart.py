"""`repae-lab quickstart`: three recipes side by side, probed and evaluated, and an offline report."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TINY

CHROMIUM = Path("/usr/bin/chromium")


def test_the_quickstart_evaluates_with_the_three_seed_tables_protocol_unless_told_otherwise():
    from repae_lab.experiments.claims import PROTOCOL
    from repae_lab.experiments.quickstart import quickstart_overrides

    assert quickstart_overrides("workshop", None)["eval_steps"] == PROTOCOL["eval_steps"] == 6
    assert quickstart_overrides("workshop", {"eval_steps": 2, "lr": 1e-3}) == {"eval_steps": 2, "lr": 1e-3}


@pytest.fixture(scope="module")
def quickstart_dir(tmp_path_factory, encoder_cache):
    out = tmp_path_factory.mktemp("quickstart")
    sets = {**TINY, "steps": 6, "snapshot_every": 3, "checkpoint_every": 3, "eval_every": 3, "eval_n": 16,
            "eval_steps": 2, "cache_dir": encoder_cache}
    cmd = [sys.executable, "-m", "repae_lab", "quickstart", "--out", str(out), "--eval-n", "16",
           "--set", *[f"{k}={v}" for k, v in sets.items()]]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout + proc.stderr, cmd


@pytest.mark.slow
def test_quickstart_writes_a_report_with_the_story(quickstart_dir):
    out, log, _ = quickstart_dir
    page = (out / "report.html").read_text()
    for recipe in ("repa", "e2e-diffusion", "repa-e"):
        assert (out / "runs" / recipe / "summary.json").is_file()
        assert recipe in page
    # plotly.js is embedded once, no CDN, and every figure's data is in the page (the bundle itself names
    # cdn.plot.ly as a default for maps, which these figures never load; the browser test checks no request goes out)
    outside_scripts = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S)
    assert page.count("Plotly.newPlot") >= 4 and "cdn.plot.ly" not in outside_scripts
    assert not re.search(r"<script[^>]+src=[\"']?https?:", page)
    assert len(re.findall(r"plotly\.js v\d", page)) >= 1
    for heading in ("latent spatial variance", "PCA-RGB", "CKNNA", "reconstructions", "FD of samples"):
        assert heading in page, heading
    assert "data:image/png;base64," in page                            # the sample grids
    assert "report:" in log and "next:" in log
    # a log that is not a terminal gets whole lines, not carriage-return progress bars
    assert "\r" not in log and "[training repa, e2e-diffusion, repa-e] done" in log
    # a number for each stage, printed and kept beside the report (docs/results.md times the real quickstart)
    times = json.loads((out / "stage_times.json").read_text())
    assert set(times) == {"shared networks", "training", "probing and evaluating", "report", "total"}
    assert set(times["training"]) == {"total", "repa", "e2e-diffusion", "repa-e"}
    assert set(times["shared networks"]) == {"VAE and target encoder", "evaluator"}
    assert all(v > 0 for v in times["training"].values()) and times["total"] >= times["training"]["total"]
    assert re.search(r"time by stage \(s\): shared networks \d+ s \(VAE and target encoder \d+, evaluator \d+\)"
                     r" · training \d+ s \(repa \d+, e2e-diffusion \d+, repa-e \d+\)", log)


@pytest.mark.slow
def test_quickstart_run_again_reuses_everything(quickstart_dir):
    out, _, cmd = quickstart_dir
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("checkpoints/step-*/manifest.json")}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "every run is finished already: reused" in proc.stdout
    assert before == {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("checkpoints/step-*/manifest.json")}


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (CI installs it)")
def test_the_report_renders_offline_in_a_browser(quickstart_dir, tmp_path):
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    out, _, _ = quickstart_dir
    shutil.copy(out / "report.html", tmp_path / "report.html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-quic",
                                          "--disable-background-networking", "--disable-component-update",
                                          "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            requests = []
            page.route("**/*", lambda route: (requests.append(route.request.url), route.abort())
                       if not route.request.url.startswith(("file:", "data:")) else route.continue_())
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto((tmp_path / "report.html").as_uri())
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
            plots = page.locator(".js-plotly-plot").count()
        finally:
            browser.close()
    assert plots >= 4 and not errors and not requests, (plots, errors, requests)
