"""The `*-latents-stats.pt` convention of the official code, and how it maps onto the SiT's latent BatchNorm.

A stats file holds two tensors of shape (1, C, 1, 1): `latents_scale` = 1 / std and `latents_bias` = mean, so
that a latent is normalised as (z - bias) * scale. The official code writes the file next to the VAE weights
(`X.pt` -> `X-latents-stats.pt`), from the EMA model's BatchNorm with scale = 1 / sqrt(running_var).

The latent BatchNorm (affine off, eps 1e-4) normalises in eval mode as (z - running_mean) / sqrt(running_var +
eps). To make it reproduce (z - bias) * scale exactly we set running_var = 1 / scale^2 - eps. The official
`init_bn` sets running_var = 1 / scale^2 instead; the two differ by a relative eps * scale^2 / 2 in the scale
(under 1e-5 for SD-VAE latents, whose std is about 5). Likewise the official generate.py de-normalises with
sqrt(running_var) while repae_lab's sampling uses sqrt(running_var + eps): imported BatchNorm buffers are kept
as they are, so a sample differs from the official one by that relative eps / (2 var) only.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import ReleasedModelError
from .sources import locate, read_weights

BN_EPS = 1e-4            # the SiT's latent BatchNorm eps (REPAE_FACTS section 1)
SD_VAE_SCALE = 0.18215   # the fixed scale of REPA and of SD-VAE latents (zero bias)


def stats_path_for(weights_path) -> Path:
    """The official name of the statistics file that belongs to a VAE weights file."""
    p = Path(weights_path)
    return p.with_name(f"{p.stem}-latents-stats.pt")


def _channels(t: torch.Tensor, name: str, path) -> torch.Tensor:
    if not torch.is_tensor(t) or t.numel() == 0 or (t.ndim == 4 and (t.shape[0] != 1 or t.shape[2:] != (1, 1))):
        raise ReleasedModelError(f"'{path}': {name} must be a tensor of shape (1, C, 1, 1) or (C,), got "
                                 f"{tuple(t.shape) if torch.is_tensor(t) else type(t).__name__}; pass a file "
                                 f"written by save_vae_weights.py or save_latents_stats().")
    return t.detach().double().flatten()


def load_latents_stats(src, *, cache_dir=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) per channel, float32 (C,), from a `*-latents-stats.pt` file (a path or a hub spec)."""
    path = locate(src, cache_dir=cache_dir)
    obj = read_weights(path)
    if not isinstance(obj, dict) or "latents_scale" not in obj or "latents_bias" not in obj:
        keys = sorted(obj)[:6] if isinstance(obj, dict) else type(obj).__name__
        raise ReleasedModelError(f"'{path}' is not a latents-stats file (expected keys latents_scale and "
                                 f"latents_bias, found {keys}); pass the *-latents-stats.pt next to the VAE weights.")
    scale = _channels(obj["latents_scale"], "latents_scale", path)
    bias = _channels(obj["latents_bias"], "latents_bias", path)
    if scale.numel() != bias.numel():
        raise ReleasedModelError(f"'{path}': latents_scale has {scale.numel()} channels but latents_bias "
                                 f"{bias.numel()}; the file is damaged, re-export it.")
    if not bool(torch.isfinite(scale).all()) or bool((scale <= 0).any()):
        raise ReleasedModelError(f"'{path}': latents_scale must be finite and positive, got {scale.tolist()[:8]}; "
                                 f"the file is damaged, re-export it.")
    return bias.float(), (1.0 / scale).float()


def save_latents_stats(path, mean, std) -> Path:
    """Write (mean, std) in the official convention: latents_scale = 1 / std, latents_bias = mean, (1, C, 1, 1)."""
    mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
    std = torch.as_tensor(std, dtype=torch.float32).flatten()
    if mean.shape != std.shape or bool((std <= 0).any()):
        raise ReleasedModelError(f"latent statistics need one mean and one positive std per channel, got "
                                 f"{mean.numel()} means and std {std.tolist()[:8]}; pass per-channel tensors.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"latents_scale": (1.0 / std).view(1, -1, 1, 1), "latents_bias": mean.view(1, -1, 1, 1)}, tmp)
    tmp.replace(path)
    return path


def bn_buffers(mean, std, eps: float = BN_EPS) -> dict[str, torch.Tensor]:
    """The latent BatchNorm's buffers that normalise exactly as (z - mean) / std."""
    mean = torch.as_tensor(mean, dtype=torch.float64).flatten()
    std = torch.as_tensor(std, dtype=torch.float64).flatten()
    if bool((std ** 2 <= eps).any()):
        raise ReleasedModelError(f"a latent std of {float(std.min()):.3g} is below sqrt(eps) = {eps ** 0.5:.3g} of "
                                 f"the latent BatchNorm and cannot be represented; check the statistics file.")
    return {"bn.running_mean": mean.float(), "bn.running_var": (std ** 2 - eps).float(),
            "bn.num_batches_tracked": torch.tensor(0, dtype=torch.long)}


def fixed_scale_buffers(channels: int, scale: float = SD_VAE_SCALE, eps: float = BN_EPS) -> dict[str, torch.Tensor]:
    """BatchNorm buffers for a fixed global scale with zero bias (REPA's x * 0.18215)."""
    return bn_buffers(torch.zeros(channels), torch.full((channels,), 1.0 / scale, dtype=torch.float64), eps)


def stats_from_bn(running_mean, running_var, eps: float = BN_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) with std = sqrt(running_var + eps): what the BatchNorm really divides by (as export.py)."""
    return (torch.as_tensor(running_mean).float().flatten(),
            (torch.as_tensor(running_var).double().flatten() + eps).sqrt().float())
