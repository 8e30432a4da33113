"""Loaders for RELEASED models: the official REPA-E / REPA checkpoints, E2E-VAEs and other VAEs, latent
statistics files, the pretrained discriminator, and the importer that turns a checkpoint into a run directory.

Every loader takes a local file or folder, or a Hugging Face hub id where there is internet (HF_HUB_OFFLINE=1:
the local cache only), loads strictly (a mismatch names the keys and shapes) and never runs code on load
(safetensors, or torch.load with weights_only=True and the argparse.Namespace allowlist). Bad input raises
ReleasedModelError, a ValueError with a one-line message that names the problem and the fix.

    load_sit_checkpoint(src)        official training checkpoint / SiT state dict -> EMA + raw SiT, VAE, stats
    load_released_vae(src)          diffusers folder, LDM .pt, single-file state dict, run directory -> AutoencoderKL
    load_latents_stats(path) / save_latents_stats(path, mean, std)   the *-latents-stats.pt convention
    load_released_discriminator(src)                                  -> PatchDiscriminator
    import_checkpoint(src, out)     -> run directory (sample it like any run: models.from_run.load_for_sampling)
    dinov2_b(weights)               the DINOv2-B/14 REPA target through timm or a local file (re-exported from
                                    repae_lab.models.target_encoders; it already loads released weights)

Modules:
    sources.py         where weights come from: a local file or folder, or a hub id; safe reads
    errors.py          ReleasedModelError and its one-line messages
    sit_checkpoint.py  official training checkpoints -> EMA + raw SiT (architecture read from the weights)
    vae_layouts.py     the LDM and diffusers key layouts of an AutoencoderKL, and converting between them
    vae_loading.py     load_released_vae: any released AutoencoderKL as a diffusers one
    latents_stats.py   the *-latents-stats.pt convention and the SiT's latent BatchNorm buffers
    discriminator.py   the released PatchGAN discriminator
    run_config.py      the Config that describes an imported checkpoint
    import_run.py      import_checkpoint: a released SiT (+ VAE) as a run directory

They import only config, models and rundir. What uses them sits higher: comparing VAEs and probing an imported
run (repae_lab.probes.vae_comparison, imported_snapshot) and the import-checkpoint / compare-vaes commands.
"""
from ..target_encoders import dinov2_b
from .discriminator import load_released_discriminator
from .errors import ReleasedModelError
from .import_run import import_checkpoint
from .latents_stats import bn_buffers, load_latents_stats, save_latents_stats
from .sit_checkpoint import ReleasedCheckpoint, infer_sit_config, load_sit_checkpoint
from .vae_layouts import diffusers_to_ldm, infer_vae_config, ldm_to_diffusers
from .vae_loading import load_released_vae

__all__ = [
    "ReleasedCheckpoint", "ReleasedModelError", "bn_buffers", "diffusers_to_ldm", "dinov2_b", "import_checkpoint",
    "infer_sit_config", "infer_vae_config", "ldm_to_diffusers", "load_latents_stats",
    "load_released_discriminator", "load_released_vae", "load_sit_checkpoint", "save_latents_stats",
]
