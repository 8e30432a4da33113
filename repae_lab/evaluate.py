"""Evaluating a run: sample with a recorded protocol, measure in one or more feature spaces, log the figures.

    repae-lab eval RUN [--n N] [--space workshop,dinov2,inception] [--sampler sde --steps 250 --cfg 1 ...]

writes RUN/eval/step-XXXXXXXX-TAG.json (figures + protocol), the samples as RUN/eval/step-XXXXXXXX-TAG.npz
(ADM layout) and a .png grid, and appends one record {"step", "kind": "eval", "eval/...": ..., "protocol"} to
RUN/metrics.jsonl, where the training curves live. `evaluate_during_training(state, step)` does the same with a
small n from inside the training loop, so every run gets an FD-versus-steps curve.

Metric names: eval/<metric>_<space> with metric in fd, precision, recall, is, is_std, accuracy (share of samples
the workshop evaluator classifies as their conditioning label), and the VAE's eval/rpsnr, eval/rssim,
eval/rfd_<space>. FID is eval/fd_inception, FD_DINOv2 eval/fd_dinov2.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from . import rundir
from .metrics.feature_spaces import FEATURE_SPACES, FeatureSpace, FeatureSpaceError, build_feature_space, extract_features
from .metrics.frechet import frechet_distance_stats, gaussian_stats
from .metrics.inception_score import inception_score
from .metrics.precision_recall import precision_recall
from .metrics.reconstruction import reconstruct, reconstruction_metrics
from .metrics.references import Reference, reference_statistics
from .sampling import SamplingError, SamplingSpec, check_n, class_balanced_labels, sample_run, save_grid, save_npz

EVAL_DIR = "eval"
PR_K = 3                                  # neighbours for the precision / recall manifolds (Kynkaanniemi et al.)

# What `evaluate_during_training` uses when the Config has no eval_* keys: the same at every step, so the curve
# compares like with like, and cheap (about 6 s on one CPU core for the workshop preset: 128 images x 19 velocity
# evaluations). On the 300-step workshop runs it gave FD 33.2 / 67.0 (repa-e / vanilla) where 500 images with
# Heun-50 gave 32.5 / 66.8: small n biases FD upwards, but it ranks runs and steps the same way.
TRAINING_EVAL_DEFAULTS = {"eval_n": 128, "eval_sampler": "heun", "eval_steps": 10, "eval_space": "auto",
                          "eval_inception_weights": None, "eval_dinov2_weights": None}


def default_spaces(cfg) -> tuple[str, ...]:
    """Workshop-sized data is judged by the workshop evaluator; paper-sized data by Inception (FID) and DINOv2."""
    small = cfg.dataset in ("digits", "fashion-mnist", "cifar10") and cfg.resolution <= 64
    return ("workshop",) if small else ("inception", "dinov2")


def default_n(cfg) -> int:
    """50K as the paper's protocol for paper presets; 1,000 on workshop data (a CPU samples that in minutes)."""
    return 1000 if default_spaces(cfg) == ("workshop",) else 50_000


def parse_spaces(text: str | None, cfg=None) -> tuple[str, ...]:
    if not text:
        return default_spaces(cfg) if cfg is not None else ("workshop",)
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    for name in names:
        if name not in FEATURE_SPACES:
            raise FeatureSpaceError(f"unknown feature space '{name}'; choose from {', '.join(FEATURE_SPACES)} "
                                    f"(comma-separated, e.g. --space workshop,dinov2).")
    return names


def build_spaces(names, *, dataset, weights: dict[str, str | None] | None = None, cache_dir=None, device=None,
                 progress: bool = True) -> dict[str, FeatureSpace]:
    weights = weights or {}
    return {name: build_feature_space(name, dataset=dataset, weights=weights.get(name), cache_dir=cache_dir,
                                      device=device, progress=progress) for name in names}


# ---------------------------------------------------------------------------------------------------------
# Figures of one sample set.

def sample_metrics(images: torch.Tensor, labels: torch.Tensor | None, space: FeatureSpace, reference: Reference, *,
                   seed: int = 0, batch_size: int = 256, device=None) -> dict[str, float]:
    """fd, precision, recall (and is, is_std, accuracy where the space has a classifier) of uint8 samples."""
    feats, logits = extract_features(space, images, batch_size=batch_size, device=device)
    out = {"fd": frechet_distance_stats(gaussian_stats(feats), reference.stats)}
    # precision / recall compare equal numbers of points: k-NN radii shrink as a set grows, so unequal sets
    # would tilt the two figures
    m = min(len(feats), len(reference.features))
    if m > PR_K:
        real_pick = torch.randperm(len(reference.features), generator=torch.Generator().manual_seed(seed + 3))[:m]
        out.update(precision_recall(reference.features[real_pick].double(), feats[:m], k=PR_K))
    if logits is not None:
        out["is"], out["is_std"] = inception_score(logits, splits=min(10, len(logits)))
        if labels is not None and space.name == "workshop":
            out["accuracy"] = (logits.argmax(1) == labels.long()).double().mean().item()
    return out


def evaluate_images(images: torch.Tensor, labels: torch.Tensor | None, dataset, spaces: dict[str, FeatureSpace], *,
                    n_ref: int | None = None, seed: int = 0, cache_dir=None, batch_size: int = 256, device=None,
                    progress: bool = True) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics of a uint8 sample set against `dataset` in every space: ({"eval/fd_workshop": ..}, protocol part)."""
    metrics, refs = {}, {}
    for name, space in spaces.items():
        ref = reference_statistics(space, dataset, n_ref=n_ref, seed=seed, cache_dir=cache_dir,
                                   batch_size=batch_size, device=device, progress=progress)
        for key, value in sample_metrics(images, labels, space, ref, seed=seed, batch_size=batch_size,
                                         device=device).items():
            metrics[f"eval/{key}_{name}"] = value
        refs[name] = {"n_ref": ref.n, "pr_n": min(len(images), len(ref.features)), **space.describe()}
    return metrics, {"n": len(images), "pr_k": PR_K, "reference": {"dataset": dataset.name, "split": "train",
                                                                    "resolution": dataset.resolution}, "spaces": refs}


def evaluate_vae(vae, dataset, spaces: dict[str, FeatureSpace], *, n: int, seed: int = 0, batch_size: int = 64,
                 device=None) -> dict[str, float]:
    """rpsnr, rssim and rfd_<space> of the VAE on a seeded subset of n dataset images (posterior mean)."""
    from .metrics.feature_spaces import dataset_uint8

    n = min(n, len(dataset))
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed + 11))[:n].sort().values
    originals, _ = dataset_uint8(dataset, idx)
    recons = reconstruct(vae, originals, batch_size=batch_size, device=device)
    return {f"eval/{k}": v for k, v in reconstruction_metrics(originals, recons, spaces=spaces,
                                                              batch_size=batch_size, device=device).items()}


# ---------------------------------------------------------------------------------------------------------
# A loaded run.

def evaluate_state(state, *, n: int, spec: SamplingSpec, spaces: dict[str, FeatureSpace], n_ref: int | None = None,
                   recon_n: int | None = None, batch_size: int = 64, step: int | None = None,
                   progress: bool = True):
    """Sample n images from a TrainState and measure them; returns (metrics, protocol, images, labels)."""
    n = check_n(n)
    cfg = state.cfg
    t0 = time.time()
    labels = class_balanced_labels(n, state.dataset.num_classes, spec.seed)
    images, labels = sample_run(state, n, spec, labels=labels, batch_size=batch_size, progress=progress)
    sample_seconds = time.time() - t0
    cache_dir = cfg.cache_dir
    metrics, protocol = evaluate_images(images, labels, state.dataset, spaces, n_ref=n_ref, seed=spec.seed,
                                        cache_dir=cache_dir, device=state.device, progress=progress)
    recon_n = min(n, len(state.dataset)) if recon_n is None else recon_n
    if recon_n > 1:
        metrics.update(evaluate_vae(state.vae, state.dataset, spaces, n=recon_n, seed=spec.seed,
                                    batch_size=batch_size, device=state.device))
    protocol.update({"step": state.step if step is None else step, "recipe": cfg.recipe, "sampling": spec.to_dict(),
                     "labels": f"{spec.labels}, shuffled by seed {spec.seed}", "model": "ema" if spec.ema else "sit",
                     "recon_n": recon_n if recon_n > 1 else 0, "sample_seconds": round(sample_seconds, 2),
                     "images_per_second": round(n / max(sample_seconds, 1e-9), 2), "device": str(state.device)})
    return metrics, protocol, images, labels


def protocol_tag(spec: SamplingSpec, n: int) -> str:
    """A readable file-name tag that tells evaluations with different protocols apart."""
    tag = f"{spec.sampler}{spec.steps}-cfg{spec.cfg_scale:g}"
    if spec.cfg_scale != 1.0 and spec.interval != (0.0, 1.0):
        tag += f"-int{spec.interval[0]:g}-{spec.interval[1]:g}"
    if spec.seed:
        tag += f"-seed{spec.seed}"
    if not spec.ema:
        tag += "-noema"
    return f"{tag}-n{n}"


def write_evaluation(run: Path, step: int, metrics: dict, protocol: dict, *, tag: str, images=None,
                     labels=None, save_npz_file: bool = True) -> dict[str, Any]:
    """RUN/eval/step-XXXXXXXX-TAG.{json,png[,npz]} and one record appended to RUN/metrics.jsonl."""
    folder = Path(run) / EVAL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"step-{step:08d}-{tag}"
    record = {"step": step, "kind": "eval", "time_written": round(time.time(), 1), **metrics, "protocol": protocol}
    rundir.atomic_write_text(stem.with_suffix(".json"), json.dumps(record, indent=1))
    if images is not None:
        save_grid(stem.with_suffix(".png"), images, labels)
        if save_npz_file:
            save_npz(stem.with_suffix(".npz"), images, labels)
    rundir.append_jsonl(Path(run) / "metrics.jsonl", record)
    return record


def evaluate_run(run: str | Path, *, n: int | None = None, spaces: str | tuple[str, ...] | None = None,
                 spec: SamplingSpec = SamplingSpec(), weights: dict[str, str | None] | None = None,
                 n_ref: int | None = None, recon: bool = True, checkpoint: str | Path | None = None,
                 save_samples: bool = True, batch_size: int = 64, progress: bool = True) -> dict[str, Any]:
    """`repae-lab eval RUN`: load the newest good checkpoint, sample, measure, write, log. Returns the record."""
    from .train import load_run

    if isinstance(spaces, (tuple, list)):
        spaces = ",".join(spaces)
    names = parse_spaces(spaces) if spaces else None          # bad names and n fail before the run loads
    n = check_n(n) if n is not None else None
    state = load_run(run, checkpoint=checkpoint, progress=progress)
    names = names or default_spaces(state.cfg)
    n = n or default_n(state.cfg)
    built = build_spaces(names, dataset=state.dataset, weights=weights, cache_dir=state.cfg.cache_dir,
                         device=state.device, progress=progress)
    metrics, protocol, images, labels = evaluate_state(state, n=n, spec=spec, spaces=built, n_ref=n_ref,
                                                       recon_n=None if recon else 0, batch_size=batch_size,
                                                       progress=progress)
    protocol["checkpoint"] = str(rundir.latest_good_checkpoint(run) if checkpoint is None else checkpoint)
    return write_evaluation(Path(run), state.step, metrics, protocol, tag=protocol_tag(spec, n), images=images,
                            labels=labels, save_npz_file=save_samples)


def format_record(record: dict[str, Any]) -> str:
    p = record["protocol"]
    s = p["sampling"]
    lines = [f"step {record['step']} ({p['recipe']}): n={p['n']} {s['sampler']} {s['steps']} steps, cfg {s['cfg_scale']:g}"
             f" on [{s['interval'][0]:g}, {s['interval'][1]:g}], {p['labels']}, {p['images_per_second']} img/s"]
    for key in sorted(k for k in record if k.startswith("eval/")):
        lines.append(f"  {key:<26} {record[key]:.4g}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Inside the training loop.

def _training_setting(cfg, key: str):
    return getattr(cfg, key, TRAINING_EVAL_DEFAULTS[key])


def training_eval_spaces(cfg) -> tuple[tuple[str, ...], dict[str, str | None]]:
    """Feature spaces and weights for evaluations during training.

    'auto' never asks for weights a run cannot have: the workshop evaluator on workshop data; otherwise DINOv2
    (the weights the run's REPA target already loaded, when it is dinov2-b) and Inception where a local file
    is configured."""
    dinov2 = _training_setting(cfg, "eval_dinov2_weights")
    if dinov2 is None and cfg.target_encoder == "dinov2-b":
        dinov2 = cfg.target_encoder_weights
    weights = {"dinov2": dinov2, "inception": _training_setting(cfg, "eval_inception_weights")}
    setting = _training_setting(cfg, "eval_space")
    if setting not in (None, "auto"):
        return parse_spaces(setting), weights
    if default_spaces(cfg) == ("workshop",):
        return ("workshop",), weights
    return ("dinov2",) + (("inception",) if weights["inception"] else ()), weights


def evaluate_during_training(state, step: int) -> dict[str, Any]:
    """A small, fixed-protocol evaluation of the live run (EMA SiT, current VAE); returns the metrics-log record.

    The training loop appends the record to metrics.jsonl (and, when state.extra['run_dir'] is set, a sample
    grid and the record land in RUN/eval/ too). Nothing here touches the training run's state: the models are
    used in eval mode and restored, the sampler draws from its own seeded generators, and the evaluator and the
    reference statistics are built once and kept in state.extra['eval_cache']."""
    devices = [state.device] if state.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):          # building networks draws from the global RNG
        return _evaluate_during_training(state, step)


def _evaluate_during_training(state, step: int) -> dict[str, Any]:
    cfg = state.cfg
    n = int(_training_setting(cfg, "eval_n"))
    spec = SamplingSpec(sampler=_training_setting(cfg, "eval_sampler"), steps=_training_setting(cfg, "eval_steps"),
                        seed=cfg.seed)
    cache = state.extra.setdefault("eval_cache", {})
    if "spaces" not in cache:
        names, weights = training_eval_spaces(cfg)
        cache["spaces"] = build_spaces(names, dataset=state.dataset, weights=weights, cache_dir=cfg.cache_dir,
                                       device=state.device, progress=False)
    metrics, protocol, images, labels = evaluate_state(state, n=n, spec=spec, spaces=cache["spaces"], recon_n=n,
                                                       step=step, progress=False)
    protocol["during_training"] = True
    run = state.extra.get("run_dir")
    if run is not None:
        folder = Path(run) / EVAL_DIR
        folder.mkdir(parents=True, exist_ok=True)
        tag = protocol_tag(spec, n)
        save_grid(folder / f"step-{step:08d}-{tag}.png", images, labels)
        record = {"step": step, "kind": "eval", **metrics, "protocol": protocol}
        rundir.atomic_write_text(folder / f"step-{step:08d}-{tag}.json", json.dumps(record, indent=1))
    return {"step": step, "kind": "eval", **metrics, "protocol": protocol}


def eval_curve(run: str | Path, key: str = "eval/fd_workshop") -> list[tuple[int, float]]:
    """(step, value) pairs of one eval metric from a run's metrics log, for FD-versus-steps plots."""
    return [(r["step"], r[key]) for r in rundir.read_jsonl(Path(run) / "metrics.jsonl")
            if r.get("kind") == "eval" and key in r]


__all__ = ["evaluate_run", "evaluate_during_training", "evaluate_state", "evaluate_images", "evaluate_vae",
           "sample_metrics", "write_evaluation", "eval_curve", "default_spaces", "default_n", "parse_spaces",
           "format_record", "SamplingError"]
