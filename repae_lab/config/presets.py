"""Presets: named starting points for a Config. The workshop ones run on a laptop CPU in minutes; the paper
ones restate REPAE_FACTS sections 2-4. Every key here must be a Config field (checked when resolved)."""
from __future__ import annotations

from typing import Any

_PAPER_COMMON: dict[str, Any] = dict(
    dataset="imagefolder", resolution=256, num_workers=8,
    sit_size="XL", alignment_depth=8, projector_dim=2048, class_dropout_prob=0.1,
    target_encoder="dinov2-b", perceptual="lpips", disc_layers=3, disc_ndf=64,
    steps=400_000, batch_size=256, lr=1e-4, vae_lr=1e-4, disc_lr=1e-4, weight_decay=0.0,
    adam_beta1=0.9, adam_beta2=0.999, adam_eps=1e-8, grad_clip=1.0, ema_decay=0.9999,
    mixed_precision="fp16", proj_coeff=0.5, vae_align_proj_coeff=1.5, bn_momentum=0.1,
    l1_weight=1.0, perceptual_weight=1.0, kl_weight=1e-6, gan_weight=0.1, disc_start=0,
    log_every=100, snapshot_every=10_000, checkpoint_every=10_000, keep_checkpoints=3,
    probe_size=1000, snapshot_recons=16,
)

PRESETS: dict[str, dict[str, Any]] = {
    # digits at 16x16 -> 4x8x8 latent -> 16 tokens with patch 2. The SiT's learning rate is 30x the paper's: its
    # 1e-4 suits SiT-XL at batch 256, and with it this tiny SiT learns no class in 500 steps (its samples were at
    # chance class accuracy); at 3e-3 repa and repa-e draw the requested digit (docs/results.md). The VAE keeps
    # the paper's 1e-4. Samples are judged with guidance 2, as the paper's headline numbers are.
    "workshop": dict(
        dataset="digits", resolution=16, vae="workshop-16", vae_pretrain_steps=300, sit_size="W-tiny", patch_size=2,
        alignment_depth=2, projector_dim=256, disc_layers=2, disc_ndf=32,
        steps=500, batch_size=32, lr=3e-3, ema_decay=0.99, log_every=10, snapshot_every=100,
        checkpoint_every=250, probe_size=200, eval_every=100, eval_cfg_scale=2.0,
    ),
    # Fashion-MNIST at 32x32 -> 4x8x8 latent -> 16 tokens with patch 2
    "workshop-fashion": dict(
        dataset="fashion-mnist", resolution=32, vae="workshop-32", vae_pretrain_steps=300, sit_size="W", patch_size=2,
        alignment_depth=2, projector_dim=256, disc_layers=3, disc_ndf=32,
        steps=2000, batch_size=32, ema_decay=0.999, log_every=10, snapshot_every=250,
        checkpoint_every=500, probe_size=500, eval_every=500,
    ),
    # REPA-E SiT-XL/2 on SD-VAE (f8c4): 32x32x4 latent, 256 tokens
    "imagenet256-sit-xl2-sdvae": dict(_PAPER_COMMON, vae="stabilityai/sd-vae-ft-mse", patch_size=2),
    # REPA-E SiT-XL/1 on an f16c32 VAE (IN-VAE / VA-VAE shape): 16x16x32 latent, 256 tokens.
    # The default builds the f16c32 architecture from random weights (REPA-E Tab. 8 trains from scratch too);
    # set vae=FOLDER to start from a pretrained f16 VAE in the diffusers layout.
    "imagenet256-sit-xl1-f16": dict(_PAPER_COMMON, vae="f16c32", patch_size=1),
}
