"""Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019), as in the ADM evaluator.

Each set's manifold is the union of balls around its points, every ball reaching the point's k-th nearest
neighbour in the same set (k = 3). Precision: the share of generated points inside the real manifold (are
samples realistic?). Recall: the share of real points inside the generated manifold (is the data covered?).
"""
from __future__ import annotations

import torch


def _as_tensor(features) -> torch.Tensor:
    t = torch.as_tensor(features).double()
    if t.ndim != 2 or len(t) < 2:
        raise ValueError(f"features must be a (N, D) array with N >= 2, got shape {tuple(t.shape)}.")
    return t


def knn_radii(features, k: int = 3, batch_size: int = 1024) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point (the point itself is the 0-th neighbour)."""
    feats = _as_tensor(features)
    if not 1 <= k < len(feats):
        raise ValueError(f"k must be in [1, {len(feats) - 1}] for {len(feats)} points, got {k}.")
    radii = []
    for chunk in feats.split(batch_size):
        d = torch.cdist(chunk, feats)
        radii.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def inside_manifold(query, ref, ref_radii: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """For each query point: does it lie within some ref point's ball (distance <= that point's radius)?"""
    query, ref = _as_tensor(query), _as_tensor(ref)
    out = []
    for chunk in query.split(batch_size):
        out.append((torch.cdist(chunk, ref) <= ref_radii[None, :]).any(dim=1))
    return torch.cat(out)


def precision_recall(real, fake, k: int = 3) -> dict[str, float]:
    real, fake = _as_tensor(real), _as_tensor(fake)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real features have {real.shape[1]} dims, generated {fake.shape[1]}; use one feature space.")
    precision = inside_manifold(fake, real, knn_radii(real, k)).double().mean().item()
    recall = inside_manifold(real, fake, knn_radii(fake, k)).double().mean().item()
    return {"precision": precision, "recall": recall}
