"""A pretrained starting VAE for the workshop presets.

Every recipe of the paper starts from a pretrained VAE (SD-VAE, IN-VAE, VA-VAE): the frozen-VAE baselines
train on it, and REPA-E tunes it. No pretrained workshop-sized VAE ships with the packages, so with
`vae_pretrain_steps > 0` the project trains one itself, once, on the run's own dataset with the usual
first-stage objective (L1 reconstruction + KL), and caches it like the workshop target encoder. Without
it, vanilla and repa would train on a frozen random VAE, which is not the baseline the paper compares with.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import trange

from .trained_cache import cached_trained_model
from .vae import build_vae, decode, encode, kl_loss


@dataclass(frozen=True)
class VAEPretraining:
    """Everything that shapes the pretrained weights (with the dataset, seed and steps: the cache key)."""
    spec: str                   # a VAE_CONFIGS name
    in_channels: int
    kl_weight: float = 1e-6
    lr: float = 1e-3
    batch_size: int = 32


def pretrain_vae(images: torch.Tensor, setup: VAEPretraining, *, steps: int, seed: int = 0,
                 progress: bool = True):
    """Train a fresh VAE of `setup.spec` on `images` (in [-1, 1]) with L1 + kl_weight * KL on posterior
    samples (AdamW, cosine lr); returns it frozen in eval mode, and its training stats."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vae = build_vae(setup.spec, in_channels=setup.in_channels)
    opt = torch.optim.AdamW(vae.parameters(), lr=setup.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    t0, l1 = time.time(), float("nan")
    bar = trange(steps, desc="pretraining the workshop VAE", disable=not progress, leave=False)
    for step in bar:
        x = images[torch.randint(0, len(images), (setup.batch_size,), generator=gen)].float()
        _, posterior = encode(vae, x, sample=False)
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon_l1 = (decode(vae, z) - x).abs().mean()
        loss = recon_l1 + setup.kl_weight * kl_loss(posterior)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            l1 = recon_l1.item()
            bar.set_postfix(l1=f"{l1:.4f}")
    return vae.eval().requires_grad_(False), {"final_l1": l1, "seconds": time.time() - t0, "steps": steps}


def pretrained_workshop_vae(spec: str, dataset, *, steps: int, seed: int = 0, kl_weight: float = 1e-6,
                            cache_dir: str | Path | None = None, max_images: int = 20_000, progress: bool = True):
    """The VAE `spec` pretrained on `dataset` for `steps` steps: trained once, then read from the cache.
    Returned in train mode with gradients on, as a freshly built VAE would be."""
    setup = VAEPretraining(spec=spec, in_channels=dataset.channels, kl_weight=kl_weight)
    vae, _ = cached_trained_model(
        "vaes", spec, dataset, setup, seed=seed, steps=steps, max_images=max_images, cache_dir=cache_dir,
        build=lambda s: build_vae(s.spec, in_channels=s.in_channels), load_data=lambda ds, idx: ds.batch(idx),
        fit=lambda images, labels: pretrain_vae(images, setup, steps=steps, seed=seed, progress=progress))
    return vae.train().requires_grad_(True)
