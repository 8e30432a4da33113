"""Image tensors as people and evaluators see them: [-1, 1] floats to uint8, mosaics and PNG grids.

One place for these conversions, used by sampling (sample files), metrics (evaluators read uint8), training
(snapshots) and the figures of notebooks and widgets.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def images_to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] float (N, C, H, W) -> uint8 (N, C, H, W), rounding to nearest: the PNG the ADM evaluator reads."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_uint8_images(x) -> np.ndarray:
    """Images in [-1, 1], (N, C, H, W) tensor or array -> (N, H, W, 3) uint8 (grey repeated to RGB)."""
    x = torch.as_tensor(np.asarray(x.float().numpy() if hasattr(x, "float") else x, dtype=np.float32))
    x = images_to_uint8(x).permute(0, 2, 3, 1).numpy()
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def tile(images: np.ndarray, cols: int = 8, pad: int = 1) -> np.ndarray:
    """(N, h, w, C) uint8 -> one (rows*(h+pad)+pad, cols*(w+pad)+pad, 3) mosaic on white, row-major."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    n, h, w, _ = images.shape
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = im
    return out


def image_grid(images: Tensor, labels: Tensor | None = None, *, max_images: int = 100, min_tile: int = 64) -> np.ndarray:
    """uint8 (N, C, H, W) -> one square-ish (H', W', 3) uint8 mosaic, sorted by label so a row reads as a class.

    Small images (the workshop's 16 px digits) are enlarged by an integer factor with nearest-neighbour
    so that a pixel stays a visible square."""
    images = images[:max_images]
    if labels is not None:
        images = images[torch.argsort(torch.as_tensor(labels)[:max_images], stable=True)]
    scale = max(1, min_tile // max(images.shape[-2:]))
    if scale > 1:
        images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    return tile(images.permute(0, 2, 3, 1).numpy(), cols=math.ceil(math.sqrt(len(images))), pad=2)


def save_grid(path: str | Path, images: Tensor, labels: Tensor | None = None, **kwargs) -> Path:
    """image_grid as a PNG, written under a temporary name and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    Image.fromarray(image_grid(images, labels, **kwargs)).save(tmp)
    tmp.replace(path)
    return path
