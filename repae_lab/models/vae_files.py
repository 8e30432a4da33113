"""The E2E-VAE on disk: a diffusers AutoencoderKL folder whose config carries the per-channel latent statistics
(latents_mean / latents_std), the layout of the released REPA-E/e2e-*-hf VAEs."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from .vae import _unwrap, latent_channels

def _as_float_list(t, name: str, channels: int) -> list[float]:
    values = torch.as_tensor(t, dtype=torch.float64).detach().cpu().flatten()
    if values.numel() != channels:
        raise ValueError(f"{name} has {values.numel()} values but the VAE has {channels} latent channels")
    if not torch.isfinite(values).all():
        raise ValueError(f"{name} contains non-finite values: {values.tolist()}")
    return [float(v) for v in values]


def save_e2e_vae(vae, out_dir, *, latents_mean: Tensor, latents_std: Tensor) -> Path:
    """Write the VAE in diffusers layout with per-channel latent stats in its config.

    ``latents_mean`` / ``latents_std`` are per latent channel (any shape with C
    elements, e.g. a BatchNorm's running stats; for std pass sqrt(running_var +
    eps)). They are stored as lists of floats in ``config.json`` so that any
    diffusers loader sees them, and are also registered on the in-memory
    model's config so it matches what is on disk.

    The write is atomic: everything goes to a temporary folder beside
    ``out_dir`` which is then renamed into place, so an interrupted save never
    leaves a half-written checkpoint where a loader would find it.
    """
    model = _unwrap(vae)
    channels = latent_channels(model)
    mean = _as_float_list(latents_mean, "latents_mean", channels)
    std = _as_float_list(latents_std, "latents_std", channels)
    if min(std) <= 0:
        raise ValueError(f"latents_std must be positive, got {std}")
    model.register_to_config(latents_mean=mean, latents_std=std)

    out_dir = Path(out_dir).expanduser().resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Same parent folder => same filesystem => os.rename is atomic.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    old = None
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        # Guard against a diffusers change that silently drops unknown keys.
        saved = json.loads((tmp / "config.json").read_text())
        if saved.get("latents_mean") != mean or saved.get("latents_std") != std:
            raise RuntimeError("latents_mean / latents_std did not make it into config.json")
        if out_dir.exists():
            # A non-empty directory cannot be replaced in one rename: move the
            # old one aside first, and delete it only once the new one is in place.
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.rmdir(old)
            os.rename(out_dir, old)
        # mkdtemp makes the folder private (0700); an exported VAE is meant to be shared like any folder
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not out_dir.exists():
            os.rename(old, out_dir)  # put the previous checkpoint back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out_dir


def latent_stats_from_config(vae) -> tuple[Tensor, Tensor] | None:
    """``(mean, std)`` as float32 tensors of shape ``(C,)`` from the config, or None when absent.

    Reshape with ``.view(1, -1, 1, 1)`` to normalise latents: ``(z - mean) / std``.
    """
    cfg = _unwrap(vae).config
    mean = cfg.get("latents_mean")
    std = cfg.get("latents_std")
    if mean is None or std is None:
        return None
    return (
        torch.tensor(list(mean), dtype=torch.float32),
        torch.tensor(list(std), dtype=torch.float32),
    )
