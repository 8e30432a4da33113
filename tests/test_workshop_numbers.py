"""The instructor's guide (docs/workshop.md) quotes numbers measured on the kit's runs; docs/workshop_numbers.json
records them with the settings they were measured under (benchmarks/workshop_numbers.py writes it). These tests
fail when runs.py or the preset drift from those settings, or the kit from the preset's regime, without the
numbers being measured again, and when the guide quotes a number the record does not hold."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from repae_lab.config import PRESETS
from repae_lab.workshop import Kit
from repae_lab.workshop.runs import COMMON, KIT_RUNS, PRESET, RUN_OVERHEAD_SECONDS, SETUP_SECONDS

DOCS = Path(__file__).resolve().parents[1] / "docs"
RECORD = json.loads((DOCS / "workshop_numbers.json").read_text())
GUIDE = (DOCS / "workshop.md").read_text()

# what the kit may set on top of the preset: how often it snapshots, evaluates, saves and logs. Anything else
# (learning rates, guidance, steps, sizes) would take the kit out of the regime the project's results are in.
CADENCE_KEYS = {"snapshot_every", "eval_every", "checkpoint_every", "log_every"}
RE_MEASURE = "measure the guide's numbers again (benchmarks/workshop_numbers.py) and rewrite docs/workshop.md"


def _json(value):
    return json.loads(json.dumps(value, default=str))


def test_the_kit_sets_only_cadences_on_top_of_the_preset():
    for where, settings in [("COMMON", COMMON)] + [(n, r.overrides) for n, r in KIT_RUNS.items()]:
        assert set(settings) <= CADENCE_KEYS, f"{where} sets {sorted(set(settings) - CADENCE_KEYS)}"


def test_the_guides_numbers_were_measured_with_todays_settings():
    measured = RECORD["measured_with"]
    assert measured["preset"] == PRESET
    assert measured["preset_settings"] == _json(PRESETS[PRESET]), f"the {PRESET} preset changed: {RE_MEASURE}"
    assert measured["common"] == _json(COMMON), f"runs.COMMON changed: {RE_MEASURE}"
    assert measured["overrides"] == _json({n: r.overrides for n, r in KIT_RUNS.items()}), \
        f"a kit run's overrides changed: {RE_MEASURE}"
    # the folder names digest all of it (and the recipes): a new name is a new run, hence new numbers
    assert measured["folders"] == {n: Kit().folder(n) for n in KIT_RUNS}, RE_MEASURE
    assert set(RECORD["runs"]) == set(KIT_RUNS)


def test_the_step_times_in_runs_py_are_the_measured_ones():
    steps = RECORD["timings"]["steps"]
    for name, run in KIT_RUNS.items():
        assert run.seconds_per_step == pytest.approx(steps[name]["cpu_s_per_step"], abs=1e-3), name
    live = RECORD["timings"]["live"]
    assert SETUP_SECONDS == pytest.approx(live["warm_up"]["cpu_s"], rel=0.1)
    assert RUN_OVERHEAD_SECONDS == pytest.approx(
        live["train_live_e2e_diffusion"]["cpu_s"] - 500 * steps["e2e-diffusion"]["cpu_s_per_step"], rel=0.1, abs=2)


def _measured_values(node) -> list[float]:
    if isinstance(node, dict):
        return [v for x in node.values() for v in _measured_values(x)]
    if isinstance(node, list):
        return [v for x in node for v in _measured_values(x)]
    return [float(node)] if isinstance(node, (int, float)) and not isinstance(node, bool) else []


def _quoted(section: str) -> list[str]:
    """The measured numbers a part of the guide quotes: decimals, percentages and seconds (not t = 0.5, not
    headings' step counts)."""
    section = re.sub(r"t = \d\.\d+", "", section)
    return re.findall(r"(?<![\w.-])(-?\d+\.\d+|\d+(?:\.\d+)?(?=%)|\d+(?= s\b))", section)


def _matches(quoted: str, values: list[float]) -> bool:
    digits = len(quoted.split(".")[1]) if "." in quoted else 0
    q = float(quoted)
    # a percentage quotes a fraction (0.935 -> 93.5%), a duration may be quoted in minutes (681.9 s -> 11.4)
    return any(round(v, digits) == q or round(100 * v, digits) == q or round(v / 60, digits) == q for v in values)


def test_every_number_the_guide_quotes_is_in_the_record():
    start, end = GUIDE.index("## The runs, and how long they take"), GUIDE.index("## Common mistakes")
    values = _measured_values({k: v for k, v in RECORD.items() if k != "measured_with"})
    unrecorded = [q for q in _quoted(GUIDE[start:end]) if not _matches(q, values)]
    assert not unrecorded, f"the guide quotes numbers docs/workshop_numbers.json does not hold: {unrecorded}"


def test_the_guide_quotes_every_runs_final_fd_and_class_accuracy():
    for name, numbers in RECORD["runs"].items():
        last = max(numbers["fd"], key=int)
        assert f"{numbers['fd'][last]:.2f}" in GUIDE, name
        assert f"{100 * numbers['class_accuracy'][last]:.0f}%" in GUIDE, name


def test_the_guides_fd_table_is_the_recorded_one():
    start = GUIDE.index("| FD at step |")
    table = GUIDE[start:GUIDE.index("\n\n", start)]
    for name, numbers in RECORD["runs"].items():
        row = re.search(rf"^\| `{re.escape(name)}` \|(.*)\|$", table, re.M)
        assert row, f"the guide's FD table has no row for {name}"
        cells = [c.strip().strip("*") for c in row.group(1).split("|")]
        steps = sorted(numbers["fd"], key=int)
        assert cells[:len(steps)] == [f"{numbers['fd'][s]:.2f}" for s in steps], name
        assert cells[len(steps)] == f"{100 * numbers['class_accuracy'][steps[-1]]:.0f}%", name
