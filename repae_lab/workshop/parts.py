"""The pieces the exercises hand to the learner: one REPA-E step's inputs (StepBatch), the VAE's forward with its
regularisation (vae_forward), and tiny modules to try the gradient routing on (tiny_modules).

The gradient-routing exercise asks for two functions with these signatures (the checker calls them on tiny
real modules and inspects which parameters get a gradient):

    vae_update_loss(vae, sit, batch) -> loss      update 1: backward() of it trains the VAE
    sit_update_loss(sit, z, batch) -> loss        update 3: backward() of it trains the SiT and its projector;
                                                  z is the VAE's latent, still attached to the VAE's graph
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..losses import vae_regularisation
from ..models.sit import SiT, sit_config
from ..models.vae import build_vae, encode, kl_loss, decode

# the workshop preset's VAE regularisation without the perceptual and GAN terms (REPAE_FACTS section 1)
L1_WEIGHT, KL_WEIGHT = 1.0, 1e-6


@dataclass
class StepBatch:
    """Everything random in one REPA-E step, drawn once and shared by its updates (training/step.py StepDraws)."""
    x: Tensor          # images (N, C, H, W) in [-1, 1]
    y: Tensor          # class labels (N,)
    targets: Tensor    # the target encoder's tokens of x (N, T, D), no gradient
    eps: Tensor        # the posterior sample's noise: z = mean + std * eps, (N, c, h, w)
    t: Tensor          # interpolant times (N,), t = 1 is pure noise
    noise: Tensor      # the interpolant's noise (N, c, h, w)


def vae_forward(vae, batch: StepBatch) -> tuple[Tensor, Tensor]:
    """(z, reg): the posterior sample z = mean + std * eps of the batch's images (with the VAE's graph), and the
    VAE's regularisation L1(reconstruction) + 1e-6 KL."""
    _, posterior = encode(vae, batch.x, sample=False)
    z = posterior.mean + posterior.std * batch.eps
    reg, _ = vae_regularisation(batch.x, decode(vae, z), kl_loss(posterior), perceptual=None, discriminator=None,
                                l1_weight=L1_WEIGHT, perceptual_weight=0.0, kl_weight=KL_WEIGHT, gan_weight=0.0)
    return z, reg


def tiny_modules(seed: int = 0, n: int = 4, *, target_dim: int = 16) -> tuple[torch.nn.Module, SiT, StepBatch]:
    """A small workshop VAE (16x16 -> 4x8x8), a 2-block SiT on its 16 tokens with a REPA projector, and a batch
    for them: the gradient-routing checker's test bench (about 0.1 s per update on a CPU)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    vae = build_vae("workshop-16")
    sit = SiT(sit_config("W-tiny", depth=2, hidden_size=32, num_heads=2, input_size=8, patch_size=2, in_channels=4,
                         num_classes=10, class_dropout_prob=0.0, alignment_depth=1, projector_dim=32,
                         z_dims=(target_dim,)))
    with torch.no_grad():   # adaLN-Zero starts every branch at zero; a little weight makes every path carry signal
        for p in sit.parameters():
            if p.requires_grad and p.dim() > 1 and not p.abs().sum():
                p.normal_(0, 0.02, generator=g)
        sit.final_layer.linear.bias.normal_(0, 0.02, generator=g)
        sit.init_latent_stats(torch.randn(4, generator=g) * 0.3, torch.rand(4, generator=g) + 0.5)
    batch = StepBatch(x=torch.rand(n, 1, 16, 16, generator=g) * 2 - 1, y=torch.randint(0, 10, (n,), generator=g),
                      targets=torch.randn(n, 16, target_dim, generator=g), eps=torch.randn(n, 4, 8, 8, generator=g),
                      t=torch.rand(n, generator=g), noise=torch.randn(n, 4, 8, 8, generator=g))
    return vae.train(), sit.train(), batch
