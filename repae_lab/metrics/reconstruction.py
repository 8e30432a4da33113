"""How well the VAE reconstructs: PSNR, SSIM and rFD (a Frechet distance between originals and reconstructions).

Originals and reconstructions are both quantised to uint8 first, as image files would be, so that the figures
mean the same for a run's VAE, an exported E2E-VAE and a published one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.images import images_to_uint8
from ..models.modes import frozen_eval
from ..models.vae import decode, encode
from .feature_spaces import extract_features
from .frechet import frechet_distance_features


def _unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] -> float64 [0, 1]."""
    return images.double() / 255.0 if images.dtype == torch.uint8 else images.double()


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [0, 1] (or uint8), capped at 100 dB so identical images stay finite."""
    a, b = _unit(a), _unit(b)
    if a.shape != b.shape:
        raise ValueError(f"PSNR needs images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a: torch.Tensor, b: torch.Tensor, *, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004): 11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1,
    valid positions only, averaged over positions and channels. Images smaller than the window get a window
    of their size (the workshop's 16 px digits keep 11)."""
    a, b = _unit(a), _unit(b)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"SSIM needs two (N, C, H, W) batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    size = min(window, a.shape[-1], a.shape[-2])
    size -= (size + 1) % 2                                  # keep it odd
    c = a.shape[1]
    kernel = _gaussian_window(size, sigma * size / window).expand(c, 1, size, size).contiguous()
    blur = lambda x: F.conv2d(x, kernel, groups=c)           # noqa: E731
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


@torch.no_grad()
def reconstruct(vae, images: torch.Tensor, *, batch_size: int = 64, device=None) -> torch.Tensor:
    """uint8 (N, C, H, W) -> the VAE's uint8 reconstructions through the posterior mean (no sampling noise)."""
    device = torch.device(device) if device is not None else next(vae.parameters()).device
    out = []
    with frozen_eval(vae):
        for chunk in images.split(batch_size):
            x = chunk.to(device).float() / 127.5 - 1
            z, _ = encode(vae, x, sample=False)
            out.append(images_to_uint8(decode(vae, z)).cpu())
    return torch.cat(out)


def reconstruction_metrics(originals: torch.Tensor, recons: torch.Tensor, *, spaces: dict | None = None,
                           batch_size: int = 64, device=None) -> dict[str, float]:
    """psnr and ssim (means over images), and rfd_<space> for every feature space given."""
    p = psnr(originals, recons)
    out = {"rpsnr": float(p.mean()), "rssim": float(ssim(originals, recons).mean())}
    for name, space in (spaces or {}).items():
        f_orig, _ = extract_features(space, originals, batch_size=batch_size, device=device)
        f_rec, _ = extract_features(space, recons, batch_size=batch_size, device=device)
        out[f"rfd_{name}"] = frechet_distance_features(f_orig, f_rec)
    return out
