"""PIL figures of a VAE comparison: PCA-RGB latent maps and reconstructions, one column per VAE.

Plain images (no plotting library): every tile is resized to one size, small latents with nearest-neighbour so
a latent pixel stays a visible square; a header row names the columns.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

BACKGROUND = (255, 255, 255)
HEADER = 16


def _tile(array: np.ndarray, size: int) -> Image.Image:
    """(h, w, 3) float in [0, 1] or uint8, or (C, h, w) uint8 -> a size x size RGB tile."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    image = Image.fromarray(a)
    resample = Image.NEAREST if max(image.size) < size else Image.BILINEAR
    return image.resize((size, size), resample)


def column_grid(columns: list[tuple[str, list]], *, tile: int = 96, pad: int = 4) -> Image.Image:
    """columns = [(title, [tile arrays, one per row]), ...] -> one image with a header row of titles."""
    rows = max((len(items) for _, items in columns), default=0)
    width = pad + len(columns) * (tile + pad)
    height = HEADER + pad + rows * (tile + pad)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for c, (title, items) in enumerate(columns):
        x = pad + c * (tile + pad)
        draw.text((x, 2), _fit(draw, title, tile), fill=(0, 0, 0))
        for r, item in enumerate(items):
            canvas.paste(_tile(item, tile), (x, HEADER + pad + r * (tile + pad)))
    return canvas


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int) -> str:
    while len(text) > 3 and draw.textlength(text) > width:
        text = text[:-2] + "~"
    return text


def shown_rows(n_images: int, rows: int) -> list[int]:
    """Indices spread evenly over the set (class-sorted sets then show every class, not only the first)."""
    return sorted({int(i) for i in np.linspace(0, n_images - 1, min(rows, n_images)).round()})


def pca_figure(originals, pca_maps: dict[str, np.ndarray], *, rows: int = 8, tile: int = 96) -> Image.Image:
    """Originals (N, C, H, W) uint8, then each VAE's PCA-RGB maps (N, h, w, 3) in its own shared basis."""
    idx = shown_rows(len(originals), rows)
    columns = [("image", [originals[i].numpy() for i in idx])]
    columns += [(f"{name} PCA", [maps[i] for i in idx]) for name, maps in pca_maps.items()]
    return column_grid(columns, tile=tile)


def reconstruction_figure(originals, recons: dict, *, rows: int = 8, tile: int = 96) -> Image.Image:
    """Originals (N, C, H, W) uint8 beside every VAE's reconstructions (N, C', H', W') uint8."""
    idx = shown_rows(len(originals), rows)
    columns = [("image", [originals[i].numpy() for i in idx])]
    columns += [(name, [rec[i].numpy() for i in idx]) for name, rec in recons.items()]
    return column_grid(columns, tile=tile)
