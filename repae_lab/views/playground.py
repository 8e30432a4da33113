"""What the sampler playground computes and shows: one draw of samples from a run's checkpoint with chosen
sampling settings, the denoising trajectory of its first sample (x_t and the model's predicted clean image at a
few t), and the figures of both.

A draw reports every sampler step through `progress(done, total)`, so a widget can show a progress bar instead
of freezing; the default draw (16 images, Euler, 25 steps) takes well under a second on a laptop CPU for the
workshop models.
"""
from __future__ import annotations

import html
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .. import rundir
from ..data.images import image_grid, images_to_uint8
from ..data.loaders import FASHION_MNIST_CLASSES
from ..models.from_run import LoadedRun, load_for_sampling
from ..models.modes import frozen_eval
from ..models.vae import decode
from ..rundir import layout
from ..sampling import SamplingError, SamplingSpec, class_balanced_labels, generate_images
from .figures import run_label

KNOWN_CLASS_NAMES = {"digits": [str(d) for d in range(10)]}


def class_names(run: str | Path) -> list[str]:
    """The run's class names without loading its dataset (numbers where the names are not known)."""
    run = Path(run)
    config = rundir.read_json(run / layout.CONFIG) or {}
    sit = rundir.read_json(run / layout.SIT_CONFIG) or {}
    n = int(sit.get("num_classes") or config.get("num_classes") or 0)
    dataset = config.get("dataset")
    if dataset == "fashion-mnist":
        names = list(FASHION_MNIST_CLASSES)
    else:
        names = KNOWN_CLASS_NAMES.get(dataset, [])
    return names[:n] if len(names) >= n > 0 else [str(c) for c in range(n)]


def checkpoint_choices(run: str | Path) -> list[tuple[str, str]]:
    """(label, path) of the run's checkpoints, newest first: what the checkpoint menu offers."""
    return [(f"step {int(p.name.split('-')[1])}", str(p)) for p in reversed(rundir.checkpoint_dirs(Path(run)))]


@dataclass(frozen=True)
class DrawSettings:
    """One draw: which weights, which classes, and the sampling protocol (repae_lab.sampling.SamplingSpec)."""
    ema: bool = True                         # the EMA SiT (what the paper samples with) or the raw weights
    label: int | None = None                 # one class for every image, or None: class-balanced
    cfg_scale: float = 1.0
    interval: tuple[float, float] = (0.0, 1.0)
    steps: int = 25
    sampler: str = "euler"
    seed: int = 0
    n: int = 16
    trajectory_points: int = 6               # columns of the trajectory: t values kept from the sampler's grid

    def spec(self) -> SamplingSpec:
        return SamplingSpec(sampler=self.sampler, steps=int(self.steps), cfg_scale=float(self.cfg_scale),
                            interval=tuple(self.interval), seed=int(self.seed), ema=self.ema)

    def describe(self) -> str:
        lo, hi = self.interval
        guidance = f"CFG {self.cfg_scale:g} on t in [{lo:g}, {hi:g}]" if self.cfg_scale != 1 else "no CFG"
        return f"{'EMA' if self.ema else 'raw'} SiT, {self.sampler} {self.steps} steps, {guidance}, seed {self.seed}"


@dataclass
class Draw:
    """The result of one draw: images (N, H, W, 3) uint8 with their labels, and the first sample's trajectory:
    times t, x_t decoded, and the predicted clean image x - t v decoded, (K, H, W, 3) uint8 each."""
    run: Path
    step: int
    settings: DrawSettings
    images: np.ndarray
    labels: np.ndarray
    times: list[float]
    noisy: np.ndarray
    denoised: np.ndarray
    seconds: float
    class_names: list[str] = field(default_factory=list)


def trajectory_indices(total_steps: int, points: int) -> list[int]:
    """Which sampler steps (0 .. total_steps-1) the trajectory keeps: `points` of them, evenly spread, first and
    last included."""
    points = max(1, min(points, total_steps))
    return sorted({int(round(i)) for i in np.linspace(0, total_steps - 1, points)})


class ModelCache:
    """The last few checkpoints loaded for sampling, so a new draw from the same weights starts at once."""

    def __init__(self, size: int = 2):
        self.size, self.loaded = size, {}

    def get(self, run: str | Path, checkpoint: str | Path | None = None) -> LoadedRun:
        key = (str(Path(run).resolve()), str(checkpoint) if checkpoint else None)
        if key not in self.loaded:
            while len(self.loaded) >= self.size:
                self.loaded.pop(next(iter(self.loaded)))
            self.loaded[key] = load_for_sampling(run, checkpoint=checkpoint)
        return self.loaded[key]


def _decode(loaded: LoadedRun, sit, x: torch.Tensor) -> np.ndarray:
    with frozen_eval(loaded.vae):
        images = images_to_uint8(decode(loaded.vae, sit.denormalize_latent(x.to(loaded.device))))
    return images.permute(0, 2, 3, 1).cpu().numpy().repeat(3 if images.shape[1] == 1 else 1, axis=-1)


@torch.no_grad()
def draw_samples(loaded: LoadedRun, settings: DrawSettings = DrawSettings(), *,
                 progress: Callable[[int, int], None] | None = None) -> Draw:
    """Sample settings.n images from a loaded run; progress(done, total) after every sampler step."""
    spec = settings.spec()
    n = int(settings.n)
    if not 1 <= n <= 256:
        raise SamplingError(f"the playground draws 1 to 256 images, got {n}.")
    classes = loaded.num_classes
    if settings.label is None:
        labels = class_balanced_labels(n, classes, settings.seed)
    else:
        if not 0 <= int(settings.label) < classes:
            raise SamplingError(f"class {settings.label} does not exist: this run has classes 0..{classes - 1}.")
        labels = torch.full((n,), int(settings.label), dtype=torch.long)
    total = len(spec.grid()) - 1
    keep = set(trajectory_indices(total, settings.trajectory_points))
    kept: list[tuple[float, torch.Tensor, torch.Tensor]] = []

    def on_step(info: dict) -> None:
        if info["i"] in keep and len(kept) < len(keep):        # the first batch holds sample 0
            kept.append((info["t"], info["x"][:1].detach().clone(), info["denoised"][:1].detach().clone()))
        if progress is not None:
            progress(min(info["i"] + 1, total), total)

    sit = loaded.ema if settings.ema else loaded.sit
    t0 = time.perf_counter()
    images = generate_images(sit, loaded.vae, labels, spec, batch_size=n, device=loaded.device, progress=False,
                             callback=on_step)
    times = [t for t, _, _ in kept]
    noisy = _decode(loaded, sit, torch.cat([x for _, x, _ in kept])) if kept else np.zeros((0, 1, 1, 3), np.uint8)
    denoised = _decode(loaded, sit, torch.cat([d for _, _, d in kept])) if kept else noisy
    final = images[:1].permute(0, 2, 3, 1).numpy()
    final = final.repeat(3, axis=-1) if final.shape[-1] == 1 else final
    times.append(float(spec.grid()[-1]))                         # the sample itself closes the trajectory
    noisy, denoised = np.concatenate([noisy, final]), np.concatenate([denoised, final])
    seconds = time.perf_counter() - t0
    images = images.permute(0, 2, 3, 1).numpy()
    images = images.repeat(3, axis=-1) if images.shape[-1] == 1 else images
    return Draw(run=loaded.run, step=loaded.step, settings=settings, images=images,
                labels=labels.numpy(), times=times, noisy=noisy, denoised=denoised, seconds=seconds,
                class_names=class_names(loaded.run))


def _label(draw: Draw) -> str:
    return f"{run_label(draw.run)} @ step {draw.step}"


def grid_figure(draw: Draw | None) -> go.Figure:
    """The draw's samples as one mosaic, sorted by class (a row reads as a class)."""
    if draw is None:
        fig = go.Figure(go.Image(z=np.full((8, 8, 3), 255, np.uint8), hoverinfo="skip"))
        title = "samples: press draw"
    else:
        images = torch.as_tensor(draw.images).permute(0, 3, 1, 2)
        fig = go.Figure(go.Image(z=image_grid(images, torch.as_tensor(draw.labels)), hoverinfo="skip"))
        which = ("class " + draw.class_names[draw.settings.label] if draw.settings.label is not None
                 and draw.settings.label < len(draw.class_names) else "class-balanced")
        title = (f"{len(draw.images)} samples ({which}) from {_label(draw)}<br>"
                 f"<span style='font-size:11px'>{draw.settings.describe()}, {draw.seconds:.2f} s</span>")
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, showgrid=False)
    fig.update_layout(height=440, margin=dict(t=60, l=10, r=10, b=10), title=dict(text=title, font=dict(size=13)))
    return fig


def trajectory_figure(draw: Draw | None) -> go.Figure:
    """The first sample's way from noise: x_t (top row) and the predicted clean image (bottom row) at a few t."""
    k = len(draw.times) if draw is not None else 1
    titles = [f"t = {t:.2f}" for t in draw.times] if draw is not None else [""]
    fig = make_subplots(rows=2, cols=k, subplot_titles=titles + [""] * k, horizontal_spacing=0.01,
                        vertical_spacing=0.06)
    for j in range(k):
        for row, images in ((1, draw.noisy if draw is not None else None), (2, draw.denoised if draw is not None else None)):
            z = images[j] if images is not None else np.full((8, 8, 3), 255, np.uint8)
            fig.add_trace(go.Image(z=z, hoverinfo="skip"), row=row, col=j + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, showgrid=False)
    fig.add_annotation(text="x_t", xref="paper", yref="paper", x=-0.01, y=0.77, xanchor="right", showarrow=False)
    fig.add_annotation(text="predicted<br>clean image", xref="paper", yref="paper", x=-0.01, y=0.23, xanchor="right",
                       showarrow=False)
    title = ("denoising trajectory of the first sample" +
             (f" (class {draw.class_names[int(draw.labels[0])] if int(draw.labels[0]) < len(draw.class_names) else int(draw.labels[0])})"
              if draw is not None else ""))
    fig.update_layout(height=300, margin=dict(t=70, l=100, r=10, b=10), title=dict(text=title, font=dict(size=13)))
    return fig


def settings_html(draw: Draw | None) -> str:
    if draw is None:
        return ""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in {"run": str(draw.run), "checkpoint step": draw.step, **asdict(draw.settings),
                                "seconds": f"{draw.seconds:.2f}"}.items())
    return f"<table>{rows}</table>"
