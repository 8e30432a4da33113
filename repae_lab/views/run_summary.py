"""What a notebook shows of finished runs, read from their run directories: a summary row per run, the newest
in-training sample grid, a snapshot's probe images and reconstructions, and a plain HTML table."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import rundir
from ..config import config_from_dict
from ..data import load_dataset
from ..data.images import to_uint8_images
from ..rundir import RunError

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
