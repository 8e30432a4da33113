"""Probe-set snapshots on disk: RUN/snapshots/step-NNNNNNNN.safetensors, tensors plus a JSON `info` entry in the
safetensors metadata. What goes in them is decided by training/snapshots.py; probes and widgets read them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from .files import atomic_save_tensors

SNAPSHOT_DIR = "snapshots"


def snapshot_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / SNAPSHOT_DIR / f"step-{step:08d}.safetensors"


def save_snapshot(run_dir: Path, step: int, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> Path:
    path = snapshot_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(path, tensors, metadata={"info": json.dumps(info)})
    return path


def list_snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    root = Path(run_dir) / SNAPSHOT_DIR
    if not root.is_dir():
        return []
    return sorted((int(p.stem.split("-")[1]), p) for p in root.glob("step-*.safetensors"))


def load_snapshot(path: Path, keys: tuple[str, ...] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A snapshot's tensors (only `keys`, when given: the rest is never read from disk) and its info."""
    with safe_open(str(path), framework="pt") as f:
        info = json.loads((f.metadata() or {}).get("info", "{}"))
        tensors = {k: f.get_tensor(k) for k in f.keys() if keys is None or k in keys}
    return tensors, info
