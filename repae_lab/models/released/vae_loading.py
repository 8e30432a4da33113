"""One call for any released AutoencoderKL: `load_released_vae(src)` -> diffusers AutoencoderKL in eval mode.

Accepted sources (local, or a hub id where there is internet; see sources.py):
- a diffusers folder (config.json + diffusion_pytorch_model.safetensors / .bin; a pipeline's vae/ subfolder):
  REPA-E/e2e-{sdvae,invae,vavae}-hf, stabilityai/sd-vae-ft-mse, FLUX-style 16-channel VAEs;
- an LDM-layout file of the official code (REPA-E/e2e-sdvae, REPA-E/sdvae, ... raw .pt; the `vae` entry of a
  training checkpoint; an LDM Lightning .ckpt with first_stage_model.* keys): converted to the diffusers layout,
  the architecture read from the keys;
- a diffusers-layout state dict in a single file (architecture read from the keys);
- a repae_lab run directory (its tuned VAE from the newest good checkpoint);
- an in-memory state dict.
Loading is strict: every tensor must land in a parameter and every parameter must be filled, else the error
names the keys and shapes. Per-channel latent statistics are put in the config as latents_mean / latents_std
(diffusers' own keys) when the source has them: a diffusers config, a `*-latents-stats.pt` beside an LDM file,
or the EMA SiT's BatchNorm of a training checkpoint or run.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from ...rundir import latest_good_checkpoint, load_checkpoint
from ...rundir.safe_load import state_dict_mismatch
from .errors import ReleasedModelError, mismatch_message
from .latents_stats import load_latents_stats, stats_from_bn, stats_path_for
from .sources import find_weights_file, is_state_dict, locate, read_weights, strip_prefixes
from .vae_layouts import infer_vae_config, layout_of, ldm_to_diffusers, modernise_diffusers_keys

DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
LDM_PREFIXES = ("first_stage_model.", "vae.")
SUPPORTED_CLASS = "AutoencoderKL"


def build_strict(config: dict, state: dict[str, torch.Tensor], what: str) -> AutoencoderKL:
    """AutoencoderKL.from_config(config) with `state` loaded strictly (an error names the keys and shapes)."""
    cls = config.get("_class_name", SUPPORTED_CLASS)
    if cls != SUPPORTED_CLASS:
        raise ReleasedModelError(f"{what} is a diffusers {cls}, not an AutoencoderKL (e.g. AutoencoderKLQwenImage has "
                                 f"an extra frame dimension); only AutoencoderKL VAEs are supported.")
    try:
        vae = AutoencoderKL.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    except Exception as err:
        raise ReleasedModelError(f"{what}: its config does not build an AutoencoderKL ({err}); pass a diffusers "
                                 f"AutoencoderKL config.") from None
    state = modernise_diffusers_keys(state)
    problems = state_dict_mismatch(vae, state)
    if problems:
        raise ReleasedModelError(mismatch_message(
            f"{what}", problems, "Pass the config.json that was saved with these weights, or the weights that "
            "belong to this config."))
    vae.load_state_dict(state, strict=True)
    return vae.eval()


def with_latent_stats(vae: AutoencoderKL, mean, std) -> AutoencoderKL:
    """Record per-channel statistics in the config (latents_mean / latents_std, lists of floats)."""
    mean = [float(v) for v in torch.as_tensor(mean).flatten()]
    std = [float(v) for v in torch.as_tensor(std).flatten()]
    channels = int(vae.config.latent_channels)
    if len(mean) != channels or len(std) != channels:
        raise ReleasedModelError(f"latent statistics have {len(mean)} channels but the VAE has {channels}; pass the "
                                 f"statistics file that belongs to this VAE.")
    vae.register_to_config(latents_mean=mean, latents_std=std)
    return vae


def vae_from_state(state, *, what: str = "VAE state dict", norm_num_groups: int = 32,
                   sample_size: int = 256) -> tuple[AutoencoderKL, str]:
    """(AutoencoderKL, layout) from an LDM- or diffusers-layout state dict, architecture inferred from keys."""
    if not is_state_dict(state):
        raise ReleasedModelError(f"{what} is not a dict of tensors; pass a VAE state dict, file or folder.")
    state = strip_prefixes(state)
    # LDM trainers save their loss module (discriminator, LPIPS) with the VAE: not part of the autoencoder
    state = {k: v for k, v in state.items() if not k.startswith("loss.")}
    state = strip_prefixes(state, LDM_PREFIXES)
    layout = layout_of(state)
    if layout is None:
        raise ReleasedModelError(f"{what} has neither LDM (encoder.down.*) nor diffusers (encoder.down_blocks.*) VAE "
                                 f"keys (first keys: {', '.join(list(state)[:4])}); pass an AutoencoderKL state dict.")
    converted = ldm_to_diffusers(state) if layout == "ldm" else modernise_diffusers_keys(state)
    config = infer_vae_config(converted, norm_num_groups=norm_num_groups, sample_size=sample_size)
    return build_strict(config, converted, what), layout


def _diffusers_folder(folder: Path) -> AutoencoderKL:
    config = json.loads((folder / "config.json").read_text())
    weights = next((folder / name for name in DIFFUSERS_WEIGHTS if (folder / name).is_file()), None)
    if weights is None:
        files = sorted(folder.glob("*.safetensors"))
        if len(files) != 1:
            raise ReleasedModelError(f"diffusers folder '{folder}' has no diffusion_pytorch_model.safetensors; "
                                     f"download the weights file too (or save with vae.save_pretrained()).")
        weights = files[0]
    state = read_weights(weights)
    if not is_state_dict(state):
        raise ReleasedModelError(f"'{weights}' holds no state dict; re-download the VAE.")
    return build_strict(config, state, f"the VAE in '{folder}'")


def _run_directory(run: Path) -> AutoencoderKL:
    ckpt = latest_good_checkpoint(run, warn=lambda _msg: None)
    if ckpt is None:
        raise ReleasedModelError(f"run '{run}' has no complete checkpoint; train it longer or pass another VAE.")
    files, _ = load_checkpoint(ckpt)
    if "vae" not in files:
        raise ReleasedModelError(f"checkpoint '{ckpt}' has no vae.safetensors; pass another run or VAE.")
    config = json.loads((run / "vae_config.json").read_text())
    vae = build_strict(config, files["vae"], f"the VAE of run '{run}'")
    ema = files.get("ema", {})
    if "bn.running_mean" in ema:
        vae = with_latent_stats(vae, *stats_from_bn(ema["bn.running_mean"], ema["bn.running_var"]))
    return vae


def _weights_file(path: Path, norm_num_groups: int, sample_size: int) -> AutoencoderKL:
    obj = read_weights(path)
    stats = None
    if isinstance(obj, dict) and "vae" in obj and not torch.is_tensor(obj["vae"]):   # an official training dict
        ema = strip_prefixes(obj.get("ema") or {})
        if "bn.running_mean" in ema:
            stats = stats_from_bn(ema["bn.running_mean"], ema["bn.running_var"])
        obj = obj["vae"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):           # a Lightning checkpoint
        obj = obj["state_dict"]
    vae, layout = vae_from_state(obj, what=f"the VAE in '{path}'", norm_num_groups=norm_num_groups,
                                 sample_size=sample_size)
    beside = stats_path_for(path)
    if stats is None and beside.is_file():
        stats = load_latents_stats(beside)
    return with_latent_stats(vae, *stats) if stats is not None else vae


def load_released_vae(src, *, latents_stats=None, norm_num_groups: int = 32, sample_size: int = 256,
                      cache_dir=None) -> AutoencoderKL:
    """Any released AutoencoderKL (see the module docstring) as a diffusers AutoencoderKL in eval mode.

    `latents_stats`: a `*-latents-stats.pt` file whose (mean, std) replace any the source carries.
    `norm_num_groups` / `sample_size` only matter where the architecture is read from keys."""
    if isinstance(src, AutoencoderKL):
        vae = src.eval()
    elif isinstance(src, dict):
        vae, _ = vae_from_state(src, norm_num_groups=norm_num_groups, sample_size=sample_size)
    else:
        path = locate(src, cache_dir=cache_dir)
        if path.is_dir() and not (path / "config.json").is_file() and (path / "vae" / "config.json").is_file():
            path = path / "vae"
        if path.is_dir() and (path / "vae_config.json").is_file():     # a run directory also has a config.json
            vae = _run_directory(path)
        elif path.is_dir() and (path / "config.json").is_file():
            vae = _diffusers_folder(path)
        else:
            if path.is_dir():
                path = find_weights_file(path, what="VAE")
            vae = _weights_file(path, norm_num_groups, sample_size)
    if latents_stats is not None:
        vae = with_latent_stats(vae, *load_latents_stats(latents_stats, cache_dir=cache_dir))
    return vae.eval()
