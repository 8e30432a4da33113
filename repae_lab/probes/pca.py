"""PCA of per-pixel latent vectors, and the PCA-to-RGB view of latents (REPA-E Fig. 2 / Fig. 6).

Every latent position is a C-vector; projecting it on the top three principal components and reading them
as red, green and blue turns a latent into a picture in which texture, smoothness and object structure
show at a glance. For pictures to be comparable across training steps (or across runs) the basis *and* the
colour normalisation must be fitted once and reused: a per-snapshot PCA can flip the sign of an axis or
reorder components, and per-image min/max would stretch a collapsed, nearly flat latent back into full
colour and hide the collapse.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .features import flat_latents

N_COLOURS = 3
DEFAULT_PERCENTILES = (1.0, 99.0)   # robust colour range: a handful of extreme pixels should not wash out the rest
MAX_FIT_VECTORS = 200_000           # per-pixel vectors used to fit; beyond this a fixed subsample is as good


@dataclass
class PCABasis:
    """A fitted projection of C-dim latent vectors onto `k` axes, plus the colour range of each axis.

    mean (C,), components (k, C) orthonormal rows, explained_variance_ratio (k,), lo / hi (k,) the
    projection values mapped to colour 0 and 1. Components beyond the latent's rank (C < 3) are zero rows,
    which render as a constant mid-grey channel.
    """
    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    fitted_on: list = field(default_factory=list)   # e.g. snapshot steps or run names, for the record

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(np.ascontiguousarray(getattr(self, name), dtype=np.float64))
                for name in ("mean", "components", "explained_variance_ratio", "lo", "hi")}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], fitted_on=()) -> "PCABasis":
        arrays = {k: tensors[k].double().numpy() for k in ("mean", "components", "explained_variance_ratio", "lo", "hi")}
        return cls(**arrays, fitted_on=list(fitted_on))


def pixel_vectors(latents) -> np.ndarray:
    """(N, C, h, w) latents -> (N*h*w, C) matrix, one row per latent position."""
    z = torch.as_tensor(latents).detach().double()
    if z.ndim != 4:
        raise ValueError(f"PCA of latents needs shape (N, C, h, w); got {tuple(z.shape)}")
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).numpy()


def _sign_convention(components: np.ndarray) -> np.ndarray:
    """Make each axis point so that its largest-magnitude loading is positive (eigenvectors have no intrinsic sign)."""
    out = components.copy()
    for row in out:
        if np.any(row):
            if row[np.argmax(np.abs(row))] < 0:
                row *= -1
    return out


def sample_pixel_vectors(latents, n: int, seed: int = 0) -> np.ndarray:
    """At most `n` per-pixel vectors of one latent tensor, a fixed-seed subsample when there are more."""
    v = pixel_vectors(latents)
    if len(v) > n:
        v = v[np.sort(np.random.default_rng(seed).choice(len(v), n, replace=False))]
    return v


def fit_pca_basis(latent_sets, n_components: int = N_COLOURS, percentiles=DEFAULT_PERCENTILES,
                  fitted_on=(), max_vectors: int = MAX_FIT_VECTORS) -> PCABasis:
    """Fit one basis on the pooled per-pixel vectors of several latent tensors (snapshots of a run, or runs).

    Each set contributes at most max_vectors / len(sets) vectors (a fixed-seed subsample), so every set
    weighs the same and 40 paper-sized snapshots never need 40M vectors in memory.
    """
    if isinstance(latent_sets, (torch.Tensor, np.ndarray)):
        latent_sets = [latent_sets]
    per_set = max(1, max_vectors // max(len(latent_sets), 1))
    vectors = np.concatenate([sample_pixel_vectors(z, per_set, seed=i) for i, z in enumerate(latent_sets)])
    return fit_pca_vectors(vectors, n_components, percentiles, fitted_on)


def fit_pca_vectors(vectors: np.ndarray, n_components: int = N_COLOURS, percentiles=DEFAULT_PERCENTILES,
                    fitted_on=()) -> PCABasis:
    """The basis of a (rows, C) matrix of latent vectors.

    Deterministic: an exact eigen-decomposition of the C x C covariance (C is small: 4 to 32) and a fixed
    sign convention. The colour range of each axis is the given percentiles of the projections.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    channels = vectors.shape[1]
    mean = vectors.mean(axis=0)
    centred = vectors - mean
    cov = centred.T @ centred / max(len(centred) - 1, 1)
    eigvals, eigvecs = np.linalg.eigh(cov)              # ascending
    order = np.argsort(eigvals)[::-1]
    eigvals, eigvecs = np.clip(eigvals[order], 0, None), eigvecs[:, order]
    k = min(n_components, channels)
    components = np.zeros((n_components, channels))
    components[:k] = _sign_convention(eigvecs[:, :k].T)
    ratio = np.zeros(n_components)
    total = eigvals.sum()
    if total > 0:
        ratio[:k] = eigvals[:k] / total
    proj = centred @ components.T
    lo, hi = np.percentile(proj, percentiles, axis=0)
    return PCABasis(mean=mean, components=components, explained_variance_ratio=ratio, lo=lo, hi=hi,
                    fitted_on=list(fitted_on))


def project(latents, basis: PCABasis) -> np.ndarray:
    """(N, C, h, w) latents -> (N, k, h, w) coordinates on the basis axes."""
    z = torch.as_tensor(latents).detach().double()
    n, c, h, w = z.shape
    if c != basis.mean.shape[0]:
        raise ValueError(f"the PCA basis was fitted on {basis.mean.shape[0]}-channel latents; these have {c}")
    coords = (pixel_vectors(z) - basis.mean) @ basis.components.T
    return coords.reshape(n, h, w, -1).transpose(0, 3, 1, 2)


def pca_rgb(latents, basis: PCABasis) -> np.ndarray:
    """(N, C, h, w) latents -> (N, h, w, 3) float32 images in [0, 1], colours fixed by the basis' ranges."""
    coords = project(latents, basis)[:, :N_COLOURS]
    span = np.where(basis.hi - basis.lo > 0, basis.hi - basis.lo, 1.0)[:N_COLOURS]
    rgb = (coords - basis.lo[:N_COLOURS, None, None]) / span[:, None, None]
    # zero-variance axes (lo == hi) sit at mid-grey rather than black
    rgb = np.where((basis.hi - basis.lo)[:N_COLOURS, None, None] > 0, rgb, 0.5)
    return np.clip(rgb, 0.0, 1.0).transpose(0, 2, 3, 1).astype(np.float32)


def explained_variance(latents, n_components: int = N_COLOURS) -> list[float]:
    """Share of per-pixel variance in the top principal components of *these* latents (a per-snapshot scalar)."""
    x = pixel_vectors(latents)
    x = x - x.mean(axis=0)
    eig = np.clip(np.linalg.eigvalsh(x.T @ x), 0, None)[::-1]
    total = eig.sum()
    out = np.zeros(n_components)
    if total > 0:
        m = min(n_components, len(eig))
        out[:m] = eig[:m] / total
    return out.tolist()


def image_pca_embeddings(latent_sets, n_components: int = 2) -> list[np.ndarray]:
    """2-D maps of whole latents (one point per image) for several snapshots, all in ONE basis fitted on
    every snapshot together: a fixed frame, so a latent space that shrinks, spreads or collapses over
    training is seen to do so (a basis per step would rescale each picture on its own).

    latent_sets: [(N, C, h, w), ...] -> [(N, n_components), ...]."""
    flats = [flat_latents(z).astype(np.float64) for z in latent_sets]
    stacked = np.concatenate(flats)
    mean = stacked.mean(axis=0)
    # SVD of the centred data: rows are images (hundreds), so this is cheap even for 4096-dim latents
    _, _, vt = np.linalg.svd(stacked - mean, full_matrices=False)
    components = np.zeros((n_components, stacked.shape[1]))
    k = min(n_components, len(vt))
    components[:k] = _sign_convention(vt[:k])
    return [(f - mean) @ components.T for f in flats]
