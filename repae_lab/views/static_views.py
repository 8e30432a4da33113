"""Static plotly views of what the widgets show, for executed notebooks and their HTML exports.

A widget lives only while its kernel does: the HTML export of an executed notebook cannot draw it (its renderer
would come from a CDN), yet the notebook file carries its state. These figures show the same view with plain
plotly: the step slider is a plotly slider, which plotly.js runs by itself, offline, in any saved page.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from .. import rundir
from ..data.images import tile
from ..probes import image_pca_embeddings
from .figures import class_colours, run_label


def evenly_spaced(steps: Sequence[int], most: int) -> list[int]:
    """At most `most` of `steps`, evenly spaced, the first and the last always kept."""
    steps = sorted(steps)
    if len(steps) <= most:
        return steps
    picks = np.linspace(0, len(steps) - 1, most).round().astype(int)
    return [steps[i] for i in sorted(set(picks))]


def png_source(image: np.ndarray) -> str:
    """A uint8 (H, W, 3) image as a PNG data URI (go.Image(source=...)): far smaller than its pixel array."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _at_or_before(steps: Sequence[int], step: int) -> int:
    before = [s for s in steps if s <= step]
    return max(before) if before else min(steps)


def latent_steps_figure(probes: Sequence, *, images: int = 16, max_steps: int = 12, cols: int = 8) -> go.Figure:
    """The latent explorer as one static figure: per run, the probe images in a PCA of the latents (one frame
    for all steps, so a collapsing latent visibly shrinks) above the PCA-RGB maps of the first `images`, with a
    step slider over (at most `max_steps` of) the snapshots. `probes`: RunProbes (repae_lab.probes.load_probes
    or probe_run)."""
    probes = list(probes)
    if not probes:
        raise ValueError("latent_steps_figure needs at least one run's probes.")
    per_run = []
    for p in probes:
        snapshots = [(s, path) for s, path in rundir.list_snapshots(Path(p.run)) if s in p.steps]
        latents = [rundir.load_snapshot(path, keys=("latents",))[0]["latents"] for _, path in snapshots]
        pca = dict(zip([s for s, _ in snapshots], image_pca_embeddings(latents))) if latents else {}
        rgb = {s: r[:images] for s in p.steps if (r := p.pca_rgb(s)) is not None}
        labels = next((e["labels"] for e in (p.embeddings(s) for s in p.steps) if "labels" in e), None)
        per_run.append((p, pca, rgb, labels))
    steps = evenly_spaced(sorted({s for p, *_ in per_run for s in p.steps}), max_steps)
    if not steps:
        raise ValueError("no probed snapshots to show: train with snapshot_every > 0, then probe the runs.")

    n = len(per_run)
    fig = make_subplots(rows=2, cols=n, row_heights=[0.68, 0.32], vertical_spacing=0.08, horizontal_spacing=0.04,
                        subplot_titles=[run_label(p.run) for p, *_ in per_run] + [""] * n)
    visible_per_step: list[list[int]] = []
    for k, step in enumerate(steps):
        indices = []
        for j, (p, pca, rgb, labels) in enumerate(per_run):
            if pca:
                s = _at_or_before(sorted(pca), step)
                pts = pca[s]
                colours = class_colours(labels) if labels is not None and len(labels) == len(pts) else None
                fig.add_trace(go.Scatter(x=pts[:, 0], y=pts[:, 1], mode="markers", visible=k == len(steps) - 1,
                                         marker=dict(size=6, color=colours), showlegend=False,
                                         hovertemplate=f"step {s}<extra></extra>", name=f"{run_label(p.run)} @ {s}"),
                              row=1, col=j + 1)
                indices.append(len(fig.data) - 1)
            if rgb:
                s = _at_or_before(sorted(rgb), step)
                fig.add_trace(go.Image(source=png_source(tile(rgb[s], cols=cols)), visible=k == len(steps) - 1,
                                       hoverinfo="skip", name=f"PCA-RGB @ {s}"), row=2, col=j + 1)
                indices.append(len(fig.data) - 1)
        visible_per_step.append(indices)
    # one frame per run for every step: scrubbing shows motion, not zoom
    for j, (_, pca, _, _) in enumerate(per_run):
        if pca:
            allp = np.concatenate(list(pca.values()))
            lo, hi = allp.min(0), allp.max(0)
            pad = 0.05 * (hi - lo + 1e-9)
            fig.update_xaxes(range=[lo[0] - pad[0], hi[0] + pad[0]], row=1, col=j + 1)
            fig.update_yaxes(range=[lo[1] - pad[1], hi[1] + pad[1]], row=1, col=j + 1)
    sliders = [dict(active=len(steps) - 1, currentvalue=dict(prefix="step "), pad=dict(t=30), steps=[
        dict(label=str(step), method="update",
             args=[{"visible": [i in set(visible_per_step[k]) for i in range(len(fig.data))]},
                   {"title.text": f"step {step}: PCA of the latents (one frame for all steps) and PCA-RGB maps"}])
        for k, step in enumerate(steps)])]
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(sliders=sliders, height=620, margin=dict(t=70, l=20, r=20, b=20),
                      title=f"step {steps[-1]}: PCA of the latents (one frame for all steps) and PCA-RGB maps")
    return fig


def probe_table_rows(probes: Sequence, keys: Sequence[tuple[str, str]] | None = None) -> list[dict]:
    """One row per run with the last snapshot's probe numbers (what the explorer's table shows)."""
    keys = keys or (("linear/latents", "linear probe (latents)"), ("knn/latents", "k-NN (latents)"),
                    ("linear/sit_t50", "linear probe (SiT tokens)"), ("cknna/sit_t50", "CKNNA SiT vs target"),
                    ("spatial_var", "spatial variance"), ("total_variation", "total variation"),
                    ("high_freq_share", "high-frequency share"))
    rows = []
    for p in probes:
        last = p.steps[-1] if p.steps else None
        values = p.scalars.get(last, {}) if last is not None else {}
        row = {"run": run_label(p.run), "step": last}
        row.update({label: values[k] for k, label in keys if isinstance(values.get(k), (int, float))})
        rows.append(row)
    return rows
