"""Plain plotly figures of run directories, shared by the notebooks and the widgets (DESIGN.md layers).

Every builder takes run directories or probe results and returns a `plotly.graph_objects.Figure`; the
widgets wrap the same figures in FigureWidgets and update their data in place. Nothing here imports
ipywidgets, and nothing below this layer imports this module (tests/test_layout.py checks that the command line
starts without plotly), so a GPU host that only trains needs no plotly.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .. import rundir
from ..data.images import tile

# one colour per class (digits and Fashion-MNIST have 10; more classes cycle) and per run
CLASS_COLOURS = qualitative.T10
RUN_COLOURS = qualitative.D3

# the losses worth a panel, in the order of the step's updates; a run shows those it logs
LOSS_PANELS = (("loss/diffusion", "diffusion loss"), ("loss/repa", "REPA loss (SiT side)"),
               ("loss/repa_vae", "REPA loss (VAE side)"), ("loss/l1", "VAE L1 reconstruction"),
               ("latent/spatial_var", "latent spatial variance"), ("eval/fd_workshop", "FD (workshop space)"))

# per-snapshot probe scalars worth a curve (probes/snapshot_probes.py names); missing ones are skipped
PROBE_PANELS = (("linear/sit_t50", "linear probe accuracy, SiT tokens"), ("cknna/sit_t50", "CKNNA: SiT tokens vs target"),
                ("spatial_var", "latent spatial variance"), ("total_variation", "latent total variation"),
                ("effective_rank_images", "latent effective rank"), ("high_freq_share", "latent high-frequency share"))


def run_label(run: str | Path) -> str:
    """'name (recipe)' for legends and titles."""
    run = Path(run)
    config = rundir.read_json(run / "config.json") or {}
    recipe = config.get("recipe")
    return f"{run.name} ({recipe})" if recipe and recipe not in run.name else run.name


def metric_series(run: str | Path, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one logged metric; rollback markers and alarm records are skipped."""
    steps, values = [], []
    for record in rundir.read_jsonl(Path(run) / "metrics.jsonl"):
        if "event" in record or key not in record:
            continue
        value = record[key]
        if isinstance(value, (int, float)) and math.isfinite(value):
            steps.append(int(record["step"]))
            values.append(float(value))
    return steps, values


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(max_cols, max(1, n))
    return math.ceil(n / cols), cols


def _curve_panels(runs: list[Path], series, panels, title: str) -> go.Figure:
    """One panel per key that any run has data for, one line per run; series(i, key) -> (steps, values)."""
    data = {key: [series(i, key) for i in range(len(runs))] for key, _ in panels}
    shown = [(key, name) for key, name in panels if any(steps for steps, _ in data[key])]
    rows, cols = _grid(max(1, len(shown)))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[t for _, t in shown] or [f"no {title.lower()} yet"])
    in_legend: set[Path] = set()
    for i, (key, _) in enumerate(shown):
        for j, (run, (steps, values)) in enumerate(zip(runs, data[key])):
            if not steps:                     # a metric this run's recipe does not log: no empty line
                continue
            fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers" if len(steps) < 20 else "lines",
                                     name=run_label(run), legendgroup=str(run), showlegend=run not in in_legend,
                                     line=dict(color=RUN_COLOURS[j % len(RUN_COLOURS)]), meta=key),
                          row=i // cols + 1, col=i % cols + 1)
            in_legend.add(run)
    fig.update_xaxes(title_text="step")
    fig.update_layout(height=260 * rows + 60, margin=dict(t=60, l=40, r=20, b=40), title=title)
    return fig


def training_curves(runs: Sequence[str | Path], panels: Iterable[tuple[str, str]] = LOSS_PANELS) -> go.Figure:
    """Logged metrics against the step, one panel per metric that any run logs, one line per run
    (metrics.jsonl as it is now: call again, or TrainingMonitor.refresh, while a run still writes)."""
    runs = [Path(r) for r in runs]
    return _curve_panels(runs, lambda i, key: metric_series(runs[i], key), list(panels), "Training")


def probe_curves(probes: Sequence, panels: Iterable[tuple[str, str]] = PROBE_PANELS) -> go.Figure:
    """Probe scalars against the snapshot step, one line per run (`probes`: RunProbes from load_probes)."""
    def series(i, key):
        p = probes[i]
        steps = [s for s in p.steps if isinstance(p.scalars[s].get(key), (int, float))]
        return steps, [p.scalars[s][key] for s in steps]
    return _curve_panels([Path(p.run) for p in probes], series, list(panels), "Latent probes")


def class_colours(labels: np.ndarray) -> list[str]:
    return [CLASS_COLOURS[int(c) % len(CLASS_COLOURS)] for c in labels]


def embedding_trace(points: np.ndarray | None, labels: np.ndarray | None, name: str = "") -> go.Scattergl:
    """A 2-D embedding as points coloured by class; hover names the probe image and its class.
    points=None: no points yet (coloured and labelled for len(labels) of them, to be filled in later)."""
    n = len(points) if points is not None else len(labels) if labels is not None else 0
    labels = np.zeros(n, dtype=int) if labels is None else np.asarray(labels)
    xs, ys = (points[:, 0], points[:, 1]) if points is not None else ([], [])
    return go.Scattergl(x=xs, y=ys, mode="markers", name=name, showlegend=False,
                        marker=dict(size=6, color=class_colours(labels), line=dict(width=0)),
                        customdata=np.stack([np.arange(n), labels], axis=1),
                        hovertemplate="image %{customdata[0]}, class %{customdata[1]}<extra></extra>")


def embedding_figure(panels: Sequence[tuple[str, np.ndarray, np.ndarray | None]], title: str = "") -> go.Figure:
    """Side-by-side 2-D embeddings: panels = [(title, points (N, 2) or None for none yet, labels (N,)), ...]."""
    fig = make_subplots(rows=1, cols=max(1, len(panels)), subplot_titles=[t for t, _, _ in panels] or [""])
    for i, (name, points, labels) in enumerate(panels):
        fig.add_trace(embedding_trace(points, labels, name), row=1, col=i + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(height=380, margin=dict(t=60, l=20, r=20, b=20), title=title)
    return fig


def image_panels(panels: Sequence[tuple[str, np.ndarray]], cols: int = 8, title: str = "",
                 height: int | None = None) -> go.Figure:
    """Mosaics side by side: panels = [(title, (N, h, w, 3) uint8), ...]; pixels stay square and sharp."""
    fig = make_subplots(rows=1, cols=max(1, len(panels)), subplot_titles=[t for t, _ in panels] or [""],
                        horizontal_spacing=0.03)
    tallest = 0
    for i, (_, images) in enumerate(panels):
        mosaic = tile(images, cols=cols)
        tallest = max(tallest, mosaic.shape[0] / mosaic.shape[1])
        fig.add_trace(go.Image(z=mosaic, hoverinfo="skip"), row=1, col=i + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, scaleanchor=None)
    width_each = 320
    fig.update_layout(height=height or int(80 + width_each * max(tallest, 0.25)), title=title,
                      margin=dict(t=60, l=10, r=10, b=10))
    return fig
