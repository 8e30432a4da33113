"""The mechanics every optimizer update shares: AdamW per module, backward through fp16's scaler, clipping,
the step, mixed-precision autocast, the SiT's EMA, and reading a step's metrics back from the device.

On a GPU nothing in a step waits for the device until its very end: losses, gradient norms and latent
statistics stay on the device as 0-d tensors and are read back together, once (`read_metrics`), and the
step's random draws go up from pinned memory without a blocking copy (`to_device`). The CPU can then queue
the next kernels while the GPU is still busy, which is where a large share of a small-batch step's time goes.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import Config
from .distributed import average_gradients

# the names optimizer states are saved under in a checkpoint (checkpoint compatibility: never rename)
OPTIMIZER_NAMES = ("sit", "vae", "disc")


@dataclass
class Optimizers:
    """One AdamW per trained network (REPAE_FACTS section 2) and fp16's gradient scaler."""
    sit: torch.optim.Optimizer
    vae: torch.optim.Optimizer | None = None       # only recipes that train the VAE
    disc: torch.optim.Optimizer | None = None      # only when the GAN term is on
    scaler: torch.amp.GradScaler | None = None     # only with mixed_precision=fp16

    def named(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers that exist, under their checkpoint names."""
        return {name: opt for name in OPTIMIZER_NAMES if (opt := getattr(self, name)) is not None}

    def base_lr(self, cfg: Config, name: str) -> float:
        return {"sit": cfg.lr, "vae": cfg.vae_lr, "disc": cfg.disc_lr}[name]


def adamw(cfg: Config, params, lr: float, device) -> torch.optim.Optimizer:
    """AdamW with the run's betas, eps and weight decay (REPAE_FACTS section 2), fused where torch has a fused
    kernel: one kernel for all parameters, and (unlike the per-tensor CPU path, which calls .item() on each step
    count) nothing that reads the device back. Under CUDA graphs it must also be capturable (its step counts
    live on the device)."""
    return torch.optim.AdamW(params, lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps,
                             weight_decay=cfg.weight_decay, fused=torch.device(device).type in ("cuda", "cpu"),
                             capturable=cfg.cuda_graphs)


# the optimizer settings that belong to the process running, not to the checkpoint: a run resumed with another
# device or with CUDA graphs switched on or off keeps its own
RUNTIME_OPTIMIZER_FLAGS = ("fused", "capturable", "foreach", "differentiable")


def with_runtime_flags(saved_groups: list[dict], opt: torch.optim.Optimizer) -> list[dict]:
    """A checkpoint's param_groups with this process's runtime flags, so loading them changes no speed switch."""
    return [{**saved, **{k: live[k] for k in RUNTIME_OPTIMIZER_FLAGS if k in live}}
            for saved, live in zip(saved_groups, opt.param_groups)]


def make_optimizers(cfg: Config, route, sit: nn.Module, vae: nn.Module, disc: nn.Module | None, device) -> Optimizers:
    """AdamW for each network `route` trains; a frozen VAE is put in eval mode with its gradients off."""
    opts = Optimizers(sit=adamw(cfg, [p for p in sit.parameters() if p.requires_grad], cfg.lr, device))
    if route.trains_vae:
        opts.vae = adamw(cfg, vae.parameters(), cfg.vae_lr, device)
        if disc is not None:
            opts.disc = adamw(cfg, disc.parameters(), cfg.disc_lr, device)
    else:
        vae.eval().requires_grad_(False)
    if cfg.mixed_precision == "fp16":
        opts.scaler = torch.amp.GradScaler(torch.device(device).type)
    return opts


def autocast(precision: str, device: torch.device):
    """The forward passes' mixed precision (`mixed_precision`: no, bf16, fp16). Inside a CUDA graph capture
    autocast's cache of weight casts is off: a captured graph cannot hold it (torch.cuda.graph's documentation),
    and the casts it would reuse are recorded into the graph anyway."""
    if precision == "no":
        return nullcontext()
    capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16,
                          cache_enabled=not capturing)


def backward(loss: torch.Tensor, scaler) -> None:
    """fp16 scales the loss so that small gradients do not underflow (the scaler unscales before clipping)."""
    (scaler.scale(loss) if scaler is not None else loss).backward()


def clip_and_step(opt: torch.optim.Optimizer, module: nn.Module, max_norm: float, scaler, *,
                  average_across_processes: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Average gradients over processes (unless DDP already did), unscale, clip to `max_norm` (1.0 per module,
    REPAE_FACTS section 2), step.

    Returns (the pre-clip gradient norm, whether fp16's scaler skipped this step) as device tensors: reading them
    here would make the CPU wait for the backward pass. The second is None without a scaler."""
    params = [p for p in module.parameters() if p.requires_grad]
    if average_across_processes:
        average_gradients(params)
    if scaler is not None:
        scaler.unscale_(opt)
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if scaler is None:
        opt.step()
        return norm.detach(), None
    scaler.step(opt)
    return norm.detach(), skipped_by_scaler(scaler, opt, norm)


def skipped_by_scaler(scaler, opt: torch.optim.Optimizer, norm: torch.Tensor) -> torch.Tensor:
    """1.0 when fp16's GradScaler found an inf or NaN gradient and skipped `opt`'s step (it then halves its scale:
    normal at the start of fp16 training, REPAE_FACTS section 2 trains in fp16), else 0.0; on the device.
    The scaler's own record, read before `scaler.update()` clears it; a non-finite norm where torch keeps no
    record (the same condition: the scaler skips exactly when a gradient is not finite)."""
    try:
        found = list(scaler._found_inf_per_device(opt).values())
    except (AttributeError, KeyError):
        found = []
    if not found:
        return (~torch.isfinite(norm)).float()
    return torch.stack([f.to(norm.device).float().reshape(()) for f in found]).amax()


def add_mean(sums: dict[str, torch.Tensor], metrics: dict[str, torch.Tensor], k: int) -> None:
    """Accumulate one micro-batch's metrics into means over k micro-batches (still on the device)."""
    for key, value in metrics.items():
        sums[key] = sums[key] + value / k if key in sums else value / k


def micro_batches(n: int, k: int) -> list[slice]:
    """k equal slices of n rows (config validation guarantees k divides each process's share)."""
    size = n // k
    return [slice(i, i + size) for i in range(0, n, size)]


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


def read_metrics(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """Device scalars -> Python floats in one transfer: the only point where a step waits for the GPU."""
    if not metrics:
        return {}
    values = torch.stack([v.detach().float().reshape(()) for v in metrics.values()]).tolist()
    return dict(zip(metrics, values))


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """A host tensor on `device` without making the CPU wait for the GPU's queue: a plain host-to-GPU copy
    synchronises the stream, a copy from pinned memory does not (the caching host allocator keeps the
    pinned block alive until the copy is done)."""
    device = torch.device(device)
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
