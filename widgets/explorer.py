"""LatentExplorer: scrub (or play) through a training run's snapshots and watch its latent space change, runs
side by side.

Everything shown comes from the probe cache (RUN/probes/, written by repae_lab.probes.probe_run): the
constructor computes what is missing once and loads every step into memory (repae_lab.views.explorer_data), and
the callbacks only move already-loaded numbers into the figures, so a slider move updates every view at once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from repae_lab.views.explorer_comparison import explorer_entries
from repae_lab.views.explorer_data import (VIEWS, RunData, available_views, curves_figure, explorer_animation,
                                           explorer_figures, map_sources, maps_figure, MAPS_TITLE, png_bytes,
                                           scatter_columns, scatter_figure, scatter_traces, stats_html, step_at)
from repae_lab.probes import ProbeSettings

from ._base import View, replace_figure

__all__ = ["LatentExplorer", "RunData", "VIEWS", "step_at"]


class LatentExplorer(View):
    """Scrub a step slider (or press play) over one or more runs' snapshots:
    - a 2-D map of the probe images per run (AlignedUMAP trajectories, per-step UMAP of the latents or of the
      SiT's tokens, or a PCA in one frame for all steps), coloured by class with a class legend (click a class
      to hide it); hovering a point shows that probe image and its class;
    - the PCA-RGB maps of the first probe images (one shared basis per run);
    - the probe curves (linear probe, CKNNA, spatial variance) with a cursor at the step, and that step's numbers.

        LatentExplorer(["runs/workshop-repa-e", "runs/workshop-e2e-diffusion"])
        LatentExplorer("runs/compare")      # a `repae-lab compare-vaes --out runs/compare` folder: VAEs side by side

    A compare-vaes folder adds one entry per VAE (at step 0: a comparison has no training steps), beside runs or
    on its own; hovering one of its points shows the image and that VAE's reconstruction.

    Missing probes are computed once when the explorer is built (`compute_missing=False` to use only what is
    cached); `settings` (repae_lab.probes.ProbeSettings) changes what is computed. Hovered points show their image
    where the run's dataset is quick to read (the built-in ones; `hover_images=True` to read any). `add_run` / `remove_run` (also
    in the widget) change the runs shown without rebuilding the explorer; runs added there must be probed already.
    """

    title = "Latent explorer"

    def __init__(self, runs: Sequence[str | Path] | str | Path, *, compute_missing: bool = True,
                 settings: ProbeSettings | None = None, images: int = 16, play_interval_ms: int = 800,
                 hover_images: bool | None = None):
        super().__init__()
        runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
        if not runs:
            raise ValueError("LatentExplorer needs at least one run directory.")
        self.settings, self.n_images, self.hover_images = settings, images, hover_images
        self.runs = explorer_entries(runs, compute_missing=compute_missing, settings=settings, images=images,
                                     probe_images=hover_images)
        steps = self._steps()
        if not steps:
            raise ValueError(f"no probed snapshots in {', '.join(str(r) for r in runs)}: train with snapshot_every > 0.")
        views = available_views(self.runs, steps[-1])
        if not views:
            raise ValueError("the runs' snapshots hold no latents to map; were they written by repae-lab train?")
        self.step = W.SelectionSlider(options=steps, value=steps[-1], description="step", continuous_update=True,
                                      layout=W.Layout(width="55%"))
        self.play = W.Play(min=0, max=len(steps) - 1, value=len(steps) - 1, interval=play_interval_ms,
                           description="play", show_repeat=False)
        W.link((self.play, "value"), (self.step, "index"))
        self.view = W.Dropdown(options=views, value=views[0], description="view", layout=W.Layout(width="38%"))
        self.scatter = go.FigureWidget(scatter_figure(self.runs, views[0], steps[-1]))
        self.maps = go.FigureWidget(maps_figure(self.runs, steps[-1]))
        self.curves = go.FigureWidget(curves_figure(self.runs, steps[-1]))
        self.stats = W.HTML()
        self.hover_image = W.Image(value=png_bytes(np.full((16, 16, 3), 255, np.uint8)), format="png",
                                   layout=W.Layout(width="96px", height="96px"))   # blank until a point is hovered
        self.hover_label = W.HTML("<i>hover a point: its picture shows here</i>")
        self.run_path = W.Text(placeholder="another run directory (already probed)", layout=W.Layout(width="40%"))
        self.add_button = W.Button(description="add run", icon="plus")
        self.remove_choice = W.Dropdown(options=self._run_options(), layout=W.Layout(width="30%"))
        self.remove_button = W.Button(description="remove run", icon="minus")
        self.add_button.on_click(self.guarded(lambda _: self.add_run(self.run_path.value.strip())))
        self.remove_button.on_click(self.guarded(lambda _: self.remove_run(self.remove_choice.value)))
        self.step.observe(self.guarded(lambda change: self.show()), names="value")
        self.view.observe(self.guarded(lambda change: self.show(rescale=True)), names="value")
        self._bind_hover()
        hover = W.VBox([self.hover_image, self.hover_label], layout=W.Layout(width="180px"))
        self.widget = W.VBox([
            W.HBox([self.play, self.step, self.view]), self.stats,
            W.HBox([self.scatter, hover]), self.maps, self.curves,
            W.HBox([self.run_path, self.add_button, self.remove_choice, self.remove_button]), self.output])
        self.show(rescale=True)

    # -- runs ---------------------------------------------------------------------------------------------------
    def _steps(self) -> list[int]:
        return sorted({s for r in self.runs for s in r.steps})

    def _run_options(self) -> list[tuple[str, str]]:
        return [(r.label, str(r.run)) for r in self.runs]

    def add_run(self, run: str | Path, *, compute_missing: bool = False) -> None:
        """Show one more run (its probes must be cached unless compute_missing=True, which is never used from a
        callback); the explorer, its slider and its figures stay."""
        if not str(run):
            raise ValueError("type a run directory into the box first.")
        if any(r.source == Path(run) for r in self.runs):
            raise ValueError(f"'{run}' is shown already.")
        self.runs += explorer_entries([run], compute_missing=compute_missing, settings=self.settings,
                                      images=self.n_images, probe_images=self.hover_images)
        self._runs_changed()

    def remove_run(self, run: str | Path) -> None:
        """Stop showing a run (the last one stays)."""
        keep = [r for r in self.runs if r.run != Path(run)]
        if len(keep) == len(self.runs):
            raise ValueError(f"'{run}' is not shown; shown: {', '.join(str(r.run) for r in self.runs)}.")
        if not keep:
            raise ValueError("the explorer keeps at least one run.")
        self.runs = keep
        self._runs_changed()

    def _runs_changed(self) -> None:
        steps = self._steps()
        current = step_at(steps, self.step.value)
        views = available_views(self.runs, steps[-1])
        view = self.view.value if self.view.value in views else views[0]
        self._quiet = True               # the controls change one by one; draw once, at the end
        try:
            self.step.options, self.step.value = steps, current
            self.play.max, self.play.value = len(steps) - 1, steps.index(current)
            self.view.options, self.view.value = views, view
        finally:
            self._quiet = False
        replace_figure(self.scatter, scatter_figure(self.runs, view, current))
        replace_figure(self.maps, maps_figure(self.runs, current))
        replace_figure(self.curves, curves_figure(self.runs, current))
        self._bind_hover()
        self.remove_choice.options = self._run_options()
        self.show(rescale=True)

    _quiet = False

    # -- hover --------------------------------------------------------------------------------------------------
    def _bind_hover(self) -> None:
        for k, trace in enumerate(self.scatter.data):
            trace.on_hover(self.guarded(lambda tr, points, state, k=k: self._hovered(k, points)))

    def _hovered(self, k: int, points) -> None:
        if not points.point_inds:
            return
        i, c = scatter_traces(self.runs)[k]
        image = int(self.runs[i].class_index(c)[points.point_inds[0]])
        self.show_image(i, image)

    def show_image(self, run_index: int, image: int) -> None:
        """Show probe image `image` of run `run_index` beside the scatter (what hovering a point does)."""
        run = self.runs[run_index]
        c = int(run.labels[image]) if run.labels is not None else 0
        name = run.class_names[c] if c < len(run.class_names) else str(c)
        recons = run.recons                          # a compared VAE: the image beside its reconstruction
        if run.images is not None:
            picture = run.images[image] if recons is None else np.concatenate([run.images[image], recons[image]], 1)
            self.hover_image.value = png_bytes(picture)
            self.hover_image.layout.width = "96px" if recons is None else "192px"
        what = "image | reconstruction" if recons is not None else "image"
        self.hover_label.value = (f"<b>{what} {image}</b>, class <b>{name}</b><br><small>{run.label}</small>")

    # -- updating: nothing but copies of loaded arrays into the figures ------------------------------------------
    def show(self, step: int | None = None, view: str | None = None, *, rescale: bool = False) -> None:
        """Show `step` (the slider's value by default) in `view`; also callable from code."""
        if self._quiet:
            return
        if step is not None and step != self.step.value:
            self.step.value = step_at(self.step.options, step)   # re-enters through the observer
            return
        if view is not None and view != self.view.value:
            self.view.value = view
            return
        step, view = self.step.value, self.view.value
        # the cheapest view first; each figure is one message, drawn by the browser in this order
        self.stats.value = stats_html(self.runs, step)
        columns = scatter_columns(self.runs, view, step)
        with self.scatter.batch_update():
            for trace, (x, y) in zip(self.scatter.data, columns):
                trace.x, trace.y = x, y
            if rescale:
                for i, run in enumerate(self.runs):
                    if (ranges := run.view_range(view)) is not None:
                        axis = "" if i == 0 else str(i + 1)
                        self.scatter.layout[f"xaxis{axis}"].range = ranges[0]
                        self.scatter.layout[f"yaxis{axis}"].range = ranges[1]
            self.scatter.layout.title.text = f"{view}, step {step}"
        with self.maps.batch_update():
            for trace, source in zip(self.maps.data, map_sources(self.runs, step)):
                trace.source = source
            self.maps.layout.title.text = f"{MAPS_TITLE}, step {step}"
        with self.curves.batch_update():
            for shape in self.curves.layout.shapes:
                shape.x0 = shape.x1 = step
            self.curves.layout.title.text = f"probe curves, cursor at step {step}"

    # -- static export ------------------------------------------------------------------------------------------
    def figures(self) -> list[go.Figure]:
        return explorer_figures(self.runs, self.view.value, self.step.value)

    def html_blocks(self) -> list[str]:
        return [stats_html(self.runs, self.step.value)]

    def animation(self) -> go.Figure:
        """The scatter with plotly's own slider and play button over every step (works in a static page)."""
        return explorer_animation(self.runs, self.view.value)

    def to_html(self, path):
        """The views at the current step, the step's numbers, and the scatter animated over every step."""
        from repae_lab.views.html_export import write_html

        return write_html(path, [*self.html_blocks(), *self.figures(), self.animation()], title=self.title)
