"""ReconstructionGallery: probe images against the VAE's reconstructions across steps and runs, with the error
of every image; the collapse of e2e-diffusion (reconstructions washing out, its error curve climbing) shows at a
glance beside repa-e."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import ipywidgets as W
import plotly.graph_objects as go

from repae_lab.views.gallery import METRICS, gallery_figure, gallery_rows, load_gallery_run, pick_steps
from repae_lab.views.run_summary import table_html

from ._base import View, replace_figure


class ReconstructionGallery(View):
    """Originals (first row) and reconstructions at the chosen snapshot steps (rows below), one panel per run,
    the per-image error written on every reconstruction, and the mean error against the step.

        ReconstructionGallery(["runs/workshop-repa-e", "runs/workshop-e2e-diffusion"])

    Controls: which steps (up to `max_steps` spread over training by default), how many images, the error
    (PSNR, MSE, L1) and |error| maps. Reconstructions are read from the snapshots, once per step shown.
    """

    title = "Reconstruction gallery"

    def __init__(self, runs: Sequence[str | Path] | str | Path, *, images: int = 8, max_steps: int = 5,
                 metric: str = "psnr"):
        super().__init__()
        runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
        if not runs:
            raise ValueError("ReconstructionGallery needs at least one run directory.")
        if metric not in METRICS:
            raise ValueError(f"unknown error metric '{metric}'; choose one of {', '.join(METRICS)}.")
        self.runs = [load_gallery_run(r) for r in runs]
        every = sorted({s for r in self.runs for s in r.steps})
        most = max(r.n_images for r in self.runs)
        self.steps = W.SelectMultiple(options=every, value=tuple(pick_steps(every, max_steps)), description="steps",
                                      rows=min(6, len(every)), layout=W.Layout(width="220px"))
        self.images = W.IntSlider(value=min(images, most), min=1, max=most, description="images",
                                  continuous_update=False)
        self.metric = W.ToggleButtons(options=[(METRICS[m][0], m) for m in METRICS], value=metric,
                                      description="error", style={"button_width": "60px"})
        self.error_maps = W.Checkbox(value=False, description="|error| maps")
        self.fig = go.FigureWidget(self._build())
        for control in (self.steps, self.images, self.metric, self.error_maps):
            control.observe(self.guarded(lambda change: self.show()), names="value")
        self.widget = W.VBox([W.HBox([self.steps, W.VBox([self.images, self.metric, self.error_maps])]), self.fig,
                              self.output])

    def _build(self) -> go.Figure:
        return gallery_figure(self.runs, sorted(self.steps.value), images=self.images.value,
                              metric=self.metric.value, error_maps=self.error_maps.value)

    def show(self) -> None:
        """Redraw with the controls' values (what changing a control does)."""
        if not self.steps.value:
            raise ValueError("choose at least one step.")
        replace_figure(self.fig, self._build())

    def figures(self) -> list[go.Figure]:
        return [self._build()]

    def html_blocks(self) -> list[str]:
        return [table_html(gallery_rows(self.runs, sorted(self.steps.value), self.metric.value))]
