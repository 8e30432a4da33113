"""One training step per recipe, sharing everything else (DESIGN.md recipe table).

A step is at most three optimizer updates, in the order of the REPA-E code (REPAE_FACTS section 1):
  1. VAE update:  SiT frozen and in eval mode; L_REG + 1.5 * L_REPA (+ the diffusion loss only where the
                  recipe lets it reach the VAE); the REPA term from a SiT forward truncated at the alignment depth.
  2. discriminator update: hinge loss on real images and the detached reconstruction.
  3. SiT update:  SiT in train mode on z.detach() (computed before update 1, so one step stale), with the same
                  t and noise as update 1; diffusion + 0.5 * L_REPA; then the EMA.
Frozen-VAE recipes only take update 3. Which losses reach the VAE is decided once, in `routing`.

On a GPU nothing in a step waits for the device until its very end: losses, gradient norms and latent
statistics stay on the device as 0-d tensors and are read back together, once (`read_metrics`), and the
step's random draws go up from pinned memory without a blocking copy. The CPU can then queue the next
kernels while the GPU is still busy, which is where a large share of a small-batch step's time goes.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn

from .distributed import average_gradients, shard, world_size
from .losses import diffusion_loss, interpolate, repa_loss, vae_regularisation
from .models.discriminator import discriminator_hinge_loss
from .models.vae import decode, encode, kl_loss


@dataclass(frozen=True)
class Routing:
    """What each recipe trains and which losses reach the VAE."""
    trains_vae: bool          # updates 1 and 2 happen at all
    uses_repa: bool           # the SiT gets the REPA loss
    vae_gets_repa: bool       # the REPA loss reaches the VAE
    vae_gets_diffusion: bool  # the diffusion loss reaches the VAE (no stop-gradient)
    vae_reg: bool             # L1 / perceptual / KL / GAN on the VAE
    bn_tracks_batches: bool   # the latent BatchNorm normalises with batch statistics in the SiT update


def routing(cfg) -> Routing:
    if cfg.recipe in ("vanilla", "repa", "on-frozen-e2e-vae"):
        # a frozen VAE: the BatchNorm is a fixed per-channel normalisation (train_ldm_only.py keeps it in eval)
        return Routing(False, cfg.recipe != "vanilla", False, False, False, False)
    if cfg.recipe == "e2e-diffusion":
        return Routing(True, False, False, True, cfg.vae_reg, cfg.latent_norm)
    if cfg.recipe == "repa-e":
        return Routing(True, True, True, not cfg.stop_grad, cfg.vae_reg, cfg.latent_norm)
    raise ValueError(f"unknown recipe '{cfg.recipe}'")


@contextmanager
def frozen_eval(module: nn.Module):
    """Run a module in eval mode with no parameter gradients, then restore both exactly."""
    was_training = {m: m.training for m in module.modules()}
    grads = {p: p.requires_grad for p in module.parameters()}
    module.eval()
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for m, mode in was_training.items():
            m.training = mode
        for p, flag in grads.items():
            p.requires_grad_(flag)


@contextmanager
def no_param_grads(module: nn.Module):
    """Parameters get no gradient (inputs still do); the module keeps its train/eval mode."""
    grads = {p: p.requires_grad for p in module.parameters()}
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in grads.items():
            p.requires_grad_(flag)


def _backward(state, loss: torch.Tensor) -> None:
    (state.scaler.scale(loss) if state.scaler is not None else loss).backward()


def _step(state, name: str, params) -> torch.Tensor:
    """Average over processes, unscale, clip to cfg.grad_clip, step; returns the pre-clip gradient norm
    (a device tensor: reading it here would make the CPU wait for the backward pass)."""
    params = list(params)
    opt = state.optimizers[name]
    if name != "sit":               # the SiT's gradients are averaged by its DistributedDataParallel wrapper
        average_gradients(params)
    if state.scaler is not None:
        state.scaler.unscale_(opt)
    norm = torch.nn.utils.clip_grad_norm_(params, state.cfg.grad_clip)
    if state.scaler is not None:
        state.scaler.step(opt)
    else:
        opt.step()
    return norm.detach()


def _autocast(state):
    mp = state.cfg.mixed_precision
    if mp == "no":
        return nullcontext()
    return torch.autocast(device_type=state.device.type, dtype=torch.bfloat16 if mp == "bf16" else torch.float16)


def vae_loss(state, x, y, z, posterior, recon, t, noise, targets, route: Routing):
    """Update 1's loss: what `route` lets reach the VAE, with the SiT frozen and in eval mode."""
    cfg, sit = state.cfg, state.sit
    parts: dict[str, torch.Tensor] = {}
    with frozen_eval(sit), _autocast(state):
        z_norm = sit.normalize_latent(z)            # running statistics, constants; the gradient flows to z
        x_t = interpolate(z_norm, noise, t)
        if route.vae_gets_diffusion:
            velocity, projected = sit(x_t, t, y)
            parts["diffusion_vae"] = diffusion_loss(velocity, z_norm, noise)
        elif route.vae_gets_repa:
            _, projected = sit(x_t, t, y, stop_at_depth=cfg.alignment_depth)
        if route.vae_gets_repa:
            parts["repa_vae"] = repa_loss(projected, targets)
    loss = parts.get("diffusion_vae", 0.0) + cfg.vae_align_proj_coeff * parts.get("repa_vae", 0.0)
    if route.vae_reg:
        gan_on = state.discriminator is not None and state.step >= cfg.disc_start
        disc = state.discriminator if gan_on else None
        # the generator term runs the discriminator in train mode, as the reference loss does
        with no_param_grads(disc) if disc is not None else nullcontext():
            reg, reg_parts = vae_regularisation(
                x, recon, kl_loss(posterior), perceptual=state.perceptual, discriminator=disc,
                l1_weight=cfg.l1_weight, perceptual_weight=cfg.perceptual_weight,
                kl_weight=cfg.kl_weight, gan_weight=cfg.gan_weight)
        loss = loss + reg
        parts.update(reg_parts)
    metrics = {f"loss/{k}": v.detach() for k, v in parts.items()}
    metrics["loss/vae_total"] = loss.detach()
    return loss, metrics


def discriminator_loss(state, x, recon):
    """Update 2's loss: PatchGAN hinge on real images and the (detached) reconstruction, in fp32."""
    disc = state.discriminator
    with torch.autocast(device_type=x.device.type, enabled=False):
        loss = discriminator_hinge_loss(disc(x.float()), disc(recon.detach().float()))
    return loss, {"loss/disc": loss.detach()}


def sit_loss(state, z, y, t, noise, targets, route: Routing, drop_labels=None):
    """Update 3's loss: SiT + projector on the detached latent; the latent BatchNorm tracks batch statistics.
    `drop_labels` (bool per sample) replaces the SiT's own random label dropout, so that N processes draw
    exactly what one process would."""
    cfg, sit = state.cfg, state.sit
    forward = next(m for m in (state.sit_forward, state.sit_parallel, sit) if m is not None)
    z = z.detach()   # the stop-gradient: nothing of this update reaches the VAE
    sit.train()
    if not route.bn_tracks_batches:
        sit.bn.eval()
    with _autocast(state):
        z_norm = sit.normalize_latent(z)
        velocity, projected = forward(interpolate(z_norm, noise, t), t, y, force_drop_ids=drop_labels)
        diff = diffusion_loss(velocity, z_norm, noise)
        metrics = {"loss/diffusion": diff.detach()}
        loss = diff
        if route.uses_repa:
            repa = repa_loss(projected, targets)
            loss = loss + cfg.proj_coeff * repa
            metrics["loss/repa"] = repa.detach()
    return loss, metrics


def _one_update(state, name: str, loss_fn, micro_args) -> dict[str, torch.Tensor]:
    """zero_grad; for each micro-batch: loss / k, backward; then one step. Metrics are micro-batch means,
    left on the device (see read_metrics)."""
    state.optimizers[name].zero_grad(set_to_none=True)
    k, sums = len(micro_args), {}
    parallel = state.sit_parallel if name == "sit" else None
    for i, args in enumerate(micro_args):
        # DDP averages gradients once, on the last micro-batch
        sync = nullcontext() if parallel is None or i == k - 1 else parallel.no_sync()
        with sync:
            loss, metrics = loss_fn(state, *args)
            _backward(state, loss / k)
        for key, value in metrics.items():
            sums[key] = sums[key] + value / k if key in sums else value / k
    params = {"sit": state.sit, "vae": state.vae, "disc": state.discriminator}[name].parameters()
    sums[f"grad_norm/{name}"] = _step(state, name, (p for p in params if p.requires_grad))
    return sums


def read_metrics(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """Device scalars -> Python floats in one transfer: the only point where a step waits for the GPU."""
    if not metrics:
        return {}
    values = torch.stack([v.detach().float().reshape(()) for v in metrics.values()]).tolist()
    return dict(zip(metrics, values))


def vae_update(state, x, y, z, posterior, recon, t, noise, targets, route: Routing) -> dict[str, float]:
    """Update 1 on one batch: the VAE learns from the losses `route` lets through; SiT and projector untouched."""
    return read_metrics(_one_update(state, "vae", vae_loss, [(x, y, z, posterior, recon, t, noise, targets, route)]))


def discriminator_update(state, x, recon) -> dict[str, float]:
    """Update 2 on one batch."""
    return read_metrics(_one_update(state, "disc", discriminator_loss, [(x, recon)]))


def sit_update(state, z, y, t, noise, targets, route: Routing, drop_labels=None) -> dict[str, float]:
    """Update 3 on one batch."""
    return read_metrics(_one_update(state, "sit", sit_loss, [(z, y, t, noise, targets, route, drop_labels)]))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """EMA of parameters and of the BatchNorm running statistics (these become the E2E-VAE's latent stats).
    One multi-tensor lerp over all parameters: SiT-XL has about 700 of them, and a kernel per tensor would
    cost more launch time than the arithmetic."""
    pairs = list(zip(ema.parameters(), model.parameters()))
    for e, b in zip(ema.buffers(), model.buffers()):
        if e.dtype.is_floating_point:
            pairs.append((e, b))
        else:
            e.copy_(b)                          # BatchNorm's num_batches_tracked
    if pairs:
        torch._foreach_lerp_([e for e, _ in pairs], [s.detach() for _, s in pairs], 1.0 - decay)


def latent_statistics(z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cheap per-step summaries of the latent (Table 1's spatial variance and total variation, per image),
    as device scalars."""
    z = z.detach().float()
    spatial_var = z.flatten(2).var(dim=2).mean()                   # variance over positions, per channel and image
    tv = (z[..., 1:, :] - z[..., :-1, :]).abs().sum((1, 2, 3)) + (z[..., :, 1:] - z[..., :, :-1]).abs().sum((1, 2, 3))
    return {"latent/mean": z.mean(), "latent/std": z.std(), "latent/spatial_var": spatial_var,
            "latent/total_variation": tv.mean()}


def _global_draws(shape_per_sample, n_local: int, generator: torch.Generator, device, kind: str = "normal"):
    """A draw for the global batch (as one process would make it), sliced to this process's rows."""
    n_global = n_local * world_size()
    draw = torch.randn((n_global, *shape_per_sample), generator=generator) if kind == "normal" \
        else torch.rand((n_global, *shape_per_sample), generator=generator)
    return to_device(shard(draw), device)


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """A host tensor on `device` without making the CPU wait for the GPU's queue: a plain host-to-GPU copy
    synchronises the stream, a copy from pinned memory does not (the caching host allocator keeps the
    pinned block alive until the copy is done)."""
    device = torch.device(device)
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def _encode(state, x, eps, trains: bool):
    """Posterior sample z = mean + std * eps (and the reconstruction when the VAE trains)."""
    with torch.set_grad_enabled(trains), _autocast(state):
        _, posterior = encode(state.vae, x, sample=False)
        z = posterior.mean + posterior.std * eps                      # REPA-E trains on posterior samples
        recon = decode(state.vae, z) if trains else None
    return z.float(), posterior, recon


def train_step(state, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
               latents: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
    """One iteration of the configured recipe on this process's rows of the global batch; returns its metrics.

    Every random draw (posterior sample, t, noise, label dropout) is made for the global batch from
    `generator` and sliced, so the step does not depend on how many processes share it. With
    cfg.grad_accumulation = k, each update runs over k micro-batches before its one optimizer step, and
    the z that the SiT trains on is still the one computed before the VAE update. `latents` = cached
    (posterior mean, std) of these images, for frozen-VAE recipes."""
    cfg = state.cfg
    route = routing(cfg)
    n = len(x)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    targets = []
    if route.uses_repa:
        with torch.no_grad(), _autocast(state):
            targets = [state.target_encoder(x).float()]
    latent_shape = latents[0].shape[1:] if latents is not None else latent_shape_of(state, x)
    eps = _global_draws(latent_shape, n, generator, x.device)
    t = _global_draws((), n, generator, x.device, kind="uniform")
    noise = _global_draws(latent_shape, n, generator, x.device)
    drop = _global_draws((), n, generator, x.device, kind="uniform") < cfg.class_dropout_prob
    micro = [slice(i, i + n // cfg.grad_accumulation) for i in range(0, n, n // cfg.grad_accumulation)]
    pick = lambda seq, sl: [s[sl] for s in seq]
    metrics: dict[str, torch.Tensor] = {}
    state.vae.train(route.trains_vae)
    if route.trains_vae:
        zs, recons = [], []

        def vae_micro(state_, sl):
            z_mb, posterior, recon = _encode(state_, x[sl], eps[sl], trains=True)
            zs.append(z_mb.detach())                                 # before the VAE step: one step stale
            recons.append(recon.detach())
            return vae_loss(state_, x[sl], y[sl], z_mb, posterior, recon, t[sl], noise[sl], pick(targets, sl), route)
        metrics.update(_one_update(state, "vae", vae_micro, [(sl,) for sl in micro]))
        z, recon = torch.cat(zs), torch.cat(recons)
        if route.vae_reg and state.discriminator is not None and state.step >= cfg.disc_start:
            metrics.update(_one_update(state, "disc", discriminator_loss, [(x[sl], recon[sl]) for sl in micro]))
    elif latents is not None:
        z = (latents[0] + latents[1] * eps).float()
    else:
        z, _, _ = _encode(state, x, eps, trains=False)
    metrics.update(_one_update(state, "sit", sit_loss, [(z[sl], y[sl], t[sl], noise[sl], pick(targets, sl), route,
                                                          drop[sl]) for sl in micro]))
    if state.scaler is not None:
        state.scaler.update()
    update_ema(state.ema, state.sit, cfg.ema_decay)
    metrics.update(latent_statistics(z))
    return read_metrics(metrics)


def latent_shape_of(state, x: torch.Tensor) -> tuple[int, int, int]:
    from .models.vae import downsample_factor, latent_channels

    f = downsample_factor(state.vae)
    return (latent_channels(state.vae), x.shape[-2] // f, x.shape[-1] // f)
