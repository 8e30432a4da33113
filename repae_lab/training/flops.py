"""Analytic FLOP counts of every network a REPA-E training step runs, and of whole steps per recipe.

How FLOPs are counted (the convention of the MFU literature, e.g. PaLM appendix B):
- A FLOP count is 2 x the multiply-accumulates of every convolution, linear layer and attention matmul
  (Q K^T and A V). Norms, activations, softmax, residual adds, resizes, losses and optimizer updates are
  ignored: they are O(activations) or O(parameters), not O(activations x width), and they are not what a
  GPU's quoted peak measures. (DiT-style papers quote MACs as "Gflops": half of these numbers.)
- Forward passes are counted exactly for the module at hand, on the `meta` device (shapes only, no memory,
  no arithmetic): see `forward_flops`. The SiT uses `count_flops` (below), which agrees with that count.
- Backward passes are not counted separately but priced as multiples of the forward: 2x for a module whose
  weights get gradients (one matmul for the input gradient, one for the weight gradient), 1x for a frozen
  module that a gradient only flows through (input gradients only, e.g. the SiT in the VAE update), 0x
  under no_grad. This slightly overcounts the first layer of a trained module whose input needs no gradient
  (the VAE's conv_in, the SiT's patch embedding): under 2% of any step here, and the usual convention.
- A step's FLOPs are the sum of these passes over the recipe's three updates (`step_flops`), listed pass by
  pass so that the sum can be checked. Everything here is per image; multiply by the batch size.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from ..config import RECIPES, routing
from ..models.sit import SiTConfig

__all__ = [
    "linear_flops", "conv2d_flops", "attention_flops", "forward_flops",
    "sit_flops", "vae_flops", "target_encoder_flops", "discriminator_flops", "perceptual_flops",
    "ComponentFlops", "component_flops", "state_component_flops", "count_flops",
    "Pass", "StepFlops", "step_flops", "STEP_KINDS",
]


# ---------------------------------------------------------------------------------------------------------
# Hand formulas: used by the tests to check the counter, and handy for back-of-envelope numbers.

def linear_flops(in_features: int, out_features: int, tokens: int = 1) -> float:
    """nn.Linear applied to `tokens` vectors."""
    return 2.0 * in_features * out_features * tokens


def conv2d_flops(in_channels: int, out_channels: int, kernel: int | tuple[int, int], out_hw: tuple[int, int],
                 groups: int = 1) -> float:
    """nn.Conv2d producing an out_hw map: every output element is a (in/groups) x kh x kw dot product."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return 2.0 * (in_channels // groups) * kh * kw * out_channels * out_hw[0] * out_hw[1]


def attention_flops(tokens: int, dim: int) -> float:
    """Q K^T and A V over all heads of one sequence: 2 matmuls of tokens x tokens x dim MACs."""
    return 2.0 * 2 * tokens * tokens * dim


# ---------------------------------------------------------------------------------------------------------
# Counting an arbitrary module's forward.

class _Bound(nn.Module):
    """`fn(module, *inputs)` as a module, so that functional_call can swap the module's tensors for meta ones."""

    def __init__(self, module: nn.Module, fn):
        super().__init__()
        self.module = module
        self.fn = fn

    def forward(self, *inputs):
        return self.fn(self.module, *inputs)


def _to_meta(x):
    return torch.empty_like(x, device="meta") if isinstance(x, torch.Tensor) else x


@torch.no_grad()
def forward_flops(module: nn.Module, *inputs, fn=None) -> float:
    """FLOPs of one forward of `module` (or of `fn(module, *inputs)`) on these inputs.

    Why a dispatch-level counter rather than forward hooks on Conv2d/Linear: the attention matmuls of the
    diffusers VAE's mid-block and of timm's ViT run through F.scaled_dot_product_attention, which no module
    hook sees. torch's FlopCounterMode sees every matmul, convolution and attention kernel whatever the
    module tree, and prices each at 2 x MACs (biases, norms and activations at zero), which is our convention.
    The forward runs on the meta device with the module's parameters and buffers swapped for meta tensors
    (torch.func.functional_call): no memory, no arithmetic, the real module untouched, on any device.
    Inputs may be real or meta tensors; only their shapes and dtypes matter.
    """
    bound = _Bound(module, fn if fn is not None else (lambda m, *a: m(*a)))
    tensors = {name: _to_meta(t) for name, t in [*bound.named_parameters(), *bound.named_buffers()]}
    counter = FlopCounterMode(display=False)
    with counter:
        functional_call(bound, tensors, tuple(_to_meta(x) for x in inputs), strict=False)
    return float(counter.get_total_flops())


def _images(channels: int, resolution: int) -> torch.Tensor:
    return torch.empty(1, channels, resolution, resolution, device="meta")


# ---------------------------------------------------------------------------------------------------------
# The components, per image.

def count_flops(cfg: SiTConfig, batch: int = 1, include_projectors: bool = True) -> float:
    """Analytic forward FLOPs, counted as 2 * multiply-accumulates of every Linear/Conv
    (patch embed, t-MLP, adaLN, attention qkv/proj, MLP, projectors, head) plus the two
    attention matmuls (QK^T and AV). Norms, activations, softmax and adds are ignored
    (they are O(T*D), negligible). Note DiT papers quote MACs ("Gflops" = 118.6 for XL/2),
    i.e. half of this number. Projectors only see the tokens once (after alignment_depth)."""
    t, d, p, c = cfg.num_patches, cfg.hidden_size, cfg.patch_size, cfg.in_channels
    h = int(d * cfg.mlp_ratio)
    macs = t * (c * p * p) * d  # patch embed
    macs += 256 * d + d * d  # timestep MLP (per sample, not per token)
    per_block = t * (3 * d * d + d * d + 2 * d * h)  # qkv, proj, fc1, fc2
    per_block += 2 * t * t * d  # QK^T and AV over all heads
    per_block += d * 6 * d  # adaLN modulation (per sample)
    macs += cfg.depth * per_block
    macs += t * d * (p * p * c) + d * 2 * d  # final linear + final adaLN
    if include_projectors and cfg.projector_type == "conv":       # iREPA: one k x k convolution per target
        macs += sum(t * d * cfg.projector_kernel ** 2 * z for z in cfg.z_dims)
    elif include_projectors:
        pd = cfg.projector_dim
        macs += sum(t * (d * pd + pd * pd + pd * z) for z in cfg.z_dims)
    return float(2 * macs * batch)


def sit_flops(cfg: SiTConfig, *, truncated: bool = False, projectors: bool = True) -> float:
    """SiT forward per image: full, or `truncated` after block alignment_depth (the VAE update's REPA pass).

    Delegates to `count_flops`. The truncated pass is the count of a SiT of depth alignment_depth
    minus its final layer (adaLN 2d x d per sample, linear d x p*p*C per token), which it never reaches."""
    if not truncated:
        return count_flops(cfg, batch=1, include_projectors=projectors)
    d, t, p, c = cfg.hidden_size, cfg.num_patches, cfg.patch_size, cfg.in_channels
    final_layer = linear_flops(d, 2 * d) + linear_flops(d, p * p * c, t)
    return count_flops(replace(cfg, depth=cfg.alignment_depth), batch=1, include_projectors=projectors) - final_layer


def vae_flops(vae: nn.Module, resolution: int) -> tuple[float, float]:
    """(encoder, decoder) forward per image: encode = encoder + quant_conv, decode = post_quant_conv + decoder."""
    from ..models.vae import decode, downsample_factor, encode, latent_channels

    x = _images(int(vae.config.in_channels), resolution)
    side = resolution // downsample_factor(vae)
    z = torch.empty(1, latent_channels(vae), side, side, device="meta")
    enc = forward_flops(vae, x, fn=lambda m, x: encode(m, x, sample=True)[0])
    dec = forward_flops(vae, z, fn=lambda m, z: decode(m, z))
    return enc, dec


def target_encoder_flops(encoder: nn.Module, channels: int, resolution: int) -> float:
    """REPA target encoder (DINOv2 ViT or the workshop CNN) on one image, its own resize included."""
    return forward_flops(encoder, _images(channels, resolution))


def discriminator_flops(disc: nn.Module, channels: int, resolution: int) -> float:
    """PatchGAN on one image."""
    return forward_flops(disc, _images(channels, resolution))


def perceptual_flops(perceptual: nn.Module, channels: int, resolution: int) -> float:
    """One call perceptual(recon, x) on one pair: the trunk runs on both images (LPIPS and FeatureDistance)."""
    return forward_flops(perceptual, _images(channels, resolution), _images(channels, resolution))


@dataclass(frozen=True)
class ComponentFlops:
    """Forward FLOPs per image of each network a step can run (0 where the run has no such network)."""
    sit: float                # full SiT without the REPA projectors
    sit_truncated: float      # SiT up to and including block alignment_depth, without projectors
    sit_projectors: float     # the REPA projector MLPs (all target encoders), on every token once
    vae_encoder: float = 0.0
    vae_decoder: float = 0.0
    target_encoder: float = 0.0
    discriminator: float = 0.0
    perceptual: float = 0.0   # one perceptual(recon, x) call: the trunk on both images

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def component_flops(sit_cfg: SiTConfig, *, resolution: int, image_channels: int, vae: nn.Module | None = None,
                    target_encoder: nn.Module | None = None, discriminator: nn.Module | None = None,
                    perceptual: nn.Module | None = None) -> ComponentFlops:
    """Count every component that is given. Modules may live on any device, the meta device included."""
    enc, dec = vae_flops(vae, resolution) if vae is not None else (0.0, 0.0)
    full = sit_flops(sit_cfg, projectors=False)
    return ComponentFlops(
        sit=full,
        sit_truncated=sit_flops(sit_cfg, truncated=True, projectors=False),
        sit_projectors=sit_flops(sit_cfg) - full,
        vae_encoder=enc, vae_decoder=dec,
        target_encoder=target_encoder_flops(target_encoder, image_channels, resolution) if target_encoder is not None else 0.0,
        discriminator=discriminator_flops(discriminator, image_channels, resolution) if discriminator is not None else 0.0,
        perceptual=perceptual_flops(perceptual, image_channels, resolution) if perceptual is not None else 0.0,
    )


def state_component_flops(state) -> ComponentFlops:
    """component_flops for the networks of a training.state.TrainState."""
    nets = state.nets
    return component_flops(nets.sit.cfg, resolution=state.cfg.resolution,
                           image_channels=int(nets.vae.config.in_channels), vae=nets.vae,
                           target_encoder=nets.target_encoder, discriminator=nets.discriminator,
                           perceptual=nets.perceptual)


# ---------------------------------------------------------------------------------------------------------
# A training step = a list of passes.

@dataclass(frozen=True)
class Pass:
    """`forward` forwards of `component` plus a backward worth `backward` forwards of it (per image)."""
    update: str       # which optimizer update runs it: targets, vae, disc, sit
    what: str         # what the pass is, in words
    component: str    # a ComponentFlops field
    forward: float    # number of forwards (2: the discriminator on real and on fake images)
    backward: float   # 2 per trained forward, 1 per forward a gradient only flows through, 0 without grad
    flops: float      # per image: component forward FLOPs x (forward + backward)


@dataclass(frozen=True)
class StepFlops:
    kind: str
    passes: tuple[Pass, ...]

    @property
    def per_image(self) -> float:
        return sum(p.flops for p in self.passes)

    def total(self, batch: int) -> float:
        return self.per_image * batch

    def by_component(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.passes:
            out[p.component] = out.get(p.component, 0.0) + p.flops
        return out

    def table(self) -> str:
        rows = [f"{p.update:<7} {p.what:<58} {p.component:<15} {p.forward:>3g}F+{p.backward:<3g}B "
                f"{p.flops / 1e9:>10.3f} GFLOP" for p in self.passes]
        rows.append(f"{'':<7} {'total per image':<58} {'':<15} {'':>8} {self.per_image / 1e9:>10.3f} GFLOP")
        return "\n".join(rows)


# The step kinds: the five recipes, and the SiT step alone on cached latents and cached target features
# (REPAE_FACTS section 6: training a SiT on an exported E2E-VAE's latents; the 40% MFU goal).
STEP_KINDS = (*RECIPES, "repa-cached")


def step_flops(cfg, comp: ComponentFlops, kind: str | None = None) -> StepFlops:
    """The passes one train_step of `kind` (default cfg.recipe) runs, in the order of training.step.train_step.

    `cfg` supplies the routing (config.recipes) and the loss weights that switch the GAN and perceptual
    terms on; the GAN term is taken to be on (step >= disc_start) whenever a discriminator exists."""
    kind = kind or cfg.recipe
    if kind not in STEP_KINDS:
        raise ValueError(f"unknown step kind '{kind}'; choose one of {', '.join(STEP_KINDS)}")
    cached = kind == "repa-cached"
    route = routing(replace(cfg, recipe="repa" if cached else kind))
    c = comp.as_dict()
    passes: list[Pass] = []

    def add(update, what, component, forward, backward):
        if c[component] > 0 and forward > 0:
            passes.append(Pass(update, what, component, forward, backward, c[component] * (forward + backward)))

    if route.uses_repa and not cached:
        add("targets", "target encoder on x (no grad)", "target_encoder", 1, 0)
    if route.trains_vae:
        add("vae", "VAE encode x (trained)", "vae_encoder", 1, 2)
        add("vae", "VAE decode z (trained)", "vae_decoder", 1, 2)
    elif not cached:
        add("targets", "VAE encode x (frozen, no grad)", "vae_encoder", 1, 0)

    if route.trains_vae:
        # Update 1: the SiT is frozen; a gradient flows through it to the latent only.
        if route.vae_gets_diffusion:
            add("vae", "SiT full forward, gradient to z only (frozen)", "sit", 1, 1)
            add("vae", "REPA projectors" + (", gradient to z only" if route.vae_gets_repa else " (output unused)"),
                "sit_projectors", 1, 1 if route.vae_gets_repa else 0)
        elif route.vae_gets_repa:
            add("vae", "SiT to alignment depth, gradient to z only (frozen)", "sit_truncated", 1, 1)
            add("vae", "REPA projectors, gradient to z only (frozen)", "sit_projectors", 1, 1)
        if route.vae_reg:
            if cfg.perceptual_weight > 0:
                # the trunk runs on recon and on x; only the recon half carries a gradient (to the decoder)
                add("vae", "perceptual(recon, x), gradient to recon (frozen)", "perceptual", 1, 0.5)
            gan = cfg.gan_weight > 0 and comp.discriminator > 0
            if gan:
                add("vae", "discriminator on recon, gradient to recon (frozen)", "discriminator", 1, 1)
                # Update 2: the discriminator is trained on the real images and the detached reconstruction.
                add("disc", "discriminator on x and recon (trained)", "discriminator", 2, 4)
    # Update 3: SiT + projectors on z.detach(); the projectors get a gradient only with the REPA loss.
    add("sit", "SiT full forward (trained)", "sit", 1, 2)
    add("sit", "REPA projectors" + (" (trained)" if route.uses_repa else " (output unused)"),
        "sit_projectors", 1, 2 if route.uses_repa else 0)
    return StepFlops(kind, tuple(passes))
