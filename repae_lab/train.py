"""The shared training loop: build the models for a Config, run the recipe's step, keep the run directory.

Determinism by construction: the data order is a per-epoch permutation seeded by (seed, epoch), and every
step reseeds its random streams from (seed, step); a resumed run therefore needs no RNG state to continue
exactly where it stopped.
"""
from __future__ import annotations

import json
import math
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from . import distributed as dist
from . import rundir
from .config import Config, config_from_dict
from .data import DatasetError, class_balanced_indices, load_dataset
from .models.discriminator import PatchDiscriminator
from .models.sit import SiT, sit_config
from .models.target_encoders import build_target_encoder
from .models.vae import (VAE_CONFIGS, downsample_factor, encode, latent_channels, latent_stats_from_config,
                         vae_from_spec)
from .models.workshop_vae import pretrained_workshop_vae
from .losses import build_perceptual
from .recipes import routing, to_device, train_step
from .alarms import AlarmMonitor
from .safe_load import load_state_dict_checked
from .snapshots import take_snapshot


PROGRESS_KEYS = ("loss/diffusion", "loss/repa", "loss/repa_vae", "loss/l1", "latent/spatial_var")


class RunError(RuntimeError):
    """A problem with the run directory or the run's set-up; the message says what to do."""


@dataclass
class TrainState:
    cfg: Config
    device: torch.device
    dataset: Any
    vae: nn.Module
    sit: SiT
    ema: SiT
    discriminator: nn.Module | None
    target_encoder: nn.Module | None
    perceptual: nn.Module | None
    optimizers: dict[str, torch.optim.Optimizer]
    scaler: Any = None
    step: int = 0
    probe_indices: torch.Tensor | None = None
    sit_parallel: Any = None          # the DistributedDataParallel wrapper of `sit` under torchrun
    sit_forward: Any = None           # torch.compile'd forward of the SiT (or its wrapper), when cfg.compile
    latent_cache: Any = None          # (mean, std) of every image's posterior, for frozen-VAE recipes
    extra: dict = field(default_factory=dict)


def _adamw(cfg: Config, params, lr: float, device: torch.device) -> torch.optim.Optimizer:
    # fused: one kernel for all parameters, and (unlike the per-tensor CPU path, which calls .item() on each
    # step count) nothing that reads the device back
    return torch.optim.AdamW(params, lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps,
                             weight_decay=cfg.weight_decay, fused=torch.device(device).type in ("cuda", "cpu"))


def new_sit(cfg: Config, vae, num_classes: int, z_dim: int) -> SiT:
    """A freshly initialised SiT + projector for this config, VAE (latent size and channels) and target
    encoder width, on the current default device."""
    latent, _ = token_grid(cfg, vae)
    return SiT(sit_config(cfg.sit_size, input_size=latent, patch_size=cfg.patch_size,
                          in_channels=latent_channels(vae), num_classes=num_classes,
                          class_dropout_prob=cfg.class_dropout_prob, encoder_depth=cfg.alignment_depth,
                          projector_dim=cfg.projector_dim, z_dims=(z_dim,), bn_momentum=cfg.bn_momentum))


def ema_copy(sit: SiT) -> SiT:
    """The EMA model: same config and weights (latent statistics included), frozen, in eval mode."""
    ema = SiT(sit.cfg).to(next(sit.parameters()).device)
    ema.load_state_dict(sit.state_dict())
    return ema.eval().requires_grad_(False)


def make_optimizers(cfg: Config, sit: SiT, vae, disc, device) -> tuple[dict[str, torch.optim.Optimizer], Any]:
    """AdamW for each network the recipe trains (a frozen VAE is put in eval mode), and fp16's grad scaler."""
    route = routing(cfg)
    optimizers = {"sit": _adamw(cfg, [p for p in sit.parameters() if p.requires_grad], cfg.lr, device)}
    if route.trains_vae:
        optimizers["vae"] = _adamw(cfg, vae.parameters(), cfg.vae_lr, device)
        if disc is not None:
            optimizers["disc"] = _adamw(cfg, disc.parameters(), cfg.disc_lr, device)
    else:
        vae.eval().requires_grad_(False)
    scaler = torch.amp.GradScaler(torch.device(device).type) if cfg.mixed_precision == "fp16" else None
    return optimizers, scaler


def apply_speed_switches(cfg: Config, sit: SiT, convnets, parallel=None):
    """Activation checkpointing, channels-last convolutional networks (None entries are skipped) and
    torch.compile; returns the compiled SiT forward (TrainState.sit_forward), or None."""
    sit.activation_checkpointing = cfg.activation_checkpointing
    if cfg.channels_last:
        for module in convnets:
            if module is not None:
                module.to(memory_format=torch.channels_last)
    return torch.compile(parallel if parallel is not None else sit) if cfg.compile else None


def token_grid(cfg: Config, vae) -> tuple[int, int]:
    """(latent size, SiT token grid side) for the configured resolution, VAE and patch size."""
    factor = downsample_factor(vae)
    if cfg.resolution % factor:
        raise RunError(f"resolution {cfg.resolution} is not divisible by the VAE's downsampling factor {factor}; "
                       f"use a multiple of {factor}.")
    latent = cfg.resolution // factor
    if latent % cfg.patch_size:
        raise RunError(f"the {latent}x{latent} latent cannot be cut into {cfg.patch_size}x{cfg.patch_size} patches; "
                       f"choose patch_size dividing {latent}.")
    return latent, latent // cfg.patch_size


@torch.no_grad()
def estimate_latent_stats(vae, dataset, cfg: Config, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and variance of posterior samples over a few fixed batches (the BN's starting point)."""
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    n = min(len(dataset), cfg.latent_stats_batches * cfg.batch_size)
    idx = torch.randperm(len(dataset), generator=gen)[:n]
    zs = []
    for chunk in idx.split(cfg.batch_size):
        x, _ = dataset.batch(chunk)
        z, _ = encode(vae, x.to(device), sample=True, generator=gen)
        zs.append(z.float().cpu())
    z = torch.cat(zs)
    return z.mean(dim=(0, 2, 3)), z.var(dim=(0, 2, 3))


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """The step-th batch of an endless stream of per-epoch permutations (no sample dropped or repeated in an epoch)."""
    start = step * batch_size
    out, pos = [], start
    while len(out) < batch_size:
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        take = perm[offset: offset + batch_size - len(out)]
        out.extend(take.tolist())
        pos += len(take)
    return torch.as_tensor(out)


class StepBatches(torch.utils.data.Sampler):
    """Batch sampler over steps [start, stop): lets DataLoader workers read lazily-loaded datasets in the same order."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int):
        self.n, self.batch_size, self.seed, self.start, self.stop = n, batch_size, seed, start, stop

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield dist.shard(batch_indices(self.n, self.batch_size, self.seed, step)).tolist()

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def batch_stream(dataset, cfg: Config, start: int):
    """(images, labels) for steps start, start+1, ...: in-process for in-memory data, DataLoader workers otherwise."""
    n = len(dataset)
    if cfg.num_workers == 0 or hasattr(dataset, "images"):
        for step in range(start, cfg.steps):
            yield dataset.batch(dist.shard(batch_indices(n, cfg.batch_size, cfg.seed, step)))
        return
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=StepBatches(n, cfg.batch_size, cfg.seed, start, cfg.steps),
                                         num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available())
    yield from loader


def step_generator(seed: int, step: int) -> torch.Generator:
    """Every random draw of a step comes from (seed, step): exact resume without saved RNG state."""
    s = (seed * 1_000_003 + step) % (2 ** 63)
    torch.manual_seed(s)                      # module-internal randomness (label dropout)
    return torch.Generator().manual_seed(s)


def build_state(cfg: Config, *, progress: bool = True, vae=None) -> TrainState:
    device = dist.init_from_env(cfg.device)
    note = dist.launcher_precision_note(cfg.mixed_precision)
    if note and dist.is_main():
        print(f"repae-lab: {note}", file=sys.stderr)
    try:
        dist.check_batch_size(cfg.batch_size)
    except ValueError as err:
        raise RunError(str(err)) from None
    torch.manual_seed(cfg.seed)
    torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
    torch.backends.cudnn.allow_tf32 = cfg.tf32
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
    try:
        dataset = load_dataset(cfg.dataset, resolution=cfg.resolution, root=cfg.data_root, download=cfg.download)
    except DatasetError as err:
        raise DatasetError(f"{err} (config keys: dataset, data_root, download, resolution)") from None
    # each module is initialised from its own seed, so its weights do not depend on what ran before
    # (e.g. whether the workshop encoder was trained in this process or loaded from the cache)
    torch.manual_seed(cfg.seed + 1)
    pretrain = vae is None and cfg.vae in VAE_CONFIGS and cfg.vae_pretrain_steps > 0
    vae = vae if vae is not None else vae_from_spec(cfg.vae, in_channels=dataset.channels)
    if vae.config.in_channels != dataset.channels:
        raise RunError(f"the VAE takes {vae.config.in_channels}-channel images but '{cfg.dataset}' has "
                       f"{dataset.channels}; pick a VAE config for {dataset.channels} channels.")
    _, grid = token_grid(cfg, vae)          # shape errors surface before anything is trained
    if pretrain:
        vae = dist.main_rank_first(lambda: pretrained_workshop_vae(
            cfg.vae, dataset, steps=cfg.vae_pretrain_steps, seed=cfg.seed, kl_weight=cfg.kl_weight,
            cache_dir=cfg.cache_dir, progress=progress and dist.is_main()))
    vae = vae.to(device)
    route = routing(cfg)

    target = None
    if route.uses_repa or cfg.perceptual in ("auto", "workshop") or cfg.target_encoder == "workshop":
        # rank 0 trains (or downloads) the encoder first; the others then read its cache
        target = dist.main_rank_first(
            lambda: build_target_encoder(cfg, dataset, grid=grid, progress=progress and dist.is_main())).to(device)
    torch.manual_seed(cfg.seed + 2)
    sit = dist.globalize_batchnorm(new_sit(cfg, vae, dataset.num_classes, target.embed_dim if target is not None else 768))
    sit = sit.to(device)
    stats = latent_stats_from_config(vae)
    if stats is not None:                       # an exported E2E-VAE carries its latent statistics
        mean, std = stats
        var = std.float() ** 2 - sit.bn.eps
    else:
        mean, var = estimate_latent_stats(vae, dataset, cfg, device)
    sit.init_latent_stats(mean.to(device), var.clamp_min(1e-8).to(device))
    ema = ema_copy(sit)

    disc = perceptual = None
    if route.trains_vae and route.vae_reg:
        perceptual = build_perceptual(cfg.perceptual, target)
        if perceptual is not None:
            perceptual = perceptual.to(device)
        if cfg.gan_weight > 0:
            torch.manual_seed(cfg.seed + 3)
            disc = dist.globalize_batchnorm(
                PatchDiscriminator(dataset.channels, ndf=cfg.disc_ndf, n_layers=cfg.disc_layers)).to(device)
    optimizers, scaler = make_optimizers(cfg, sit, vae, disc, device)
    probe = class_balanced_indices(dataset.labels, min(cfg.probe_size, len(dataset)), cfg.seed) if cfg.probe_size else None
    parallel = None
    if dist.is_distributed():
        from torch.nn.parallel import DistributedDataParallel

        # the projectors take no part in the loss of recipes without REPA
        parallel = DistributedDataParallel(sit, device_ids=[device.index] if device.type == "cuda" else None,
                                           find_unused_parameters=not route.uses_repa, broadcast_buffers=False)
        for module in (vae, disc):
            dist.broadcast_parameters(module)
    compiled = apply_speed_switches(cfg, sit, (vae, disc, perceptual), parallel)
    cache = encode_dataset(vae, dataset, cfg, device, progress) if cfg.cache_latents else None
    return TrainState(cfg, device, dataset, vae, sit, ema, disc, target if route.uses_repa else None, perceptual,
                      optimizers, scaler, 0, probe, parallel, compiled, cache)


@torch.no_grad()
def encode_dataset(vae, dataset, cfg: Config, device, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image (float16 on the CPU): a frozen VAE need not encode twice.
    Each step then draws a fresh posterior sample from them, as REPA-E's cached-latent training does."""
    means, stds = [], []
    order = torch.arange(len(dataset))
    for chunk in tqdm(order.split(256), desc="caching latents", disable=not progress, leave=False):
        x, _ = dataset.batch(chunk)
        _, posterior = encode(vae, x.to(device), sample=False)
        means.append(posterior.mean.half().cpu())
        stds.append(posterior.std.half().cpu())
    return torch.cat(means), torch.cat(stds)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints of a TrainState.

def checkpoint_files(state: TrainState) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    files = {"sit": state.sit.state_dict(), "ema": state.ema.state_dict(), "vae": state.vae.state_dict()}
    if state.discriminator is not None:
        files["discriminator"] = state.discriminator.state_dict()
    opt_tensors, opt_meta = {}, {}
    for name, opt in state.optimizers.items():
        t, m = rundir.optimizer_to_tensors(opt, name)
        opt_tensors.update(t)
        opt_meta[name] = m
    files["optimizers"] = opt_tensors
    meta = {"step": state.step, "optimizers": opt_meta,
            "scaler": state.scaler.state_dict() if state.scaler is not None else None}
    return files, meta


def restore_checkpoint(state: TrainState, path: Path) -> None:
    files, meta = rundir.load_checkpoint(path)
    load_state_dict_checked(state.sit, files["sit"], "SiT")
    load_state_dict_checked(state.ema, files["ema"], "EMA SiT")
    load_state_dict_checked(state.vae, files["vae"], "VAE")
    if state.discriminator is not None:
        load_state_dict_checked(state.discriminator, files["discriminator"], "discriminator")
    for name, opt in state.optimizers.items():
        rundir.optimizer_from_tensors(opt, name, files.get("optimizers", {}), meta["optimizers"][name])
    if state.scaler is not None and meta.get("scaler"):
        state.scaler.load_state_dict(meta["scaler"])
    state.step = int(meta["step"])


# ---------------------------------------------------------------------------------------------------------
# The loop.

def _flush(run: Path, step: int, window: list[dict[str, float]], t0: float) -> dict[str, float]:
    means = {k: sum(m[k] for m in window if k in m) / sum(1 for m in window if k in m)
             for k in {k for m in window for k in m}}
    record = {"step": step, "time": round(time.time() - t0, 3), **{k: means[k] for k in sorted(means)}}
    rundir.append_jsonl(run / "metrics.jsonl", record)
    return means


@contextmanager
def _disk_errors(what: str, state: TrainState, run: Path):
    """A failed write (full disk, quota, permissions) stops the run with what is still safe on disk."""
    try:
        yield
    except OSError as err:
        previous = rundir.latest_good_checkpoint(run)
        kept = f"the previous checkpoint {previous.name} is intact" if previous else "no earlier checkpoint exists"
        raise RunError(f"could not write the {what} of step {state.step} ({err.strerror or err}); {kept}. "
                       f"Free disk space (or lower keep_checkpoints), then `repae-lab train --resume {run}`.") from err


def _snapshot(state: TrainState, run: Path) -> None:
    if state.probe_indices is None:
        return
    tensors, info = take_snapshot(state)
    with _disk_errors("probe snapshot", state, run):
        rundir.save_snapshot(run, state.step, tensors, info)


def _evaluate(state: TrainState, run: Path) -> None:
    """A small sampling evaluation (FD and friends) appended to the metrics log; it leaves the run untouched."""
    if dist.is_main():
        from .evaluate import evaluate_during_training

        state.extra["run_dir"] = run
        with _disk_errors("evaluation", state, run):
            rundir.append_jsonl(run / "metrics.jsonl", evaluate_during_training(state, state.step))
    dist.barrier()


def _checkpoint(state: TrainState, run: Path) -> None:
    """Rank 0 writes; every rank waits for it, so no process can later read a checkpoint still being written."""
    if dist.is_main():
        files, meta = checkpoint_files(state)
        with _disk_errors("checkpoint", state, run):
            rundir.save_checkpoint(run, state.step, files, meta, keep=state.cfg.keep_checkpoints)
    dist.barrier()


def prepare_run_dir(cfg: Config, out: Path, state: TrainState) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_text(out / "config.json", cfg.to_json())
    rundir.atomic_write_text(out / "vae_config.json", json.dumps(dict(state.vae.config), indent=1, default=list))
    if state.probe_indices is not None:
        labels = state.dataset.labels[state.probe_indices]
        rundir.atomic_write_text(out / "probe_set.json", json.dumps(
            {"dataset": cfg.dataset, "indices": state.probe_indices.tolist(), "labels": labels.tolist()}))


class TrainingStopped(RunError):
    """An alarm stopped the run (alarm_policy=stop, or rollbacks exhausted)."""


def train(cfg: Config | None = None, out: str | Path | None = None, *, resume: str | Path | None = None,
          progress: bool = True, on_metrics=None) -> dict[str, Any]:
    """Train `cfg` into run directory `out` (new), or continue the run at `resume` from its last checkpoint.

    Returns the run summary (also written to summary.json). One process at a time may write a run directory."""
    if resume is not None:
        run = Path(resume)
        if not (run / "config.json").is_file():
            raise RunError(f"'{run}' is not a run directory (no config.json); pass the folder a previous "
                           f"`repae-lab train --out` wrote.")
    else:
        if cfg is None or out is None:
            raise RunError("train() needs a config and an output folder, or resume=RUN.")
        run = Path(out)
    if resume is None and (run / "config.json").exists():
        raise RunError(f"'{run}' already holds a run; continue it with `repae-lab train --resume {run}` "
                       f"or pick a new --out folder.")
    dist.init_from_env(cfg.device if cfg is not None else "auto")
    try:
        # under torchrun only rank 0 writes the run directory, so only rank 0 holds its lock
        with rundir.RunLock(run) if dist.is_main() else nullcontext():
            return _train_locked(cfg, run, resume is not None, progress and dist.is_main(), on_metrics)
    except rundir.RunLockedError as err:
        raise RunError(str(err)) from None


def _train_locked(cfg: Config | None, run: Path, resuming: bool, progress: bool, on_metrics) -> dict[str, Any]:
    t_start = time.time()
    if resuming:
        cfg = config_from_dict(json.loads((run / "config.json").read_text()))
        state = build_state(cfg, progress=progress, vae=run_vae_architecture(run))
        ckpt = rundir.latest_good_checkpoint(run)
        if ckpt is not None:
            restore_checkpoint(state, ckpt)
        dist.barrier()                 # every rank has read the checkpoint before rank 0 edits the log
        if dist.is_main():
            _truncate_metrics(run, state.step)
    else:
        state = build_state(cfg, progress=progress)
        if dist.is_main():
            prepare_run_dir(cfg, run, state)
            _snapshot(state, run)
        if cfg.eval_every:
            _evaluate(state, run)      # the FD curve starts at step 0, and missing weights fail before training
    _loop(state, run, progress, on_metrics, t_start)
    summary = write_summary(run, cfg, time.time() - t_start) if dist.is_main() else {}
    dist.barrier()
    return summary


def _truncate_metrics(run: Path, step: int) -> None:
    """Records past `step` belong to steps that will be redone; alarm and rollback events are kept."""
    records = [r for r in rundir.read_jsonl(run / "metrics.jsonl") if r.get("step", 0) <= step or "event" in r]
    rundir.atomic_write_text(run / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))


def _run_step(state: TrainState, x, y, gen, latents=None) -> dict[str, float]:
    try:
        return train_step(state, to_device(x, state.device), to_device(y, state.device), gen, latents)
    except torch.OutOfMemoryError as err:
        cfg = state.cfg
        raise RunError(f"out of GPU memory at step {state.step} with batch_size {cfg.batch_size}: lower it "
                       f"(--set batch_size={max(1, cfg.batch_size // 2)}) or use mixed_precision=bf16; "
                       f"resume with `repae-lab train --resume RUN` keeps what was done.") from err


def _roll_back(state: TrainState, run: Path, alarm, rollbacks: int) -> None:
    cfg = state.cfg
    ckpt = rundir.latest_good_checkpoint(run)
    if ckpt is None or rollbacks >= cfg.max_rollbacks:
        why = "no checkpoint to roll back to" if ckpt is None else f"{cfg.max_rollbacks} rollbacks already"
        raise TrainingStopped(f"{alarm.message}; {why}, so the run stops. Inspect metrics.jsonl; resume with "
                              f"`repae-lab train --resume {run}` after changing what caused it.")
    restore_checkpoint(state, ckpt)
    dist.barrier()
    factor = cfg.rollback_lr_factor ** (rollbacks + 1)     # compounding: each rollback lowers it once more
    base = {"sit": cfg.lr, "vae": cfg.vae_lr, "disc": cfg.disc_lr}
    for name, opt in state.optimizers.items():
        for group in opt.param_groups:
            group["lr"] = base[name] * factor
    if not dist.is_main():
        return
    _truncate_metrics(run, state.step)
    rundir.append_jsonl(run / "metrics.jsonl", {"step": state.step, "event": "rollback", "alarm": alarm.kind,
                                                "checkpoint": ckpt.name, "lr_factor": factor,
                                                "lrs": {k: o.param_groups[0]["lr"] for k, o in state.optimizers.items()}})


def _loop(state: TrainState, run: Path, progress: bool, on_metrics, t_start: float) -> None:
    cfg = state.cfg
    monitor = AlarmMonitor(cfg)
    batches = batch_stream(state.dataset, cfg, state.step)
    window: list[dict[str, float]] = []
    rollbacks = 0
    main = dist.is_main()
    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"{cfg.recipe} ({cfg.preset})", disable=not progress,
               dynamic_ncols=True)
    while state.step < cfg.steps:
        gen = step_generator(cfg.seed, state.step)
        x, y = next(batches)
        latents = None
        if state.latent_cache is not None:
            idx = dist.shard(batch_indices(len(state.dataset), cfg.batch_size, cfg.seed, state.step))
            latents = tuple(to_device(c[idx], state.device).float() for c in state.latent_cache)
        # averaged over processes, so every rank sees the same numbers and takes the same alarm decisions
        metrics = dist.mean_across(_run_step(state, x, y, gen, latents))
        state.step += 1
        window.append(metrics)
        bar.update(1)
        alarms = monitor.check(state.step, metrics)
        for alarm in alarms if main else ():
            rundir.append_jsonl(run / "metrics.jsonl", alarm.record(cfg.alarm_policy))
            tqdm.write(f"repae-lab alarm [{alarm.kind}]: {alarm.message} (policy: {cfg.alarm_policy})")
        if alarms and cfg.alarm_policy == "stop":
            raise TrainingStopped(f"{alarms[0].message}; stopped (alarm_policy=stop). The last checkpoint is kept: "
                                  f"resume with `repae-lab train --resume {run}` or roll back by hand.")
        if alarms and cfg.alarm_policy == "rollback":
            _roll_back(state, run, alarms[0], rollbacks)
            rollbacks += 1
            monitor.reset()
            window = []
            batches = batch_stream(state.dataset, cfg, state.step)
            bar.reset(total=cfg.steps)
            bar.update(state.step)
            continue
        if cfg.log_every and (state.step % cfg.log_every == 0 or state.step == cfg.steps):
            if main:
                last = _flush(run, state.step, window, t_start)
                bar.set_postfix({k.split("/")[-1]: f"{last[k]:.3g}" for k in PROGRESS_KEYS if k in last})
                if on_metrics is not None:
                    on_metrics(state.step, last)
            window = []
        if cfg.snapshot_every and state.step % cfg.snapshot_every == 0 and state.step != cfg.steps and main:
            _snapshot(state, run)
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step != cfg.steps:
            _checkpoint(state, run)
        if cfg.eval_every and (state.step % cfg.eval_every == 0 or state.step == cfg.steps):
            _evaluate(state, run)
    bar.close()
    if window and main:
        _flush(run, state.step, window, t_start)
    if main:
        _snapshot(state, run)
    _checkpoint(state, run)


def write_summary(run: Path, cfg: Config, seconds: float) -> dict[str, Any]:
    """Final losses (mean of the last 10% of logged steps), latent statistics and time taken."""
    records = rundir.read_jsonl(run / "metrics.jsonl")
    # training records only: evaluations ("kind") and alarms / rollbacks ("event") carry no losses, and an
    # evaluation at the last step would otherwise be the whole tail of a short run
    logged = [r for r in records if "kind" not in r and "event" not in r]
    tail = logged[-max(1, math.ceil(len(logged) / 10)):]
    keys = sorted({k for r in tail for k in r if k.startswith(("loss/", "latent/"))})
    final = {k: sum(r[k] for r in tail if k in r) / max(1, sum(1 for r in tail if k in r)) for k in keys}
    summary = {"run_dir": str(run.resolve()), "recipe": cfg.recipe, "preset": cfg.preset,
               "steps": records[-1]["step"] if records else 0, "seconds": round(seconds, 1), "final": final}
    rundir.atomic_write_text(run / "summary.json", json.dumps(summary, indent=1))
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"run directory: {summary['run_dir']}",
             f"{summary['recipe']} on preset {summary['preset']}: {summary['steps']} steps in {summary['seconds']:.1f} s"]
    for k, v in summary["final"].items():
        lines.append(f"  {k:<26} {v:.4g}")
    return "\n".join(lines)


def run_vae_architecture(run: Path):
    """The run's VAE architecture (random weights) from vae_config.json: no hub access needed to resume."""
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_config(json.loads((Path(run) / "vae_config.json").read_text()))


def load_run(run: str | Path, *, checkpoint: str | Path | None = None, progress: bool = False) -> TrainState:
    """Rebuild a run's models from its directory and load its newest good (or the given) checkpoint.

    For sampling, evaluation and probes: `state.ema` is the EMA SiT, `state.vae` the (tuned) VAE, and
    `state.ema.denormalize_latent` maps SiT-space latents back to the VAE's."""
    run = Path(run)
    if not (run / "config.json").is_file():
        raise RunError(f"'{run}' is not a run directory (no config.json); pass a folder written by `repae-lab train`.")
    cfg = config_from_dict(json.loads((run / "config.json").read_text()))
    state = build_state(cfg, progress=progress, vae=run_vae_architecture(run))
    ckpt = Path(checkpoint) if checkpoint else rundir.latest_good_checkpoint(run)
    if ckpt is None:
        raise RunError(f"run '{run}' has no complete checkpoint yet; wait for one or lower checkpoint_every.")
    restore_checkpoint(state, ckpt)
    state.extra["run_dir"] = run
    return state
