"""Sample files: the ADM evaluator's .npz (uint8 NHWC RGB under arr_0, labels beside it), a PNG grid, and the
protocol as JSON. Written under temporary names and renamed, like everything in a run directory."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data.images import save_grid
from ..rundir.files import atomic_write_text
from .samplers import SamplingError



def to_adm_layout(images: Tensor) -> np.ndarray:
    """uint8 (N, C, H, W) -> uint8 (N, H, W, 3): grey images are repeated to RGB, as the evaluator wants RGB."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise SamplingError(f"expected uint8 images (N, 1 or 3, H, W), got {tuple(images.shape)} {images.dtype}.")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())


def save_npz(path: str | Path, images: Tensor, labels: Tensor, protocol: dict | None = None) -> Path:
    """Write arr_0 (uint8 NHWC) and labels (int64) to `path`, and the protocol to the .json beside it.

    Written to a temporary name and renamed, like everything in a run directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, arr_0=to_adm_layout(images), labels=torch.as_tensor(labels).long().numpy())
    os.replace(tmp, path)
    if protocol is not None:
        atomic_write_text(path.with_suffix(".json"), json.dumps(protocol, indent=1))
    return path


def load_npz(path: str | Path, channels: int | None = None) -> tuple[Tensor, Tensor | None]:
    """An ADM-format sample file -> (uint8 (N, C, H, W), labels or None); `channels=1` takes the grey channel."""
    path = Path(path)
    if not path.is_file():
        raise SamplingError(f"sample file '{path}' does not exist; write one with `repae-lab sample RUN --out FILE.npz`.")
    with np.load(path) as data:
        if "arr_0" not in data:
            raise SamplingError(f"'{path}' has no arr_0: not an ADM-format sample file.")
        arr = data["arr_0"]
        labels = torch.from_numpy(data["labels"]).long() if "labels" in data else None
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise SamplingError(f"'{path}': arr_0 must be uint8 (N, H, W, C), got {arr.dtype} {arr.shape}.")
    images = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    if channels == 1 and images.shape[1] == 3:
        images = images[:, :1]
    return images, labels


def write_samples(out: str | Path, images: Tensor, labels: Tensor, protocol: dict) -> dict[str, Path]:
    """The files of `repae-lab sample`: OUT.npz (ADM layout + labels), OUT.png (a grid), OUT.json (protocol)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".npz", ".png") else out
    npz = save_npz(stem.with_suffix(".npz"), images, labels, protocol)
    png = save_grid(stem.with_suffix(".png"), images, labels)
    return {"npz": npz, "png": png, "json": stem.with_suffix(".json")}
