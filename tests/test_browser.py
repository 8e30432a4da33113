"""The latent explorer in a real JupyterLab, driven by chromium: what a workshop participant sees and does.

Needs the Debian chromium (CI installs it) and the playwright package (dev extra); skipped without them.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _titles(page) -> list[str]:
    return [t.text_content() or "" for t in page.locator(".js-plotly-plot .gtitle").all()]


def _run_all_cells(page, tries: int = 3) -> None:
    """Run > Run All Cells from the menu bar; retried when no cell starts (a menu opened too early)."""
    started = "[...document.querySelectorAll('.jp-InputArea-prompt')].some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"
    for attempt in range(tries):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click(timeout=10_000)
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click(timeout=10_000)
        try:
            page.wait_for_function(started, timeout=15_000)
            return
        except Exception:
            page.keyboard.press("Escape")
            if attempt == tries - 1:
                raise


def _drive_explorer(port: int) -> tuple[list[str], list[str]]:
    """Open the notebook, run every cell, then move the step slider one snapshot back with the keyboard;
    returns the figure titles before and after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            deadline = time.time() + 60
            while True:                                  # the server needs a few seconds to listen
                try:
                    page.goto(f"http://127.0.0.1:{port}/lab/tree/lab.ipynb", timeout=10_000)
                    break
                except Exception:
                    if time.time() > deadline:
                        raise
                    time.sleep(1)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            _run_all_cells(page)
            page.wait_for_selector(".widget-slider .noUi-handle", timeout=120_000)
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot .gtitle').length >= 3", timeout=60_000)
            before = _titles(page)
            handle = page.locator(".widget-slider .noUi-handle").first
            handle.scroll_into_view_if_needed()
            handle.focus()
            page.keyboard.press("ArrowLeft")
            page.wait_for_function("[...document.querySelectorAll('.js-plotly-plot .gtitle')]"
                                   ".some(t => t.textContent.endsWith('step 3'))", timeout=30_000)
            return before, _titles(page)
        finally:
            browser.close()


def test_latent_explorer_scrubs_in_jupyterlab(tmp_path, encoder_cache):
    pytest.importorskip("playwright")
    import papermill as pm

    from conftest import ROOT, TINY
    from repae_lab.config import resolve_config
    from repae_lab.app.launch import train

    overrides = {**TINY, "cache_dir": encoder_cache, "steps": 6, "snapshot_every": 3, "checkpoint_every": 3}
    train(resolve_config("workshop", recipe="repa-e", overrides=overrides), tmp_path / "run", progress=False)
    # the latent-space notebook with its parameters filled in, as papermill would run it, but left for the
    # browser to execute
    pm.execute_notebook(str(ROOT / "notebooks" / "02_latent_space.ipynb"), str(tmp_path / "lab.ipynb"),
                        parameters={"runs": [str(tmp_path / "run")], "umap": False}, prepare_only=True)
    log = open(tmp_path / "server.log", "w")
    for attempt in range(2):                         # a cold JupyterLab occasionally misses the first load
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
             "--ServerApp.token=", "--ServerApp.password=", "--allow-root", f"--ServerApp.root_dir={tmp_path}"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            before, after = _drive_explorer(port)
            break
        except Exception:
            if attempt == 1:
                raise
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert any(t.endswith("step 6") for t in before), before
    assert any(t.endswith("step 3") for t in after) and not any(t.endswith("step 6") for t in after), after
    assert Path(tmp_path / "run" / "probes").is_dir()   # the explorer computed the probes it showed
