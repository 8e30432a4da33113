"""The quickstart's report: one offline HTML page that tells the REPA-E story of a few runs in pictures.

Plotly's JavaScript is embedded once (never a CDN: GPU hosts and workshop rooms are often offline), the sample
grids and reconstructions are PNGs embedded as data URIs, and every number comes from the run directories.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from PIL import Image

from .. import rundir
from ..probes import load_probes
from .figures import RUN_COLOURS, image_panels, run_label, training_curves
from .run_summary import snapshot_images

# (probe-cache scalar or metrics-log key, panel title): the latent collapse and the alignment, over steps
STORY_PANELS = (("latent/spatial_var", "latent spatial variance (REPA-E Table 1)"),
                ("latent/total_variation", "latent total variation (Table 1)"),
                ("eval/fd_workshop", "FD of samples (workshop evaluator), lower is better"),
                ("eval/accuracy_workshop", "samples of the requested class (evaluator)"))


def _png(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def cknna_figure(runs: Sequence[Path]) -> go.Figure:
    """CKNNA between the SiT tokens (t = 0.5) and the REPA target over training, one line per run."""
    fig = go.Figure()
    for i, run in enumerate(runs):
        probes = load_probes(run)
        steps = [s for s in probes.steps if "cknna/sit_t50" in probes.scalars[s]]
        fig.add_trace(go.Scatter(x=steps, y=[probes.scalars[s]["cknna/sit_t50"] for s in steps], mode="lines+markers",
                                 name=run_label(run), line=dict(color=RUN_COLOURS[i % len(RUN_COLOURS)])))
    fig.update_layout(title="alignment of SiT tokens to the target (CKNNA, t = 0.5)", xaxis_title="step",
                      yaxis_title="CKNNA", height=360)
    return fig


def pca_rgb_figure(runs: Sequence[Path], images: int = 12) -> go.Figure | None:
    """PCA-RGB maps of each run's latents at its first and last snapshot, in the run's own colours."""
    panels = []
    for run in runs:
        probes = load_probes(run)
        if not probes.steps:
            continue
        for step in (probes.steps[0], probes.steps[-1]):
            rgb = probes.pca_rgb(step)
            if rgb is not None:
                panels.append((f"{run_label(run)}, step {step}", rgb[:images]))
    return image_panels(panels, cols=4, title="latents as PCA-RGB maps (first and last snapshot)") if panels else None


def reconstruction_figure(runs: Sequence[Path], images: int = 8) -> go.Figure | None:
    panels = []
    for run in runs:
        shown = snapshot_images(run)
        if "reconstructions" in shown:
            if not panels:
                panels.append(("originals", shown["originals"][:images]))
            panels.append((run_label(run), shown["reconstructions"][:images]))
    return image_panels(panels, cols=4, title="VAE reconstructions at the end of training") if panels else None


def sample_grids(runs: Sequence[Path]) -> list[tuple[str, str]]:
    """(caption, PNG data URI) of each run's newest sample grid in RUN/eval/."""
    out = []
    for run in runs:
        pngs = sorted((Path(run) / "eval").glob("step-*-n*.png"))
        if pngs:
            with Image.open(pngs[-1]) as im:
                out.append((f"{run_label(run)}: {pngs[-1].stem}", _png(np.asarray(im.convert("RGB")))))
    return out


def results_table(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else ("" if v is None else html.escape(str(v)))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def story_figure(runs: Sequence[Path]) -> go.Figure:
    return training_curves(runs, STORY_PANELS)


def write_report(out: str | Path, runs: Sequence[str | Path], rows: list[dict], *, title: str,
                 notes: Sequence[str] = ()) -> Path:
    """DIR/report.html: the story of `runs` in figures, `rows` as the results table, `notes` as paragraphs."""
    runs = [Path(r) for r in runs]
    sections: list[tuple[str, str, object]] = [
        ("What happened to the latent, and to the samples",
         "Spatial variance and total variation of the VAE latent over training (the paper's Table 1 measures), "
         "the Frechet distance of the samples in the workshop evaluator's feature space (an independent network, "
         "not the REPA target) and the share of samples the evaluator recognises as the requested class.",
         story_figure(runs)),
        ("The latent as a picture", "The first three principal components of each latent pixel as RGB: a collapsed "
         "latent loses its structure.", pca_rgb_figure(runs)),
        ("Alignment", "CKNNA between the SiT's tokens at the alignment depth and the target encoder.",
         cknna_figure(runs)),
        ("Reconstructions", "What each run's VAE makes of the same probe images at the end.",
         reconstruction_figure(runs)),
    ]
    parts, first = [], True
    for heading, text, fig in sections:
        if fig is None:
            continue
        div = pio.to_html(fig, include_plotlyjs=True if first else False, full_html=False)
        first = False
        parts.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>{div}")
    grids = "".join(f"<figure><img src='{uri}' style='image-rendering: pixelated; max-width: 30%'>"
                    f"<figcaption>{html.escape(cap)}</figcaption></figure>" for cap, uri in sample_grids(runs))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em} table{border-collapse:"
            "collapse} td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} figure{display:inline-block;"
            "margin:0 1em 1em 0}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>"
            + "".join(f"<p>{html.escape(n)}</p>" for n in notes)
            + f"<h2>Results</h2>{results_table(rows)}"
            + "".join(parts)
            + (f"<h2>Samples (one row per class)</h2>{grids}" if grids else "")
            + "</body></html>")
    path = Path(out) / "report.html"
    rundir.atomic_write_text(path, page)
    return path

