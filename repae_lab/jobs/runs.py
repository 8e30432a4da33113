"""A run directory as a job: done, to resume, or to train; `ensure_run` makes a notebook or a benchmark safe to
re-run: a finished run is reused, an interrupted one resumes from its last checkpoint, and a folder that holds a
different run is refused rather than overwritten."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import rundir
from ..config import config_from_dict, resolve_config
from ..rundir import RunError
from .launch import train


def run_is_complete(run: str | Path) -> bool:
    """True when the run reached its configured steps (summary.json is written last, after the final
    checkpoint)."""
    run = Path(run)
    config, summary = rundir.read_json(run / "config.json"), rundir.read_json(run / "summary.json")
    return bool(config and summary and summary.get("steps", -1) >= config.get("steps", 0))


def run_action(preset: str, recipe: str, out: str | Path, overrides: dict[str, Any] | None = None) -> str:
    """What ensure_run would do with `out`: "train" (no run there), "resume" (the same run, interrupted) or
    "done" (the same run, finished); a different run there is a RunError naming the differences."""
    run = Path(out)
    cfg = resolve_config(preset, recipe=recipe, overrides=dict(overrides or {}))
    if not (run / "config.json").is_file():
        return "train"
    saved = config_from_dict(json.loads((run / "config.json").read_text()))
    differs = {k: (v, getattr(cfg, k)) for k, v in vars(saved).items() if getattr(cfg, k) != v}
    if differs:
        listed = ", ".join(f"{k}: {old!r} there, {new!r} asked" for k, (old, new) in sorted(differs.items()))
        raise RunError(f"'{run}' holds a different run ({listed}); choose another output folder, or delete "
                       f"that one to start over.")
    return "done" if run_is_complete(run) else "resume"


def ensure_run(preset: str, recipe: str, out: str | Path, overrides: dict[str, Any] | None = None, *,
               progress: bool = True, on_metrics=None) -> Path:
    """Train `recipe` on `preset` into `out`, unless that is already done; returns the run directory.

    - no run in `out`: train it;
    - the same run, interrupted: resume it from its last good checkpoint;
    - the same run, finished: nothing to do;
    - a different run (preset, recipe or any override differs): RunError naming the differences.
    `on_metrics(step, means)` is handed to the training loop (launch.train).
    """
    run = Path(out)
    action = run_action(preset, recipe, run, overrides)
    if action == "train":
        cfg = resolve_config(preset, recipe=recipe, overrides=dict(overrides or {}))
        train(cfg, run, progress=progress, on_metrics=on_metrics)
    elif action == "resume":
        train(resume=run, progress=progress, on_metrics=on_metrics)
    return run
