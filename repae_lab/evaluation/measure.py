"""Measuring images: FD, precision / recall, IS and class accuracy of a sample set against a dataset in every
feature space, the VAE's reconstruction figures, and sampling-then-measuring a SiT with a recorded protocol.

Metric names: eval/<metric>_<space> with metric in fd, precision, recall, is, is_std, accuracy (share of samples
the workshop evaluator classifies as their conditioning label), and the VAE's eval/rpsnr, eval/rssim,
eval/rfd_<space>. FID is eval/fd_inception, FD_DINOv2 eval/fd_dinov2.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from ..metrics.feature_spaces import FeatureSpace, dataset_uint8, extract_features
from ..metrics.frechet import frechet_distance_stats, gaussian_stats
from ..metrics.inception_score import inception_score
from ..metrics.precision_recall import precision_recall
from ..metrics.reconstruction import reconstruct, reconstruction_metrics
from ..metrics.references import Reference, reference_statistics
from ..sampling import SamplingSpec, check_n, class_balanced_labels, generate_images

PR_K = 3                                  # neighbours for the precision / recall manifolds (Kynkaanniemi et al.)


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
    n = min(n, len(dataset))
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed + 11))[:n].sort().values
    originals, _ = dataset_uint8(dataset, idx)
    recons = reconstruct(vae, originals, batch_size=batch_size, device=device)
    return {f"eval/{k}": v for k, v in reconstruction_metrics(originals, recons, spaces=spaces,
                                                              batch_size=batch_size, device=device).items()}


def evaluate_sampling(sit, vae, dataset, *, n: int, spec: SamplingSpec, spaces: dict[str, FeatureSpace],
                      device, step: int, recipe: str, n_ref: int | None = None, recon_n: int | None = None,
                      cache_dir=None, batch_size: int = 64, progress: bool = True):
    """Sample n class-balanced images with `sit` and `vae`, and measure them (and the VAE's reconstructions of
    recon_n dataset images; default n, 0 = none). Returns (metrics, protocol, images, labels)."""
    n = check_n(n)
    t0 = time.time()
    labels = class_balanced_labels(n, sit.cfg.num_classes, spec.seed)
    images = generate_images(sit, vae, labels, spec, batch_size=batch_size, device=device, progress=progress)
    sample_seconds = time.time() - t0
    metrics, protocol = evaluate_images(images, labels, dataset, spaces, n_ref=n_ref, seed=spec.seed,
                                        cache_dir=cache_dir, device=device, progress=progress)
    recon_n = min(n, len(dataset)) if recon_n is None else recon_n
    if recon_n > 1:
        metrics.update(evaluate_vae(vae, dataset, spaces, n=recon_n, seed=spec.seed, batch_size=batch_size,
                                    device=device))
    protocol.update({"step": step, "recipe": recipe, "sampling": spec.to_dict(),
                     "labels": f"{spec.labels}, shuffled by seed {spec.seed}", "model": "ema" if spec.ema else "sit",
                     "recon_n": recon_n if recon_n > 1 else 0, "sample_seconds": round(sample_seconds, 2),
                     "images_per_second": round(n / max(sample_seconds, 1e-9), 2), "device": str(device)})
    return metrics, protocol, images, labels
