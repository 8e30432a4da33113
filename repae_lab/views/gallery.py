"""What the reconstruction gallery shows: a run's probe images against the VAE's reconstructions of them at
chosen snapshot steps, with the error of every image, and the mean error against the step for every run.

Snapshots hold the reconstructions of the first `snapshot_recons` probe images (training/snapshots.py); the
originals come from the run's dataset. Under naive end-to-end training (e2e-diffusion) the latent collapses and
its reconstructions wash out while the error curve climbs; under repa-e they stay sharp (REPA-E Table 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import rundir
from ..config import config_from_dict
from ..data import load_dataset
from ..data.images import tile, to_uint8_images
from ..rundir import RunError
from .figures import RUN_COLOURS, run_label

# per-image errors, computed on images in [-1, 1]: name -> (label, unit, higher is better)
METRICS = {"psnr": ("PSNR", "dB", True), "mse": ("MSE", "", False), "l1": ("L1", "", False)}


def image_errors(originals: np.ndarray, recons: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image errors of (N, C, H, W) images in [-1, 1]: psnr (dB, peak-to-peak 2), mse, l1."""
    diff = np.asarray(recons, dtype=np.float64) - np.asarray(originals, dtype=np.float64)
    mse = (diff ** 2).reshape(len(diff), -1).mean(1)
    l1 = np.abs(diff).reshape(len(diff), -1).mean(1)
    psnr = 10 * np.log10(4.0 / np.maximum(mse, 1e-12))
    return {"psnr": psnr, "mse": mse, "l1": l1}


def pick_steps(steps: Sequence[int], k: int = 6) -> list[int]:
    """At most k of `steps`, evenly spread, the first and last included."""
    steps = sorted(steps)
    if len(steps) <= k:
        return steps
    return sorted({steps[int(round(i))] for i in np.linspace(0, len(steps) - 1, k)})


@dataclass
class GalleryRun:
    """One run's originals and, loaded on demand per step, reconstructions and errors."""
    run: Path
    label: str
    steps: list[int]
    originals: np.ndarray                                   # (K, C, H, W) float in [-1, 1]
    _paths: dict[int, Path] = field(default_factory=dict, repr=False)
    _recons: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n_images(self) -> int:
        return len(self.originals)

    def recons(self, step: int) -> np.ndarray:
        """(K, C, H, W) float reconstructions of the originals at snapshot `step`."""
        if step not in self._recons:
            if step not in self._paths:
                raise RunError(f"'{self.run}' has no snapshot at step {step}; it has {self.steps}.")
            tensors, _ = rundir.load_snapshot(self._paths[step], keys=("recons",))
            if "recons" not in tensors:
                raise RunError(f"the snapshot of step {step} in '{self.run}' holds no reconstructions "
                               f"(snapshot_recons=0).")
            self._recons[step] = tensors["recons"].float().numpy()[:self.n_images]
        return self._recons[step]

    def errors(self, step: int, metric: str = "psnr") -> np.ndarray:
        return image_errors(self.originals, self.recons(step))[metric]

    def mean_error(self, metric: str = "psnr") -> tuple[list[int], list[float]]:
        return self.steps, [float(self.errors(s, metric).mean()) for s in self.steps]


def load_gallery_run(run: str | Path) -> GalleryRun:
    """A run's gallery: the probe images that its snapshots reconstruct, loaded from its dataset."""
    run = rundir.check_run_dir(run, "a run directory written by `repae-lab train --out`")
    snapshots = dict(rundir.list_snapshots(run))
    if not snapshots:
        raise RunError(f"'{run}' has no snapshots yet (RUN/snapshots/); train with snapshot_every > 0.")
    first, _ = rundir.load_snapshot(snapshots[min(snapshots)], keys=("recons", "indices"))
    if "recons" not in first:
        raise RunError(f"'{run}' keeps no reconstructions in its snapshots; train with snapshot_recons > 0.")
    cfg = config_from_dict(rundir.read_json(run / "config.json"))
    dataset = load_dataset(cfg.dataset, resolution=cfg.resolution, root=cfg.data_root)
    images, _ = dataset.batch(first["indices"][:len(first["recons"])])
    return GalleryRun(run=run, label=run_label(run), steps=sorted(snapshots), originals=images.numpy(),
                      _paths=snapshots)


def _fmt(metric: str, value: float) -> str:
    return f"{value:.1f}" if metric == "psnr" else f"{value:.3f}"


def gallery_figure(runs: Sequence[GalleryRun], steps: Sequence[int] | None = None, *, images: int = 8,
                   metric: str = "psnr", error_maps: bool = False) -> go.Figure:
    """Top: one panel per run, its originals on the first row and its reconstructions at each of `steps` below
    (with |error| maps under each when error_maps), the error of every image written on it. Bottom: the mean
    error against the step, one line per run, over every snapshot."""
    if metric not in METRICS:
        raise ValueError(f"unknown error metric '{metric}'; choose one of {', '.join(METRICS)}.")
    name, unit, higher_better = METRICS[metric]
    every = sorted({s for r in runs for s in r.steps})
    steps = list(steps) if steps is not None else pick_steps(every)
    fig = make_subplots(rows=2, cols=max(1, len(runs)), row_heights=[0.7, 0.3], vertical_spacing=0.1,
                        horizontal_spacing=0.09,
                        specs=[[{} for _ in runs] or [{}], [{"colspan": max(1, len(runs))}] + [None] * (len(runs) - 1)],
                        subplot_titles=[r.label for r in runs] + [f"mean {name} of the reconstructions against the step"])
    rows_text = []
    for i, run in enumerate(runs):
        k = max(1, min(images, run.n_images))
        shown = [s for s in steps if s in run.steps]
        blocks = [run.originals[:k]]
        labels = ["original"]
        for s in shown:
            blocks.append(run.recons(s)[:k])
            labels.append(f"step {s}")
            if error_maps:
                err = np.abs(run.recons(s)[:k] - run.originals[:k]).mean(1, keepdims=True)
                blocks.append(np.clip(err * 2 - 1, -1, 1))           # |error| 0..1 shown dark to light
                labels.append(f"|error| {s}")
        stacked = np.concatenate([to_uint8_images(b) for b in blocks])
        h, w = stacked.shape[1:3]
        scale = max(1, 48 // max(h, w))                              # small images: integer zoom, sharp pixels
        if scale > 1:
            stacked = stacked.repeat(scale, axis=1).repeat(scale, axis=2)
        pad = 2
        mosaic = tile(stacked, cols=k, pad=pad)
        fig.add_trace(go.Image(z=mosaic, hoverinfo="skip"), row=1, col=i + 1)
        axis = "" if i == 0 else str(i + 1)
        H, W = h * scale, w * scale
        for r, s in enumerate(shown):
            values = run.errors(s, metric)[:k]
            row = 1 + r * (2 if error_maps else 1)
            for c, v in enumerate(values):
                fig.add_annotation(x=pad + c * (W + pad) + W / 2, y=pad + row * (H + pad) + H - 2, xref=f"x{axis}",
                                   yref=f"y{axis}", text=_fmt(metric, v), showarrow=False, yanchor="bottom",
                                   font=dict(size=9, color="#000"), bgcolor="rgba(255,255,255,0.75)", borderpad=1)
        for r, label in enumerate(labels):
            fig.add_annotation(x=-4, y=pad + r * (H + pad) + H / 2, xref=f"x{axis}", yref=f"y{axis}", text=label,
                               showarrow=False, xanchor="right", font=dict(size=10))
        xs, ys = run.mean_error(metric)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=run.label, meta=str(run.run),
                                 line=dict(color=RUN_COLOURS[i % len(RUN_COLOURS)])), row=2, col=1)
        rows_text.append(len(labels))
    fig.update_xaxes(showticklabels=False, showgrid=False, row=1)
    fig.update_yaxes(showticklabels=False, showgrid=False, row=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_yaxes(title_text=f"{name} {unit}".strip() + (" (higher is better)" if higher_better else " (lower is better)"),
                     row=2, col=1)
    tallest = max(rows_text or [1])
    fig.update_layout(height=int(180 + 62 * tallest + 260), margin=dict(t=70, l=70, r=20, b=40),
                      title=f"Reconstructions: originals against the VAE at each step, per-image {name}",
                      legend=dict(orientation="h", y=-0.12))
    return fig


def gallery_rows(runs: Sequence[GalleryRun], steps: Sequence[int], metric: str = "psnr") -> list[dict]:
    """The mean error of every run at every shown step: a table for the static export."""
    return [{"run": r.label, "step": s, f"mean {METRICS[metric][0]}": round(float(r.errors(s, metric).mean()), 4)}
            for r in runs for s in steps if s in r.steps]


def gallery_collapse(runs: Sequence[GalleryRun], metric: str = "psnr") -> dict[str, float]:
    """Per run: the change of the mean error from the first to the last snapshot (positive = worse)."""
    out = {}
    higher_better = METRICS[metric][2]
    for r in runs:
        _, ys = r.mean_error(metric)
        change = ys[-1] - ys[0]
        out[r.label] = -change if higher_better else change
    return out
