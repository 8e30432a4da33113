"""One training step of any recipe: at most three optimizer updates, in the order of the authors' code
(REPAE_FACTS section 1). `train_step` reads top to bottom; the recipe decides, through its Routing
(config/recipes.py), which of the updates run and which losses reach which network.

  update 1  VAE:            the SiT frozen and in eval mode; L_REG + 1.5 L_REPA (+ the diffusion loss only where
                            the recipe lets it reach the VAE); the REPA term from a SiT pass truncated at the
                            alignment depth.
  update 2  discriminator:  hinge loss on the real images and the detached reconstruction of update 1.
  update 3  SiT:            train mode, on z.detach() computed before update 1 (one step stale) with the same t
                            and noise; diffusion + 0.5 L_REPA; then the EMA.
Frozen-VAE recipes take only update 3. From cfg.repa_stop_step on (HASTE, arXiv 2505.16792) the step runs as
if the recipe had no REPA term: no target pass, no projector, nothing of L_REPA in update 1 or 3.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch
from torch import Tensor
from torch.profiler import record_function

from ..losses import diffusion_loss, interpolate, repa_loss, spatial_normalize, vae_regularisation
from ..models.discriminator import discriminator_hinge_loss
from ..models.modes import frozen_eval, no_param_grads
from ..models.vae import decode, downsample_factor, encode, kl_loss, latent_channels
from .distributed import shard, world_size
from .summary import SKIP_PREFIX
from .optim import add_mean, autocast, backward, clip_and_step, micro_batches, read_metrics, to_device, update_ema

UPDATES = ("vae", "disc", "sit")   # the optimizer updates, by the names their metrics carry


@dataclass(frozen=True)
class StepDraws:
    """Every random draw of a step: made for the global batch (as one process would make it) from the step's
    generator and sliced to this process's rows, so N processes train what one process would."""
    eps: Tensor             # the posterior sample's noise: z = mean + std * eps
    t: Tensor               # interpolant times, U(0, 1)
    noise: Tensor           # the interpolant's noise
    drop_labels: Tensor     # label dropout for classifier-free guidance (bool per sample)

    @classmethod
    def draw(cls, latent_shape, n_local: int, generator: torch.Generator, device, class_dropout_prob: float):
        def draw(shape, kind="normal"):
            full = (n_local * world_size(), *shape)
            values = torch.randn(full, generator=generator) if kind == "normal" else torch.rand(full, generator=generator)
            return to_device(shard(values), device)
        eps, t, noise = draw(latent_shape), draw((), "uniform"), draw(latent_shape)   # this order: the RNG stream
        return cls(eps, t, noise, draw((), "uniform") < class_dropout_prob)

    def rows(self, sl: slice) -> "StepDraws":
        return StepDraws(self.eps[sl], self.t[sl], self.noise[sl], self.drop_labels[sl])


def train_step(state, x: Tensor, y: Tensor, generator: torch.Generator,
               latents: tuple[Tensor, Tensor] | None = None) -> dict[str, float]:
    """One iteration of the configured recipe on this process's rows of the global batch; returns its metrics.

    The step's random draws are made on the host (reproducible across process counts), the device work is
    queued without waiting for the GPU (or replayed as a CUDA graph), and the metrics are read back once.
    `latents` = cached (posterior mean, std) of these images, for frozen-VAE recipes with cache_latents."""
    draws = step_draws(state, x, generator, latents)
    device_work = state.graphed_step or step_on_device
    return finish_metrics(read_metrics(device_work(state, x, y, draws, latents)))


def step_draws(state, x: Tensor, generator: torch.Generator, latents=None) -> "StepDraws":
    """The step's random numbers, drawn for the latent's shape (REPA-E samples t and noise once per step and
    reuses them in updates 1 and 3, REPAE_FACTS section 1)."""
    shape = latents[0].shape[1:] if latents is not None else latent_shape(state.nets.vae, x)
    return StepDraws.draw(shape, len(x), generator, x.device, state.cfg.class_dropout_prob)


def step_on_device(state, x: Tensor, y: Tensor, draws: StepDraws,
                   latents: tuple[Tensor, Tensor] | None = None) -> dict[str, Tensor]:
    """The device work of a step, in the authors' order; its metrics stay on the device. Nothing here reads the
    device back, draws a random number or depends on a tensor's value, so a CUDA graph can replay it
    (training/cuda_graphs.py)."""
    cfg, route, nets = state.cfg, step_route(state), state.nets
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with record_function("repae/targets"):
        targets = target_tokens(state, x) if route.uses_repa else None
    metrics: dict[str, Tensor] = {}
    nets.vae.train(route.trains_vae)
    if vae_has_a_loss(route):
        # Update 1: the VAE. z and the reconstruction come back from before the VAE's optimizer step, so the
        # SiT below trains on the latent the VAE had when this step began, as in the authors' code.
        with record_function("repae/update1_vae"):
            z, recon, vae_metrics = vae_update(state, x, y, draws, targets)
        metrics.update(vae_metrics)
        # Update 2: the discriminator, on the real images and update 1's detached reconstructions.
        if gan_is_on(state):
            with record_function("repae/update2_disc"):
                metrics.update(discriminator_update(state, x, recon))
    elif latents is not None:
        z = (latents[0] + latents[1] * draws.eps).float()
    else:
        with record_function("repae/encode"):
            z, _, _ = encode_posterior_sample(state, x, draws.eps, trains=False)
    # Update 3: the SiT and its projector on z.detach(), with update 1's t and noise; then its EMA.
    with record_function("repae/update3_sit"):
        metrics.update(sit_update(state, z, y, draws, targets))
        if state.optimizers.scaler is not None:
            state.optimizers.scaler.update()
        update_ema(nets.ema, nets.sit, cfg.ema_decay)
    metrics.update(latent_statistics(z))
    return metrics


def finish_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """A step fp16's GradScaler skipped is reported as skipped (`skipped/<update>` = 1), and its gradient norm,
    the norm of an overflowed gradient that no optimizer used, is left out: it would read as a diverging run."""
    for update in UPDATES:
        if metrics.get(SKIP_PREFIX + update):
            metrics.pop(f"grad_norm/{update}", None)
    return metrics


def step_metrics(metrics: dict[str, Tensor], update: str, clipped: tuple[Tensor, Tensor | None]) -> None:
    """Record an update's gradient norm and, with fp16's scaler, whether the scaler skipped it."""
    norm, skipped = clipped
    metrics[f"grad_norm/{update}"] = norm
    if skipped is not None:
        metrics[SKIP_PREFIX + update] = skipped


def vae_update(state, x: Tensor, y: Tensor, draws: StepDraws, targets: list[Tensor] | None):
    """Update 1: the VAE learns from the losses the recipe routes to it; SiT and projector are untouched.
    Returns (z, reconstruction, metrics): z and the reconstruction detached, from before the optimizer step."""
    cfg, opt = state.cfg, state.optimizers
    opt.vae.zero_grad(set_to_none=True)
    micro = micro_batches(len(x), cfg.grad_accumulation)
    zs, recons, metrics = [], [], {}
    for sl in micro:
        z, posterior, recon = encode_posterior_sample(state, x[sl], draws.eps[sl], trains=True)
        loss, parts = vae_loss(state, x[sl], y[sl], z, posterior, recon, draws.rows(sl), _rows(targets, sl))
        backward(loss / len(micro), opt.scaler)
        zs.append(z.detach())
        recons.append(recon.detach())
        add_mean(metrics, parts, len(micro))
    step_metrics(metrics, "vae", clip_and_step(opt.vae, state.nets.vae, cfg.grad_clip, opt.scaler,
                                               average_across_processes=True))
    return torch.cat(zs), torch.cat(recons), metrics


def vae_loss(state, x, y, z, posterior, recon, draws: StepDraws, targets):
    """Update 1's loss. The SiT runs frozen and in eval mode: its BatchNorm normalises with the running
    statistics (constants) and the gradient flows through them to z; label dropout is off."""
    cfg, route, nets = state.cfg, step_route(state), state.nets
    parts: dict[str, Tensor] = {}
    with frozen_eval(nets.sit), autocast(cfg.mixed_precision, state.device):
        z_norm = nets.sit.normalize_latent(z)
        x_t = interpolate(z_norm, draws.noise, draws.t)
        if route.vae_gets_diffusion:
            velocity, projected = nets.sit(x_t, draws.t, y)
            parts["diffusion_vae"] = diffusion_loss(velocity, z_norm, draws.noise)
        elif route.vae_gets_repa:
            # the REPA loss needs the hidden state at the alignment depth only: the rest of the SiT is skipped
            _, projected = nets.sit(x_t, draws.t, y, stop_at_depth=cfg.alignment_depth)
        if route.vae_gets_repa:
            parts["repa_vae"] = repa_loss(projected, targets)
    loss = parts.get("diffusion_vae", 0.0) + cfg.vae_align_proj_coeff * parts.get("repa_vae", 0.0)
    if route.vae_reg:
        disc = nets.discriminator if gan_is_on(state) else None
        # the generator term runs the discriminator in train mode, as the reference loss does
        with no_param_grads(disc) if disc is not None else nullcontext():
            reg, reg_parts = vae_regularisation(
                x, recon, kl_loss(posterior), perceptual=nets.perceptual, discriminator=disc,
                l1_weight=cfg.l1_weight, perceptual_weight=cfg.perceptual_weight,
                kl_weight=cfg.kl_weight, gan_weight=cfg.gan_weight)
        loss = loss + reg
        parts.update(reg_parts)
    metrics = {f"loss/{k}": v.detach() for k, v in parts.items()}
    metrics["loss/vae_total"] = loss.detach()
    return loss, metrics


def discriminator_update(state, x: Tensor, recon: Tensor) -> dict[str, Tensor]:
    """Update 2: the PatchGAN's hinge loss on real images and the (detached) reconstruction, in fp32."""
    cfg, opt, disc = state.cfg, state.optimizers, state.nets.discriminator
    opt.disc.zero_grad(set_to_none=True)
    micro = micro_batches(len(x), cfg.grad_accumulation)
    metrics = {}
    for sl in micro:
        with torch.autocast(device_type=x.device.type, enabled=False):
            loss = discriminator_hinge_loss(disc(x[sl].float()), disc(recon[sl].detach().float()))
        backward(loss / len(micro), opt.scaler)
        add_mean(metrics, {"loss/disc": loss.detach()}, len(micro))
    step_metrics(metrics, "disc", clip_and_step(opt.disc, disc, cfg.grad_clip, opt.scaler, average_across_processes=True))
    return metrics


def sit_update(state, z: Tensor, y: Tensor, draws: StepDraws, targets: list[Tensor] | None) -> dict[str, Tensor]:
    """Update 3: SiT + projector on the detached latent, in train mode; the latent BatchNorm tracks batch
    statistics where the recipe lets it. `draws.drop_labels` replaces the SiT's own random label dropout, so
    that N processes draw exactly what one process would."""
    cfg, route, opt, sit = state.cfg, step_route(state), state.optimizers, state.nets.sit
    z = z.detach()                          # the stop-gradient: nothing of this update reaches the VAE
    sit.train()
    if not route.bn_tracks_batches:
        sit.bn.eval()
    opt.sit.zero_grad(set_to_none=True)
    micro = micro_batches(len(z), cfg.grad_accumulation)
    metrics = {}
    for i, sl in enumerate(micro):
        # DDP averages the gradients once, in the backward of the last micro-batch
        last = i == len(micro) - 1
        with nullcontext() if state.sit_ddp is None or last else state.sit_ddp.no_sync():
            d = draws.rows(sl)
            with autocast(cfg.mixed_precision, state.device):
                z_norm = sit.normalize_latent(z[sl])
                # after the REPA stop step the projectors are skipped: no output, no gradient, no cost (recipes
                # without REPA still run them, unused, as they always have: their FLOP count says so)
                stopped = state.route.uses_repa and not route.uses_repa
                velocity, projected = state.sit_forward(interpolate(z_norm, d.noise, d.t), d.t, y[sl],
                                                        force_drop_ids=d.drop_labels, project=not stopped)
                diffusion = diffusion_loss(velocity, z_norm, d.noise)
                parts, loss = {"loss/diffusion": diffusion.detach()}, diffusion
                if route.uses_repa:
                    repa = repa_loss(projected, _rows(targets, sl))
                    loss = loss + cfg.proj_coeff * repa
                    parts["loss/repa"] = repa.detach()
            backward(loss / len(micro), opt.scaler)
        add_mean(metrics, parts, len(micro))
    # the SiT's gradients are averaged across processes by its DistributedDataParallel wrapper
    step_metrics(metrics, "sit", clip_and_step(opt.sit, sit, cfg.grad_clip, opt.scaler, average_across_processes=False))
    return metrics


def repa_is_on(state) -> bool:
    """Whether this step has a REPA term: HASTE's one-shot stop (arXiv 2505.16792) turns it off for good at
    cfg.repa_stop_step (None or 0: never). A Python bool of the step, not a tensor: the CUDA-graph step keys its
    graphs on it (training/cuda_graphs.py), and a compiled SiT sees it as its `project` argument."""
    stop = state.cfg.repa_stop_step
    return not stop or state.step < stop


def step_route(state):
    """The run's routing at this step: the recipe's, without the REPA term once it has stopped."""
    route = state.route
    return route if repa_is_on(state) else replace(route, uses_repa=False, vae_gets_repa=False)


def vae_has_a_loss(route) -> bool:
    """Update 1 runs where some loss reaches the VAE: a repa-e VAE without regularisation has none once REPA
    has stopped, and is then encoded as a frozen one."""
    return route.trains_vae and (route.vae_gets_repa or route.vae_gets_diffusion or route.vae_reg)


def gan_is_on(state) -> bool:
    """The GAN terms start at disc_start (step 0 in the official config, REPAE_FACTS section 1)."""
    return state.route.vae_reg and state.nets.discriminator is not None and state.step >= state.cfg.disc_start


def target_tokens(state, x: Tensor) -> list[Tensor]:
    """The REPA targets of the images: one token tensor per target encoder, computed once per step and shared by
    updates 1 and 3 (no gradient; REPAE_FACTS section 1, step 1)."""
    cfg = state.cfg
    with torch.no_grad(), autocast(cfg.mixed_precision, state.device):
        tokens = state.nets.target_encoder(x).float()
    if cfg.target_norm == "spatial":               # iREPA: the targets' spatial structure, in fp32
        tokens = spatial_normalize(tokens, cfg.target_norm_gamma)
    return [tokens]


def encode_posterior_sample(state, x: Tensor, eps: Tensor, trains: bool):
    """Posterior sample z = mean + std * eps (and the reconstruction when the VAE trains): REPA-E trains on a
    posterior sample, not the mean (REPAE_FACTS section 1, step 2)."""
    vae = state.nets.vae
    with torch.set_grad_enabled(trains), autocast(state.cfg.mixed_precision, state.device):
        _, posterior = encode(vae, x, sample=False)
        z = posterior.mean + posterior.std * eps                      # REPA-E trains on posterior samples
        recon = decode(vae, z) if trains else None
    return z.float(), posterior, recon


def latent_shape(vae, x: Tensor) -> tuple[int, int, int]:
    """(channels, h, w) of the VAE's latent for images x: the shape of the step's noise draws."""
    f = downsample_factor(vae)
    return (latent_channels(vae), x.shape[-2] // f, x.shape[-1] // f)


def latent_statistics(z: Tensor) -> dict[str, Tensor]:
    """Cheap per-step summaries of the latent (Table 1's spatial variance and total variation, per image),
    as device scalars."""
    z = z.detach().float()
    spatial_var = z.flatten(2).var(dim=2).mean()                   # variance over positions, per channel and image
    tv = (z[..., 1:, :] - z[..., :-1, :]).abs().sum((1, 2, 3)) + (z[..., :, 1:] - z[..., :, :-1]).abs().sum((1, 2, 3))
    return {"latent/mean": z.mean(), "latent/std": z.std(), "latent/spatial_var": spatial_var,
            "latent/total_variation": tv.mean()}


def _rows(targets: list[Tensor] | None, sl: slice) -> list[Tensor]:
    """Each target encoder's tokens for one micro-batch."""
    return [t[sl] for t in targets] if targets is not None else []
