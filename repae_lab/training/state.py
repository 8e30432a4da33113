"""Everything a training run holds while it trains (TrainState), and building it from a Config."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from ..config import Config, Routing, routing
from ..data import DatasetError, class_balanced_indices, load_dataset
from ..models.discriminator import PatchDiscriminator, pretrained_discriminator_state
from ..models.perceptual import build_perceptual
from ..models.sit import SiT
from ..models.target_encoders import build_target_encoder
from ..models.vae import VAE_CONFIGS, vae_from_spec
from ..models.vae_files import latent_stats_from_config
from ..models.workshop_vae import pretrained_workshop_vae
from ..rundir import RunError
from ..rundir.safe_load import load_state_dict_checked, load_weights_file
from . import distributed as dist
from .networks import apply_speed_switches, ema_copy, encode_dataset, estimate_latent_stats, new_sit, token_grid
from .cuda_graphs import GraphedStep
from .optim import Optimizers, make_optimizers


@dataclass
class Networks:
    """The networks of a run. `target_encoder` exists for recipes with REPA; `discriminator` and `perceptual`
    for recipes that regularise a trained VAE."""
    vae: nn.Module
    sit: SiT
    ema: SiT
    discriminator: nn.Module | None = None
    target_encoder: nn.Module | None = None
    perceptual: nn.Module | None = None


@dataclass
class TrainState:
    cfg: Config
    route: Routing                     # the recipe's gradient routing (config/recipes.py), fixed for the run
    device: torch.device
    dataset: Any
    nets: Networks
    optimizers: Optimizers
    sit_forward: Callable              # the SiT's training forward: compiled and/or DDP-wrapped, else the SiT
    sit_ddp: Any = None                # the DistributedDataParallel wrapper under torchrun (for no_sync)
    step: int = 0
    probe_indices: torch.Tensor | None = None
    latent_cache: tuple[torch.Tensor, torch.Tensor] | None = None   # posterior (mean, std) per image
    graphed_step: Any = None           # cuda_graphs=true: the step's device work as a CUDA graph (cuda_graphs.py)


def _setup_process(cfg: Config) -> torch.device:
    try:
        device = dist.init_from_env(cfg.device)
    except ValueError as err:
        raise RunError(f"{err} (config key: device)") from None
    note = dist.launcher_precision_note(cfg.mixed_precision)
    if note and dist.is_main():
        print(f"repae-lab: {note}", file=sys.stderr)
    try:
        dist.check_batch_size(cfg.batch_size)
    except ValueError as err:
        raise RunError(str(err)) from None
    torch.manual_seed(cfg.seed)
    torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
    torch.backends.cudnn.allow_tf32 = cfg.tf32
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    return device


def _check_cuda_graphs(cfg: Config, device: torch.device) -> None:
    """CUDA graphs replay a whole step on one GPU; say before anything is built where they cannot."""
    if not cfg.cuda_graphs:
        return
    if device.type != "cuda":
        raise RunError(f"cuda_graphs=true needs a CUDA GPU, and this run is on {device.type}; set cuda_graphs=false "
                       f"(CUDA graphs remove kernel-launch time, which a CPU does not have).")
    if dist.is_distributed():
        raise RunError("cuda_graphs=true runs in one process only for now; under torchrun set cuda_graphs=false "
                       "(large models at the paper's batch are not launch-bound).")


def _starting_vae(cfg: Config, dataset, vae, progress: bool):
    """The VAE every recipe starts from: the given one, or the configured one (pretrained on the dataset once
    and cached, for the workshop VAE configs)."""
    pretrain = vae is None and cfg.vae in VAE_CONFIGS and cfg.vae_pretrain_steps > 0
    if vae is None:
        try:
            vae = vae_from_spec(cfg.vae, in_channels=dataset.channels)
        except (OSError, ValueError) as err:
            raise RunError(f"config key vae: {' '.join(str(err).split())}") from None
    if vae.config.in_channels != dataset.channels:
        raise RunError(f"the VAE takes {vae.config.in_channels}-channel images but '{cfg.dataset}' has "
                       f"{dataset.channels}; pick a VAE config for {dataset.channels} channels.")
    token_grid(cfg, vae)                  # shape errors surface before anything is trained
    if pretrain:
        with _as_run_error("vae_pretrain_steps"):
            vae = dist.main_rank_first(lambda: pretrained_workshop_vae(
                cfg.vae, dataset, steps=cfg.vae_pretrain_steps, seed=cfg.seed, kl_weight=cfg.kl_weight,
                cache_dir=cfg.cache_dir, progress=progress and dist.is_main()))
    return vae


@contextmanager
def _as_run_error(keys: str):
    """A network that cannot be built as configured (weights missing or unsafe, shapes that do not fit) stops the
    run before step 0 with one line naming the config keys, not a traceback from deep inside."""
    try:
        yield
    except (OSError, RuntimeError, ValueError) as err:
        if isinstance(err, RunError):
            raise
        raise RunError(f"{' '.join(str(err).split())} (config keys: {keys})") from None


def _discriminator(cfg: Config, channels: int) -> PatchDiscriminator:
    """A fresh PatchGAN, or the pretrained one of `disc_weights` (the official recipe starts from one)."""
    disc = PatchDiscriminator(channels, ndf=cfg.disc_ndf, n_layers=cfg.disc_layers)
    if cfg.disc_weights:
        with _as_run_error("disc_weights, disc_layers, disc_ndf"):
            load_state_dict_checked(disc, pretrained_discriminator_state(load_weights_file(cfg.disc_weights)),
                                    f"pretrained discriminator '{cfg.disc_weights}'")
    return disc


def build_state(cfg: Config, *, progress: bool = True, vae=None) -> TrainState:
    """Every network, optimizer and fixed input of a run at step 0 (a resume then loads a checkpoint into it).
    `vae` replaces the configured starting VAE (a resume passes the run's architecture)."""
    device = _setup_process(cfg)
    _check_cuda_graphs(cfg, device)
    route = routing(cfg)
    try:
        dataset = load_dataset(cfg.dataset, resolution=cfg.resolution, root=cfg.data_root, download=cfg.download)
    except DatasetError as err:
        raise DatasetError(f"{err} (config keys: dataset, data_root, download, resolution)") from None
    # each module is initialised from its own seed, so its weights do not depend on what ran before
    # (e.g. whether the workshop encoder was trained in this process or loaded from the cache)
    torch.manual_seed(cfg.seed + 1)
    vae = _starting_vae(cfg, dataset, vae, progress).to(device)
    _, grid = token_grid(cfg, vae)

    target = None
    if route.uses_repa or cfg.perceptual in ("auto", "workshop") or cfg.target_encoder == "workshop":
        # rank 0 trains (or downloads) the encoder first; the others then read its cache
        with _as_run_error("target_encoder, target_encoder_weights, patch_size"):
            target = dist.main_rank_first(
                lambda: build_target_encoder(cfg, dataset, grid=grid, progress=progress and dist.is_main())).to(device)
    torch.manual_seed(cfg.seed + 2)
    z_dim = target.embed_dim if target is not None else 768
    sit = dist.globalize_batchnorm(new_sit(cfg, vae, dataset.num_classes, z_dim)).to(device)
    sit.pos_embed.requires_grad_(cfg.train_pos_embed)
    stats = latent_stats_from_config(vae)
    if stats is not None:                       # an exported E2E-VAE carries its latent statistics
        mean, std = stats
        var = std.float() ** 2 - sit.bn.eps
    else:
        mean, var = estimate_latent_stats(vae, dataset, cfg, device)
    sit.init_latent_stats(mean.to(device), var.clamp_min(1e-8).to(device))
    ema = ema_copy(sit)

    disc = perceptual = None
    if route.trains_vae and route.vae_reg:
        with _as_run_error("perceptual"):
            perceptual = build_perceptual(cfg.perceptual, target, double_rescale=cfg.lpips_double_rescale)
        if perceptual is not None:
            perceptual = perceptual.to(device)
        if cfg.gan_weight > 0:
            torch.manual_seed(cfg.seed + 3)
            disc = dist.globalize_batchnorm(_discriminator(cfg, dataset.channels)).to(device)
    optimizers = make_optimizers(cfg, route, sit, vae, disc, device)
    probe = class_balanced_indices(dataset.labels, min(cfg.probe_size, len(dataset)), cfg.seed) if cfg.probe_size else None
    ddp = None
    if dist.is_distributed():
        from torch.nn.parallel import DistributedDataParallel

        # the projectors take no part in the loss of recipes without REPA, nor after a REPA stop step (HASTE)
        ddp = DistributedDataParallel(sit, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=not route.uses_repa or bool(cfg.repa_stop_step),
                                      broadcast_buffers=False)
        for module in (vae, disc):
            dist.broadcast_parameters(module)
    forward = apply_speed_switches(cfg, sit, (vae, disc, perceptual), ddp, target=target)
    cache = encode_dataset(vae, dataset, device, progress) if cfg.cache_latents else None
    nets = Networks(vae=vae, sit=sit, ema=ema, discriminator=disc,
                    target_encoder=target if route.uses_repa else None, perceptual=perceptual)
    return TrainState(cfg=cfg, route=route, device=device, dataset=dataset, nets=nets, optimizers=optimizers,
                      sit_forward=forward, sit_ddp=ddp, probe_indices=probe, latent_cache=cache,
                      graphed_step=GraphedStep() if cfg.cuda_graphs else None)
