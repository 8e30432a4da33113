"""What the notebooks do, as functions a test can reach (DESIGN.md: notebooks hold no logic of their own).

`ensure_run` makes a notebook safe to re-run: a finished run is reused, an interrupted one resumes from its
last checkpoint, and a folder that holds a different run is refused rather than overwritten.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .. import rundir
from ..config import config_from_dict, resolve_config
from ..rundir import RunError


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
    from .launch import train          # here, so that reading runs does not import the training stack

    run = Path(out)
    action = run_action(preset, recipe, run, overrides)
    if action == "train":
        cfg = resolve_config(preset, recipe=recipe, overrides=dict(overrides or {}))
        train(cfg, run, progress=progress, on_metrics=on_metrics)
    elif action == "resume":
        train(resume=run, progress=progress, on_metrics=on_metrics)
    return run


# what a summary table shows by default: the losses and the two collapse measures of REPA-E's Table 1
SUMMARY_KEYS = ("loss/diffusion", "loss/repa", "loss/l1", "latent/spatial_var", "latent/total_variation",
                "eval/fd_workshop", "eval/fd_dinov2", "eval/fd_inception")


def summary_rows(runs, keys: tuple[str, ...] | None = SUMMARY_KEYS) -> list[dict[str, Any]]:
    """One row per run: recipe, steps, minutes, then the final values of `keys` (None: every one) from
    summary.json (means over the last tenth of the logged steps) and the run's last evaluation."""
    rows = []
    for run in map(Path, runs):
        summary = rundir.read_json(run / "summary.json") or {}
        values = dict(summary.get("final", {}))
        evals = [r for r in rundir.read_jsonl(run / "metrics.jsonl") if r.get("kind") == "eval"]
        if evals:
            values.update({k: v for k, v in evals[-1].items() if k.startswith("eval/") and isinstance(v, float)})
        row = {"run": run.name, "recipe": summary.get("recipe"), "steps": summary.get("steps"),
               "minutes": round(summary.get("seconds", 0) / 60, 1)}
        row.update({k: values[k] for k in (keys if keys is not None else values) if k in values})
        rows.append(row)
    return rows


def latest_samples_image(run: str | Path) -> Path | None:
    """The newest in-training evaluation's sample grid (RUN/eval/*.png), if the run evaluated."""
    pngs = sorted((Path(run) / "eval").glob("step-*.png"))
    return pngs[-1] if pngs else None


def snapshot_images(run: str | Path, step: int | None = None) -> dict[str, np.ndarray]:
    """{'originals', 'reconstructions'}: (N, H, W, 3) uint8 probe images of a snapshot (the last one by
    default) and the VAE's reconstructions of them at that step (the first cfg.snapshot_recons images)."""
    from ..data import load_dataset
    from ..data.images import to_uint8_images

    run = Path(run)
    snapshots = dict(rundir.list_snapshots(run))
    if not snapshots:
        raise RunError(f"'{run}' has no snapshots yet (RUN/snapshots/); train with snapshot_every > 0.")
    step = max(snapshots) if step is None else step
    if step not in snapshots:
        raise RunError(f"'{run}' has no snapshot at step {step}; it has {sorted(snapshots)}.")
    tensors, _ = rundir.load_snapshot(snapshots[step], keys=("recons", "indices"))
    out: dict[str, np.ndarray] = {}
    if "recons" in tensors:
        recons = tensors["recons"]
        out["reconstructions"] = to_uint8_images(recons)
        cfg = config_from_dict(rundir.read_json(run / "config.json"))
        dataset = load_dataset(cfg.dataset, resolution=cfg.resolution, root=cfg.data_root)
        images, _ = dataset.batch(tensors["indices"][:len(recons)])
        out["originals"] = to_uint8_images(images)
    return out


def table_html(rows: list[dict[str, Any]]) -> str:
    """A plain HTML table of `rows` (the union of their keys as columns), for notebooks without pandas."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
