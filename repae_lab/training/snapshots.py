"""Snapshots of the fixed probe set: everything the latent-space probes and widgets need, after the fact.

Each snapshot holds, for the same class-balanced probe images at every step:
  latents          VAE posterior means (N, C, h, w)
  latents_norm     the same through the SiT's latent BatchNorm (running statistics)
  sit_tokens_tXX   SiT hidden tokens after the alignment depth at noise level t (deterministic noise per image)
  target_tokens    the REPA target encoder's tokens (when the recipe has one)
  recons           reconstructions of the first `snapshot_recons` images (float16)
  labels, bn_mean, bn_var
Token tensors larger than TOKEN_BUDGET elements are mean-pooled over tokens (info['pooled'] says so), so
paper-sized runs keep snapshots in the tens of megabytes.
"""
from __future__ import annotations

from typing import Any

import torch

from ..losses import interpolate
from ..models.modes import frozen_eval
from ..models.vae import decode, encode

TOKEN_BUDGET = 1 << 24


def _hidden_at_depth(sit, x_t, t, y) -> torch.Tensor:
    """The hidden state after block `alignment_depth` (before the projector), captured with a forward hook."""
    captured = {}
    block = sit.blocks[sit.cfg.alignment_depth - 1]
    handle = block.register_forward_hook(lambda m, i, o: captured.__setitem__("h", o))
    try:
        null = torch.full_like(y, sit.cfg.num_classes)       # unconditional: the features should not see the label
        sit(x_t, t, null, stop_at_depth=sit.cfg.alignment_depth)
    finally:
        handle.remove()
    return captured["h"]


def _fit(tokens: torch.Tensor, n_images: int) -> tuple[torch.Tensor, bool]:
    if tokens.numel() > TOKEN_BUDGET:
        return tokens.mean(1).half(), True
    return tokens.half(), False


def take_snapshot(state, batch_size: int = 256) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The snapshot of a training run's live SiT and VAE at its current step."""
    cfg, nets = state.cfg, state.nets
    return snapshot_tensors(nets.sit, nets.vae, state.dataset, state.probe_indices, target_encoder=nets.target_encoder,
                            snapshot_t=cfg.snapshot_t, recons=cfg.snapshot_recons, seed=cfg.seed, step=state.step,
                            recipe=cfg.recipe, device=state.device, batch_size=batch_size,
                            sit_model="live SiT in eval mode, null-class label")


@torch.no_grad()
def snapshot_tensors(sit, vae, dataset, indices: torch.Tensor, *, target_encoder=None, snapshot_t=(0.25, 0.5, 0.75),
                     recons: int = 64, seed: int = 0, step: int = 0, recipe: str = "", device=None,
                     batch_size: int = 256, sit_model: str = "") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The snapshot tensors of the probe images `indices` of `dataset` through `sit` and `vae` (also used for runs
    that were not trained here, e.g. imported released models)."""
    device = torch.device(device) if device is not None else next(sit.parameters()).device
    outs: dict[str, list[torch.Tensor]] = {}
    gen = torch.Generator().manual_seed(seed + 12_345)       # same noise for the same image at every step
    with frozen_eval(sit), frozen_eval(vae):
        for chunk in indices.split(batch_size):
            x, y = dataset.batch(chunk)
            x, y = x.to(device), y.to(device)
            z, _ = encode(vae, x, sample=False)
            z = z.float()
            z_norm = sit.normalize_latent(z)
            outs.setdefault("latents", []).append(z.cpu())
            outs.setdefault("latents_norm", []).append(z_norm.cpu())
            outs.setdefault("labels", []).append(y.cpu())
            for t_val in snapshot_t:
                noise = torch.randn(z.shape, generator=gen).to(device)
                t = torch.full((len(x),), float(t_val), device=device)
                h = _hidden_at_depth(sit, interpolate(z_norm, noise, t), t, y)
                outs.setdefault(f"sit_tokens_t{int(round(t_val * 100)):02d}", []).append(h.float().cpu())
            if target_encoder is not None:
                outs.setdefault("target_tokens", []).append(target_encoder(x).float().cpu())
        tensors = {k: torch.cat(v) for k, v in outs.items()}
        pooled = {}
        for k in list(tensors):
            if "tokens" in k:
                tensors[k], pooled[k] = _fit(tensors[k], len(indices))
        n_rec = min(recons, len(indices))
        if n_rec:
            tensors["recons"] = decode(vae, tensors["latents"][:n_rec].to(device)).clamp(-1, 1).half().cpu()
    tensors["indices"] = indices.clone()
    tensors["bn_mean"] = sit.bn.running_mean.detach().cpu().clone()
    tensors["bn_var"] = sit.bn.running_var.detach().cpu().clone()
    info = {"step": step, "recipe": recipe, "snapshot_t": list(snapshot_t), "pooled": pooled,
            "alignment_depth": sit.cfg.alignment_depth, "sit_model": sit_model}
    return tensors, info
