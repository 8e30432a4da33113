"""Samplers for the linear-interpolant SiT: pure functions of (model, noise, labels, time grid), and the grids.

The interpolant (REPAE_FACTS section 3): x_t = (1 - t) x + t eps with t = 1 pure noise, and the network
predicts the velocity v = eps - x. Every sampler here is a small function

    sample_xxx(model, noise, labels, ts, *, callback=None, disable=None, generator=None)

of a velocity callable `model(x, t, y) -> v` (t of shape (N,)), the starting noise, the class labels and a
decreasing time grid `ts` that ends at 0 (made by `ode_times` / `sde_times`). The model is any callable, so
the samplers are tested on a Gaussian mixture whose exact velocity is known in closed form
(tests/test_sampling.py); sampling/guidance.py adapts a SiT and adds classifier-free guidance with an interval,
and sampling/generate.py runs the whole pipeline from a run's SiT to images.

Randomness comes only from `generator`: a torch.Generator, or a list of them, one per sample (what
`generate_images` uses, so that an image depends on its seed and index, never on the batch it fell in).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

Velocity = Callable[[Tensor, Tensor, Tensor], Tensor]


class SamplingError(ValueError):
    """A sampling argument a user supplied is wrong; the message names it and the fix."""


# ---------------------------------------------------------------------------------------------------------
# Time grids. Kept apart from the samplers (as k-diffusion keeps its sigma schedules) so that a notebook can
# try other grids with the same sampler.

def _check_t(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise SamplingError(f"{name} must lie in [0, 1] (t = 1 is pure noise, t = 0 the data), got {value}.")
    return value


def ode_times(steps: int, t_start: float = 1.0, t_end: float = 0.0) -> Tensor:
    """`steps` equal steps from t_start down to t_end: the grid of the Euler and Heun ODE samplers (float64)."""
    steps = check_steps(steps)
    t_start, t_end = _check_t("t_start", t_start), _check_t("t_end", t_end)
    if t_end >= t_start:
        raise SamplingError(f"the time grid runs from noise to data, so t_start ({t_start}) must exceed t_end ({t_end}).")
    return torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64)


def sde_times(steps: int, t_start: float = 1.0, t_last: float = 0.04) -> Tensor:
    """REPA-E's SDE grid: `steps` points on a linspace t_start -> t_last, then 0 (the final deterministic step).

    steps - 1 stochastic steps and one mean step, so `steps` velocity evaluations, as the authors' 250."""
    steps = check_steps(steps)
    if steps < 2:
        raise SamplingError("the SDE sampler needs steps >= 2 (at least one stochastic step and the final mean step).")
    t_start, t_last = _check_t("t_start", t_start), _check_t("t_last", t_last)
    if not 0.0 < t_last < t_start:
        raise SamplingError(f"the SDE grid needs 0 < t_last < t_start (the score is singular at t = 0), "
                            f"got t_start={t_start}, t_last={t_last}.")
    return torch.cat([torch.linspace(t_start, t_last, steps, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])


def check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise SamplingError(f"steps must be a positive integer, got {steps!r}.")
    return int(steps)


# ---------------------------------------------------------------------------------------------------------
# Noise.

def per_sample_generators(seed: int, indices: Sequence[int] | Tensor) -> list[torch.Generator]:
    """One CPU generator per sample index: sample i draws the same noise whatever its batch or device."""
    return [torch.Generator().manual_seed((int(seed) * 1_000_003 + int(i) * 7_919 + 12_345) % (2 ** 63))
            for i in (indices.tolist() if torch.is_tensor(indices) else indices)]


def randn(shape: Sequence[int], generator, *, device=None, dtype=torch.float32) -> Tensor:
    """Standard normal noise from a generator, a list of per-sample generators (one row each), or None.

    Per-sample draws are made on the CPU and moved: the same seed gives the same images on every device."""
    shape = tuple(shape)
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} per-sample generators for a batch of {shape[0]}")
        rows = [torch.randn(shape[1:], generator=g, dtype=torch.float32) for g in generator]
        return torch.stack(rows).to(device=device, dtype=dtype)
    if generator is not None and generator.device.type != torch.device(device or "cpu").type:
        return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------------------
# The linear path's score and the reverse SDE's drift.

def score_from_velocity(v: Tensor, x: Tensor, t: Tensor) -> Tensor:
    """grad log p_t(x) from the velocity, for x_t = (1 - t) x0 + t eps (t > 0).

    E[eps | x_t] = (1 - t) v + x_t (because (1 - t) + t = 1), and the score is -E[eps | x_t] / t."""
    t = broadcast_time(t, x)
    return -((1 - t) * v + x) / t


def diffusion_coefficient(t: Tensor) -> Tensor:
    """w(t) = 2t: the squared noise scale of the reverse SDE the authors sample with."""
    return 2 * t


def sde_drift(v: Tensor, x: Tensor, t: Tensor) -> Tensor:
    """Drift of the reverse-time SDE dx = [v - w/2 * score] dt + sqrt(w) dW (dt < 0) with w = 2t.

    For any w(t) the forward SDE dx = [v + w/2 * score] dt + sqrt(w) dW keeps the interpolant's marginals
    (the two score terms cancel in Fokker-Planck); running it backwards flips the sign of the score term."""
    return v - 0.5 * broadcast_time(diffusion_coefficient(t), x) * score_from_velocity(v, x, t)


def broadcast_time(t: Tensor, x: Tensor) -> Tensor:
    return t.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


def _t_batch(t: Tensor, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype)


def _check_grid(ts: Tensor) -> Tensor:
    ts = torch.as_tensor(ts, dtype=torch.float64).flatten().cpu()
    if len(ts) < 2 or not bool((ts[1:] < ts[:-1]).all()):
        raise SamplingError("the time grid must hold at least two strictly decreasing times; use ode_times / sde_times.")
    if ts[0] > 1 or ts[-1] < 0:
        raise SamplingError(f"the time grid must lie in [0, 1], got {ts[0].item()} .. {ts[-1].item()}.")
    return ts


# ---------------------------------------------------------------------------------------------------------
# Samplers. Each returns the sample at ts[-1]; `callback` gets a dict per step for notebooks and the playground:
# x (state before the step), i, t, t_next, v (the velocity used), denoised (x - t v, the model's guess of the data).

@torch.no_grad()
def sample_euler(model: Velocity, noise: Tensor, labels: Tensor, ts: Tensor, *, callback=None,
                 disable: bool | None = None, generator=None) -> Tensor:
    """Euler's method on the probability-flow ODE dx/dt = v(x, t). Deterministic; `generator` is unused."""
    ts = _check_grid(ts)
    x = noise
    for i in tqdm(range(len(ts) - 1), disable=disable, desc="euler", leave=False):
        t, t_next = ts[i], ts[i + 1]
        v = model(x, _t_batch(t, x), labels)
        if callback is not None:
            callback({"x": x, "i": i, "t": float(t), "t_next": float(t_next), "v": v, "denoised": x - float(t) * v})
        x = x + float(t_next - t) * v
    return x


@torch.no_grad()
def sample_heun(model: Velocity, noise: Tensor, labels: Tensor, ts: Tensor, *, callback=None,
                disable: bool | None = None, generator=None) -> Tensor:
    """Heun's second-order method on the probability-flow ODE; the last step is plain Euler.

    The last step ends at t = 0, where a trained network's velocity is least reliable and a correction there buys
    nothing (EDM and the authors' sampler skip it too): 2 * steps - 1 velocity evaluations."""
    ts = _check_grid(ts)
    x = noise
    last = len(ts) - 2
    for i in tqdm(range(len(ts) - 1), disable=disable, desc="heun", leave=False):
        t, t_next = ts[i], ts[i + 1]
        dt = float(t_next - t)
        v = model(x, _t_batch(t, x), labels)
        x_euler = x + dt * v
        v_used = v
        if i < last:
            v_next = model(x_euler, _t_batch(t_next, x), labels)
            v_used = 0.5 * (v + v_next)
        if callback is not None:
            callback({"x": x, "i": i, "t": float(t), "t_next": float(t_next), "v": v_used, "denoised": x - float(t) * v})
        x = x + dt * v_used if i < last else x_euler
    return x


@torch.no_grad()
def sample_euler_maruyama(model: Velocity, noise: Tensor, labels: Tensor, ts: Tensor, *, callback=None,
                          disable: bool | None = None, generator=None) -> Tensor:
    """Euler-Maruyama on the reverse SDE with w(t) = 2t (REPA-E's evaluation sampler), last step deterministic.

    Every step but the last adds sqrt(w(t) |dt|) noise; the last step (from ts[-2], 0.04 by default, to ts[-1])
    takes only the drift, the mean of the transition, so the output carries no fresh noise."""
    ts = _check_grid(ts)
    if ts[-2] <= 0:
        raise SamplingError("the SDE sampler needs every time but the last to be > 0 (the score is singular at "
                            "t = 0); use sde_times.")
    x = noise
    last = len(ts) - 2
    for i in tqdm(range(len(ts) - 1), disable=disable, desc="sde", leave=False):
        t, t_next = ts[i], ts[i + 1]
        dt = float(t_next - t)
        t_vec = _t_batch(t, x)
        v = model(x, t_vec, labels)
        drift = sde_drift(v, x, t_vec)
        if callback is not None:
            callback({"x": x, "i": i, "t": float(t), "t_next": float(t_next), "v": v, "denoised": x - float(t) * v})
        x = x + dt * drift
        if i < last:
            g = math.sqrt(float(diffusion_coefficient(t)) * abs(dt))
            x = x + g * randn(x.shape, generator, device=x.device, dtype=x.dtype)
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {"sde": sample_euler_maruyama, "euler": sample_euler, "heun": sample_heun}
DEFAULT_STEPS = {"sde": 250, "euler": 50, "heun": 50}


def check_sampler(name: str) -> str:
    if name not in SAMPLERS:
        raise SamplingError(f"unknown sampler '{name}'; choose one of {', '.join(SAMPLERS)}.")
    return name


def time_grid(sampler: str, steps: int | None = None, t_start: float = 1.0, t_end: float | None = None) -> Tensor:
    """The grid a named sampler runs on by default: SDE linspace 1 -> 0.04 then 0; ODE linspace 1 -> 0."""
    check_sampler(sampler)
    steps = DEFAULT_STEPS[sampler] if steps is None else steps
    if sampler == "sde":
        return sde_times(steps, t_start, 0.04 if t_end is None else t_end)
    return ode_times(steps, t_start, 0.0 if t_end is None else t_end)
