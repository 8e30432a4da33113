"""summary.json: what a finished run reached (the last tenth of its logged losses and latent statistics), and
its one-screen text form for the command line."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .. import rundir
from ..config import Config
from ..rundir import layout

SKIP_PREFIX = "skipped/"     # metrics of the updates fp16's scaler skipped (training/step.py finish_metrics)


def write_summary(run: Path, cfg: Config, seconds: float) -> dict[str, Any]:
    """Final losses (mean of the last 10% of logged steps), latent statistics and time taken."""
    records = rundir.read_jsonl(run / layout.METRICS)
    # training records only: evaluations ("kind") and alarms / rollbacks ("event") carry no losses, and an
    # evaluation at the last step would otherwise be the whole tail of a short run
    logged = [r for r in records if "kind" not in r and "event" not in r]
    tail = logged[-max(1, math.ceil(len(logged) / 10)):]
    keys = sorted({k for r in tail for k in r if k.startswith(("loss/", "latent/"))})
    final = {k: sum(r[k] for r in tail if k in r) / max(1, sum(1 for r in tail if k in r)) for k in keys}
    summary = {"run_dir": str(run.resolve()), "recipe": cfg.recipe, "preset": cfg.preset,
               "steps": records[-1]["step"] if records else 0, "seconds": round(seconds, 1), "final": final}
    if cfg.mixed_precision == "fp16":
        summary["skipped_updates"] = skipped_updates(logged)
    rundir.atomic_write_text(run / layout.SUMMARY, json.dumps(summary, indent=1))
    return summary


def skipped_updates(records: list[dict[str, Any]]) -> dict[str, int]:
    """How many updates of each network fp16's GradScaler skipped over the run (an inf / NaN gradient: the scaler
    then lowers its scale and the update does not happen). A few at the start are normal."""
    counts: dict[str, int] = {}
    for record in records:
        for key, value in record.items():
            if key.startswith(SKIP_PREFIX):
                name = key[len(SKIP_PREFIX):]
                counts[name] = counts.get(name, 0) + int(round(value))
    return counts


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"run directory: {summary['run_dir']}",
             f"{summary['recipe']} on preset {summary['preset']}: {summary['steps']} steps in {summary['seconds']:.1f} s"]
    for k, v in summary["final"].items():
        lines.append(f"  {k:<26} {v:.4g}")
    skipped = {k: n for k, n in summary.get("skipped_updates", {}).items() if n}
    if skipped:
        lines.append("  fp16: the gradient scaler skipped " + ", ".join(f"{n} {k} update{'s' * (n != 1)}"
                                                                        for k, n in skipped.items())
                     + " (inf / NaN gradients; it lowers its scale and goes on)")
    return "\n".join(lines)
