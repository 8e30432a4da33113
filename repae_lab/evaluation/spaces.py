"""Which feature spaces judge a run: the workshop evaluator on workshop-sized data, Inception (FID) and DINOv2 on
paper-sized data; and building them."""
from __future__ import annotations

from ..metrics.feature_spaces import FEATURE_SPACES, FeatureSpace, FeatureSpaceError, build_feature_space


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


def training_eval_spaces(cfg) -> tuple[tuple[str, ...], dict[str, str | None]]:
    """Feature spaces and weights for evaluations during training.

    'auto' never asks for weights a run cannot have: the workshop evaluator on workshop data; otherwise DINOv2
    (the weights the run's REPA target already loaded, when it is dinov2-b) and Inception where a local file
    is configured."""
    dinov2 = cfg.eval_dinov2_weights
    if dinov2 is None and cfg.target_encoder == "dinov2-b":
        dinov2 = cfg.target_encoder_weights
    weights = {"dinov2": dinov2, "inception": cfg.eval_inception_weights}
    if cfg.eval_space not in (None, "auto"):
        return parse_spaces(cfg.eval_space), weights
    if default_spaces(cfg) == ("workshop",):
        return ("workshop",), weights
    return ("dinov2",) + (("inception",) if weights["inception"] else ()), weights
