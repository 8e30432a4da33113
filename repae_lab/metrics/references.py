"""Reference statistics of a dataset in a feature space: computed once, cached on disk, reused by every run.

The cache key holds everything that changes the numbers (dataset name, resolution, size, the reference
subset, the feature network's weight fingerprint), so a retrained evaluator or other weights never meet a
stale file. What is stored: mean and covariance over all reference images (for FD) and the features of a
seeded subset of at most `PR_MAX` images (for precision / recall, which need the points themselves).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..models.trained_cache import default_cache_dir
from .feature_spaces import FeatureSpace, dataset_uint8, extract_features
from .frechet import GaussianStats, gaussian_stats

PR_MAX = 10_000


@dataclass
class Reference:
    stats: GaussianStats
    features: torch.Tensor            # (min(n, PR_MAX), D) float32, for precision / recall
    n: int
    description: dict


def reference_indices(n_total: int, n_ref: int | None, seed: int) -> torch.Tensor:
    """All images when n_ref is None or covers the dataset, else a seeded random subset (sorted)."""
    if n_ref is None or n_ref >= n_total:
        return torch.arange(n_total)
    if n_ref < 2:
        raise ValueError(f"n_ref must be at least 2 images, got {n_ref}.")
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n_ref].sort().values


def reference_statistics(space: FeatureSpace, dataset, *, n_ref: int | None = None, seed: int = 0,
                         cache_dir: str | Path | None = None, batch_size: int = 256, device=None,
                         progress: bool = True) -> Reference:
    """Statistics of `dataset` (train split, as the ADM reference batches) in `space`, cached on disk."""
    idx = reference_indices(len(dataset), n_ref, seed)
    desc = {"dataset": dataset.name, "resolution": dataset.resolution, "dataset_size": len(dataset),
            "n": len(idx), "seed": seed, "space": space.fingerprint, "pr_max": PR_MAX, "v": 1}
    key = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    path = folder / "references" / f"{dataset.name}-{dataset.resolution}px-{space.name}-n{len(idx)}-{key}.safetensors"
    if path.is_file():
        try:
            t = load_file(str(path))
            return Reference(GaussianStats(t["mu"].numpy(), t["sigma"].numpy(), len(idx)), t["features"], len(idx), desc)
        except Exception:  # damaged: recompute
            path.unlink(missing_ok=True)
    feats = []
    chunks = idx.split(4096)
    for chunk in tqdm(chunks, desc=f"reference features ({space.name})", disable=not progress or len(chunks) < 2,
                      leave=False):
        images, _ = dataset_uint8(dataset, chunk)
        feats.append(extract_features(space, images, batch_size=batch_size, device=device)[0].float())
    features = torch.cat(feats)
    stats = gaussian_stats(features)
    keep = (torch.randperm(len(features), generator=torch.Generator().manual_seed(seed + 1))[:PR_MAX].sort().values
            if len(features) > PR_MAX else torch.arange(len(features)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file({"mu": torch.from_numpy(stats.mu), "sigma": torch.from_numpy(stats.sigma),
               "features": features[keep].contiguous()}, str(tmp), metadata={"description": json.dumps(desc)})
    os.replace(tmp, path)
    return Reference(stats, features[keep], len(idx), desc)
