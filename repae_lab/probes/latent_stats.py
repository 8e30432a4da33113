"""Statistics of the VAE latent's structure: how end-to-end tuning smooths, sharpens or collapses it.

REPA-E Table 1 shows the failure of naive end-to-end training in two numbers: SD-VAE latents have spatial
variance 17.06 and total variation 6627.35; tuned with the diffusion loss they collapse to 0.02 / 89.80 (the
latent becomes nearly constant so denoising it is trivial); tuned with REPA they stay near 18.02 / 5516.14.
The definitions here are the ones the training loop logs per step (recipes.latent_statistics), so a
snapshot's numbers and the metrics log agree. All inputs are latents of shape (N, C, h, w).
"""
from __future__ import annotations

import torch

HIGH_FREQ_RADIUS = 0.25  # cycles per latent pixel; Nyquist is 0.5, so "high" is the upper half of the band


def _as_latents(z) -> torch.Tensor:
    z = torch.as_tensor(z).detach().double()
    if z.ndim != 4:
        raise ValueError(f"latent statistics need latents shaped (N, C, h, w); got {tuple(z.shape)}")
    return z


def spatial_variance(z) -> float:
    """Variance over the h*w positions, per image and channel, averaged over channels and images (Table 1).

    The unbiased estimator (divisor h*w - 1), as torch.var uses and the training log reports.
    """
    z = _as_latents(z)
    return float(z.flatten(2).var(dim=2, unbiased=True).mean())


def total_variation(z) -> float:
    """Per image: sum over channels and positions of |z[y+1,x] - z[y,x]| + |z[y,x+1] - z[y,x]|; mean over images (Table 1).

    An anisotropic L1 total variation on the raw latent grid (no normalisation by size), so it grows with
    C, h and w: a 4x32x32 SD-VAE latent has 2 * 4 * 32 * 31 differences per image.
    """
    z = _as_latents(z)
    vertical = (z[:, :, 1:, :] - z[:, :, :-1, :]).abs().sum(dim=(1, 2, 3))
    horizontal = (z[:, :, :, 1:] - z[:, :, :, :-1]).abs().sum(dim=(1, 2, 3))
    return float((vertical + horizontal).mean())


def channel_moments(z) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) variance over images and positions: what the latent BatchNorm estimates."""
    z = _as_latents(z)
    return z.mean(dim=(0, 2, 3)).tolist(), z.var(dim=(0, 2, 3), unbiased=False).tolist()


def effective_rank(matrix) -> float:
    """exp(entropy of the normalised singular values) of a (rows, dims) matrix, columns centred (Roy & Vetterli 2007).

    Centring first means a shared offset does not count as a direction. 1 = all variation along one axis;
    min(rows, dims) = spread evenly over every axis.
    """
    x = torch.as_tensor(matrix).detach().double()
    x = x - x.mean(dim=0, keepdim=True)
    # singular values from the eigenvalues of the smaller Gram matrix: a (C*h*w)^2 or N^2 eigenproblem is
    # ~20x cheaper than an SVD of the tall matrix, and double precision keeps the small ones meaningful
    gram = x.T @ x if x.shape[0] >= x.shape[1] else x @ x.T
    s = torch.linalg.eigvalsh(gram).clamp_min(0).sqrt()
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def effective_rank_pixels(z) -> float:
    """Effective rank of the (N*h*w, C) matrix of per-position channel vectors: how many channels the latent uses (<= C)."""
    z = _as_latents(z)
    return effective_rank(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]))


def effective_rank_images(z) -> float:
    """Effective rank of the (N, C*h*w) matrix of whole latents: how many directions separate images (<= min(N, C*h*w))."""
    z = _as_latents(z)
    return effective_rank(z.flatten(1))


def high_frequency_share(z, radius: float = HIGH_FREQ_RADIUS) -> float:
    """Fraction of the latent's 2-D FFT power at radial frequency above `radius` cycles per latent pixel.

    Each image and channel has its spatial mean removed first (the DC term would otherwise dominate and
    says nothing about texture), then |FFT|^2 is summed over images and channels before taking the share,
    so a few near-constant channels cannot make the ratio noisy. Frequencies are numpy's fftfreq
    (-0.5 .. 0.5 cycles per pixel per axis); radius 0.25 = half of Nyquist. White noise scores about
    1 - pi * 0.25^2 ~ 0.80 (the part of the square band outside the disc); a smooth latent scores near 0.
    """
    z = _as_latents(z)
    z = z - z.mean(dim=(2, 3), keepdim=True)
    power = torch.fft.fft2(z).abs().square().sum(dim=(0, 1))          # (h, w)
    h, w = power.shape
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :]
    high = (fy.square() + fx.square()).sqrt() > radius
    total = power.sum()
    return float(power[high].sum() / total) if total > 0 else 0.0


def latent_statistics(latents, latents_norm=None, bn_mean=None, bn_var=None) -> dict:
    """Every latent-structure number of one snapshot, as JSON-ready scalars and per-channel lists.

    Keys (raw VAE posterior means unless noted):
      spatial_var, total_variation          REPA-E Table 1 definitions (see the functions above)
      spatial_var_norm                      spatial variance after the SiT's latent BatchNorm: the scale the
                                            diffusion model actually sees (a raw collapse can hide behind BN)
      effective_rank_pixels / _images       see effective_rank_pixels / effective_rank_images
      high_freq_share                       see high_frequency_share
      latent_mean / latent_std              over everything
      channel_mean / channel_var            lists, one entry per latent channel
      bn_mean / bn_var                      the latent BatchNorm's running statistics (lists), and their means
    """
    z = _as_latents(latents)
    mean, var = channel_moments(z)
    out = {
        "spatial_var": spatial_variance(z),
        "total_variation": total_variation(z),
        "effective_rank_pixels": effective_rank_pixels(z),
        "effective_rank_images": effective_rank_images(z),
        "high_freq_share": high_frequency_share(z),
        "latent_mean": float(z.mean()),
        "latent_std": float(z.std()),
        "channel_mean": mean,
        "channel_var": var,
    }
    if latents_norm is not None:
        out["spatial_var_norm"] = spatial_variance(latents_norm)
    if bn_mean is not None and bn_var is not None:
        bm = torch.as_tensor(bn_mean).double().flatten()
        bv = torch.as_tensor(bn_var).double().flatten()
        out.update(bn_mean=bm.tolist(), bn_var=bv.tolist(),
                   bn_mean_avg=float(bm.mean()), bn_var_avg=float(bv.mean()))
    return out
