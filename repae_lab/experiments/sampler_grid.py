"""Sampling a run with a small grid of sampler settings (notebook 06): the base setting, then one knob varied at
a time (sampler, number of steps, CFG scale, guidance interval). Every setting samples the same labels from
the same per-image seeds, so the pictures of a row differ only by the knob; each also gets FD, precision /
recall and class accuracy in the run's evaluation space."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from ..data import load_dataset
from ..data.images import to_uint8_images
from ..evaluation import build_spaces, evaluate_images, evaluate_vae, training_eval_spaces
from ..models.from_run import load_for_sampling
from ..notebooks.params import NotebookError
from ..rundir import RunError
from ..sampling import SamplingError, class_balanced_labels, generate_images
from ..views.figures import image_panels


@dataclass
class Setting:
    axis: str                   # base | sampler | steps | cfg_scale | interval
    label: str
    spec: Any                   # sampling.SamplingSpec


@dataclass
class GridResult:
    run: Path
    step: int
    n: int
    settings: list[Setting]
    images: list[np.ndarray] = field(default_factory=list)       # per setting: (show, H, W, 3) uint8
    metrics: list[dict[str, float]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    vae: dict[str, float] = field(default_factory=dict)           # the run's VAE: rPSNR, rSSIM, rFD

    def rows(self) -> list[dict[str, Any]]:
        """The table: one row per setting."""
        out = []
        for s, m, sec in zip(self.settings, self.metrics, self.seconds):
            row = {"varied": s.axis, "setting": s.label}
            row.update({k[5:]: v for k, v in m.items() if not k.endswith("is_std")})
            row["images/s"] = round(self.n / max(sec, 1e-9), 1)
            out.append(row)
        return out


def describe(spec) -> str:
    text = f"{spec.sampler} {spec.steps} steps, cfg {spec.cfg_scale:g}"
    if spec.cfg_scale != 1.0 and tuple(spec.interval) != (0.0, 1.0):
        text += f" on [{spec.interval[0]:g}, {spec.interval[1]:g}]"
    return text


def sampler_settings(base, *, samplers: Sequence[str] = (), steps: Sequence[int] = (),
                     cfg_scales: Sequence[float] = (), intervals: Sequence[Sequence[float]] = ()) -> list[Setting]:
    """The base SamplingSpec, then one setting per listed value of each knob, the others kept at the base.
    Intervals only matter with guidance: they are tried at the base CFG scale, or at the largest listed scale
    when the base has none."""
    out = [Setting("base", describe(base), base)]
    guided = base.cfg_scale if base.cfg_scale != 1.0 else max([c for c in cfg_scales if c != 1.0] or [2.0])
    try:
        for s in samplers:
            if s != base.sampler:
                out.append(Setting("sampler", s, dataclasses.replace(base, sampler=s)))
        for k in steps:
            if k != base.steps:
                out.append(Setting("steps", f"{k} steps", dataclasses.replace(base, steps=int(k))))
        for c in cfg_scales:
            if c != base.cfg_scale:
                out.append(Setting("cfg_scale", f"cfg {c:g}", dataclasses.replace(base, cfg_scale=float(c))))
        for lo, hi in intervals:
            spec = dataclasses.replace(base, cfg_scale=guided, interval=(float(lo), float(hi)))
            out.append(Setting("interval", f"cfg {guided:g} on [{lo:g}, {hi:g}]", spec))
    except (SamplingError, ValueError) as err:
        raise NotebookError(f"a sampler setting is not valid: {err}") from None
    for s in out:
        s.label = describe(s.spec) if s.axis == "base" else s.label
    return out


def run_grid(run: str | Path, settings: list[Setting], *, n: int, show: int = 16, checkpoint: str | Path | None = None,
             seed: int = 0, batch_size: int = 64, vae_n: int | None = None) -> GridResult:
    """Sample n class-balanced images per setting from the run's newest good (or the given) checkpoint, keep the
    first `show` for pictures, and measure each set (the run's evaluation spaces, reference: its train split);
    the VAE's reconstruction numbers once, on vae_n images (default n)."""
    try:
        loaded = load_for_sampling(run, checkpoint=checkpoint or None)
    except (RunError, FileNotFoundError) as err:
        raise NotebookError(str(err)) from None
    cfg = loaded.cfg
    dataset = load_dataset(cfg.dataset, resolution=cfg.resolution, root=cfg.data_root)
    names, weights = training_eval_spaces(cfg)
    spaces = build_spaces(names, dataset=dataset, weights=weights, cache_dir=cfg.cache_dir, device=loaded.device,
                          progress=False)
    labels = class_balanced_labels(n, loaded.num_classes, seed)
    result = GridResult(Path(run), loaded.step, n, settings)
    for s in settings:
        spec = dataclasses.replace(s.spec, seed=seed)
        t0 = time.time()
        try:
            images = generate_images(loaded.ema if spec.ema else loaded.sit, loaded.vae, labels, spec,
                                     batch_size=batch_size, device=loaded.device, progress=False)
        except SamplingError as err:
            raise NotebookError(f"{s.label}: {err}") from None
        result.seconds.append(time.time() - t0)
        metrics, _ = evaluate_images(images, labels, dataset, spaces, seed=seed, cache_dir=cfg.cache_dir,
                                     device=loaded.device, progress=False)
        result.metrics.append(metrics)
        result.images.append(to_uint8_images(images[:show].float() / 127.5 - 1))
        print(f"{s.label}: " + "  ".join(f"{k[5:]} {v:.4g}" for k, v in metrics.items() if "fd_" in k), flush=True)
    with torch.no_grad():
        result.vae = evaluate_vae(loaded.vae, dataset, spaces, n=vae_n or n, seed=seed, device=loaded.device)
    return result


def grid_figures(result: GridResult, cols: int = 4) -> list[go.Figure]:
    """One figure per varied knob: the base setting's pictures beside each variation's (same labels, seeds)."""
    base = (result.settings[0].label, result.images[0])
    figures = []
    for axis in ("sampler", "steps", "cfg_scale", "interval"):
        panels = [(s.label, im) for s, im in zip(result.settings, result.images) if s.axis == axis]
        if panels:
            figures.append(image_panels([base] + panels, cols=cols, title=f"varying {axis.replace('_', ' ')} "
                                        f"(step {result.step}, same labels and noise)"))
    if not figures:
        figures.append(image_panels([base], cols=cols, title=f"samples at step {result.step}"))
    return figures


def metric_figure(result: GridResult, key: str | None = None) -> go.Figure:
    """The FD of every setting as bars, grouped by the knob varied."""
    key = key or next((k for k in result.metrics[0] if k.startswith("eval/fd_")), None)
    labels = [f"{s.axis}: {s.label}" for s in result.settings]
    values = [m.get(key) for m in result.metrics]
    fig = go.Figure(go.Bar(x=labels, y=values, marker_color=["#444" if s.axis == "base" else "#1f77b4"
                                                                for s in result.settings]))
    fig.update_layout(title=f"{key} per sampler setting ({result.n} samples each; lower is better)",
                      height=380, margin=dict(t=60, l=50, r=20, b=120))
    return fig
