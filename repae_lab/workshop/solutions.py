"""Reference solutions of the workshop's exercises, shown only on request (`show_solution("repa_loss")`).

Each one computes what the library computes in training (tests/test_workshop.py compares them with
repae_lab/losses.py and repae_lab/training/step.py), written the way a learner would write it in a cell.
"""
from __future__ import annotations

import inspect

import torch.nn.functional as F

from ..losses import diffusion_loss, interpolate as library_interpolate, repa_loss as library_repa_loss
from ..models.modes import frozen_eval
from .parts import vae_forward


# ---------------------------------------------------------------------------------------------------------
# Exercise 1: the interpolant and the velocity target

def interpolate(x, noise, t):
    t = t.view(-1, *([1] * (x.ndim - 1)))          # one time per sample, broadcast over the image
    return (1 - t) * x + t * noise


def velocity_target(x, noise):
    return noise - x                                # d x_t / d t of the line from x (t = 0) to noise (t = 1)


# ---------------------------------------------------------------------------------------------------------
# Exercise 2: the REPA loss, for one target encoder

def repa_loss(projected, target):
    cos = (F.normalize(projected, dim=-1) * F.normalize(target, dim=-1)).sum(-1)   # (N, T): one per token
    return -cos.mean(1).mean()                      # mean over tokens, then over the batch


# ---------------------------------------------------------------------------------------------------------
# Exercise 3: the gradient routing of the REPA-E step (updates 1 and 3; update 2 trains the discriminator)

def vae_update_loss(vae, sit, batch):
    z, reg = vae_forward(vae, batch)
    with frozen_eval(sit):                          # no SiT parameter learns here; BatchNorm uses running stats
        z_norm = sit.normalize_latent(z)
        x_t = library_interpolate(z_norm, batch.noise, batch.t)
        _, projected = sit(x_t, batch.t, batch.y, stop_at_depth=sit.cfg.alignment_depth)
        repa = library_repa_loss(projected, [batch.targets])
    return reg + 1.5 * repa                         # no diffusion loss: it would collapse the latent


def sit_update_loss(sit, z, batch):
    z = z.detach()                                  # the stop-gradient: nothing of this loss reaches the VAE
    sit.train()                                     # BatchNorm normalises with (and tracks) the batch statistics
    z_norm = sit.normalize_latent(z)
    x_t = library_interpolate(z_norm, batch.noise, batch.t)
    velocity, projected = sit(x_t, batch.t, batch.y)
    return diffusion_loss(velocity, z_norm, batch.noise) + 0.5 * library_repa_loss(projected, [batch.targets])


# ---------------------------------------------------------------------------------------------------------
# Exercise 4: reading a collapse off the probes

def collapsed(first, last):
    return last["spatial_var"] < first["spatial_var"] / 10   # the latent's detail, relative to where it started


SOLUTIONS = {
    "interpolation": (interpolate, velocity_target),
    "repa_loss": (repa_loss,),
    "gradient_routing": (vae_update_loss, sit_update_loss),
    "collapse_reading": (collapsed,),
}


def solution(name: str):
    """The reference function(s) of an exercise: one function, or a tuple where the exercise asks for two."""
    if name not in SOLUTIONS:
        raise KeyError(f"no exercise named {name!r}; the exercises are: {', '.join(SOLUTIONS)}")
    fns = SOLUTIONS[name]
    return fns[0] if len(fns) == 1 else fns


def solution_source(name: str) -> str:
    if name not in SOLUTIONS:
        return f"No exercise is named {name!r}; choose one of: {', '.join(SOLUTIONS)}."
    return "\n\n".join(inspect.getsource(fn) for fn in SOLUTIONS[name]).rstrip() + "\n"


def show_solution(name: str) -> None:
    """Print the reference solution of an exercise (interpolation, repa_loss, gradient_routing,
    collapse_reading); only on request, so that nobody sees it by accident."""
    print(solution_source(name), end="")


