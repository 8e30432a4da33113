"""The pictures a tracker shows at a snapshot step, as (H, W, 3) uint8 arrays:

  snapshot/pca_rgb           the probe images, and under each row their latents in PCA-RGB (REPA-E Fig. 2)
  snapshot/reconstructions   the probe images, and under each row the VAE's reconstructions of them
  samples/class_conditional  a small class-balanced sample grid of the EMA SiT (sorted by class), also kept as
                             RUN/tracker_samples/step-N.png
  eval/samples/TAG           the sample grid an evaluation saved (RUN/eval/step-N-TAG.png)

The PCA basis and its colour range are fitted once, on the run's first snapshot, and kept: the colours of every
step then mean the same, and a latent that collapses turns flat grey instead of being stretched back to colour.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from .. import rundir
from ..config import Config
from ..data.images import image_grid, tile, to_uint8_images
from ..probes.pca import PCABasis, fit_pca_basis
from ..probes.snapshot_probes import rgb_uint8
from ..rundir import layout
from ..sampling import SamplingSpec, class_balanced_labels, generate_images

SHOWN = 16          # probe images per snapshot picture
COLUMNS = 8
MIN_SIDE = 48       # small images are enlarged (nearest neighbour) to at least this many pixels
SAMPLES_DIR = "tracker_samples"   # RUN/tracker_samples/step-NNNNNNNN.png: the sample grid of each snapshot step


def _resized(images: np.ndarray, side: int) -> np.ndarray:
    """(N, h, w, 3) uint8 -> (N, side, side, 3), nearest neighbour so a latent position stays a sharp square."""
    if images.shape[1:3] == (side, side):
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.NEAREST)) for im in images])


def paired_rows(top: np.ndarray | None, bottom: np.ndarray, cols: int = COLUMNS) -> np.ndarray:
    """One mosaic: a row of `top` images, under it the same columns of `bottom`, and so on (top may be None)."""
    blocks = [b for b in (top, bottom) if b is not None]
    side = max(MIN_SIDE, *(b.shape[1] for b in blocks))
    top = _resized(top, side) if top is not None else None
    bottom = _resized(bottom, side)
    rows = []
    for start in range(0, len(bottom), cols):
        if top is not None:
            rows.append(top[start:start + cols])
        rows.append(bottom[start:start + cols])
    width = min(cols, len(bottom))
    padded = [np.concatenate([r, np.full((width - len(r), side, side, 3), 255, np.uint8)]) for r in rows]
    return tile(np.concatenate(padded), cols=width, pad=2)


def first_snapshot_basis(latents) -> PCABasis:
    return fit_pca_basis([latents], fitted_on=["first snapshot"])


def spread(n: int) -> list[int]:
    """Up to SHOWN positions spread evenly over n probe images: the probe set is ordered by class, so the first
    ones would all be of one class."""
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(SHOWN, n))}) if n else []


def snapshot_pictures(tensors: dict[str, torch.Tensor], basis: PCABasis,
                      originals: Callable[[list[int]], torch.Tensor | None] = lambda positions: None
                      ) -> dict[str, np.ndarray]:
    """The PCA-RGB and reconstruction pictures of one snapshot, over probe images spread across its classes.
    `originals(positions)` gives those probe images in [-1, 1], or None: the pictures then show the latents and
    reconstructions alone."""
    def above(positions):
        images = originals(positions)
        return None if images is None else to_uint8_images(images)

    at = spread(len(tensors["latents"]))
    pictures = {"snapshot/pca_rgb": paired_rows(above(at), rgb_uint8(tensors["latents"][at], basis))}
    if "recons" in tensors:
        at = spread(len(tensors["recons"]))
        pictures["snapshot/reconstructions"] = paired_rows(above(at), to_uint8_images(tensors["recons"][at]))
    return pictures


def sampling_spec(cfg: Config) -> SamplingSpec:
    """A few Heun steps, guided as the run's evaluations are, the noise fixed by the run's seed: the same noise
    at every snapshot, so the grid shows the model change rather than the draw."""
    return SamplingSpec(sampler="heun", steps=cfg.tracker_sample_steps, cfg_scale=cfg.eval_cfg_scale,
                        interval=tuple(cfg.eval_interval), seed=cfg.seed)


def sample_grid(sit, vae, cfg: Config, device) -> np.ndarray | None:
    """cfg.tracker_samples class-balanced samples as one grid (None when tracker_samples is 0). The training RNG
    is left as it was."""
    if not cfg.tracker_samples:
        return None
    labels = class_balanced_labels(cfg.tracker_samples, sit.cfg.num_classes, cfg.seed)
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        images = generate_images(sit, vae, labels, sampling_spec(cfg), batch_size=len(labels), device=device,
                                 progress=False)
    return image_grid(images, labels)


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def eval_pictures(run: Path, step: int) -> dict[str, np.ndarray]:
    """The sample grids the evaluations of `step` saved, by protocol tag."""
    return {f"eval/samples/{png.stem.split('-', 2)[2]}": _read_png(png)
            for png in sorted((Path(run) / layout.EVAL_DIR).glob(f"step-{step:08d}-*.png"))}


def samples_path(run: Path, step: int) -> Path:
    return Path(run) / SAMPLES_DIR / f"step-{step:08d}.png"


def save_samples(run: Path, step: int, grid: np.ndarray) -> None:
    """The trackers' sample grid of `step` in the run directory, so that a tracker that missed it (a killed
    process's W&B service had not written it yet) or an export gets it later."""
    path = samples_path(run, step)
    path.parent.mkdir(exist_ok=True)
    rundir.write_then_rename(path, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))


def saved_samples(run: Path, step: int) -> dict[str, np.ndarray]:
    path = samples_path(run, step)
    return {"samples/class_conditional": _read_png(path)} if path.is_file() else {}
