"""Where evaluations go: RUN/eval/step-NNNNNNNN-TAG.{json,png[,npz]} and one record in RUN/metrics.jsonl
{"step", "kind": "eval", "eval/...": ..., "protocol"}, beside the training curves; and reading them back."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .. import rundir
from ..data.images import save_grid
from ..rundir import layout
from ..sampling import SamplingSpec, save_npz

EVAL_DIR = layout.EVAL_DIR


def protocol_tag(spec: SamplingSpec, n: int) -> str:
    """A readable file-name tag that tells evaluations with different protocols apart."""
    tag = f"{spec.sampler}{spec.steps}-cfg{spec.cfg_scale:g}"
    if spec.cfg_scale != 1.0 and spec.interval != (0.0, 1.0):
        tag += f"-int{spec.interval[0]:g}-{spec.interval[1]:g}"
    if spec.seed:
        tag += f"-seed{spec.seed}"
    if not spec.ema:
        tag += "-noema"
    return f"{tag}-n{n}"


def eval_record(step: int, metrics: dict, protocol: dict) -> dict[str, Any]:
    """The metrics-log record of an evaluation."""
    return {"step": step, "kind": "eval", "time_written": round(time.time(), 1), **metrics, "protocol": protocol}


def save_evaluation(run: Path, record: dict[str, Any], *, tag: str, images=None, labels=None,
                    npz: bool = True) -> Path:
    """RUN/eval/step-XXXXXXXX-TAG.json (the record), .png (a grid of the samples) and .npz (ADM layout)."""
    folder = Path(run) / EVAL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"step-{record['step']:08d}-{tag}"
    rundir.atomic_write_text(stem.with_suffix(".json"), json.dumps(record, indent=1))
    if images is not None:
        save_grid(stem.with_suffix(".png"), images, labels)
        if npz:
            save_npz(stem.with_suffix(".npz"), images, labels)
    return stem


def write_evaluation(run: Path, step: int, metrics: dict, protocol: dict, *, tag: str, images=None,
                     labels=None, save_npz_file: bool = True) -> dict[str, Any]:
    """save_evaluation, and the record appended to RUN/metrics.jsonl."""
    record = eval_record(step, metrics, protocol)
    save_evaluation(run, record, tag=tag, images=images, labels=labels, npz=save_npz_file)
    rundir.append_jsonl(Path(run) / layout.METRICS, record)
    return record


def format_record(record: dict[str, Any]) -> str:
    p = record["protocol"]
    s = p["sampling"]
    lines = [f"step {record['step']} ({p['recipe']}): n={p['n']} {s['sampler']} {s['steps']} steps, cfg {s['cfg_scale']:g}"
             f" on [{s['interval'][0]:g}, {s['interval'][1]:g}], {p['labels']}, {p['images_per_second']} img/s"]
    for key in sorted(k for k in record if k.startswith("eval/")):
        lines.append(f"  {key:<26} {record[key]:.4g}")
    return "\n".join(lines)


def eval_curve(run: str | Path, key: str = "eval/fd_workshop") -> list[tuple[int, float]]:
    """(step, value) pairs of one eval metric from a run's metrics log, for FD-versus-steps plots."""
    return curve_of(rundir.read_jsonl(Path(run) / layout.METRICS), key)


def curve_of(records, key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one eval metric from metrics-log records already read."""
    return [(r["step"], r[key]) for r in records if r.get("kind") == "eval" and key in r]
