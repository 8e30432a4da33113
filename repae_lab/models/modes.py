"""Running a module frozen: the two context managers every update, sampler and probe uses to borrow a network
without changing it."""
from __future__ import annotations

from contextlib import contextmanager

import torch.nn as nn


@contextmanager
def frozen_eval(module: nn.Module):
    """Run a module in eval mode with no parameter gradients, then restore both exactly."""
    was_training = {m: m.training for m in module.modules()}
    grads = {p: p.requires_grad for p in module.parameters()}
    module.eval()
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for m, mode in was_training.items():
            m.training = mode
        for p, flag in grads.items():
            p.requires_grad_(flag)


@contextmanager
def no_param_grads(module: nn.Module):
    """Parameters get no gradient (inputs still do); the module keeps its train/eval mode."""
    grads = {p: p.requires_grad for p in module.parameters()}
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in grads.items():
            p.requires_grad_(flag)
