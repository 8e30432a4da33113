"""Frechet distance between Gaussians fitted to two feature sets (FID, FD_DINOv2, and the workshop FD).

    FD = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1^1/2 S_2 S_1^1/2)^1/2)

The trace of the matrix square root is taken from the eigenvalues of the symmetric PSD matrix
S_1^1/2 S_2 S_1^1/2 (it has the eigenvalues of S_1 S_2), which needs no complex arithmetic and no
"add eps to the diagonal and retry" fallback that scipy.linalg.sqrtm needs on near-singular covariances.
All in float64: FD is a small difference of large traces.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class GaussianStats:
    """Mean and covariance of a feature set, and how many samples made them (FD's bias depends on n)."""
    mu: np.ndarray
    sigma: np.ndarray
    n: int


def _as_features(features, name: str = "features") -> np.ndarray:
    arr = features.detach().cpu().double().numpy() if torch.is_tensor(features) else np.asarray(features, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise ValueError(f"{name} must be a (N, D) array with N >= 2 samples, got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or inf values; the images or the feature network are broken.")
    return arr


def gaussian_stats(features) -> GaussianStats:
    arr = _as_features(features)
    return GaussianStats(arr.mean(axis=0), np.cov(arr, rowvar=False).reshape(arr.shape[1], arr.shape[1]), len(arr))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S_1 S_2)^1/2) for PSD S_1, S_2."""
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    vals = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(vals, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared 2-Wasserstein distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"the two Gaussians live in different spaces: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}; compute both in the same feature space.")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    return float(max(value, 0.0))          # rounding can leave -1e-12 for identical inputs


def frechet_distance_stats(a: GaussianStats, b: GaussianStats) -> float:
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def frechet_distance_features(features_a, features_b) -> float:
    return frechet_distance_stats(gaussian_stats(features_a), gaussian_stats(features_b))
