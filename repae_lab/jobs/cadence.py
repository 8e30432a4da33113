"""How often a run logs, snapshots, evaluates and checkpoints, chosen from its number of steps.

The presets' cadences suit their default lengths: the workshop preset snapshots every 100 of its 500 steps. A
notebook run with `steps=40` would then have snapshots at 0 and 40 only, a slider with two positions, and no
evaluation but the first and last. `with_cadence` lowers each interval that the caller did not set so that a
run of any length gets about CURVE_POINTS log lines, SNAPSHOTS snapshots and EVALUATIONS evaluations; an
interval the preset already makes denser is kept, and a cadence the caller set is never touched.
"""
from __future__ import annotations

from typing import Any

from ..config import resolve_config

CURVE_POINTS = 20          # log lines per run, at least
SNAPSHOTS = 10             # snapshot intervals per run (the explorer's slider gets SNAPSHOTS + 1 positions)
EVALUATIONS = 4            # evaluation intervals per run (FD against steps gets EVALUATIONS + 1 points)
CHECKPOINTS = 2            # checkpoint intervals per run (and the last one, always)

CADENCE_KEYS = ("log_every", "snapshot_every", "eval_every", "checkpoint_every")


def cadence(steps: int, preset: dict[str, int], given: dict[str, Any] | None = None) -> dict[str, int]:
    """{log_every, snapshot_every, eval_every, checkpoint_every} for a run of `steps` steps, starting from the
    preset's values; keys in `given` are kept as they are. checkpoint_every stays a multiple of log_every (so a
    resumed run logs the same intervals, config/resolve.py)."""
    given = dict(given or {})
    steps = max(1, int(steps))

    def denser(key: str, count: int) -> int:
        current = int(preset.get(key) or 0)
        target = max(1, steps // count)
        return min(current, target) if current else 0

    out = {"log_every": denser("log_every", CURVE_POINTS), "snapshot_every": denser("snapshot_every", SNAPSHOTS),
           "eval_every": denser("eval_every", EVALUATIONS), "checkpoint_every": denser("checkpoint_every", CHECKPOINTS)}
    out.update({k: int(v) for k, v in given.items() if k in out})
    log, checkpoint = out["log_every"], out["checkpoint_every"]
    if log and checkpoint and checkpoint % log:
        if "checkpoint_every" not in given:
            out["checkpoint_every"] = max(log, checkpoint // log * log)
        elif "log_every" not in given:
            out["log_every"] = max(d for d in range(1, log + 1) if checkpoint % d == 0)
        # both given and incompatible: resolve_config says so
    return out


def with_cadence(preset: str, overrides: dict[str, Any] | None = None, steps: int | None = None) -> dict[str, Any]:
    """`overrides` with `steps` (when given and positive) and, for every cadence key the overrides do not set,
    the cadence of a run of that length. The length is `steps`, else overrides['steps'], else the preset's."""
    overrides = dict(overrides or {})
    if steps:
        overrides["steps"] = int(steps)
    defaults = resolve_config(preset)                  # an unknown preset stops here, with the valid names
    length = int(overrides.get("steps", defaults.steps))
    base = {k: getattr(defaults, k) for k in CADENCE_KEYS}
    given = {k: overrides[k] for k in CADENCE_KEYS if k in overrides}
    return {**overrides, **cadence(length, base, given)}
