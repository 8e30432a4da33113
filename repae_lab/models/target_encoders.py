"""REPA target encoders: frozen networks whose patch tokens the SiT learns to align with.

Two kinds share one interface (images in [-1, 1] -> tokens (N, T, D)):
- `dinov2-b`: DINOv2 ViT-B/14 through timm, the paper's target (REPAE_FACTS section 1): ImageNet
  normalisation, bicubic resize to 224 (a 16x16 patch grid), the final-norm patch tokens, no CLS.
- `workshop`: a small CNN the project trains itself, by supervised classification on the run's own
  dataset, and caches on disk. No pretrained weights exist offline, and a randomly initialised target
  would teach the SiT nothing; a classifier's feature map carries the class semantics REPA needs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import trange

from .trained_cache import cached_trained_model, classifier_accuracy

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------------------
# The workshop encoder: conv trunk -> feature map pooled to the SiT's token grid.

@dataclass(frozen=True)
class WorkshopEncoderConfig:
    in_channels: int = 1
    num_classes: int = 10
    widths: tuple[int, ...] = (32, 64, 128)   # one stage per width; every stage after the first halves the size
    embed_dim: int = 128                      # token width
    grid: int = 4                             # tokens come out on a grid x grid lattice


class WorkshopEncoder(nn.Module):
    """Small CNN whose last feature map, pooled to `grid` x `grid`, gives the REPA target tokens."""

    def __init__(self, cfg: WorkshopEncoderConfig):
        super().__init__()
        self.cfg = cfg
        stages, c_in = [], cfg.in_channels
        for i, width in enumerate(cfg.widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(
                nn.Conv2d(c_in, width, 3, stride, 1), nn.GroupNorm(8, width), nn.GELU(),
                nn.Conv2d(width, width, 3, 1, 1), nn.GroupNorm(8, width), nn.GELU(),
            ))
            c_in = width
        self.stages = nn.ModuleList(stages)
        self.to_tokens = nn.Conv2d(c_in, cfg.embed_dim, 1)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)
        self.embed_dim = cfg.embed_dim

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output, for the workshop perceptual loss."""
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def token_map(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.to_tokens(self.feature_maps(x)[-1])            # (N, D, h, w)
        return F.adaptive_avg_pool2d(fmap, self.cfg.grid)          # (N, D, grid, grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.token_map(x).flatten(2).transpose(1, 2)        # (N, grid*grid, D)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.token_map(x).mean(dim=(2, 3)))


def _random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Cheap augmentation: pad with the background value and crop back at a random offset."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[:, :, dy:dy + h, dx:dx + w]


def train_workshop_encoder(images: torch.Tensor, labels: torch.Tensor, cfg: WorkshopEncoderConfig, *,
                           seed: int = 0, steps: int = 400, batch_size: int = 128, lr: float = 2e-3,
                           progress: bool = True) -> tuple[WorkshopEncoder, dict]:
    """Train the encoder as a classifier (AdamW, cosine lr); returns it frozen in eval mode with its train stats."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = WorkshopEncoder(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    max_shift = max(1, images.shape[-1] // 16)
    t0 = time.time()
    bar = trange(steps, desc="training workshop target encoder", disable=not progress, leave=False)
    for _ in bar:
        idx = torch.randint(0, len(images), (batch_size,), generator=gen)
        x = _random_shift(images[idx].float(), gen, max_shift)
        loss = F.cross_entropy(model.logits(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval().requires_grad_(False)
    stats = {"train_accuracy": classifier_accuracy(model.logits, images, labels), "seconds": time.time() - t0,
             "steps": steps}
    return model, stats


def workshop_encoder_for(dataset, *, grid: int, seed: int = 0, cache_dir: str | Path | None = None,
                         embed_dim: int = 128, widths: tuple[int, ...] = (32, 64, 128), steps: int = 300,
                         max_images: int = 20_000, progress: bool = True) -> WorkshopEncoder:
    """The workshop encoder for a dataset, trained once and then loaded from the on-disk cache."""
    cfg = WorkshopEncoderConfig(in_channels=dataset.channels, num_classes=dataset.num_classes,
                                widths=tuple(widths), embed_dim=embed_dim, grid=grid)
    model, _ = cached_trained_model(
        "encoders", "workshop", dataset, cfg, seed=seed, steps=steps, max_images=max_images, cache_dir=cache_dir,
        build=WorkshopEncoder, load_data=lambda ds, idx: ds.batch(idx),
        fit=lambda images, labels: train_workshop_encoder(images, labels, cfg, seed=seed, steps=steps,
                                                          progress=progress))
    return model


# ---------------------------------------------------------------------------------------------------------
# DINOv2 through timm.

class DinoV2Target(nn.Module):
    """DINOv2 patch tokens after the final norm (x_norm_patchtokens), images resized to `image_size`."""

    def __init__(self, model: nn.Module, image_size: int = 224):
        super().__init__()
        self.model = model
        self.image_size = image_size
        self.embed_dim = model.embed_dim
        self.num_prefix = getattr(model, "num_prefix_tokens", 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = ((x + 1) / 2 - self.mean) / self.std
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        tokens = self.model.forward_features(x)                    # (N, prefix + T, D), final norm applied
        return tokens[:, self.num_prefix:]


def dinov2_b(weights: str | None = None, *, resolution: int = 256, pretrained: bool = True,
             name: str = "vit_base_patch14_dinov2.lvd142m") -> DinoV2Target:
    """DINOv2 ViT-B/14 (no registers). `weights`: None for timm's hub weights, a local .safetensors/.pth file,
    or a timm hub id such as 'hf-hub:timm/vit_base_patch14_dinov2.lvd142m'. `name` picks another DINOv2 size."""
    import timm           # heavy to import, and only the DINOv2 target needs it

    image_size = 224 * resolution // 256                          # 256 px -> 224 -> 16x16 tokens of 14 px
    kwargs = dict(img_size=image_size, num_classes=0, dynamic_img_size=False)
    try:
        if weights is None:
            model = timm.create_model(name, pretrained=pretrained, **kwargs)
        elif weights.startswith("hf-hub:"):
            model = timm.create_model(weights, pretrained=pretrained, **kwargs)
        else:
            if not Path(weights).is_file():
                raise FileNotFoundError(f"DINOv2 weights file '{weights}' does not exist")
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)), **kwargs)
    except Exception as err:
        raise RuntimeError(
            f"could not load DINOv2-B/14 ({weights or name}): {err}. Offline machines cannot download it: "
            f"pass target_encoder_weights=PATH to a local weights file, or use target_encoder=workshop.") from err
    return DinoV2Target(model.eval().requires_grad_(False), image_size)


TARGET_ENCODERS = {"workshop": "workshop_encoder_for", "dinov2-b": "dinov2_b"}


def build_target_encoder(cfg, dataset, *, grid: int, progress: bool = True) -> nn.Module:
    """The REPA target named by the run config, frozen, in eval mode."""
    if cfg.target_encoder == "workshop":
        return workshop_encoder_for(dataset, grid=grid, seed=cfg.seed, cache_dir=cfg.cache_dir,
                                    steps=cfg.encoder_steps, progress=progress)
    if cfg.target_encoder == "dinov2-b":
        enc = dinov2_b(cfg.target_encoder_weights, resolution=cfg.resolution)
        tokens_side = enc.image_size // 14
        if tokens_side != grid:
            raise ValueError(f"DINOv2 gives a {tokens_side}x{tokens_side} token grid but the SiT has {grid}x{grid} tokens; "
                             f"choose patch_size so that latent_size / patch_size == {tokens_side} (e.g. SiT-XL/2 on SD-VAE).")
        return enc
    raise ValueError(f"unknown target_encoder '{cfg.target_encoder}'; choose one of {', '.join(TARGET_ENCODERS)}.")
