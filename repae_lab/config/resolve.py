"""Resolving a run's configuration: defaults -> preset -> YAML file -> key=value overrides.

The result is a frozen Config saved as config.json before step 0, so a run directory always says exactly what
produced it. Every bad key or value is rejected here, at the boundary, with a message that names the key and
the fix; nothing deeper in the library has to re-check user input.
"""
from __future__ import annotations

import difflib
import re
import typing
from pathlib import Path
from typing import Any

from .inputs import ConfigError, load_yaml
from .presets import PRESETS
from .recipes import RECIPES, routing
from .schema import FIELD_NAMES, FIELD_TYPES, Config
from .sizes import SIT_SIZES


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


# values an earlier version wrote into config.json, and what they mean now
LEGACY_VALUES = {"compile": {False: "none", True: "full", "false": "none", "true": "full"}}
COMPILE_MODES = ("none", "regional", "full")
PROJECTORS = ("mlp", "conv")            # REPA's MLP, iREPA's convolution (models/sit.py build_projector)
TARGET_NORMS = ("none", "spatial")      # losses.py spatial_normalize


def _coerce(key: str, value: Any) -> Any:
    """Turn a value from the CLI, YAML or Python into the field's type, or say what was expected."""
    legacy = LEGACY_VALUES.get(key, {})
    if isinstance(value, (bool, str)) and (value.strip().lower() if isinstance(value, str) else value) in legacy:
        value = legacy[value.strip().lower() if isinstance(value, str) else value]
    want = FIELD_TYPES[key]
    origin = typing.get_origin(want)
    args = typing.get_args(want)
    optional = origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args
    if optional:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        want = next(a for a in args if a is not type(None))
        origin = typing.get_origin(want)
    bad = ConfigError(f"config key '{key}' expects {_type_name(FIELD_TYPES[key])}, got {value!r}.")
    if want is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.strip().lower() in ("true", "yes", "1", "on")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise bad
    if want is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value.replace("_", ""))
            except ValueError:
                raise bad from None
            if f.is_integer():
                return int(f)
        raise bad
    if want is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if want is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise bad
        try:
            return tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise bad from None
    return value


def _type_name(t) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


def _check_ranges(cfg: Config) -> None:
    """Value checks that do not need the models built; each names the key and what is allowed."""
    def need(cond: bool, msg: str):
        if not cond:
            raise ConfigError(msg)

    need(cfg.recipe in RECIPES, f"unknown recipe '{cfg.recipe}'; choose one of {', '.join(RECIPES)}.{_suggest(cfg.recipe, RECIPES)}")
    for key in ("steps", "batch_size", "grad_accumulation", "resolution", "patch_size", "projector_dim", "disc_layers", "disc_ndf", "latent_stats_batches"):
        need(getattr(cfg, key) >= 1, f"{key} must be at least 1, got {getattr(cfg, key)}.")
    for key in ("log_every", "snapshot_every", "checkpoint_every", "num_workers", "probe_size", "snapshot_recons", "disc_start", "vae_pretrain_steps", "encoder_steps"):
        need(getattr(cfg, key) >= 0, f"{key} must be 0 or more, got {getattr(cfg, key)}.")
    need(cfg.batch_size % cfg.grad_accumulation == 0,
         f"batch_size ({cfg.batch_size}) must divide into grad_accumulation ({cfg.grad_accumulation}) micro-batches.")
    need(cfg.mixed_precision in ("no", "bf16", "fp16"), f"mixed_precision must be no, bf16 or fp16, got '{cfg.mixed_precision}'.")
    need(cfg.compile in COMPILE_MODES, f"compile must be one of {', '.join(COMPILE_MODES)} (true = full), got "
         f"'{cfg.compile}'.{_suggest(cfg.compile, COMPILE_MODES)}")
    need(not (cfg.cuda_graphs and cfg.mixed_precision == "fp16"),
         "cuda_graphs=true works with mixed_precision no or bf16: fp16's gradient scaler decides on the host whether "
         "each update runs. Use mixed_precision=bf16 or cuda_graphs=false.")
    need(cfg.perceptual in ("auto", "lpips", "workshop", "none"), f"perceptual must be auto, lpips, workshop or none, got '{cfg.perceptual}'.")
    need(not (cfg.cache_latents and routing(cfg).trains_vae),
         f"cache_latents only applies to frozen-VAE recipes ({', '.join(n for n, r in RECIPES.items() if not r.trains_vae)}): "
         f"a VAE being trained changes its latents every step.")
    need(cfg.sit_size in SIT_SIZES, f"unknown sit_size '{cfg.sit_size}'; choose one of {', '.join(SIT_SIZES)}."
         f"{_suggest(cfg.sit_size, SIT_SIZES)}")
    depth = SIT_SIZES[cfg.sit_size]["depth"]
    need(1 <= cfg.alignment_depth <= depth, f"alignment_depth must be between 1 and {depth} (the depth of SiT-"
         f"{cfg.sit_size}), got {cfg.alignment_depth}.")
    need(cfg.alarm_policy in ("warn", "stop", "rollback"), f"alarm_policy must be warn, stop or rollback, got '{cfg.alarm_policy}'.")
    need(0 < cfg.rollback_lr_factor <= 1, f"rollback_lr_factor must be in (0, 1], got {cfg.rollback_lr_factor}.")
    need(cfg.max_rollbacks >= 0 and cfg.alarm_patience >= 1, "max_rollbacks must be 0 or more and alarm_patience at least 1.")
    need(not (cfg.log_every and cfg.checkpoint_every and cfg.checkpoint_every % cfg.log_every),
         f"checkpoint_every ({cfg.checkpoint_every}) must be a multiple of log_every ({cfg.log_every}), so a resumed "
         f"run logs the same intervals as an uninterrupted one.")
    need(cfg.eval_every >= 0 and cfg.eval_n >= 4, f"eval_every must be 0 or more and eval_n at least 4, got {cfg.eval_every} / {cfg.eval_n}.")
    need(cfg.eval_sampler in ("sde", "euler", "heun"), f"eval_sampler must be sde, euler or heun, got '{cfg.eval_sampler}'.")
    need(cfg.eval_steps >= (2 if cfg.eval_sampler == "sde" else 1), f"eval_steps too small for {cfg.eval_sampler}: {cfg.eval_steps}.")
    spaces = [x.strip() for x in cfg.eval_space.split(",") if x.strip()]
    need(cfg.eval_space == "auto" or all(x in ("workshop", "dinov2", "inception") for x in spaces),
         f"eval_space must be auto or a comma-separated list of workshop, dinov2, inception; got '{cfg.eval_space}'.")
    need(cfg.eval_cfg_scale >= 0, f"eval_cfg_scale must be 0 or more (1 = no guidance), got {cfg.eval_cfg_scale}.")
    need(len(cfg.eval_interval) == 2 and 0 <= cfg.eval_interval[0] <= cfg.eval_interval[1] <= 1,
         f"eval_interval must be LOW,HIGH with 0 <= LOW <= HIGH <= 1, got {cfg.eval_interval}.")
    trackers = [x.strip() for x in cfg.tracker.split(",") if x.strip()]
    need(trackers == ["none"] or all(x in ("tensorboard", "wandb") for x in trackers),
         f"tracker must be none, tensorboard, wandb or both comma-separated (tensorboard,wandb), got '{cfg.tracker}'.")
    need(cfg.tracker_samples >= 0 and cfg.tracker_sample_steps >= 1, f"tracker_samples must be 0 or more and "
         f"tracker_sample_steps at least 1, got {cfg.tracker_samples} / {cfg.tracker_sample_steps}.")
    need(cfg.keep_checkpoints >= 1, f"keep_checkpoints must be at least 1, got {cfg.keep_checkpoints}.")
    for key in ("lr", "vae_lr", "disc_lr"):
        need(0 < getattr(cfg, key) < 1, f"{key} must be between 0 and 1 (the paper uses 1e-4), got {getattr(cfg, key)}.")
    need(0 <= cfg.ema_decay < 1, f"ema_decay must be in [0, 1), got {cfg.ema_decay}.")
    for key in ("adam_beta1", "adam_beta2"):
        need(0 <= getattr(cfg, key) < 1, f"{key} must be in [0, 1) (the paper uses 0.9 and 0.999), got {getattr(cfg, key)}.")
    need(cfg.adam_eps > 0, f"adam_eps must be positive (the paper uses 1e-8), got {cfg.adam_eps}.")
    need(re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", cfg.device) is not None,
         f"device must be auto, cpu, cuda, cuda:N or mps, got '{cfg.device}'.")
    if routing(cfg).trains_vae and cfg.vae_reg and cfg.gan_weight > 0:
        # the PatchGAN halves the image disc_layers times, then two 4x4 convolutions need a 3x3 map to act on
        smallest = 3 * 2 ** cfg.disc_layers
        need(cfg.resolution >= smallest, f"resolution {cfg.resolution} is too small for the PatchGAN with disc_layers="
             f"{cfg.disc_layers} (it needs at least {smallest}); raise resolution, lower disc_layers or set gan_weight=0.")
    need(0 <= cfg.class_dropout_prob < 1, f"class_dropout_prob must be in [0, 1), got {cfg.class_dropout_prob}.")
    need(0 < cfg.bn_momentum <= 1, f"bn_momentum must be in (0, 1], got {cfg.bn_momentum}.")
    need(cfg.grad_clip > 0, f"grad_clip must be positive, got {cfg.grad_clip}.")
    need(all(0.0 <= t <= 1.0 for t in cfg.snapshot_t), f"snapshot_t values must lie in [0, 1], got {cfg.snapshot_t}.")
    need(cfg.projector in PROJECTORS, f"projector must be one of {', '.join(PROJECTORS)}, got '{cfg.projector}'."
         f"{_suggest(cfg.projector, PROJECTORS)}")
    need(cfg.projector_kernel >= 1 and cfg.projector_kernel % 2 == 1,
         f"projector_kernel must be an odd number of tokens (1, 3, 5, ...) so the grid keeps its size, got "
         f"{cfg.projector_kernel}.")
    need(cfg.target_norm in TARGET_NORMS, f"target_norm must be one of {', '.join(TARGET_NORMS)}, got "
         f"'{cfg.target_norm}'.{_suggest(cfg.target_norm, TARGET_NORMS)}")
    need(0 <= cfg.target_norm_gamma <= 1, f"target_norm_gamma must be in [0, 1] (the share of the token mean "
         f"subtracted; iREPA uses 0.6), got {cfg.target_norm_gamma}.")
    need(cfg.repa_stop_step is None or cfg.repa_stop_step >= 0,
         f"repa_stop_step must be 0 or more (0 or none = never stop), got {cfg.repa_stop_step}.")
    for key in ("proj_coeff", "vae_align_proj_coeff", "l1_weight", "perceptual_weight", "kl_weight", "gan_weight", "weight_decay"):
        need(getattr(cfg, key) >= 0, f"{key} must be 0 or more, got {getattr(cfg, key)}.")


def resolve_config(preset: str = "workshop", *, recipe: str | None = None, yaml_file: str | Path | None = None,
                   overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the preset, then a YAML file, then explicit overrides (later wins)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}.{_suggest(preset, PRESETS)}")
    values: dict[str, Any] = {"preset": preset}
    layers = [(f"preset {preset}", PRESETS[preset]), ("YAML file", load_yaml(yaml_file) if yaml_file else {}),
              ("override", dict(overrides or {}))]
    if recipe is not None:
        layers[-1][1].setdefault("recipe", recipe)
    for source, layer in layers:           # the preset's keys are checked like a user's
        for key, value in layer.items():
            if key not in FIELD_NAMES:
                raise ConfigError(f"unknown config key '{key}' (from {source}).{_suggest(key, FIELD_NAMES)} "
                                  f"Valid keys: {', '.join(FIELD_NAMES)}.")
            values[key] = value
    coerced = {k: _coerce(k, v) for k, v in values.items()}
    cfg = Config(**coerced)
    _check_ranges(cfg)
    return cfg


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config from a run directory's config.json (unknown keys are an error: a newer or foreign run)."""
    unknown = set(data) - set(FIELD_NAMES)
    if unknown:
        raise ConfigError(f"config has keys this version does not know: {sorted(unknown)}; was the run written by another version?")
    cfg = Config(**{k: _coerce(k, v) for k, v in data.items()})
    _check_ranges(cfg)
    return cfg


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """`cfg` with `overrides` applied (keys checked and values coerced as for resolve_config)."""
    for key in overrides:
        if key not in FIELD_NAMES:
            raise ConfigError(f"unknown config key '{key}' (from override).{_suggest(key, FIELD_NAMES)} "
                              f"Valid keys: {', '.join(FIELD_NAMES)}.")
    new = Config(**{**cfg.to_dict(), **{k: _coerce(k, v) for k, v in overrides.items()}})
    _check_ranges(new)
    return new
