"""Export the end-to-end tuned VAE (the E2E-VAE) of a run as a drop-in diffusers AutoencoderKL.

Its latent statistics are the EMA SiT's BatchNorm running buffers (REPAE_FACTS section 6, save_vae_weights.py):
latents_mean = running_mean and latents_std = sqrt(running_var + eps), so (z - mean) / std reproduces the
BatchNorm's eval-mode normalisation exactly.
"""
from __future__ import annotations

import json
from pathlib import Path

from .from_run import load_for_sampling
from .vae_files import save_e2e_vae


def export_vae(run: str | Path, out: str | Path, *, checkpoint: str | Path | None = None) -> Path:
    """Write the VAE of a run's newest good (or the given) checkpoint to `out`, with its latent statistics."""
    loaded = load_for_sampling(run, checkpoint=checkpoint, device="cpu")
    bn = loaded.ema.bn
    mean = bn.running_mean.float()
    std = (bn.running_var.float() + bn.eps).sqrt()
    path = Path(save_e2e_vae(loaded.vae, out, latents_mean=mean, latents_std=std))
    (path / "repae_lab_export.json").write_text(json.dumps(
        {"run": str(Path(run).resolve()), "checkpoint": loaded.checkpoint.name, "step": loaded.step,
         "latents_mean": mean.tolist(), "latents_std": std.tolist()}, indent=1))
    return path
