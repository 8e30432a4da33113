"""Feature spaces in which Frechet distances, precision / recall and Inception Scores are computed.

Three spaces share one interface (metrics/space.py): uint8 images (N, C, H, W) -> features (N, D), and class logits where the
network has a classifier head.

- `workshop`: a small residual CNN the project trains itself, by classification on the run's dataset, and
  caches on disk (metrics/workshop_evaluator.py); deliberately not the REPA target.
- `dinov2`: DINOv2 ViT-B/14 through timm: ImageNet normalisation, bicubic resize to 224, CLS token after the
  final norm (FD_DINOv2, Stein et al. 2023 use the same recipe with ViT-L/14).
- `inception`: torch-fidelity's port of the TF Inception-V3 (2015-12-05) the ADM evaluator uses: pool3
  features (2048) for FID / precision / recall, the unbiased logits for the Inception Score.

Pretrained weights cannot be downloaded on offline machines: `dinov2` and `inception` take a local weights
file (or, for DINOv2, a hub id), and the tests build the same architectures from random weights.
"""
from __future__ import annotations

from .pretrained_spaces import DinoV2Space, InceptionSpace, dinov2_space, inception_space
from .space import FeatureSpace, FeatureSpaceError, extract_features, uint8_to_unit
from .workshop_evaluator import (EvaluatorConfig, EvaluatorNet, WorkshopSpace, dataset_uint8, train_evaluator,
                                 workshop_evaluator_for)

FEATURE_SPACES = ("workshop", "dinov2", "inception")

__all__ = ["FEATURE_SPACES", "DinoV2Space", "EvaluatorConfig", "EvaluatorNet", "FeatureSpace", "FeatureSpaceError",
           "InceptionSpace", "WorkshopSpace", "build_feature_space", "dataset_uint8", "dinov2_space",
           "extract_features", "inception_space", "train_evaluator", "uint8_to_unit", "workshop_evaluator_for"]


def build_feature_space(name: str, *, dataset=None, weights: str | None = None, cache_dir=None, device=None,
                        progress: bool = True) -> FeatureSpace:
    """A feature space by name; `dataset` is needed for `workshop`, `weights` for `inception` (and `dinov2` offline)."""
    if name == "workshop":
        if dataset is None:
            raise FeatureSpaceError("the workshop feature space is trained on a dataset; pass dataset=.")
        net, stats = workshop_evaluator_for(dataset, cache_dir=cache_dir, progress=progress)
        space: FeatureSpace = WorkshopSpace(net, stats)
    elif name == "dinov2":
        space = dinov2_space(weights)
    elif name == "inception":
        space = inception_space(weights)
    else:
        raise FeatureSpaceError(f"unknown feature space '{name}'; choose from {', '.join(FEATURE_SPACES)}.")
    return space.to(device) if device is not None else space
