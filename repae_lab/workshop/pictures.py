"""The pictures the workshop notebooks show after each idea, as plain plotly figures (and one HTML table) built
from kit runs; the notebooks only call these.

Every function takes run directories and small counts, decodes with the run's own VAE and SiT, and costs at
most a few seconds on a laptop CPU.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots

from .. import rundir
from ..data import class_balanced_indices, load_dataset
from ..data.images import to_uint8_images
from ..losses import interpolate as library_interpolate
from ..models.from_run import load_for_sampling
from ..models.modes import frozen_eval
from ..models.sit import sit_config
from ..models.target_encoders import build_target_encoder
from ..models.vae import decode, encode
from ..sampling import SamplingSpec, class_balanced_labels, generate_images, sample_loaded
from ..training.flops import sit_flops
from ..training.networks import token_grid
from ..views.figures import RUN_COLOURS, image_panels, run_label


def _probe_images(loaded, n: int, seed: int = 0):
    """n class-balanced images of the run's dataset (in [-1, 1]) and their labels."""
    cfg = loaded.cfg
    dataset = load_dataset(cfg.dataset, resolution=cfg.resolution, root=cfg.data_root)
    idx = class_balanced_indices(dataset.labels, n, seed)
    return dataset.batch(idx)


def _grey(maps: torch.Tensor, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """(N, h, w) values -> (N, h, w, 3) uint8, lo..hi mapped to black..white (default: the maps' own range)."""
    lo = maps.min().item() if lo is None else lo
    hi = maps.max().item() if hi is None else hi
    scaled = ((maps - lo) / max(hi - lo, 1e-8)).clamp(0, 1)
    return to_uint8_images(scaled.unsqueeze(1) * 2 - 1)


def _upscale(images: np.ndarray, factor: int) -> np.ndarray:
    return images.repeat(factor, axis=1).repeat(factor, axis=2)


@torch.no_grad()
def image_and_latent(run: str | Path, n: int = 6) -> go.Figure:
    """Digits, their latents' channels (each channel one grey map, upscaled to the image size) and the VAE's
    reconstructions: what latent diffusion works on."""
    loaded = load_for_sampling(run, device="cpu")
    x, _ = _probe_images(loaded, n)
    _, posterior = encode(loaded.vae, x, sample=False)
    z = posterior.mean                                             # (n, c, h, w)
    recon = decode(loaded.vae, z)
    factor = x.shape[-1] // z.shape[-1]
    panels = [("images", to_uint8_images(x)), ("reconstructions", to_uint8_images(recon))]
    for c in range(z.shape[1]):
        panels.append((f"latent channel {c}", _upscale(_grey(z[:, c]), factor)))
    return image_panels(panels, cols=1, title=f"{x.shape[-1]}x{x.shape[-1]} images and their "
                                              f"{z.shape[1]}x{z.shape[2]}x{z.shape[3]} latents")


def sizes_table(run: str | Path) -> str:
    """What a latent saves: numbers per image, SiT tokens and SiT forward GFLOPs, in pixels and in the latent,
    for this run and for the paper's ImageNet-256 setting (SD-VAE f8c4, SiT-XL/2)."""
    loaded = load_for_sampling(run, device="cpu")
    s = loaded.ema.cfg
    res, img_c = loaded.cfg.resolution, loaded.vae.config.in_channels
    rows = []
    for name, (r, ic, lc, ls, size) in {
            f"this workshop ({res}px digits)": (res, img_c, s.in_channels, s.input_size, loaded.cfg.sit_size),
            "the paper (ImageNet 256px, SD-VAE)": (256, 3, 4, 32, "XL")}.items():
        base = s if size == loaded.cfg.sit_size else sit_config("XL")
        pix = sit_config(size, hidden_size=base.hidden_size, depth=base.depth, num_heads=base.num_heads,
                         input_size=r, in_channels=ic, patch_size=2, projector_dim=base.projector_dim, z_dims=base.z_dims)
        lat = sit_config(size, hidden_size=base.hidden_size, depth=base.depth, num_heads=base.num_heads,
                         input_size=ls, in_channels=lc, patch_size=2, projector_dim=base.projector_dim, z_dims=base.z_dims)
        rows.append((name, f"{r * r * ic:,}", f"{ls * ls * lc:,}", f"{pix.num_patches:,} → {lat.num_patches:,}",
                     f"{sit_flops(pix) / 1e9:.3g} → {sit_flops(lat) / 1e9:.3g}"))
    head = ("", "numbers in an image", "numbers in its latent", "SiT tokens (patch 2): pixels → latent",
            "SiT GFLOPs per forward: pixels → latent")
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


@torch.no_grad()
def noising(run: str | Path, ts: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), n: int = 4,
            interpolate: Callable = library_interpolate, seed: int = 0) -> go.Figure:
    """x_t along t, in pixels (top half of each panel) and in the latent, decoded by the VAE (bottom half):
    `interpolate(x, noise, t)` is the learner's or the library's."""
    loaded = load_for_sampling(run, device="cpu")
    x, _ = _probe_images(loaded, n)
    g = torch.Generator().manual_seed(seed)
    _, posterior = encode(loaded.vae, x, sample=False)
    sit = loaded.ema
    z_norm = sit.normalize_latent(posterior.mean)
    pixel_noise, latent_noise = torch.randn(x.shape, generator=g), torch.randn(z_norm.shape, generator=g)
    panels = []
    for t in ts:
        tt = torch.full((n,), float(t))
        in_pixels = interpolate(x, pixel_noise, tt)
        in_latent = decode(loaded.vae, sit.denormalize_latent(interpolate(z_norm, latent_noise, tt)))
        panels.append((f"t = {t:g}", to_uint8_images(torch.cat([in_pixels, in_latent]).clamp(-1, 1))))
    return image_panels(panels, cols=n, title="x_t = (1 - t) x + t ε: in pixels (top), in the latent and "
                                              "decoded (bottom)")


@torch.no_grad()
def predictions(run: str | Path, ts: Sequence[float] = (0.25, 0.5, 0.75, 0.95), n: int = 4, seed: int = 0) -> go.Figure:
    """What the trained SiT makes of x_t: its velocity v gives the clean latent in one step, x̂ = x_t - t v
    (top: x_t decoded; bottom: x̂ decoded)."""
    loaded = load_for_sampling(run, device="cpu")
    x, y = _probe_images(loaded, n)
    sit, vae = loaded.ema, loaded.vae
    g = torch.Generator().manual_seed(seed)
    _, posterior = encode(vae, x, sample=False)
    z_norm = sit.normalize_latent(posterior.mean)
    noise = torch.randn(z_norm.shape, generator=g)
    panels = []
    for t in ts:
        tt = torch.full((n,), float(t))
        x_t = library_interpolate(z_norm, noise, tt)
        velocity, _ = sit(x_t, tt, y)
        estimate = x_t - tt.view(-1, 1, 1, 1) * velocity
        pair = torch.cat([decode(vae, sit.denormalize_latent(x_t)), decode(vae, sit.denormalize_latent(estimate))])
        panels.append((f"t = {t:g}", to_uint8_images(pair.clamp(-1, 1))))
    return image_panels(panels, cols=n, title="top: x_t; bottom: the SiT's one-step estimate x_t - t v")


@torch.no_grad()
def sampling_path(run: str | Path, n: int = 6, steps: int = 10, shown: int = 6, seed: int = 0) -> go.Figure:
    """Sampling as integration of the velocity from t = 1 to 0 (Heun): the current estimate of the clean
    image at a few of the sampler's steps, for n class-balanced labels."""
    loaded = load_for_sampling(run, device="cpu")
    sit, vae = loaded.ema, loaded.vae
    seen: list[tuple[float, torch.Tensor]] = []
    generate_images(sit, vae, class_balanced_labels(n, loaded.num_classes, seed),
                    SamplingSpec(sampler="heun", steps=steps, seed=seed), progress=False,
                    callback=lambda d: seen.append((float(d["t"]), d["denoised"].clone())))
    pick = np.unique(np.linspace(0, len(seen) - 1, shown).round().astype(int))
    panels = []
    with frozen_eval(vae):
        for i in pick:
            t, denoised = seen[i]
            panels.append((f"t = {t:.2f}", to_uint8_images(decode(vae, sit.denormalize_latent(denoised)).clamp(-1, 1))))
    return image_panels(panels, cols=1, title=f"sampling: the estimate of the clean image along {steps} Heun steps")


@torch.no_grad()
def token_alignment(runs: Sequence[str | Path], n: int = 6, t: float = 0.5, seed: int = 0) -> go.Figure:
    """cos(projected SiT token, target-encoder token) at every token position, one grey map per image (white
    = aligned, black = opposite), for each run; the title gives the mean, i.e. minus the REPA loss."""
    panels = []
    for run in runs:
        loaded = load_for_sampling(run, device="cpu")
        cfg = loaded.cfg
        x, y = _probe_images(loaded, n)
        dataset = load_dataset(cfg.dataset, resolution=cfg.resolution, root=cfg.data_root)
        _, grid = token_grid(cfg, loaded.vae)
        target = build_target_encoder(cfg, dataset, grid=grid, progress=False)(x)         # (n, T, D)
        sit = loaded.ema
        _, posterior = encode(loaded.vae, x, sample=False)
        z_norm = sit.normalize_latent(posterior.mean)
        g = torch.Generator().manual_seed(seed)
        tt = torch.full((n,), float(t))
        _, projected = sit(library_interpolate(z_norm, torch.randn(z_norm.shape, generator=g), tt), tt, y)
        cos = (F.normalize(projected[0], dim=-1) * F.normalize(target, dim=-1)).sum(-1)    # (n, T)
        side = int(round(cos.shape[1] ** 0.5))
        maps = _upscale(_grey(cos.view(n, side, side), -1.0, 1.0), x.shape[-1] // side)
        panels.append((f"{run_label(run)}: mean cos {cos.mean().item():.2f}", np.concatenate([to_uint8_images(x), maps])))
    return image_panels(panels, cols=n, title=f"per-token alignment with the target encoder at t = {t:g} "
                                              f"(top: images; bottom: cos per token)")


def batchnorm_statistics(probes_list) -> go.Figure:
    """The latent BatchNorm's running variance per channel (solid) against the latent's actual per-channel
    variance on the probe images (dotted), across training: the BatchNorm follows the VAE's latent."""
    fig = make_subplots(rows=1, cols=len(probes_list), subplot_titles=[run_label(p.run) for p in probes_list],
                        shared_yaxes=False)
    for j, p in enumerate(probes_list):
        steps = [s for s in p.steps if "bn_var" in p.scalars[s]]
        channels = len(p.scalars[steps[0]]["bn_var"]) if steps else 0
        for c in range(channels):
            colour = RUN_COLOURS[c % len(RUN_COLOURS)]
            for key, dash, what in (("bn_var", "solid", "BatchNorm running var"), ("channel_var", "dot", "latent var")):
                fig.add_trace(go.Scatter(x=steps, y=[p.scalars[s][key][c] for s in steps], mode="lines+markers",
                                         line=dict(color=colour, dash=dash), name=f"channel {c}: {what}",
                                         showlegend=j == 0), row=1, col=j + 1)
    fig.update_yaxes(type="log")
    fig.update_xaxes(title_text="step")
    fig.update_layout(title="latent BatchNorm: running variance (solid) vs the latent's variance (dotted)",
                      height=380, margin=dict(t=70, l=40, r=20, b=40))
    return fig


def latent_maps(probes_list, n: int = 12) -> go.Figure:
    """PCA-RGB maps of the latents at the first and last snapshot of each run (one colour frame per run)."""
    panels = []
    for p in probes_list:
        first, last = p.pca_rgb(p.steps[0]), p.pca_rgb(p.steps[-1])
        if first is None or last is None:
            continue
        panels.append((f"{run_label(p.run)}: step {p.steps[0]} / {p.steps[-1]}",
                       np.concatenate([first[:n], last[:n]])))
    return image_panels(panels, cols=n // 2 if n > 1 else 1,
                        title="PCA-RGB of the latents: first snapshot (top rows), last (bottom rows)")


@torch.no_grad()
def samples(runs: Sequence[str | Path], n: int = 20, steps: int = 10, seed: int = 0) -> go.Figure:
    """n class-balanced samples of each run's EMA SiT (Heun, `steps` steps), side by side, guided as the run's own
    evaluation guides them (eval_cfg_scale), so the pictures show what its FD and class accuracy measured."""
    panels, scales = [], set()
    for run in runs:
        loaded = load_for_sampling(run, device="cpu")
        cfg = loaded.cfg
        scales.add(cfg.eval_cfg_scale)
        spec = SamplingSpec(sampler="heun", steps=steps, seed=seed, cfg_scale=cfg.eval_cfg_scale,
                            interval=cfg.eval_interval)
        images, _ = sample_loaded(loaded, n, spec, progress=False)
        panels.append((run_label(run), to_uint8_images(images.float() / 127.5 - 1)))
    guidance = ", ".join(f"{s:g}" for s in sorted(scales))
    return image_panels(panels, cols=5, title=f"samples ({steps} Heun steps, guidance {guidance})")


def reconstructions(runs: Sequence[str | Path], n: int = 8) -> go.Figure:
    """The VAE's reconstructions of the same probe images at the first and the last snapshot of each run."""
    panels = []
    for run in runs:
        snaps = rundir.list_snapshots(run)
        pair = []
        for _, path in (snaps[0], snaps[-1]):
            tensors, _ = rundir.load_snapshot(path, keys=("recons",))
            pair.append(to_uint8_images(tensors["recons"][:n].float()))
        panels.append((f"{run_label(run)}: step {snaps[0][0]} / {snaps[-1][0]}", np.concatenate(pair)))
    return image_panels(panels, cols=n, title="reconstructions: first snapshot (top), last (bottom)")


def exported_latent_stats(vae_dir: str | Path) -> str:
    """The E2E-VAE's latents_mean / latents_std (its config.json) per channel, as an HTML table."""
    config = json.loads((Path(vae_dir) / "config.json").read_text())
    mean, std = config.get("latents_mean") or [], config.get("latents_std") or []
    head = "<tr><th>channel</th>" + "".join(f"<th>{c}</th>" for c in range(len(mean))) + "</tr>"
    row = lambda name, values: f"<tr><td>{name}</td>" + "".join(f"<td>{v:.3g}</td>" for v in values) + "</tr>"
    return f"<table><thead>{head}</thead><tbody>{row('latents_mean', mean)}{row('latents_std', std)}</tbody></table>"
