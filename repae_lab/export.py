"""Export the end-to-end tuned VAE (the E2E-VAE) of a run as a drop-in diffusers AutoencoderKL.

Its latent statistics are the EMA SiT's BatchNorm running buffers (REPAE_FACTS section 6, save_vae_weights.py):
latents_mean = running_mean and latents_std = sqrt(running_var + eps), so (z - mean) / std reproduces the
BatchNorm's eval-mode normalisation exactly.
"""
from __future__ import annotations

import json
from pathlib import Path

from diffusers import AutoencoderKL

from . import rundir
from .train import RunError, run_vae_architecture
from .models.vae import save_e2e_vae


class ExportError(RunError):
    pass


BN_EPS = 1e-4  # the latent BatchNorm's eps (REPAE_FACTS section 1)


def load_run_vae(run: str | Path, checkpoint: str | Path | None = None) -> tuple[AutoencoderKL, dict, Path]:
    """The VAE weights and the checkpoint files of a run's newest good (or the given) checkpoint."""
    run = Path(run)
    if not (run / "vae_config.json").is_file():
        raise ExportError(f"'{run}' is not a run directory (no vae_config.json); pass a folder written by `repae-lab train`.")
    ckpt = Path(checkpoint) if checkpoint else rundir.latest_good_checkpoint(run)
    if ckpt is None:
        raise ExportError(f"run '{run}' has no complete checkpoint yet; train longer or lower checkpoint_every.")
    files, _ = rundir.load_checkpoint(ckpt)
    vae = run_vae_architecture(run)
    vae.load_state_dict(files["vae"])
    return vae.eval(), files, ckpt


def export_vae(run: str | Path, out: str | Path, *, checkpoint: str | Path | None = None) -> Path:
    vae, files, ckpt = load_run_vae(run, checkpoint)
    ema = files["ema"]
    mean = ema["bn.running_mean"].float()
    std = (ema["bn.running_var"].float() + BN_EPS).sqrt()
    path = save_e2e_vae(vae, out, latents_mean=mean, latents_std=std)
    (Path(path) / "repae_lab_export.json").write_text(json.dumps(
        {"run": str(Path(run).resolve()), "checkpoint": ckpt.name, "latents_mean": mean.tolist(),
         "latents_std": std.tolist()}, indent=1))
    return Path(path)
