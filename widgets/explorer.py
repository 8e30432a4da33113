"""LatentExplorer: scrub through a training run's snapshots and watch its latent space change, runs side by side.

Everything shown comes from the probe cache (RUN/probes/, written by repae_lab.probes.probe_run): the
constructor computes what is missing once, loads every step into memory, and the slider callbacks only
move already-loaded numbers into the figures, so scrubbing stays instant even on a laptop.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from repae_lab import rundir
from repae_lab.app.figures import embedding_figure, image_panels, run_label
from repae_lab.data.images import tile
from repae_lab.probes import ProbeSettings, check_run, image_pca_embeddings, load_probes, probe_run

# view name -> where its points come from: ("aligned", feature) or ("umap", embeddings key)
VIEWS = {
    "AlignedUMAP of the latents (trajectories)": ("aligned", None),
    "PCA of the latents (one frame for all steps)": ("pca", None),
    "UMAP of the latents": ("umap", "umap/latents"),
    "UMAP of the SiT tokens (t = 0.5)": ("umap", "umap/sit_t50"),
}

# probe scalars shown under the slider: (key, label, format)
STATS = (("linear/latents", "linear probe (latents)", "{:.1%}"), ("knn/latents", "k-NN (latents)", "{:.1%}"),
         ("cknna/sit_t50", "CKNNA SiT tokens vs target", "{:.3f}"), ("spatial_var", "spatial variance", "{:.3g}"),
         ("total_variation", "total variation", "{:.3g}"), ("high_freq_share", "high-frequency share", "{:.1%}"))


def step_at(steps: Sequence[int], value: int) -> int:
    """The newest of `steps` at or before `value` (the first one if all are later)."""
    before = [s for s in steps if s <= value]
    return max(before) if before else min(steps)


class RunData:
    """One run's probe results, loaded once: embeddings per step, AlignedUMAP, PCA-RGB maps, scalars."""

    def __init__(self, run: Path, *, compute_missing: bool, settings: ProbeSettings | None, images: int):
        check_run(run)
        probes = load_probes(run)
        if compute_missing or not probes.steps:
            # the only heavy work, done here and never in a callback; probe_run skips cached steps
            probes = probe_run(run, settings)
        self.run, self.probes, self.label = run, probes, run_label(run)
        self.steps = probes.steps
        self.scalars = probes.scalars
        self.embeddings = {s: probes.embeddings(s) for s in self.steps}
        self.aligned = probes.aligned_umap()
        self.rgb = {s: rgb[:images] for s in self.steps if (rgb := probes.pca_rgb(s)) is not None}
        # the probe set is fixed, so every step has the same labels
        self.labels = next((e["labels"] for e in self.embeddings.values() if "labels" in e), None)
        snapshots = [(s, p) for s, p in rundir.list_snapshots(run) if s in self.scalars]
        latents = [rundir.load_snapshot(p, keys=("latents",))[0]["latents"] for _, p in snapshots]
        self.pca = dict(zip([s for s, _ in snapshots], image_pca_embeddings(latents))) if latents else {}

    def points(self, view: str, step: int) -> tuple[np.ndarray | None, int]:
        """(points (N, 2) or None, the step they belong to) for a view at slider value `step`."""
        kind, key = VIEWS[view]
        if kind in ("aligned", "pca"):
            frames = self.aligned if kind == "aligned" else self.pca
            if not frames:
                return None, step
            s = step_at(sorted(frames), step)
            return frames[s], s
        s = step_at(self.steps, step)
        return self.embeddings[s].get(key), s

    def view_range(self, view: str) -> tuple[list[float], list[float]] | None:
        """Axis ranges that hold the view's points at every step, so that scrubbing shows motion, not zoom."""
        kind, key = VIEWS[view]
        frames = {"aligned": self.aligned, "pca": self.pca}.get(kind)
        arrays = list(frames.values()) if frames is not None else [e[key] for e in self.embeddings.values() if key in e]
        if not arrays:
            return None
        allp = np.concatenate(arrays)
        lo, hi = allp.min(0), allp.max(0)
        pad = 0.05 * (hi - lo + 1e-9)
        return [float(lo[0] - pad[0]), float(hi[0] + pad[0])], [float(lo[1] - pad[1]), float(hi[1] + pad[1])]


class LatentExplorer:
    """Scrub a step slider over one or more runs' snapshots:
    - a 2-D embedding of the probe images per run (AlignedUMAP trajectories, or per-step UMAP of the latents or
      of the SiT's tokens), coloured by class;
    - the PCA-RGB maps of the first probe images (one shared basis per run, so colours mean the same at every
      step);
    - the probe numbers of that step (linear / k-NN accuracy, CKNNA, spatial variance, ...).

        LatentExplorer(["runs/workshop-repa-e", "runs/workshop-e2e-diffusion"])

    Missing probes are computed once when the explorer is built (`compute_missing=False` to use only what is
    cached); pass `settings` (repae_lab.probes.ProbeSettings) to change what is computed.
    """

    def __init__(self, runs: Sequence[str | Path] | str | Path, *, compute_missing: bool = True,
                 settings: ProbeSettings | None = None, images: int = 16):
        runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
        if not runs:
            raise ValueError("LatentExplorer needs at least one run directory.")
        self.runs = [RunData(Path(r), compute_missing=compute_missing, settings=settings, images=images)
                     for r in runs]
        steps = sorted({s for r in self.runs for s in r.steps})
        if not steps:
            raise ValueError(f"no probed snapshots in {', '.join(str(r) for r in runs)}: train with snapshot_every > 0.")
        views = [v for v in VIEWS if any(r.points(v, steps[-1])[0] is not None for r in self.runs)]
        if not views:
            raise ValueError("the runs' snapshots hold no latents to map; were they written by repae-lab train?")
        self.step = W.SelectionSlider(options=steps, value=steps[-1], description="step",
                                      continuous_update=True, layout=W.Layout(width="60%"))
        self.view = W.Dropdown(options=views, value=views[0], description="view", layout=W.Layout(width="40%"))
        # traces start empty (a run may lack the first view) and show() fills them; colours never change
        self.scatter = go.FigureWidget(embedding_figure([(r.label, None, r.labels) for r in self.runs]))
        self.maps = go.FigureWidget(image_panels(
            [(r.label, r.rgb[step_at(list(r.rgb), steps[-1])]) for r in self.runs if r.rgb], cols=8,
            title="PCA-RGB of the latents (first 3 principal components as colour)"))
        self.stats = W.HTML()
        self.step.observe(lambda change: self.show(), names="value")
        self.view.observe(lambda change: self.show(rescale=True), names="value")
        self.widget = W.VBox([W.HBox([self.step, self.view]), self.stats, self.scatter, self.maps])
        self.show(rescale=True)

    # -- updating: nothing but copies of loaded arrays into the figures --------------------------------------
    def show(self, step: int | None = None, view: str | None = None, *, rescale: bool = False) -> None:
        """Show `step` (the slider's value by default) in `view`; also callable from code."""
        if step is not None and step != self.step.value:
            self.step.value = step_at(self.step.options, step)   # re-enters through the observer
            return
        if view is not None and view != self.view.value:
            self.view.value = view
            return
        step, view = self.step.value, self.view.value
        shown = []
        with self.scatter.batch_update():
            for i, run in enumerate(self.runs):
                points, s = run.points(view, step)
                shown.append(s)
                trace = self.scatter.data[i]
                if points is None:
                    trace.x, trace.y = [], []
                    continue
                trace.x, trace.y = points[:, 0], points[:, 1]
                if rescale and (ranges := run.view_range(view)) is not None:
                    axis = "" if i == 0 else str(i + 1)
                    self.scatter.layout[f"xaxis{axis}"].range = ranges[0]
                    self.scatter.layout[f"yaxis{axis}"].range = ranges[1]
            self.scatter.layout.title = f"{view}, step {step}"
        with self.maps.batch_update():
            for trace, run in zip(self.maps.data, [r for r in self.runs if r.rgb]):
                trace.z = tile(run.rgb[step_at(list(run.rgb), step)], cols=8)
        self.stats.value = self._stats_table(step)

    def _stats_table(self, step: int) -> str:
        head = "".join(f"<th style='padding:0 8px'>{label}</th>" for _, label, _ in STATS)
        rows = []
        for run in self.runs:
            s = step_at(run.steps, step)
            values = run.scalars.get(s, {})
            cells = "".join(f"<td style='padding:0 8px;text-align:right'>"
                            f"{fmt.format(values[k]) if isinstance(values.get(k), (int, float)) else '-'}</td>"
                            for k, _, fmt in STATS)
            rows.append(f"<tr><td style='padding:0 8px'>{run.label} @ {s}</td>{cells}</tr>")
        return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
