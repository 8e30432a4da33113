"""GroupNorm that keeps the autocast dtype: the memory switch `low_precision_group_norm`.

Under CUDA autocast, torch runs group_norm in float32: each GroupNorm of the VAE returns an fp32 copy of its
activation, the SiLU after it works in fp32 and keeps that copy for its backward, and only the next convolution
casts back to bf16. In the SD-VAE at 256 px those fp32 activations are most of what a repa-e step keeps for
backward: 45 of 61 GB at batch 32, measured by counting the tensors saved for backward with autocast's policy
for group_norm reproduced (benchmarks/activation_memory.py). Here the normalisation runs on the bf16 / fp16
activation itself: torch's kernel still accumulates the mean and variance in fp32, and only the normalised output
is rounded to the autocast dtype, which the next convolution would have done anyway. Without autocast (fp32
runs, the CPU == CUDA and parity tests) it is exactly nn.GroupNorm.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class AutocastDtypeGroupNorm(nn.GroupNorm):
    """nn.GroupNorm (same parameters and state-dict keys) whose output keeps its input's low-precision dtype
    under autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled(x.device.type) or x.dtype == torch.float32:
            return super().forward(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            weight = self.weight.to(x.dtype) if self.weight is not None else None
            bias = self.bias.to(x.dtype) if self.bias is not None else None
            return F.group_norm(x, self.num_groups, weight, bias, self.eps)


def keep_autocast_dtype_in_group_norms(module: nn.Module | None) -> int:
    """Make every nn.GroupNorm of `module` an AutocastDtypeGroupNorm, in place; returns how many. The class is
    swapped on the existing modules, so parameters, hooks and checkpoints are untouched."""
    count = 0
    for m in module.modules() if module is not None else ():
        if type(m) is nn.GroupNorm:
            m.__class__ = AutocastDtypeGroupNorm
            count += 1
    return count
