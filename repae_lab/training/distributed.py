"""Data parallelism on PyTorch's own engine, launched by torchrun (one machine or several).

- Process group from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT); NCCL on GPUs,
  gloo on CPUs, so a 2-process CPU run tests everything that a GPU run relies on.
- Each rank takes rows rank::world of the global batch that a single process would take, and every random
  draw of a step is made for the global batch and then sliced: N processes reproduce 1 process's step.
- Batch statistics (the latent BatchNorm, the PatchGAN's BatchNorms) are reduced across processes by
  GlobalBatchNorm2d, which works on every backend (torch's SyncBatchNorm is CUDA-only).
- The SiT is wrapped in DistributedDataParallel; the VAE and the discriminator, whose forward passes are
  method calls (encode / decode) or several calls before one backward, get their gradients averaged by
  `average_gradients` (one flattened all-reduce per module) before clipping.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn as nn

from ..models.devices import pick_device


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(device_name: str = "auto") -> torch.device:
    """Join the process group torchrun describes (no-op for a plain `python` launch); returns this rank's device."""
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return pick_device(device_name)


def launcher_precision_note(mixed_precision: str) -> str | None:
    """`accelerate launch` sets the environment torchrun does (so init_from_env needs nothing else) and also
    passes its --mixed_precision as ACCELERATE_MIXED_PRECISION. The run's config decides the precision (it
    is what config.json records and what a resume repeats); say so when the launcher asked for another."""
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if launched is None or launched == mixed_precision:
        return None
    fix = (f"add --set mixed_precision={launched} to use it" if launched in ("no", "bf16", "fp16")
           else "repae_lab supports no, bf16 and fp16")
    return (f"accelerate launch asked for mixed precision '{launched}' but the run's config says "
            f"'{mixed_precision}', which is what runs; {fix}.")


def shard(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a global-batch tensor (rows rank, rank + world, ...)."""
    return tensor[rank()::world_size()] if is_distributed() else tensor


def check_batch_size(batch_size: int) -> None:
    if batch_size % world_size():
        raise ValueError(f"batch_size {batch_size} is the global batch and must divide by the {world_size()} "
                         f"processes; use a multiple of {world_size()}.")


def mean_across(values: dict[str, float]) -> dict[str, float]:
    """Average logged scalars over ranks (every rank must call this with the same keys)."""
    if not is_distributed() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / world_size() for k, v in zip(keys, t.tolist())}


def average_gradients(params) -> None:
    """Average .grad over ranks with one all-reduce (what DDP does, for modules DDP cannot wrap here)."""
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def main_rank_first(make):
    """Call `make()` on rank 0 first and on the other ranks after it: for work that fills an on-disk cache
    (a trained workshop encoder or VAE), which the other ranks then read instead of redoing. Returns this
    rank's result."""
    result = None
    for turn in ("main", "others"):
        if (turn == "main") == is_main():
            result = make()
        barrier()
    return result


def shutdown() -> None:
    """Leave the process group cleanly at the end of a successful run: a barrier first, so that no rank
    tears gloo / NCCL down while another is still inside a collective (which can abort the process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast_object(obj):
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the global batch across all processes.

    Same parameters and buffers as nn.BatchNorm2d (checkpoints unchanged). The statistics are gathered with a
    differentiable all-reduce, so gradients through the batch mean / variance are those of one process
    holding the whole batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        xf = x.float()
        count = torch.tensor([xf.numel() / xf.shape[1]], device=x.device, dtype=torch.float32)
        stats = torch.cat([xf.sum(dim=(0, 2, 3)), (xf * xf).sum(dim=(0, 2, 3)), count])
        stats = all_reduce(stats)
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        y = (xf - mean.view(1, c, 1, 1)) / torch.sqrt(var.view(1, c, 1, 1) + self.eps)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y.to(x.dtype)


def globalize_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d in `module` for a GlobalBatchNorm2d in place (parameters and buffers kept)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            child.__class__ = GlobalBatchNorm2d
        else:
            globalize_batchnorm(child)
    return module


def broadcast_parameters(module: nn.Module | None) -> None:
    """Start every process from rank 0's weights (they agree by seeding already; this makes it certain)."""
    if module is None or not is_distributed():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)
