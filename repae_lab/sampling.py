"""Samplers for the linear-interpolant SiT, and the pipeline from noise to ADM-format image files.

The interpolant (REPAE_FACTS section 3): x_t = (1 - t) x + t eps with t = 1 pure noise, and the network
predicts the velocity v = eps - x. Every sampler here is a small function

    sample_xxx(model, noise, labels, ts, *, callback=None, disable=None, generator=None)

of a velocity callable `model(x, t, y) -> v` (t of shape (N,)), the starting noise, the class labels and a
decreasing time grid `ts` that ends at 0 (made by `ode_times` / `sde_times`). The model is any callable, so
the samplers are tested on a Gaussian mixture whose exact velocity is known in closed form
(tests/test_sampling.py); `sit_velocity` adapts a SiT and adds classifier-free guidance with an interval.

Randomness comes only from `generator`: a torch.Generator, or a list of them, one per sample (what
`generate_images` uses, so that an image depends on its seed and index, never on the batch it fell in).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
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
    steps = _check_steps(steps)
    t_start, t_end = _check_t("t_start", t_start), _check_t("t_end", t_end)
    if t_end >= t_start:
        raise SamplingError(f"the time grid runs from noise to data, so t_start ({t_start}) must exceed t_end ({t_end}).")
    return torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64)


def sde_times(steps: int, t_start: float = 1.0, t_last: float = 0.04) -> Tensor:
    """REPA-E's SDE grid: `steps` points on a linspace t_start -> t_last, then 0 (the final deterministic step).

    steps - 1 stochastic steps and one mean step, so `steps` velocity evaluations, as the authors' 250."""
    steps = _check_steps(steps)
    if steps < 2:
        raise SamplingError("the SDE sampler needs steps >= 2 (at least one stochastic step and the final mean step).")
    t_start, t_last = _check_t("t_start", t_start), _check_t("t_last", t_last)
    if not 0.0 < t_last < t_start:
        raise SamplingError(f"the SDE grid needs 0 < t_last < t_start (the score is singular at t = 0), "
                            f"got t_start={t_start}, t_last={t_last}.")
    return torch.cat([torch.linspace(t_start, t_last, steps, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])


def _check_steps(steps) -> int:
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
    t = _bcast(t, x)
    return -((1 - t) * v + x) / t


def diffusion_coefficient(t: Tensor) -> Tensor:
    """w(t) = 2t: the squared noise scale of the reverse SDE the authors sample with."""
    return 2 * t


def sde_drift(v: Tensor, x: Tensor, t: Tensor) -> Tensor:
    """Drift of the reverse-time SDE dx = [v - w/2 * score] dt + sqrt(w) dW (dt < 0) with w = 2t.

    For any w(t) the forward SDE dx = [v + w/2 * score] dt + sqrt(w) dW keeps the interpolant's marginals
    (the two score terms cancel in Fokker-Planck); running it backwards flips the sign of the score term."""
    return v - 0.5 * _bcast(diffusion_coefficient(t), x) * score_from_velocity(v, x, t)


def _bcast(t: Tensor, x: Tensor) -> Tensor:
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


# ---------------------------------------------------------------------------------------------------------
# Classifier-free guidance with a guidance interval.

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
        return torch.where(_bcast(mask, x).bool(), v_guided, v_cond)


def sit_velocity(sit, *, cfg_scale: float = 1.0, interval=(0.0, 1.0)) -> GuidedVelocity:
    """A SiT as a velocity callable for the samplers (eval mode assumed: no label dropout), with CFG.

    The SiT also returns the projected alignment tokens; sampling needs only the velocity."""
    def velocity(x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        return sit(x, t, y)[0]
    if cfg_scale < 0 or math.isnan(cfg_scale):
        raise SamplingError(f"the guidance scale must be >= 0 (1 = no guidance), got {cfg_scale}.")
    return GuidedVelocity(velocity, sit.cfg.num_classes, cfg_scale, interval)


# ---------------------------------------------------------------------------------------------------------
# Labels.

def class_balanced_labels(n: int, num_classes: int, seed: int = 0) -> Tensor:
    """n labels with every class n // C or n // C + 1 times, shuffled by seed (REPA-E's newer generate.py).

    When C does not divide n, which classes get the extra sample is drawn by the seed too, not taken from the
    low class ids."""
    n = check_n(n)
    if num_classes < 1:
        raise SamplingError(f"num_classes must be at least 1, got {num_classes}.")
    gen = torch.Generator().manual_seed(int(seed))
    per_class, extra = divmod(n, num_classes)
    counts = torch.full((num_classes,), per_class, dtype=torch.long)
    counts[torch.randperm(num_classes, generator=gen)[:extra]] += 1
    labels = torch.repeat_interleave(torch.arange(num_classes), counts)
    return labels[torch.randperm(n, generator=gen)]


def check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SamplingError(f"the number of images n must be a positive integer, got {n!r}.")
    return int(n)


# ---------------------------------------------------------------------------------------------------------
# From a trained run to images.

@dataclass(frozen=True)
class SamplingSpec:
    """Everything that decides which images come out, recorded beside every sample set and evaluation."""
    sampler: str = "sde"
    steps: int | None = None              # None: 250 for sde, 50 for euler / heun
    cfg_scale: float = 1.0                # 1 = no guidance
    interval: tuple[float, float] = (0.0, 1.0)  # guidance only where low <= t <= high
    t_start: float = 1.0
    t_end: float | None = None            # None: 0.04 (then a mean step to 0) for sde, 0 for the ODEs
    seed: int = 0
    labels: str = "class-balanced"        # class-balanced | given
    ema: bool = True                      # sample with the EMA SiT (the paper's protocol)

    def __post_init__(self):
        check_sampler(self.sampler)
        object.__setattr__(self, "interval", check_interval(self.interval))
        object.__setattr__(self, "steps", DEFAULT_STEPS[self.sampler] if self.steps is None else _check_steps(self.steps))
        time_grid(self.sampler, self.steps, self.t_start, self.t_end)   # validates the range now, not mid-run

    def grid(self) -> Tensor:
        return time_grid(self.sampler, self.steps, self.t_start, self.t_end)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["interval"] = list(self.interval)
        return d


def images_to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] float (N, C, H, W) -> uint8 (N, C, H, W), rounding to nearest: the PNG the ADM evaluator reads."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def generate_images(sit, vae, labels: Tensor, spec: SamplingSpec = SamplingSpec(), *, batch_size: int = 64,
                    device=None, first_index: int = 0, progress: bool = True, callback=None) -> Tensor:
    """Sample one image per label with `sit` and decode with `vae`: uint8 (N, C, H, W), on the CPU.

    Latents come out normalised (the SiT's input space); the SiT's latent BatchNorm running statistics map them
    back to VAE latents (z = x * sqrt(var + eps) + mean) before decoding. Image i uses per-sample generators
    seeded from (spec.seed, first_index + i), so a sample set can be made in pieces or on several GPUs and agree."""
    from .models.vae import decode
    from .recipes import frozen_eval

    if batch_size < 1:
        raise SamplingError(f"batch_size must be at least 1, got {batch_size}.")
    device = torch.device(device) if device is not None else next(sit.parameters()).device
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    if labels.numel() == 0:
        raise SamplingError("no labels given: pass one label per image to generate.")
    num_classes = sit.cfg.num_classes
    if labels.min() < 0 or labels.max() > num_classes:
        raise SamplingError(f"labels must lie in [0, {num_classes}] ({num_classes} is the null class), "
                            f"got {labels.min().item()}..{labels.max().item()}.")
    c, size = sit.cfg.in_channels, sit.cfg.input_size
    ts = spec.grid()
    sample_fn = SAMPLERS[spec.sampler]
    out = []
    with frozen_eval(sit), frozen_eval(vae):
        model = sit_velocity(sit, cfg_scale=spec.cfg_scale, interval=spec.interval)
        bar = tqdm(total=len(labels), desc=f"sampling ({spec.sampler}, {spec.steps} steps)", disable=not progress,
                   unit="img", leave=False)
        for start in range(0, len(labels), batch_size):
            y = labels[start:start + batch_size].to(device)
            gens = per_sample_generators(spec.seed, range(first_index + start, first_index + start + len(y)))
            noise = randn((len(y), c, size, size), gens, device=device)
            x = sample_fn(model, noise, y, ts, callback=callback, disable=True, generator=gens)
            z = sit.denormalize_latent(x)
            out.append(images_to_uint8(decode(vae, z)).cpu())
            bar.update(len(y))
        bar.close()
    return torch.cat(out)


def sample_run(state, n: int, spec: SamplingSpec = SamplingSpec(), *, labels: Tensor | None = None,
               batch_size: int = 64, progress: bool = True) -> tuple[Tensor, Tensor]:
    """n images from a loaded run (`train.load_run`): EMA SiT by default, class-balanced labels by default."""
    n = check_n(n)
    if labels is None:
        labels = class_balanced_labels(n, state.dataset.num_classes, spec.seed)
    elif len(labels) != n:
        raise SamplingError(f"{len(labels)} labels given for n={n} images; pass one label per image.")
    sit = state.ema if spec.ema else state.sit
    images = generate_images(sit, state.vae, labels, spec, batch_size=batch_size, device=state.device,
                             progress=progress)
    return images, torch.as_tensor(labels).long()


# ---------------------------------------------------------------------------------------------------------
# Files: the ADM evaluator's .npz (uint8 NHWC RGB under arr_0) and a PNG grid.

def to_adm_layout(images: Tensor) -> np.ndarray:
    """uint8 (N, C, H, W) -> uint8 (N, H, W, 3): grey images are repeated to RGB, as the evaluator wants RGB."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise SamplingError(f"expected uint8 images (N, 1 or 3, H, W), got {tuple(images.shape)} {images.dtype}.")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())


def save_npz(path: str | Path, images: Tensor, labels: Tensor, protocol: dict | None = None) -> Path:
    """Write arr_0 (uint8 NHWC) and labels (int64) to `path`, and the protocol to the .json beside it.

    Written to a temporary name and renamed, like everything in a run directory."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, arr_0=to_adm_layout(images), labels=torch.as_tensor(labels).long().numpy())
    os.replace(tmp, path)
    if protocol is not None:
        from .rundir import atomic_write_text
        atomic_write_text(path.with_suffix(".json"), json.dumps(protocol, indent=1))
    return path


def load_npz(path: str | Path, channels: int | None = None) -> tuple[Tensor, Tensor | None]:
    """An ADM-format sample file -> (uint8 (N, C, H, W), labels or None); `channels=1` takes the grey channel."""
    path = Path(path)
    if not path.is_file():
        raise SamplingError(f"sample file '{path}' does not exist; write one with `repae-lab sample RUN --out FILE.npz`.")
    with np.load(path) as data:
        if "arr_0" not in data:
            raise SamplingError(f"'{path}' has no arr_0: not an ADM-format sample file.")
        arr = data["arr_0"]
        labels = torch.from_numpy(data["labels"]).long() if "labels" in data else None
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise SamplingError(f"'{path}': arr_0 must be uint8 (N, H, W, C), got {arr.dtype} {arr.shape}.")
    images = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    if channels == 1 and images.shape[1] == 3:
        images = images[:, :1]
    return images, labels


def image_grid(images: Tensor, labels: Tensor | None = None, *, max_images: int = 100, min_tile: int = 64) -> Tensor:
    """uint8 (N, C, H, W) -> one uint8 (C, H', W') grid, sorted by label so each row reads as a class.

    Small images (the workshop's 16 px digits) are enlarged by an integer factor with nearest-neighbour
    so that a pixel stays a visible square."""
    images = images[:max_images]
    if labels is not None:
        order = torch.argsort(torch.as_tensor(labels)[:max_images], stable=True)
        images = images[order]
    n, c, h, w = images.shape
    scale = max(1, min_tile // max(h, w))
    if scale > 1:
        images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        h, w = h * scale, w * scale
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pad = 2
    grid = torch.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), 255, dtype=torch.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = images[k]
    return grid


def save_grid(path: str | Path, images: Tensor, labels: Tensor | None = None, **kwargs) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid(images, labels, **kwargs)
    arr = grid[0].numpy() if grid.shape[0] == 1 else grid.permute(1, 2, 0).numpy()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    Image.fromarray(arr).save(tmp)
    tmp.replace(path)
    return path


def write_samples(out: str | Path, images: Tensor, labels: Tensor, protocol: dict) -> dict[str, Path]:
    """The files of `repae-lab sample`: OUT.npz (ADM layout + labels), OUT.png (a grid), OUT.json (protocol)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".npz", ".png") else out
    npz = save_npz(stem.with_suffix(".npz"), images, labels, protocol)
    png = save_grid(stem.with_suffix(".png"), images, labels)
    return {"npz": npz, "png": png, "json": stem.with_suffix(".json")}


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


def sample_to_files(run: str | Path, n: int, out: str | Path, spec: SamplingSpec = SamplingSpec(), *,
                    checkpoint: str | Path | None = None, batch_size: int = 64, progress: bool = True) -> dict:
    """`repae-lab sample`: n images from a run's newest good checkpoint into OUT.npz / OUT.png / OUT.json."""
    import time

    from .train import load_run

    n = check_n(n)
    state = load_run(run, checkpoint=checkpoint, progress=progress)
    t0 = time.time()
    images, labels = sample_run(state, n, spec, batch_size=batch_size, progress=progress)
    seconds = time.time() - t0
    protocol = {"run": str(Path(run).resolve()), "step": state.step, "recipe": state.cfg.recipe, "n": n,
                "dataset": state.dataset.name, "sampling": spec.to_dict(),
                "labels": f"{spec.labels}, shuffled by seed {spec.seed}", "model": "ema" if spec.ema else "sit",
                "seconds": round(seconds, 2), "images_per_second": round(n / max(seconds, 1e-9), 2),
                "device": str(state.device)}
    files = write_samples(out, images, labels, protocol)
    return {"files": files, "protocol": protocol}
