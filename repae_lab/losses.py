"""Losses of REPA-E (REPAE_FACTS sections 1 and 3), each a plain function of tensors and modules.

The models know no losses: the SiT returns a velocity and projected tokens, the VAE a posterior and a
reconstruction, and the recipes combine these functions.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models.discriminator import generator_hinge_loss


# ---------------------------------------------------------------------------------------------------------
# The linear interpolant: x_t = (1 - t) x + t eps, t = 1 is pure noise, the SiT predicts v = eps - x.

def sample_time(n: int, *, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """t ~ U(0, 1) per sample (the paper's 'uniform' weighting)."""
    return torch.rand(n, generator=generator, device=device)


def interpolate(x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.view(-1, *([1] * (x.ndim - 1)))
    return (1 - t) * x + t * noise


def velocity_target(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x


def diffusion_loss(velocity: torch.Tensor, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Plain MSE to the velocity, averaged per sample then over the batch."""
    return (velocity.float() - velocity_target(x, noise).float()).pow(2).flatten(1).mean(1).mean()


# ---------------------------------------------------------------------------------------------------------
# REPA: negative cosine similarity between projected SiT tokens and target-encoder tokens.

def repa_loss(projected: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Mean over tokens, then batch, then encoders, of -cos(projected, target)."""
    if len(projected) != len(targets):
        raise ValueError(f"{len(projected)} projectors but {len(targets)} target encoders")
    losses = []
    for z, z_tilde in zip(projected, targets):
        if z.shape[:2] != z_tilde.shape[:2]:
            raise ValueError(f"SiT gives {z.shape[1]} tokens but the target encoder {z_tilde.shape[1]}; "
                             f"the token grids must match (choose patch_size / target encoder accordingly).")
        cos = (F.normalize(z.float(), dim=-1) * F.normalize(z_tilde.float(), dim=-1)).sum(-1)   # (N, T)
        losses.append(-cos.mean(1).mean())
    return torch.stack(losses).mean()


def spatial_normalize(tokens: torch.Tensor, gamma: float, eps: float = 1e-6) -> torch.Tensor:
    """iREPA's spatial normalisation of target tokens (N, T, D) (arXiv 2512.10794; its README and code): per image
    and channel, subtract gamma x the mean over the T tokens and divide by the tokens' std (unbiased, + eps). The
    component every token shares (global information) shrinks, the contrast between tokens (spatial structure)
    stays, and REPA's cosine then aligns the SiT with that structure. Subtracting a constant leaves the std as
    it is, so the order of the two steps does not matter."""
    tokens = tokens.float()
    return (tokens - gamma * tokens.mean(dim=1, keepdim=True)) / (tokens.std(dim=1, keepdim=True) + eps)


# ---------------------------------------------------------------------------------------------------------
# VAE regularisation L_REG (REPAE_FACTS section 1), computed in fp32.

def vae_regularisation(x: torch.Tensor, recon: torch.Tensor, kl: torch.Tensor, *, perceptual: nn.Module | None,
                       discriminator: nn.Module | None, l1_weight: float, perceptual_weight: float,
                       kl_weight: float, gan_weight: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L1 + perceptual + KL + generator hinge; returns the weighted sum and its parts (unweighted)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, recon = x.float(), recon.float()
        parts = {"l1": (x - recon).abs().mean(), "kl": kl.float()}
        if perceptual is not None and perceptual_weight > 0:
            parts["perceptual"] = perceptual(recon, x).mean()
        if discriminator is not None and gan_weight > 0:
            parts["gan_g"] = generator_hinge_loss(discriminator(recon))
        weights = {"l1": l1_weight, "kl": kl_weight, "perceptual": perceptual_weight, "gan_g": gan_weight}
        total = sum(weights[k] * v for k, v in parts.items())
    return total, parts
