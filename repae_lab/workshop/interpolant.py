"""Checker of exercise 1: the linear interpolant x_t = (1 - t) x + t eps (t = 1 is pure noise) and the velocity
target eps - x that the SiT learns to predict (REPAE_FACTS section 3)."""
from __future__ import annotations

import math
from typing import Callable

import torch

from .verdict import Verdict, Wrong, as_tensor, call, close, finite, run_checks


def _cases():
    g = torch.Generator().manual_seed(11)
    x, noise = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    # as many samples as the image is wide: a time vector that broadcasts over the last axis raises no error
    x8, noise8 = torch.randn(8, 4, 8, 8, generator=g), torch.randn(8, 4, 8, 8, generator=g)
    t8 = torch.rand(8, generator=g)
    return x, noise, t, x8, noise8, t8


def _per_sample(t, x):
    return t.view(-1, *([1] * (x.ndim - 1)))


def check_interpolation(interpolate: Callable, velocity_target: Callable) -> Verdict:
    """Run `interpolate(x, noise, t)` and `velocity_target(x, noise)` on latents with known answers: t = 0 is the
    data, t = 1 the noise, linear in between, one t per sample; the velocity is d x_t / d t."""
    def body(right):
        x, noise, t, x8, noise8, t8 = _cases()
        if not callable(interpolate) or not callable(velocity_target):
            raise Wrong("pass your two functions themselves: check_interpolation(interpolate, velocity_target).",
                        "not_callable")
        inputs = (x.clone(), noise.clone(), t.clone())
        try:
            out = call(interpolate, *inputs, what="interpolate", case="four latents, t = 0, 0.25, 0.5, 1")
        except Wrong as wrong:
            if "must match the size" in wrong.message or "broadcast" in wrong.message:
                raise Wrong("interpolate fails when t holds one time per sample (shape (N,)) and x is (N, C, H, W): "
                            "reshape t so that it broadcasts over each sample's image.", "t_broadcast") from None
            raise
        out = finite(as_tensor(out, "interpolate"), "interpolate")
        if not (close(inputs[0], x, 0, 0) and close(inputs[1], noise, 0, 0) and close(inputs[2], t, 0, 0)):
            raise Wrong("interpolate changed its inputs in place (an in-place op such as mul_ or +=): return a new "
                        "tensor and leave x, noise and t as they were.", "in_place")
        if out.shape != x.shape:
            raise Wrong(f"interpolate returned shape {tuple(out.shape)} for latents of shape {tuple(x.shape)}: "
                        f"x_t has the shape of x.", "shape")
        if close(out[0], noise[0]) and close(out[3], x[3]):
            raise Wrong("at t = 0 you return the noise and at t = 1 the data: the direction is reversed. In this "
                        "convention (the paper's) t = 0 is the clean latent and t = 1 is pure noise.", "reversed")
        if not close(out[0], x[0]):
            raise Wrong("at t = 0, x_t must be the clean latent x itself.", "t0")
        right.append("t = 0 gives the data")
        if not close(out[3], noise[3]):
            raise Wrong("at t = 1, x_t must be pure noise (no trace of x left).", "t1")
        right.append("t = 1 gives the noise")
        quarter = out[1]
        vp = math.cos(math.pi / 8) * x[1] + math.sin(math.pi / 8) * noise[1]
        sqrt_mix = math.sqrt(0.75) * x[1] + math.sqrt(0.25) * noise[1]
        if close(quarter, vp) or close(quarter, sqrt_mix):
            raise Wrong("at t = 0.25 your x_t is a variance-preserving mix; REPA-E's SiT uses the straight line "
                        "between x and the noise, whose weights add up to 1 and are linear in t.", "not_linear")
        if not (close(quarter, 0.75 * x[1] + 0.25 * noise[1]) and close(out[2], 0.5 * (x[2] + noise[2]))):
            raise Wrong("the endpoints are right but x_t in between is not on the straight line from x to the "
                        "noise (try t = 0.25 by hand).", "not_linear")
        right.append("linear in t")
        out8 = finite(as_tensor(call(interpolate, x8, noise8, t8, what="interpolate", case="eight latents"),
                                "interpolate"), "interpolate")
        expected8 = (1 - _per_sample(t8, x8)) * x8 + _per_sample(t8, x8) * noise8
        if not close(out8, expected8):
            raise Wrong("with 8 samples of width 8 your t is applied along the image's last axis instead of per "
                        "sample: reshape t so that sample i uses t[i] everywhere in its image.", "t_broadcast")
        right.append("one time per sample")

        v = finite(as_tensor(call(velocity_target, x.clone(), noise.clone(), what="velocity_target"),
                             "velocity_target"), "velocity_target")
        if v.shape != x.shape:
            raise Wrong(f"velocity_target returned shape {tuple(v.shape)} for latents of shape {tuple(x.shape)}.",
                        "shape")
        if close(v, x - noise):
            raise Wrong("your velocity points from the noise to the data; the target is d x_t / d t, and x_t moves "
                        "towards the noise as t grows.", "velocity_sign")
        if close(v, noise):
            raise Wrong("that is the noise itself (epsilon prediction); the SiT here predicts the velocity, the "
                        "rate at which x_t changes with t.", "epsilon")
        if close(v, -x) or close(v, x):
            raise Wrong("the velocity depends on the noise too: it is how fast x_t moves as t grows.", "velocity")
        if not close(v, noise - x):
            rate, yours = (noise - x)[1].flatten()[0].item(), v[1].flatten()[0].item()
            raise Wrong(f"velocity_target is not the rate at which x_t changes with t: for the first value of "
                        f"sample 1, x_t changes by {rate:.3f} per unit of t, and your velocity says {yours:.3f}.",
                        "velocity")
        right.append("velocity = d x_t / d t")
        return "both are right: x_t runs in a straight line from the data (t = 0) to the noise (t = 1), and " \
               "the velocity target is its constant speed along that line."
    return run_checks("interpolation", body)
