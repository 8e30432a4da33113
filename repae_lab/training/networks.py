"""Building the networks of a training run: the SiT and its EMA for a VAE's latent grid, the starting latent
statistics of the BatchNorm, the cached latents of frozen-VAE recipes, and the speed switches."""
from __future__ import annotations

import os

import torch
from tqdm.auto import tqdm

from ..config import Config
from ..models.norms import keep_autocast_dtype_in_group_norms
from ..models.sit import SiT, sit_config
from ..models.vae import downsample_factor, encode, latent_channels
from ..rundir import RunError


def token_grid(cfg: Config, vae) -> tuple[int, int]:
    """(latent size, SiT token grid side) for the configured resolution, VAE and patch size."""
    factor = downsample_factor(vae)
    if cfg.resolution % factor:
        raise RunError(f"resolution {cfg.resolution} is not divisible by the VAE's downsampling factor {factor}; "
                       f"use a multiple of {factor}.")
    latent = cfg.resolution // factor
    if latent % cfg.patch_size:
        raise RunError(f"the {latent}x{latent} latent cannot be cut into {cfg.patch_size}x{cfg.patch_size} patches; "
                       f"choose patch_size dividing {latent}.")
    return latent, latent // cfg.patch_size


def new_sit(cfg: Config, vae, num_classes: int, z_dim: int) -> SiT:
    """A freshly initialised SiT + projector for this config, VAE (latent size and channels) and target
    encoder width, on the current default device."""
    latent, _ = token_grid(cfg, vae)
    return SiT(sit_config(cfg.sit_size, input_size=latent, patch_size=cfg.patch_size,
                          in_channels=latent_channels(vae), num_classes=num_classes,
                          class_dropout_prob=cfg.class_dropout_prob, alignment_depth=cfg.alignment_depth,
                          projector_dim=cfg.projector_dim, z_dims=(z_dim,), bn_momentum=cfg.bn_momentum,
                          projector_type=cfg.projector, projector_kernel=cfg.projector_kernel))


def ema_copy(sit: SiT) -> SiT:
    """The EMA model: same config and weights (latent statistics included), frozen, in eval mode."""
    ema = SiT(sit.cfg).to(next(sit.parameters()).device)
    ema.load_state_dict(sit.state_dict())
    return ema.eval().requires_grad_(False)


@torch.no_grad()
def estimate_latent_stats(vae, dataset, cfg: Config, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and variance of posterior samples over a few fixed batches (the BN's starting point)."""
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    n = min(len(dataset), cfg.latent_stats_batches * cfg.batch_size)
    idx = torch.randperm(len(dataset), generator=gen)[:n]
    zs = []
    for chunk in idx.split(cfg.batch_size):
        x, _ = dataset.batch(chunk)
        z, _ = encode(vae, x.to(device), sample=True, generator=gen)
        zs.append(z.float().cpu())
    z = torch.cat(zs)
    return z.mean(dim=(0, 2, 3)), z.var(dim=(0, 2, 3))


@torch.no_grad()
def encode_dataset(vae, dataset, device, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image (float16 on the CPU): a frozen VAE need not encode twice.
    Each step then draws a fresh posterior sample from them, as REPA-E's cached-latent training does."""
    means, stds = [], []
    order = torch.arange(len(dataset))
    for chunk in tqdm(order.split(256), desc="caching latents", disable=not progress, leave=False):
        x, _ = dataset.batch(chunk)
        _, posterior = encode(vae, x.to(device), sample=False)
        means.append(posterior.mean.half().cpu())
        stds.append(posterior.std.half().cpu())
    return torch.cat(means), torch.cat(stds)


# Regional compilation compiles these blocks, each class once: identical blocks share one compiled graph (their
# weights are graph inputs), so a 28-block SiT-XL compiles about as fast as one block. (module, class) names, so
# that timm need not be imported to recognise its blocks.
REPEATED_BLOCKS = {("repae_lab.models.sit", "SiTBlock"),                 # adaLN transformer block
                   ("diffusers.models.resnet", "ResnetBlock2D"),         # the VAE's GroupNorm-SiLU-conv blocks
                   ("timm.models.vision_transformer", "Block")}          # DINOv2's blocks (the REPA target)


def compile_backend() -> str:
    """torch.compile's backend: inductor, unless REPAE_LAB_COMPILE_BACKEND names another (aot_eager to debug a
    compiled run; the tests use it to check the mechanics without generating kernels)."""
    return os.environ.get("REPAE_LAB_COMPILE_BACKEND", "inductor")


def compile_repeated_blocks(*modules) -> int:
    """Compile every repeated block of `modules` in place (None entries are skipped); returns how many. The
    state-dict keys do not change (no `_orig_mod.` wrapper), so checkpoints stay the same."""
    count = 0
    for module in modules:
        for block in module.modules() if module is not None else ():
            if (type(block).__module__, type(block).__name__) in REPEATED_BLOCKS:
                block.compile(backend=compile_backend())
                count += 1
    return count


def apply_speed_switches(cfg: Config, sit: SiT, convnets, parallel=None, target=None):
    """Activation checkpointing, the VAE's GroupNorms in the autocast dtype (`convnets[0]` is the VAE),
    channels-last convolutional networks (None entries are skipped) and
    torch.compile (`compile`: regional = each repeated block of the SiT, the convolutional networks and the
    target encoder; full = the SiT's whole training forward, as the REPA-E code compiles it). Returns the SiT's
    training forward: compiled, DDP-wrapped (`parallel`), or the SiT itself."""
    sit.activation_checkpointing = cfg.activation_checkpointing
    if cfg.low_precision_group_norm:
        keep_autocast_dtype_in_group_norms(convnets[0])           # the VAE
    if cfg.channels_last:
        for module in convnets:
            if module is not None:
                module.to(memory_format=torch.channels_last)
    forward = parallel if parallel is not None else sit
    if cfg.compile == "regional":
        compile_repeated_blocks(sit, *convnets, target)
    if cfg.compile == "full":
        return torch.compile(forward, backend=compile_backend())
    return forward
