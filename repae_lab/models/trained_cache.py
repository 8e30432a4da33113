"""Small networks the project trains itself on a run's dataset (the workshop REPA target, the workshop
evaluator), trained once and then read back from an on-disk cache keyed by everything that shapes them."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file

from ..rundir.files import atomic_save_tensors


# the training-set accuracy a cached classifier records is measured on at most this many of its training
# images: on all 20,000 it cost more than a test-sized training itself (41 of 68 s for the 32 px encoder)
ACCURACY_IMAGES = 4096


@torch.no_grad()
def classifier_accuracy(logits_of: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                        labels: torch.Tensor, limit: int | None = ACCURACY_IMAGES, batch_size: int = 512) -> float:
    """Top-1 accuracy of `logits_of` on `images`, or on at most `limit` of them taken every k-th so that a
    class-sorted set is covered whole; NaN on no images."""
    every = -(-len(images) // limit) if limit and len(images) > limit else 1
    images, labels = images[::every], labels[::every]
    if len(images) == 0:
        return float("nan")
    correct = sum((logits_of(images[i:i + batch_size].float()).argmax(1) == labels[i:i + batch_size]).sum().item()
                  for i in range(0, len(images), batch_size))
    return correct / len(images)


def default_cache_dir() -> Path:
    return Path(os.environ.get("REPAE_LAB_CACHE", Path.home() / ".cache" / "repae_lab"))


def cached_trained_model(kind: str, prefix: str, dataset, cfg, *, seed: int, steps: int, max_images: int,
                         cache_dir: str | Path | None, build: Callable[[object], nn.Module],
                         load_data: Callable, fit: Callable) -> tuple[nn.Module, dict]:
    """The model from CACHE/<kind>/<prefix>-<dataset>-<res>px-<key>.safetensors, or trained and cached.

    `load_data(dataset, indices)` gives (images, labels) of a seeded subset of at most `max_images`;
    `fit(images, labels)` returns (frozen model in eval mode, stats). A damaged entry is rebuilt, never trusted."""
    key_src = json.dumps({"dataset": dataset.name, "resolution": dataset.resolution, "n": len(dataset),
                          "cfg": asdict(cfg), "seed": seed, "steps": steps, "max_images": max_images, "v": 1},
                         sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    path = folder / kind / f"{prefix}-{dataset.name}-{dataset.resolution}px-{key}.safetensors"
    if path.is_file():
        try:
            model = build(cfg)
            model.load_state_dict(load_file(str(path)))
            with safe_open(str(path), framework="pt") as f:
                stats = json.loads((f.metadata() or {}).get("stats", "{}"))
            return model.eval().requires_grad_(False), stats
        except Exception:
            path.unlink(missing_ok=True)
    n = len(dataset)
    idx = (torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_images] if n > max_images
           else torch.arange(n))
    images, labels = load_data(dataset, idx)
    model, stats = fit(images, labels)
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:     # a diverged network must not become every later run's starting point
        raise ValueError(f"training the {prefix} {kind[:-1]} on {dataset.name} gave non-finite weights ({bad[0]}, ...); "
                         f"it was not cached. Try again with another seed, or fewer steps.")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(path, model.state_dict(), metadata={"config": key_src, "stats": json.dumps(stats)})
    return model, stats
