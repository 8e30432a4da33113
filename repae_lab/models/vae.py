"""The VAE half of REPA-E: diffusers' ``AutoencoderKL`` at every scale.

Using the same class for the tiny workshop models and for the released SD-VAE /
E2E-VAE checkpoints means one code path (encode, decode, KL, save, load) is
exercised by the CPU tests and by the real runs alike.

Conventions kept here on purpose:

* ``encode`` returns the raw posterior sample (or mean). No ``scaling_factor`` /
  ``shift_factor`` is applied: REPA-E normalises latents for the diffusion model
  with per-channel statistics (a BatchNorm over the latents during end-to-end
  training, stored as ``latents_mean`` / ``latents_std`` in the saved config),
  not with SD's single global factor. Callers normalise explicitly.
* ``encode`` / ``decode`` do not wrap anything in ``torch.no_grad``: in
  end-to-end training the gradient of the diffusion loss must reach the encoder.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import Tensor

__all__ = [
    "VAE_CONFIGS",
    "build_vae",
    "load_vae",
    "vae_from_spec",
    "downsample_factor",
    "latent_channels",
    "encode",
    "decode",
    "kl_loss",
]


def _levels(n: int) -> dict:
    """Down/up block types for an ``n``-level encoder/decoder (one type per level)."""
    return {
        "down_block_types": ("DownEncoderBlock2D",) * n,
        "up_block_types": ("UpDecoderBlock2D",) * n,
    }


# name -> AutoencoderKL constructor kwargs. Every level but the last halves the
# resolution, so the spatial factor is 2 ** (levels - 1). Mid-block attention is
# left at diffusers' default (on), as in the released SD-VAE.
VAE_CONFIGS: dict[str, dict] = {
    # 1x16x16 -> 4x8x8 (factor 2). 32 groups divide both widths (32, 64).
    "workshop-16": dict(
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=32,
        latent_channels=4,
        sample_size=16,
        **_levels(2),
    ),
    # 1x32x32 -> 4x8x8 (factor 4): same 8x8 latent grid as workshop-16, so the
    # same SiT can sit on top of either.
    "workshop-32": dict(
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        norm_num_groups=32,
        latent_channels=4,
        sample_size=32,
        **_levels(3),
    ),
    # CIFAR-10 at 32x32.
    "workshop-32-rgb": dict(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        norm_num_groups=32,
        latent_channels=4,
        sample_size=32,
        **_levels(3),
    ),
    # stabilityai/sd-vae-ft-mse architecture: f8, 4 latent channels.
    "sd-f8c4": dict(
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        norm_num_groups=32,
        latent_channels=4,
        sample_size=256,
        **_levels(4),
    ),
    # IN-VAE / VA-VAE f16d32 shape: f16, 32 latent channels, and (as the LDM f16 VAEs) attention in the blocks
    # of the lowest resolution, 16x16 for 256 px images (attn_resolutions=[16]).
    "f16c32": dict(
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 128, 256, 256, 512),
        layers_per_block=2,
        norm_num_groups=32,
        latent_channels=32,
        sample_size=256,
        down_block_types=("DownEncoderBlock2D",) * 4 + ("AttnDownEncoderBlock2D",),
        up_block_types=("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * 4,
    ),
}
# 1x16x16 -> 8x8x8: workshop-16 with twice the latent channels (benchmarks/paper_claims.py: a larger latent)
VAE_CONFIGS["workshop-16-c8"] = dict(VAE_CONFIGS["workshop-16"], latent_channels=8)
# 1x16x16 -> 16x8x8: four times the channels, the speed-up search's widest latent (experiments/speedup_search.py);
# only the encoder's last and the decoder's first convolution grow, so it stays workshop-sized
VAE_CONFIGS["workshop-16-c16"] = dict(VAE_CONFIGS["workshop-16"], latent_channels=16)


# --------------------------------------------------------------------------- #
# Construction and loading
# --------------------------------------------------------------------------- #


def build_vae(name_or_kwargs: str | dict, *, in_channels: int | None = None) -> AutoencoderKL:
    """A freshly initialised ``AutoencoderKL`` from a ``VAE_CONFIGS`` name or raw kwargs.

    ``in_channels`` overrides both the input and the output channel count (a VAE
    reconstructs what it is given), e.g. to run an RGB config on grey images.
    """
    if isinstance(name_or_kwargs, str):
        if name_or_kwargs not in VAE_CONFIGS:
            raise ValueError(
                f"unknown VAE config {name_or_kwargs!r}; known names: {', '.join(sorted(VAE_CONFIGS))} "
                "(or pass a dict of AutoencoderKL kwargs, or use vae_from_spec for a path / hub id)"
            )
        kwargs = VAE_CONFIGS[name_or_kwargs]
    elif isinstance(name_or_kwargs, dict):
        kwargs = name_or_kwargs
    else:
        raise TypeError(f"build_vae expects a config name or a dict, got {type(name_or_kwargs).__name__}")
    # Deep copy so an override never leaks back into the shared VAE_CONFIGS table.
    kwargs = copy.deepcopy(kwargs)
    if in_channels is not None:
        kwargs["in_channels"] = int(in_channels)
        kwargs["out_channels"] = int(in_channels)
    return AutoencoderKL(**kwargs)


def _looks_like_local_path(spec: str) -> bool:
    """True for strings that can only mean a filesystem path, never a hub id.

    Hub ids are ``name`` or ``org/name``; anything absolute, relative-dotted,
    home-relative, with a backslash or with more than one slash is a path. For
    those we must not fall through to a hub lookup (which would retry over the
    network for ~30 s before failing with a confusing message).
    """
    return (
        os.path.isabs(spec)
        or spec.startswith((".", "~"))
        or "\\" in spec
        or spec.count("/") > 1
        or os.path.exists(spec)
    )


def _offline_requested() -> bool:
    # Read at call time: huggingface_hub snapshots HF_HUB_OFFLINE when it is
    # imported, so setting the variable later (a notebook cell, a test's
    # monkeypatch) would otherwise be ignored and we would hit the network.
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def load_vae(path_or_hub_id: str, *, subfolder: str | None = None) -> AutoencoderKL:
    """``AutoencoderKL.from_pretrained`` from a local diffusers folder or a hub id.

    The model comes back in eval mode (diffusers' default); call ``.train()``
    before end-to-end tuning. A local folder that holds a full pipeline
    (``vae/config.json`` but no top-level ``config.json``) is read from its
    ``vae`` subfolder automatically.
    """
    spec = str(path_or_hub_id)
    local = _looks_like_local_path(spec)
    fix = (
        "Pass a local folder in the diffusers layout (config.json + diffusion_pytorch_model.safetensors, "
        "e.g. written by vae.save_pretrained() or save_e2e_vae()), or a hub id that is already in the local "
        "HF cache. Without internet, set HF_HUB_OFFLINE=1 so hub lookups fail fast instead of retrying."
    )

    if local:
        root = Path(spec).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"VAE folder {spec!r} does not exist or is not a directory. {fix}")
        if subfolder is None and not (root / "config.json").is_file() and (root / "vae" / "config.json").is_file():
            subfolder = "vae"
        folder = root / subfolder if subfolder else root
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"no config.json in VAE folder {str(folder)!r}. {fix}")
        spec = str(root)

    kwargs: dict = {}
    if subfolder:
        kwargs["subfolder"] = subfolder
    if _offline_requested():
        kwargs["local_files_only"] = True
    # Without accelerate, diffusers prints a long warning on every load and then
    # falls back to low_cpu_mem_usage=False anyway; ask for that directly.
    if importlib.util.find_spec("accelerate") is None:
        kwargs["low_cpu_mem_usage"] = False

    try:
        vae = AutoencoderKL.from_pretrained(spec, **kwargs)
    except (OSError, ValueError) as err:  # HFValidationError is a ValueError
        where = f"{spec!r}" + (f" (subfolder {subfolder!r})" if subfolder else "")
        kind = "local folder" if local else "hub id"
        raise OSError(f"could not load an AutoencoderKL from {kind} {where}: {err}\n{fix}") from err
    return vae


def vae_from_spec(
    spec: str, *, in_channels: int | None = None, subfolder: str | None = None
) -> AutoencoderKL:
    """A ``VAE_CONFIGS`` name builds a fresh random VAE; anything else is loaded as a path / hub id."""
    if spec in VAE_CONFIGS:
        return build_vae(spec, in_channels=in_channels)
    vae = load_vae(spec, subfolder=subfolder)
    # A pretrained VAE cannot change its channel count; say so instead of
    # failing later with a conv shape error deep inside the encoder.
    if in_channels is not None and int(vae.config.in_channels) != int(in_channels):
        raise ValueError(
            f"VAE {spec!r} takes {vae.config.in_channels} input channels but in_channels={in_channels} was requested; "
            "convert the data (e.g. grey -> RGB) or pick a matching VAE"
        )
    return vae


# --------------------------------------------------------------------------- #
# Shape helpers
# --------------------------------------------------------------------------- #


def _unwrap(vae):
    """The bare AutoencoderKL behind DDP (``.module``) or torch.compile (``._orig_mod``)."""
    while True:
        if hasattr(vae, "_orig_mod"):
            vae = vae._orig_mod
        elif hasattr(vae, "module") and isinstance(vae.module, torch.nn.Module):
            vae = vae.module
        else:
            return vae


def downsample_factor(vae) -> int:
    """Spatial factor image -> latent: every encoder level except the last halves the size."""
    return 2 ** (len(_unwrap(vae).config.block_out_channels) - 1)


def latent_channels(vae) -> int:
    return int(_unwrap(vae).config.latent_channels)


# --------------------------------------------------------------------------- #
# Encode / decode / KL
# --------------------------------------------------------------------------- #


def encode(vae, x: Tensor, *, sample: bool = True, generator: torch.Generator | None = None):
    """Encode images in [-1, 1]; returns ``(z, posterior)``.

    ``z`` is a posterior sample by default (REPA-E trains the SiT and the
    encoder on samples, not on the mean) or the mean with ``sample=False``.
    ``posterior`` is diffusers' ``DiagonalGaussianDistribution`` (``.mean``,
    ``.std``, ``.logvar``, ``.kl()``). No scaling factor is applied.
    """
    posterior = _unwrap(vae).encode(x).latent_dist
    z = posterior.sample(generator=generator) if sample else posterior.mean
    return z, posterior


def decode(vae, z: Tensor) -> Tensor:
    """Decode raw (unscaled) latents to an image in roughly [-1, 1] (not clamped)."""
    return _unwrap(vae).decode(z).sample


def kl_loss(posterior) -> Tensor:
    """KL(q(z|x) || N(0, I)) summed over all latent elements, divided by the batch size.

    This is REPA-E's (and taming's) convention: ``sum(posterior.kl()) / B``.
    diffusers already clamps logvar to [-30, 20] inside the distribution.
    """
    batch = posterior.mean.shape[0]
    if getattr(posterior, "deterministic", False):
        # diffusers returns a CPU tensor([0.]) here, which breaks device/shape
        # assumptions of the caller; a zero scalar on the right device is clearer.
        return posterior.mean.new_zeros(())
    return posterior.kl().sum() / batch
