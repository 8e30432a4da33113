"""The GPU session's own mechanics, checked without a GPU: its stages run with CPU stand-ins, pack their results
into a few files as they end, respect the time budget, and the goals read figures or say "not measured"."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_goals  # noqa: E402


def _row(recipe, size, images_per_s, mfu, peak_gb, compile="none", graphs=False, warmup_s=(1.0,)):
    return {"recipe": recipe, "size": size, "batch": 32, "images_per_s": images_per_s, "step_ms": 32e3 / images_per_s,
            "mfu": mfu, "peak_memory_bytes": peak_gb * 1e9, "compile": compile, "cuda_graphs": graphs,
            "warmup_ms": [w * 1e3 for w in warmup_s]}


def _stage(*rows, **extra):
    return {"status": "ok", "seconds": 10, "figures": {"rows": list(rows)}, **extra}


MEASURED = {"device": "cuda", "session_s": 500, "stages": {
    "eager": _stage(_row("repa-cached", "xl2-sdvae", 294.7, 0.216, 24.5), _row("repa-e", "xl2-sdvae", 53.6, 0.204, 79.3)),
    "official": {"status": "ok", "figures": {"images_per_s": 46.2, "median_step_s": 0.6927, "peak_mem_gb": 104.9}},
    "graphs": _stage(_row("repa-e", "xl2-sdvae", 60.0, 0.23, 78.0, graphs=True)),
    "compiled": _stage(_row("repa-cached", "xl2-sdvae", 450.0, 0.46, 22.0, "regional", True),
                       _row("repa-e", "xl2-sdvae", 100.0, 0.38, 55.0, "regional", True, warmup_s=(70.0, 0.5))),
    "workshop-eager": _stage(_row("repa-e", "workshop", 32 / 0.075, None, 1.0)),
    "workshop-graphs": _stage(_row("repa-e", "workshop", 32 / 0.012, None, 1.0, graphs=True)),
    "quickstart": {"status": "timed out", "seconds": 110},
    "pytest-cuda": {"status": "ok", "seconds": 80},
}}


def test_goals_read_the_fastest_configuration_and_say_met_or_not():
    found = {g.name: g for g in gpu_goals.goals(MEASURED)}
    speed = found["repa-e images/s against the official loop"]
    assert speed.status == "met" and speed.figure.startswith("2.16x") and "compile=regional" in speed.figure
    assert found["repa-e MFU"].status == "met"
    assert found["repa-e peak memory"].status == "met" and found["repa-e peak memory"].figure.startswith("55.0 GB")
    assert found["first compiled repa-e step (compilation included)"].figure == "70 s"
    assert found["repa-cached (SiT update) MFU, compiled"].status == "met"
    assert found["workshop repa-e step"].figure.startswith("12.0 ms")
    quick = found["quickstart on one GPU (probes and evaluations included)"]
    assert quick.status == "not met" and quick.figure.startswith("over 110 s")
    table = gpu_goals.comparison_table(MEASURED)
    assert "official" in table and "regional, cuda graphs" in table


def test_goals_say_not_measured_when_nothing_was():
    found = gpu_goals.goals({"stages": {}})
    assert {g.status for g in found} == {"not measured"}
    assert "not measured" in gpu_goals.format_goals(found)


def test_a_cpu_stand_in_meets_no_gpu_goal():
    found = gpu_goals.goals({**MEASURED, "device": "cpu"})
    assert {g.status for g in found} == {"stand-in"}


def test_the_session_packs_its_results_and_skips_what_it_lacks(tmp_path):
    """Two cheap stages on the CPU: the device line, and the official loop with no checkout of the official code
    (skipped, not failed). The results are packed into a few files, rewritten after every stage."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_session.py"), "--device", "cpu",
                           "--out", str(out), "--only", "device,official", "--official", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["goals.txt", "results.json", "session.log"]
    results = json.loads((out / "results.json").read_text())
    assert results["stages"]["device"]["status"] == "ok"
    assert results["stages"]["official"]["status"] == "skipped" and "is missing" in results["stages"]["official"]["why"]
    assert "not measured" in (out / "goals.txt").read_text()


def test_a_stage_without_time_left_is_not_run(tmp_path):
    import gpu_session

    stage = gpu_session.Stage("x", 60, [sys.executable, "-c", "print(1)"])
    with open(tmp_path / "log", "w") as log:
        assert gpu_session.run_stage(stage, 2, log)["status"] == "not run"
        timed = gpu_session.run_stage(gpu_session.Stage("y", 60, [sys.executable, "-c", "import time; time.sleep(9)"]),
                                      6, log)
    assert timed["status"] == "timed out" and timed["seconds"] < 9
