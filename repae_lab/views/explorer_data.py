"""What the latent explorer shows, as plain data and plain figures: a run's probe results loaded once
(embeddings per step, AlignedUMAP, the PCA frame, PCA-RGB maps, scalars, the probe images themselves), and the
figures of one step: the class-coloured scatter with its legend, the PCA-RGB maps, the probe curves with a
cursor at the step, and the probe numbers.

The widget (widgets/explorer.py) builds FigureWidgets from these once and then only moves loaded arrays into
them; `explorer_figures` / `explorer_animation` are its static exports. Nothing here computes a probe, except
RunData(compute_missing=True), which calls probe_run once when an explorer is built, never in a callback.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from .. import rundir
from ..config import config_from_dict
from ..data import load_dataset
from ..data.images import tile, to_uint8_images
from ..probes import ProbeSettings, check_run, image_pca_embeddings, load_probes, probe_run
from .figures import CLASS_COLOURS, RUN_COLOURS, image_panels, run_label

# view name -> where its points come from: ("aligned", None), ("pca", None) or ("umap", embeddings key)
VIEWS = {
    "AlignedUMAP of the latents (trajectories)": ("aligned", None),
    "PCA of the latents (one frame for all steps)": ("pca", None),
    "UMAP of the latents": ("umap", "umap/latents"),
    "UMAP of the SiT tokens (t = 0.5)": ("umap", "umap/sit_t50"),
}

# probe scalars in the table under the slider: (key, label, format)
STATS = (("linear/latents", "linear probe (latents)", "{:.1%}"), ("knn/latents", "k-NN (latents)", "{:.1%}"),
         ("cknna/sit_t50", "CKNNA SiT tokens vs target", "{:.3f}"), ("spatial_var", "spatial variance", "{:.3g}"),
         ("total_variation", "total variation", "{:.3g}"), ("high_freq_share", "high-frequency share", "{:.1%}"),
         ("rpsnr", "reconstruction PSNR", "{:.2f} dB"))

# probe curves beside the maps, each with a cursor at the slider's step
CURVES = (("linear/latents", "linear probe accuracy (latents)"), ("cknna/sit_t50", "CKNNA: SiT tokens vs target"),
          ("spatial_var", "latent spatial variance"))

MAPS_TITLE = "PCA-RGB of the latents (first 3 principal components as colour)"


def step_at(steps: Sequence[int], value: int) -> int:
    """The newest of `steps` at or before `value` (the first one if all are later)."""
    before = [s for s in steps if s <= value]
    return max(before) if before else min(steps)


# datasets small enough to read when an explorer is built (an ImageNet folder is not: its listing takes minutes)
QUICK_DATASETS = ("digits", "fashion-mnist", "cifar10")


def _probe_images(run: Path, indices) -> tuple[np.ndarray | None, list[str] | None]:
    """(probe images (N, H, W, 3) uint8, class names) from the run's dataset, or (None, None) where the dataset
    cannot be read here (a GPU host's ImageNet folder seen from a laptop): hover then shows labels only."""
    try:
        cfg = config_from_dict(rundir.read_json(run / "config.json"))
        dataset = load_dataset(cfg.dataset, resolution=cfg.resolution, root=cfg.data_root)
        images, _ = dataset.batch(indices)
        return to_uint8_images(images), list(dataset.class_names)
    except Exception:  # noqa: BLE001 - pictures are a bonus; the explorer works without them
        return None, None


class RunData:
    """One run's probe results, loaded once: embeddings per step, AlignedUMAP, PCA frame, PCA-RGB maps, scalars,
    labels, class names and the probe images (probe_images: read the run's dataset for them; None: only for the
    built-in datasets)."""

    def __init__(self, run: str | Path, *, compute_missing: bool = True, settings: ProbeSettings | None = None,
                 images: int = 16, probe_images: bool | None = None):
        run = Path(run)
        check_run(run)
        probes = load_probes(run)
        if compute_missing or not probes.steps:
            if not compute_missing:
                raise rundir.RunError(f"'{run}' has no cached probes; compute them first with `repae-lab probe {run}` "
                                      f"(or build the explorer with compute_missing=True).")
            # the only heavy work, done when an explorer is built and never in a callback; cached steps are skipped
            probes = probe_run(run, settings)
        self.run, self.probes, self.label = run, probes, run_label(run)
        self.source = run          # what the explorer was given (a compared VAE's is its comparison folder)
        self.steps = probes.steps
        self.scalars = probes.scalars
        self.embeddings = {s: probes.embeddings(s) for s in self.steps}
        self.aligned = probes.aligned_umap()
        self.rgb = {s: rgb[:images] for s in self.steps if (rgb := probes.pca_rgb(s)) is not None}
        # the probe set is fixed, so every step has the same labels
        self.labels = next((e["labels"] for e in self.embeddings.values() if "labels" in e), None)
        snapshots = [(s, p) for s, p in rundir.list_snapshots(run) if s in self.scalars]
        loaded = [rundir.load_snapshot(p, keys=("latents", "indices"))[0] for _, p in snapshots]
        latents = [t["latents"] for t in loaded if "latents" in t]
        self.pca = dict(zip([s for s, _ in snapshots], image_pca_embeddings(latents))) if latents else {}
        indices = next((t["indices"] for t in loaded if "indices" in t), None)
        self.images, names = (None, None)
        if probe_images is None:                      # by default only where reading the dataset is quick
            probe_images = (rundir.read_json(run / "config.json") or {}).get("dataset") in QUICK_DATASETS
        if probe_images and indices is not None:
            self.images, names = _probe_images(run, indices)
        n_classes = int(self.labels.max()) + 1 if self.labels is not None and len(self.labels) else 0
        self.class_names = names if names and len(names) >= n_classes else [str(c) for c in range(n_classes)]

    recons: np.ndarray | None = None   # reconstructions shown beside the hovered image (compared VAEs have them)

    @property
    def classes(self) -> list[int]:
        return sorted(int(c) for c in np.unique(self.labels)) if self.labels is not None else [0]

    def class_index(self, c: int) -> np.ndarray:
        """Indices of the probe images of class c."""
        if self.labels is None:
            n = len(next(iter(self.pca.values()), np.zeros((0, 2))))
            return np.arange(n)
        return np.flatnonzero(np.asarray(self.labels) == c)

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

    def rgb_at(self, step: int) -> np.ndarray | None:
        return self.rgb[step_at(list(self.rgb), step)] if self.rgb else None

    def curve(self, key: str) -> tuple[list[int], list[float]]:
        steps = [s for s in self.steps if isinstance(self.scalars[s].get(key), (int, float))]
        return steps, [float(self.scalars[s][key]) for s in steps]


def available_views(runs: Sequence[RunData], step: int) -> list[str]:
    return [v for v in VIEWS if any(r.points(v, step)[0] is not None for r in runs)]


# -- the scatter ---------------------------------------------------------------------------------------------
SVG_POINTS = 3000     # up to this many points in all, SVG markers (crisp, hoverable everywhere); WebGL beyond


def _scatter_type(runs: Sequence[RunData]):
    n = sum(len(r.labels) if r.labels is not None else 0 for r in runs)
    return go.Scatter if n <= SVG_POINTS else go.Scattergl

def scatter_traces(runs: Sequence[RunData]) -> list[tuple[int, int]]:
    """The scatter's trace order: (run index, class) for every class of every run."""
    return [(i, c) for i, r in enumerate(runs) for c in r.classes]


def scatter_figure(runs: Sequence[RunData], view: str, step: int, *, rescale: bool = True) -> go.Figure:
    """One panel per run, one trace per (run, class) in scatter_traces order: the legend names the classes and
    toggles a class in every panel; hover names the image and its class (customdata = [image, class])."""
    fig = make_subplots(rows=1, cols=max(1, len(runs)), subplot_titles=[r.label for r in runs] or [""],
                        horizontal_spacing=0.04)
    legend_done: set[int] = set()
    Trace = _scatter_type(runs)
    for i, c in scatter_traces(runs):
        run = runs[i]
        index = run.class_index(c)
        points, _ = run.points(view, step)
        name = run.class_names[c] if c < len(run.class_names) else str(c)
        fig.add_trace(Trace(
            x=points[index, 0] if points is not None else [], y=points[index, 1] if points is not None else [],
            mode="markers", name=name, legendgroup=f"class-{c}", showlegend=c not in legend_done,
            marker=dict(size=7, color=CLASS_COLOURS[c % len(CLASS_COLOURS)], line=dict(width=0)),
            customdata=np.stack([index, np.full(len(index), c)], axis=1),
            hovertemplate=f"image %{{customdata[0]}}, class {html.escape(name)}<extra>{html.escape(run.label)}</extra>"),
            row=1, col=i + 1)
        legend_done.add(c)
        if rescale and (ranges := run.view_range(view)) is not None:
            fig.update_xaxes(range=ranges[0], row=1, col=i + 1)
            fig.update_yaxes(range=ranges[1], row=1, col=i + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(height=400, margin=dict(t=60, l=20, r=20, b=20), title=f"{view}, step {step}",
                      legend=dict(title="class", itemclick="toggle", itemdoubleclick="toggleothers"),
                      hovermode="closest")
    return fig


def scatter_columns(runs: Sequence[RunData], view: str, step: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(x, y) for every scatter trace at `step`, in scatter_traces order (empty arrays where a run lacks the view)."""
    out = []
    cache: dict[int, np.ndarray | None] = {}
    for i, c in scatter_traces(runs):
        if i not in cache:
            cache[i] = runs[i].points(view, step)[0]
        points = cache[i]
        if points is None:
            out.append((np.zeros(0), np.zeros(0)))
        else:
            index = runs[i].class_index(c)
            out.append((points[index, 0], points[index, 1]))
    return out


# -- maps, curves, numbers -----------------------------------------------------------------------------------
def png_data_uri(image: np.ndarray) -> str:
    """An (H, W, 3) uint8 image as a PNG data URI: a go.Image `source`, which the browser shows as it is (a `z`
    array would be re-encoded pixel by pixel on every update)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image, size=0)).decode()


def map_sources(runs: Sequence[RunData], step: int) -> list[str]:
    """The PCA-RGB mosaic of every run that has maps, at `step`, as PNG data URIs."""
    return [png_data_uri(tile(r.rgb_at(step), cols=8)) for r in runs if r.rgb]


def maps_figure(runs: Sequence[RunData], step: int) -> go.Figure:
    """The PCA-RGB maps of the first probe images, one mosaic per run (trace i's `source` is run i's mosaic)."""
    with_maps = [r for r in runs if r.rgb]
    fig = image_panels([(r.label, r.rgb_at(step)) for r in with_maps], cols=8, title=f"{MAPS_TITLE}, step {step}")
    for trace, source in zip(fig.data, map_sources(with_maps, step)):
        trace.z, trace.source = None, source
    return fig


def curves_figure(runs: Sequence[RunData], step: int) -> go.Figure:
    """The probe curves (CURVES), one line per run, with a dashed cursor (layout shape i) at `step` in panel i."""
    fig = make_subplots(rows=1, cols=len(CURVES), subplot_titles=[t for _, t in CURVES], horizontal_spacing=0.07)
    for j, (key, _) in enumerate(CURVES):
        for i, run in enumerate(runs):
            steps, values = run.curve(key)
            fig.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name=run.label, legendgroup=str(run.run),
                                     showlegend=j == 0, meta=key, line=dict(color=RUN_COLOURS[i % len(RUN_COLOURS)])),
                          row=1, col=j + 1)
    steps = sorted({s for r in runs for s in r.steps}) or [0]
    pad = 0.03 * max(1, steps[-1] - steps[0])
    for j, (key, _) in enumerate(CURVES):
        values = [v for r in runs for v in r.curve(key)[1]]
        if values:
            lo, hi = min(values), max(values)
            margin = 0.08 * (hi - lo) if hi > lo else 0.05 * abs(hi) + 1e-6
            fig.update_yaxes(range=[lo - margin, hi + margin], row=1, col=j + 1)
        # fixed ranges: moving the cursor then redraws only the cursor, not the whole figure
        fig.update_xaxes(range=[steps[0] - pad, steps[-1] + pad], row=1, col=j + 1)
    for j in range(len(CURVES)):
        axis = "" if j == 0 else str(j + 1)
        fig.add_shape(type="line", x0=step, x1=step, y0=0, y1=1, xref=f"x{axis}", yref=f"y{axis} domain",
                      line=dict(color="#444", dash="dash", width=1.5))
    fig.update_xaxes(title_text="step")
    fig.update_layout(height=300, margin=dict(t=70, l=40, r=20, b=40), title=f"probe curves, cursor at step {step}",
                      legend=dict(orientation="h", y=-0.3))
    return fig


def stats_html(runs: Sequence[RunData], step: int) -> str:
    """The probe numbers of `step` (each run at its newest snapshot at or before it); a column that no run has
    at any step is left out."""
    shown = [stat for stat in STATS if any(isinstance(v.get(stat[0]), (int, float)) for r in runs
                                           for v in r.scalars.values())]
    head = "".join(f"<th style='padding:0 8px'>{label}</th>" for _, label, _ in shown)
    rows = []
    for run in runs:
        s = step_at(run.steps, step)
        values = run.scalars.get(s, {})
        cells = "".join(f"<td style='padding:0 8px;text-align:right'>"
                        f"{fmt.format(values[k]) if isinstance(values.get(k), (int, float)) else '-'}</td>"
                        for k, _, fmt in shown)
        rows.append(f"<tr><td style='padding:0 8px'>{html.escape(run.label)} @ {s}</td>{cells}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def explorer_figures(runs: Sequence[RunData], view: str, step: int) -> list[go.Figure]:
    """What the explorer shows at `step`: scatter, PCA-RGB maps (when any run has them), probe curves."""
    figs = [scatter_figure(runs, view, step)]
    if any(r.rgb for r in runs):
        figs.append(maps_figure(runs, step))
    figs.append(curves_figure(runs, step))
    return figs


def explorer_animation(runs: Sequence[RunData], view: str, steps: Sequence[int] | None = None) -> go.Figure:
    """The scatter with plotly's own step slider and play button: frames for every step, so an HTML file or an
    executed notebook scrubs through training without a kernel."""
    steps = list(steps) if steps is not None else sorted({s for r in runs for s in r.steps})
    fig = scatter_figure(runs, view, steps[-1])
    Trace = _scatter_type(runs)
    frames = [go.Frame(name=str(s), data=[Trace(x=x, y=y) for x, y in scatter_columns(runs, view, s)],
                       layout=dict(title_text=f"{view}, step {s}")) for s in steps]
    fig.frames = frames
    play = dict(frame=dict(duration=600, redraw=True), fromcurrent=True, transition=dict(duration=0))
    fig.update_layout(
        height=480,
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=-0.08, xanchor="left", yanchor="top",
                          buttons=[dict(label="play", method="animate", args=[None, play]),
                                   dict(label="pause", method="animate",
                                        args=[[None], dict(mode="immediate", frame=dict(duration=0))])])],
        sliders=[dict(active=len(steps) - 1, x=0.12, len=0.88, y=-0.04, currentvalue=dict(prefix="step "),
                      steps=[dict(label=str(s), method="animate",
                                  args=[[str(s)], dict(mode="immediate", frame=dict(duration=0, redraw=True))])
                             for s in steps])])
    return fig


def png_bytes(image: np.ndarray, size: int = 96) -> bytes:
    """An (H, W, 3) uint8 image as PNG bytes, enlarged with nearest-neighbour so pixels stay sharp."""
    im = Image.fromarray(np.asarray(image, dtype=np.uint8))
    scale = max(1, size // max(im.size)) if size else 1
    if scale > 1:
        im = im.resize((im.size[0] * scale, im.size[1] * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
