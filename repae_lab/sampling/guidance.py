"""Classifier-free guidance with a guidance interval (REPAE_FACTS section 3), and a SiT as a velocity callable."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .samplers import SamplingError, Velocity, broadcast_time



def check_interval(interval) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise SamplingError(f"the guidance interval must be two numbers LOW,HIGH in [0, 1], got {interval!r}.") from None
    if not (0.0 <= low <= high <= 1.0):
        raise SamplingError(f"the guidance interval must satisfy 0 <= LOW <= HIGH <= 1, got [{low}, {high}]; "
                            f"e.g. 0,0.65 guides only the less noisy steps (REPA-E SiT-XL/2), 0,1 guides everywhere.")
    return low, high


class GuidedVelocity:
    """v = v_null + scale * (v_cond - v_null) where low <= t <= high, the conditional v elsewhere.

    Guiding the velocity equals guiding the SDE drift, which is affine in v at a fixed x with the same
    coefficients for both branches. Steps outside the interval cost one forward pass, steps inside run the
    conditional and null-class halves as one doubled batch. `calls` counts forward passes and their sizes."""

    def __init__(self, net: Velocity, null_class: int, scale: float = 1.0, interval=(0.0, 1.0)):
        self.net, self.null_class, self.scale = net, int(null_class), float(scale)
        self.low, self.high = check_interval(interval)
        self.calls: list[int] = []

    def guided(self, t: Tensor) -> Tensor:
        return (t >= self.low) & (t <= self.high) if self.scale != 1.0 else torch.zeros_like(t, dtype=torch.bool)

    def __call__(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        mask = self.guided(t)
        if not bool(mask.any()):
            self.calls.append(len(x))
            return self.net(x, t, y)
        null = torch.full_like(y, self.null_class)
        self.calls.append(2 * len(x))
        v_cond, v_null = self.net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
        v_guided = v_null + self.scale * (v_cond - v_null)
        return torch.where(broadcast_time(mask, x).bool(), v_guided, v_cond)


def sit_velocity(sit, *, cfg_scale: float = 1.0, interval=(0.0, 1.0)) -> GuidedVelocity:
    """A SiT as a velocity callable for the samplers (eval mode assumed: no label dropout), with CFG.

    Sampling needs only the velocity: the SiT's alignment projectors are skipped."""
    def velocity(x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        return sit(x, t, y, project=False)[0]
    if cfg_scale < 0 or math.isnan(cfg_scale):
        raise SamplingError(f"the guidance scale must be >= 0 (1 = no guidance), got {cfg_scale}.")
    return GuidedVelocity(velocity, sit.cfg.num_classes, cfg_scale, interval)


def parse_interval(text: str) -> tuple[float, float]:
    """'LOW,HIGH' from the command line -> (low, high), checked."""
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    if len(parts) != 2:
        raise SamplingError(f"--interval takes LOW,HIGH (two numbers in [0, 1]), got '{text}'; e.g. --interval 0,0.65.")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise SamplingError(f"--interval takes LOW,HIGH (two numbers in [0, 1]), got '{text}'; e.g. --interval 0,0.65.") from None
    return check_interval((low, high))
