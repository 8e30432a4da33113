"""Training throughput of every recipe: images/s, step time, peak memory, achieved TFLOP/s and MFU.

    python benchmarks/throughput.py --device cpu --sizes workshop                      # about a minute on 2 CPU cores
    python benchmarks/throughput.py --device cuda --sizes paper --recipes repa-cached,repa,repa-e \\
        --precision bf16 --batch 32 --json perf.json                                   # one H100 / H200

Each configuration builds the recipe's networks from random weights (speed does not depend on what the
weights have learned), then times real `recipes.train_step` calls on one synthetic batch that stays on the
device (so data loading is not measured). `repa-cached` is the SiT update of the repa recipe alone, on cached
VAE latents and cached target-encoder features: what training a SiT on an exported E2E-VAE costs
(REPAE_FACTS section 6) and what the issue's 40% MFU goal is about.

FLOPs come from repae_lab.flops (analytic, 2 x MACs of convs / linears / attention matmuls; backward = 2x
forward for trained networks, 1x for frozen ones a gradient flows through). TFLOP/s = FLOPs per step /
median step time; MFU = that / the device's dense peak at the chosen precision (`--peak-tflops` overrides).

Sizes: `workshop` is the workshop preset (digits, 16x16, SiT-W/2), built with train.build_state.
`xl2-sdvae` and `xl1-f16` (`paper` = both) are the two ImageNet-256 presets, built here from synthetic data:
SD-VAE (f8c4) or the f16c32 VAE architecture, SiT-XL/2 or XL/1, DINOv2-B/14 and the 3-layer PatchGAN, all
randomly initialised, and for the perceptual loss LPIPS-VGG's architecture with random weights (LPIPS needs
downloaded VGG16 weights; the network and hence its cost is the same). `--set key=value` overrides config keys
for every size, e.g. `--set sit_size=B` or `--set resolution=64 sit_size=S` to try the paper path on a CPU.

`--variants followups` times the REPA follow-ups (docs/repa_followups.md) against the default step in one run:
every variant's networks are built first and their steps timed in turn, round by round, so that a shared
machine's load falls on all of them alike; each row then gives its step time as a ratio to the default's.

    OMP_NUM_THREADS=1 python benchmarks/throughput.py --device cpu --threads 1 --recipes repa,repa-e \
        --variants followups --steps 20
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # nothing here downloads; fail fast if something tries

# The script runs from a checkout without `pip install -e`; GPU hosts carry diffusers as a wheel, so say
# exactly what is missing instead of failing deep inside an import.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
try:
    import torch
    import torch.nn as nn
    from torch.profiler import record_function
    import timm
    import diffusers  # noqa: F401  (the VAE is diffusers' AutoencoderKL)
    from repae_lab.config import resolve_config
    from repae_lab.training.flops import STEP_KINDS, state_component_flops, step_flops
    from repae_lab.models.discriminator import PatchDiscriminator
    from repae_lab.models.target_encoders import DinoV2Target
    from repae_lab.models.vae import build_vae
    from repae_lab.config import routing
    from repae_lab.training.networks import apply_speed_switches, ema_copy, new_sit, token_grid
    from repae_lab.training.optim import make_optimizers, read_metrics, update_ema
    from repae_lab.training.cuda_graphs import GraphedStep
    from repae_lab.training.state import Networks, TrainState, build_state
    from repae_lab.training.step import StepDraws, sit_update, train_step
except ImportError as err:
    sys.exit(f"benchmarks/throughput.py cannot import '{err.name}' ({err}). It needs torch, timm, "
             f"diffusers and the repae_lab dependencies (pyproject.toml). On an offline GPU host install the "
             f"carried wheels, e.g. `pip install --no-deps diffusers-*.whl`.")


# ---------------------------------------------------------------------------------------------------------
# Sizes and device peaks.

SIZES = {
    # name: (preset, VAE architecture to build from random weights; None = the preset's own, via build_state)
    "workshop": ("workshop", None),
    "xl2-sdvae": ("imagenet256-sit-xl2-sdvae", "sd-f8c4"),
    "xl1-f16": ("imagenet256-sit-xl1-f16", "f16c32"),
}
SIZE_GROUPS = {"paper": ("xl2-sdvae", "xl1-f16"), "all": tuple(SIZES)}
DEFAULT_BATCH = {"workshop": 32, "xl2-sdvae": 32, "xl1-f16": 32}   # 32 = the paper's 256 over 8 GPUs
# named sets of config overrides timed side by side (--variants); the first of each set is the reference
VARIANTS = {
    "followups": {
        "default": {},
        "iREPA conv projector": {"projector": "conv"},
        "iREPA target norm": {"target_norm": "spatial"},
        "iREPA (both)": {"projector": "conv", "target_norm": "spatial"},
        # stopped before the first timed step: the cost of a step after HASTE's stop (before it, the default's)
        "HASTE after its stop": {"repa_stop_step": 1},
    },
}

# Dense (no 2:4 sparsity) tensor-core peaks in TFLOP/s from NVIDIA's datasheets, by a substring of
# torch.cuda.get_device_name(); first match wins, so the specific names come first. "fp32" is the TF32 peak:
# on CUDA the benchmark turns TF32 on, as the REPA-E code does (REPAE_FACTS section 2).
PEAK_TFLOPS = (
    ("H100 NVL", {"bf16": 835.0, "fp16": 835.0, "fp32": 417.5}),
    ("H100 PCIe", {"bf16": 756.0, "fp16": 756.0, "fp32": 378.0}),
    ("H100", {"bf16": 989.4, "fp16": 989.4, "fp32": 494.7}),       # SXM5, "NVIDIA H100 80GB HBM3"
    ("H200 NVL", {"bf16": 835.0, "fp16": 835.0, "fp32": 417.5}),
    ("H200", {"bf16": 989.4, "fp16": 989.4, "fp32": 494.7}),       # SXM, same tensor cores as H100 SXM; GH200 too
    ("A100", {"bf16": 312.0, "fp16": 312.0, "fp32": 156.0}),
    ("L40S", {"bf16": 362.1, "fp16": 362.1, "fp32": 183.0}),
)
MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}   # --precision -> Config.mixed_precision


def device_peak_tflops(device: torch.device, precision: str) -> tuple[float | None, str]:
    """(peak TFLOP/s or None, the device's name). CPUs have no standard peak: pass --peak-tflops."""
    if device.type != "cuda":
        return None, f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_TFLOPS:
        if key in name:
            return peaks[precision], name
    return None, name


# ---------------------------------------------------------------------------------------------------------
# Peak memory: CUDA's allocator counts it; on the CPU the process's peak RSS is the best there is.

def reset_peak_memory(device: torch.device) -> str:
    """Start a fresh peak; returns what `peak_memory` will measure, in words."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "torch.cuda.max_memory_allocated"
    try:
        # Linux: writing 5 resets VmHWM (peak RSS) to the current RSS, so each configuration gets its own peak.
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "process peak RSS (VmHWM, reset per config)"
    except OSError:
        return "process peak RSS since start (ru_maxrss, never reset)"


def _proc_status_bytes(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = _proc_status_bytes("VmHWM")
    return peak if peak is not None else int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # kB on Linux


def release_memory(device: torch.device) -> None:
    """Free the last configuration's memory, so that the next one's peak starts from the runtime alone."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return
    try:
        # glibc keeps freed blocks mapped (they would count in the next configuration's RSS); hand them back
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# ---------------------------------------------------------------------------------------------------------
# Paper-size networks from random weights.

class RandomLPIPSVGG(nn.Module):
    """LPIPS-VGG's network (lpips 0.1: input scaling, VGG16 to relu5_3 in 5 slices, unit-normalised features,
    1x1 linear heads, spatial mean) with random weights. losses.LPIPSDistance needs downloaded VGG16 weights;
    this runs the same layers on the same shapes, so it costs the same FLOPs and time. Not a perceptual metric."""

    # torchvision's vgg16 "D" configuration, convolutional part only (its 100M-parameter classifier is not
    # used by LPIPS, so it is not built); layer indices match torchvision's vgg16().features.
    VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
    CUTS = (4, 9, 16, 23, 30)            # feature indices just after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    WIDTHS = (64, 128, 256, 512, 512)

    def __init__(self):
        super().__init__()
        layers, c = [], 3
        for v in self.VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        starts = (0,) + self.CUTS[:-1]
        self.slices = nn.ModuleList(nn.Sequential(*layers[a:b]) for a, b in zip(starts, self.CUTS))
        self.lins = nn.ModuleList(nn.Conv2d(w, 1, 1, bias=False) for w in self.WIDTHS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.eval().requires_grad_(False)

    def _features(self, x):
        x = (x - self.shift) / self.scale
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out

    def forward(self, x, y):
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        total = 0.0
        for lin, fx, fy in zip(self.lins, self._features(x), self._features(y)):
            fx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((fx - fy) ** 2).mean((2, 3))
        return total.flatten()


def paper_state(cfg, device: torch.device, vae_arch: str) -> TrainState:
    """What train.build_state builds for a paper preset, without ImageNet or downloaded weights."""
    route = routing(cfg)
    with torch.device(device):                      # initialise in place: no 2.7 GB CPU->GPU copy of SiT-XL
        vae = build_vae(vae_arch)
        _, grid = token_grid(cfg, vae)
        image_size = 224 * cfg.resolution // 256    # as models.target_encoders.dinov2_b: 14-px patches, grid x grid
        vit = timm.create_model("vit_base_patch14_dinov2.lvd142m", pretrained=False, img_size=image_size,
                                num_classes=0, dynamic_img_size=False)
        target = DinoV2Target(vit.eval().requires_grad_(False), image_size)
        if image_size // 14 != grid:
            raise SystemExit(f"DINOv2 gives {image_size // 14}x{image_size // 14} tokens but the SiT {grid}x{grid}; "
                             f"choose resolution / patch_size so that they match.")
        sit = new_sit(cfg, vae, 1000, target.embed_dim)
        disc = perceptual = None
        if route.trains_vae and route.vae_reg:
            perceptual = RandomLPIPSVGG() if cfg.perceptual_weight > 0 else None
            if cfg.gan_weight > 0:
                disc = PatchDiscriminator(3, ndf=cfg.disc_ndf, n_layers=cfg.disc_layers)
        # a random VAE has no known latent statistics; unit ones keep the BatchNorm's arithmetic the same
        channels = sit.cfg.in_channels
        sit.init_latent_stats(torch.zeros(channels), torch.ones(channels))
        ema = ema_copy(sit)
    optimizers = make_optimizers(cfg, route, sit, vae, disc, device)
    forward = apply_speed_switches(cfg, sit, (vae, disc, perceptual), target=target)
    nets = Networks(vae=vae, sit=sit, ema=ema, discriminator=disc, target_encoder=target if route.uses_repa else None,
                    perceptual=perceptual)
    return TrainState(cfg=cfg, route=route, device=device, dataset=None, nets=nets, optimizers=optimizers,
                      sit_forward=forward, graphed_step=GraphedStep() if cfg.cuda_graphs else None)


def make_state(size: str, kind: str, device: torch.device, precision: str, batch: int, overrides: dict) -> TrainState:
    preset, vae_arch = SIZES[size]
    recipe = "repa" if kind == "repa-cached" else kind
    values = dict(overrides, device=str(device), mixed_precision=MIXED_PRECISION[precision], batch_size=batch)
    if vae_arch is None:
        # encoder_steps=1 and no VAE pretraining: the workshop networks are trained (cached under a throwaway
        # folder) only because build_state insists on them; their weights do not change the speed.
        values = dict(dict(encoder_steps=1, vae_pretrain_steps=0, probe_size=0, latent_stats_batches=1,
                           cache_dir=_scratch_dir()), **values)
        return build_state(resolve_config(preset, recipe=recipe, overrides=values), progress=False)
    values.setdefault("vae", vae_arch)            # the preset names a hub id; build the same architecture instead
    cfg = resolve_config(preset, recipe=recipe, overrides=values)
    return paper_state(cfg, device, vae_arch)


def flops_only_device(size: str, device: torch.device) -> torch.device:
    """--flops-only builds the paper-size networks on the meta device: shapes only, no memory, instant."""
    return torch.device("meta") if SIZES[size][1] is not None else device


_SCRATCH: list[str] = []


def _scratch_dir() -> str:
    if not _SCRATCH:
        import tempfile

        _SCRATCH.append(tempfile.mkdtemp(prefix="repae-bench-"))
    return _SCRATCH[0]


# ---------------------------------------------------------------------------------------------------------
# One timed step.

def synthetic_batch(state: TrainState, batch: int):
    """Images in [-1, 1] and labels, on the device; for repa-cached also latents and target features."""
    cfg, device = state.cfg, state.device
    channels = int(state.nets.vae.config.in_channels)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, channels, cfg.resolution, cfg.resolution, generator=gen) * 2 - 1).to(device)
    y = torch.randint(0, state.nets.sit.cfg.num_classes, (batch,), generator=gen).to(device)
    s = state.nets.sit.cfg
    # cached posterior (mean, std) per image, as cache_latents.py stores them, and cached target tokens
    mean = torch.randn(batch, s.in_channels, s.input_size, s.input_size, generator=gen).to(device)
    std = torch.full_like(mean, 0.1)
    targets = torch.randn(batch, s.num_patches, s.z_dims[0], generator=gen).to(device)
    return x, y, (mean, std, targets)


def cached_repa_body(targets: torch.Tensor):
    """The repa recipe's SiT update alone, on cached latents and target features, as a step's device work (the
    signature of training.step.step_on_device, so that it can be captured as a CUDA graph too): a fresh posterior
    sample from the cached mean and std each step, the same update, scaler and EMA (REPAE_FACTS section 6)."""
    def body(state: TrainState, x, y, draws: StepDraws, latents) -> dict[str, torch.Tensor]:
        with record_function("repae/update3_sit"):
            z = latents[0] + latents[1] * draws.eps
            metrics = sit_update(state, z, y, draws, [targets])
            if state.optimizers.scaler is not None:
                state.optimizers.scaler.update()
            update_ema(state.nets.ema, state.nets.sit, state.cfg.ema_decay)
        return metrics
    return body


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_function(state: TrainState, kind: str, batch: int):
    """A callable running one step of `kind` from a step generator, on one fixed synthetic batch."""
    x, y, (mean, std, targets) = synthetic_batch(state, batch)
    if kind != "repa-cached":
        return lambda gen: train_step(state, x, y, gen)
    body = cached_repa_body(targets)
    device_work = GraphedStep(body) if state.cfg.cuda_graphs else body

    def cached(gen):
        draws = StepDraws.draw(mean.shape[1:], len(mean), gen, mean.device, state.cfg.class_dropout_prob)
        return read_metrics(device_work(state, x, y, draws, (mean, std)))
    return cached


def time_steps(state: TrainState, kind: str, batch: int, steps: int, warmup: int, run=None) -> tuple[list[float], list[float], dict]:
    """(seconds per step for `steps` steps after `warmup` untimed ones, the warm-up steps' seconds (the first
    holds compilation), the last step's metrics)."""
    run = run or step_function(state, kind, batch)
    times, first, metrics = [], [], {}
    for i in range(warmup + steps):
        gen = torch.Generator().manual_seed(i)
        _sync(state.device)
        t0 = time.perf_counter()
        metrics = run(gen)
        _sync(state.device)
        (times if i >= warmup else first).append(time.perf_counter() - t0)
        state.step += 1
    return times, first, metrics


def _device_us(event) -> float:
    """Kernel time under an event (torch renamed cuda_time_total to device_time_total)."""
    return event.device_time_total if hasattr(event, "device_time_total") else getattr(event, "cuda_time_total", 0.0)


def profile_step(state: TrainState, kind: str, batch: int, top: int = 25, run=None) -> str:
    """One more step under torch.profiler: the time of each update (training/step.py marks them), the kernels
    that take the time in each, and how long the CPU spent issuing them (if that is close to the step time, the
    step is launch-bound, not compute-bound)."""
    from torch.profiler import ProfilerActivity, profile

    on_gpu = state.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    _sync(state.device)
    with profile(activities=activities) as prof:
        time_steps(state, kind, batch, steps=1, warmup=0, run=run)
    events = prof.events()
    lines = [f"{'update':<22} {'CPU ms':>9} {'device ms':>10}"]
    for e in events:
        if e.name.startswith("repae/"):
            lines.append(f"{e.name:<22} {e.cpu_time_total / 1e3:>9.1f} {_device_us(e) / 1e3:>10.1f}")
    for e in events:
        if e.name.startswith("repae/"):
            lines += ["", f"top {top // 3} kernels of {e.name}:", *_top_kernels(e, top // 3, on_gpu)]
    key = "self_cuda_time_total" if on_gpu else "self_cpu_time_total"
    lines += ["", "whole step:", prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=60)]
    return "\n".join(lines)


def _top_kernels(range_event, n: int, on_gpu: bool) -> list[str]:
    """The kernels (on a GPU) or operators (on a CPU) under one marked range, by total time."""
    totals: dict[str, float] = {}
    stack = list(range_event.cpu_children)
    while stack:
        e = stack.pop()
        stack.extend(e.cpu_children)
        if on_gpu:
            for k in getattr(e, "kernels", []):
                totals[k.name] = totals.get(k.name, 0.0) + k.duration
        elif not e.cpu_children:
            totals[e.name] = totals.get(e.name, 0.0) + e.self_cpu_time_total
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:n]
    return [f"  {us / 1e3:>8.2f} ms  {name[:90]}" for name, us in ranked]


# ---------------------------------------------------------------------------------------------------------
# The loop over configurations.

def run_one(size: str, kind: str, batch: int, args, device: torch.device, peak: float | None) -> dict:
    mem_kind = reset_peak_memory(device)
    row = dict(size=size, recipe=kind, batch=batch, precision=args.precision, overrides=dict(args.overrides))
    build_on = flops_only_device(size, device) if args.flops_only else device
    state = None
    try:
        overrides = dict(args.overrides, compile=args.compile if not args.flops_only else "none",
                         cuda_graphs=bool(args.cuda_graphs and not args.flops_only))
        state = make_state(size, kind, build_on, args.precision, batch, overrides)
        sf = step_flops(state.cfg, state_component_flops(state), kind)
        row.update(flops_per_image=sf.per_image, flops_per_step=sf.total(batch),
                   passes=[dataclasses.asdict(p) for p in sf.passes], breakdown=sf.table())
        if args.flops_only:
            return row
        run = step_function(state, kind, batch)
        times, first, metrics = time_steps(state, kind, batch, args.steps, args.warmup, run)
        if args.profile:
            row["profile"] = profile_step(state, kind, batch, run=run)
    except torch.OutOfMemoryError:
        # report it and go on with the next configuration (a smaller batch may still fit)
        row.update(error="out of memory")
        return row
    finally:
        del state
        if args.compile != "none":
            # a fresh start for the next configuration: otherwise dynamo sees the same code with a new batch
            # size and recompiles it with dynamic shapes, which is not what a training run compiles
            torch._dynamo.reset()
        release_memory(device)
    step_s = statistics.median(times)
    tflops = sf.total(batch) / step_s / 1e12
    bad = [k for k, v in metrics.items() if v != v or abs(v) == float("inf")]
    row.update(step_ms=step_s * 1e3, step_ms_all=[t * 1e3 for t in times], warmup_ms=[t * 1e3 for t in first],
               compile=args.compile, cuda_graphs=args.cuda_graphs, images_per_s=batch / step_s,
               peak_memory_bytes=peak_memory(device), memory_measure=mem_kind, tflops=tflops,
               mfu=tflops / peak if peak else None, nonfinite_metrics=bad)
    return row


def run_variants(size: str, kind: str, batch: int, args, device: torch.device) -> list[dict]:
    """One row per variant of args.variants, their steps timed in turn round by round (so that a machine's
    changing load falls on all alike), each with its median step time as a ratio to the first variant's."""
    variants = VARIANTS[args.variants]
    runs = {}
    for name, overrides in variants.items():
        state = make_state(size, kind, device, args.precision, batch, dict(args.overrides, **overrides))
        runs[name] = (state, step_function(state, kind, batch), [])
    for i in range(args.warmup + args.steps):
        for name, (state, run, times) in runs.items():
            gen = torch.Generator().manual_seed(i)
            _sync(device)
            t0 = time.perf_counter()
            run(gen)
            _sync(device)
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
            state.step += 1
    reference = statistics.median(runs[next(iter(variants))][2])
    rows = []
    for name, (state, _, times) in runs.items():
        step_s = statistics.median(times)
        rows.append(dict(size=size, recipe=kind, batch=batch, precision=args.precision, variant=name,
                         overrides=dict(args.overrides, **variants[name]), step_ms=step_s * 1e3,
                         step_ms_all=[t * 1e3 for t in times], images_per_s=batch / step_s,
                         ratio_to_default=step_s / reference))
    release_memory(device)
    return rows


def format_row(r: dict) -> str:
    head = f"{r['recipe']:<17} {r['size']:<10} {r['batch']:>5} {r['precision']:>5}"
    if "error" in r:
        return f"{head} {r['error']:>9}"
    if "step_ms" not in r:
        return f"{head} {'':>9} {'':>9} {'':>9} {r['flops_per_image'] / 1e9:>10.2f}"
    mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
    mem = r["peak_memory_bytes"] / 2 ** 30
    return (f"{head} {r['images_per_s']:>9.1f} {r['step_ms']:>9.1f} {mem:>8.2f}G {r['flops_per_image'] / 1e9:>10.2f} "
            f"{r['tflops']:>9.3f} {mfu:>6}")


HEADER = (f"{'recipe':<17} {'size':<10} {'batch':>5} {'prec':>5} {'images/s':>9} {'step ms':>9} {'peak mem':>9} "
          f"{'GFLOP/img':>10} {'TFLOP/s':>9} {'MFU':>6}")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--sizes", default="workshop", help=f"comma list of {', '.join(SIZES)} or {', '.join(SIZE_GROUPS)}")
    p.add_argument("--recipes", default=",".join(STEP_KINDS), help="comma list (default: all, with repa-cached)")
    p.add_argument("--batch", default=None, help="comma list of batch sizes (default: 32 per size)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (allocator, cuDNN autotune, compile)")
    p.add_argument("--precision", choices=tuple(MIXED_PRECISION), default=None,
                   help="autocast dtype (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (needed on CPUs)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on the CPU (1 on a shared machine)")
    p.add_argument("--compile", nargs="?", const="regional", default="none", choices=("none", "regional", "full"),
                   help="torch.compile: regional (each repeated block once; the default of a bare --compile) or full "
                        "(the whole SiT forward, as the REPA-E code does)")
    p.add_argument("--cuda-graphs", action="store_true", help="replay each step as a CUDA graph (training/cuda_graphs.py)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every size")
    p.add_argument("--flops-only", action="store_true", help="print FLOP counts, time nothing")
    p.add_argument("--breakdown", action="store_true", help="print the pass-by-pass FLOPs of each configuration")
    p.add_argument("--profile", action="store_true", help="profile one more step of each configuration and print "
                                                            "its top kernels (into --json too)")
    p.add_argument("--json", default=None, metavar="OUT", help="write every figure, the machine and the command here")
    p.add_argument("--variants", default=None, choices=tuple(VARIANTS),
                   help="time these named config variants side by side, as ratios to the first (step time only)")
    args = p.parse_args(argv)
    sizes: list[str] = []
    for s in _csv(args.sizes):
        if s not in SIZES and s not in SIZE_GROUPS:
            p.error(f"unknown size '{s}'; choose from {', '.join([*SIZES, *SIZE_GROUPS])}")
        sizes += SIZE_GROUPS.get(s, (s,))
    args.sizes = list(dict.fromkeys(sizes))
    args.recipes = _csv(args.recipes)
    for r in args.recipes:
        if r not in STEP_KINDS:
            p.error(f"unknown recipe '{r}'; choose from {', '.join(STEP_KINDS)}")
    args.batch = [int(b) for b in _csv(args.batch)] if args.batch else None
    args.overrides = {}
    for item in args.set:
        if "=" not in item:
            p.error(f"--set takes key=value, got '{item}'")
        k, v = item.split("=", 1)
        args.overrides[k.strip()] = v.strip()
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda but torch sees no GPU here; use --device cpu")
    if args.cuda_graphs and device.type != "cuda":
        sys.exit("--cuda-graphs needs --device cuda (CUDA graphs remove kernel-launch time; a CPU has none)")
    busy = ""
    if device.type == "cpu" and not args.threads and hasattr(os, "getloadavg"):
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        if load >= cores:
            # On an oversubscribed CPU, torch's threads spin-wait for each other and a step gets 10-30x slower
            # than on one thread (measured on a shared 2-core machine): use one unless told otherwise.
            args.threads = 1
            busy = f" (machine busy: load {load:.1f} on {cores} cores, so 1 thread; pass --threads N to override)"
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True   # TF32 on, as the REPA-E code
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True          # fixed shapes: let cuDNN pick its fastest convolutions
    args.precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    peak, device_name = device_peak_tflops(device, args.precision)
    peak = args.peak_tflops or peak
    command = "python " + " ".join(["benchmarks/throughput.py", *(sys.argv[1:] if argv is None else argv)])
    machine = dict(device=device_name, torch=torch.__version__, python=platform.python_version(),
                   threads=torch.get_num_threads(), cpus=os.cpu_count(), busy=busy.strip(" ()") or None,
                   precision=args.precision, peak_tflops=peak, compile=args.compile, cuda_graphs=args.cuda_graphs)
    print(f"# {device_name}; torch {torch.__version__}; {torch.get_num_threads()} threads{busy}; precision "
          f"{args.precision}; peak {f'{peak:g} TFLOP/s' if peak else 'unknown (MFU n/a; pass --peak-tflops)'}")
    print(f"# command: {command}")
    if not args.variants:
        print(HEADER)
    # on the CPU the peak RSS includes the Python / torch / diffusers runtime: say how much that is
    machine["rss_before_first_config_bytes"] = _proc_status_bytes("VmRSS") if device.type == "cpu" else None
    rows = []
    if args.variants:
        print(f"{'recipe':<9} {'size':<10} {'variant':<24} {'step ms':>9} {'images/s':>9} {'x default':>9}")
        for size in args.sizes:
            for kind in args.recipes:
                for batch in args.batch or [DEFAULT_BATCH[size]]:
                    for r in run_variants(size, kind, batch, args, device):
                        rows.append(r)
                        print(f"{kind:<9} {size:<10} {r['variant']:<24} {r['step_ms']:>9.1f} {r['images_per_s']:>9.1f} "
                              f"{r['ratio_to_default']:>9.3f}", flush=True)
        print(f"# step ms = median of {args.steps} steps after {args.warmup} warm-up, the variants' steps in turn")
        if args.json:
            Path(args.json).write_text(json.dumps(dict(machine=machine, command=command, rows=rows), indent=1))
        return 0
    for size in args.sizes:
        for kind in args.recipes:
            for batch in args.batch or [DEFAULT_BATCH[size]]:
                row = run_one(size, kind, batch, args, device, peak)
                rows.append(row)
                print(format_row(row), flush=True)
                if args.breakdown:
                    print("\n".join("    " + line for line in row["breakdown"].splitlines()))
                if row.get("profile"):
                    print(row["profile"], flush=True)
    mem = next((r["memory_measure"] for r in rows if "memory_measure" in r), None)
    if mem:
        base = machine["rss_before_first_config_bytes"]
        base = f" (the process held {base / 2 ** 30:.2f}G before the first config)" if base else ""
        print(f"# peak mem = {mem}{base}; step ms = median of {args.steps} steps after {args.warmup} warm-up; "
              f"TFLOP/s = analytic FLOPs per step / step time")
    if args.json:
        out = dict(machine=machine, command=command, rows=rows)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
