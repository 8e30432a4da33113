"""One resolved configuration per run: defaults -> preset -> YAML file -> key=value overrides.

The result is a frozen dataclass saved as config.json before step 0, so a run directory always says
exactly what produced it. Every bad key or value is rejected here, at the boundary, with a message that
names the key and the fix; nothing deeper in the library has to re-check user input.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

RECIPES = ("vanilla", "repa", "e2e-diffusion", "repa-e", "on-frozen-e2e-vae")


class ConfigError(ValueError):
    """A configuration key or value a user supplied is wrong; the message says which and how to fix it."""


@dataclass(frozen=True)
class Config:
    # what to train
    recipe: str = "repa-e"             # one of RECIPES
    preset: str = "workshop"           # the preset these values started from (informational)
    # data
    dataset: str = "digits"            # digits | fashion-mnist | cifar10 | imagefolder
    data_root: str | None = None       # folder for fashion-mnist / cifar10 / imagefolder; None = the dataset's default place
    download: bool = False             # let torchvision download (needs internet)
    resolution: int = 16               # pixels, square
    num_workers: int = 0               # DataLoader workers; in-memory datasets need none
    # models
    vae: str = "workshop-16"           # a VAE_CONFIGS name (fresh random VAE) or a diffusers folder / hub id
    vae_pretrain_steps: int = 0        # a VAE_CONFIGS VAE is first pretrained this many steps (L1 + KL) on the
                                       # dataset and cached, as the paper's recipes start from a pretrained VAE;
                                       # 0 = start from random weights. Ignored for a VAE loaded from a folder.
    sit_size: str = "W"                # a SIT_SIZES name
    patch_size: int = 2
    alignment_depth: int = 2           # REPA reads the SiT hidden state after this many blocks
    projector_dim: int = 256           # width of the REPA projector MLP (2048 in the paper)
    class_dropout_prob: float = 0.1    # label dropout for classifier-free guidance
    target_encoder: str = "workshop"   # a TARGET_ENCODERS name
    target_encoder_weights: str | None = None  # local weights file or hub id for pretrained encoders
    encoder_steps: int = 300           # training steps of the workshop target encoder (cached after the first run)
    perceptual: str = "auto"           # auto | lpips | workshop | none  (auto: LPIPS-VGG where its weights exist)
    disc_layers: int = 2               # PatchGAN depth (3 in the paper; 2 fits 16x16 images)
    disc_ndf: int = 32                 # PatchGAN base width (64 in the paper)
    # optimisation (AdamW per module, REPAE_FACTS section 2)
    steps: int = 500
    batch_size: int = 32               # global batch
    seed: int = 0
    lr: float = 1e-4                   # SiT + projector learning rate
    vae_lr: float = 1e-4
    disc_lr: float = 1e-4
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    grad_clip: float = 1.0             # max gradient norm, per module
    ema_decay: float = 0.9999          # EMA of the SiT, BN buffers included
    mixed_precision: str = "no"        # no | bf16 | fp16
    # speed switches (benchmarks/throughput.py measures them)
    tf32: bool = True                  # TF32 matmuls / convolutions on Ampere+ GPUs
    cudnn_benchmark: bool = True       # let cuDNN time its convolution algorithms once (fixed shapes; GPU only);
                                       # off for GPU runs that must repeat bitwise
    compile: bool = False              # torch.compile the SiT
    channels_last: bool = False        # channels-last memory format for the convolutional networks (VAE,
                                       # discriminator, perceptual network)
    grad_accumulation: int = 1         # micro-batches per step (each process's share of batch_size is split)
    activation_checkpointing: bool = False   # recompute SiT blocks in backward to save memory
    cache_latents: bool = False        # frozen-VAE recipes: encode the dataset once (posterior mean and std)
    # loss weights (REPAE_FACTS section 1)
    proj_coeff: float = 0.5            # REPA weight on the SiT / projector side
    vae_align_proj_coeff: float = 1.5  # REPA weight on the VAE side
    bn_momentum: float = 0.1           # latent BatchNorm momentum
    l1_weight: float = 1.0
    perceptual_weight: float = 1.0
    kl_weight: float = 1e-6
    gan_weight: float = 0.1            # generator hinge weight, fixed (no adaptive weight)
    disc_start: int = 0                # step from which the GAN terms are on
    # ablation switches (only meaningful for repa-e)
    stop_grad: bool = True             # False: the diffusion loss also reaches the VAE
    latent_norm: bool = True           # False: the latent BatchNorm is frozen at the starting VAE's statistics
    vae_reg: bool = True               # False: no L1 / perceptual / KL / GAN on the VAE
    # alarms (repae_lab/alarms.py)
    alarm_policy: str = "warn"         # warn | stop | rollback (to the last good checkpoint, lr x rollback_lr_factor)
    rollback_lr_factor: float = 0.5
    max_rollbacks: int = 3             # then stop
    alarm_patience: int = 20           # steps a sustained alarm condition must hold
    alarm_grad_norm_min: float = 1e-8
    alarm_disc_loss_min: float = 1e-3
    alarm_spatial_var_ratio: float = 0.01
    # evaluation during training (repae_lab/evaluate.py)
    eval_every: int = 0                # evaluate every N steps and at step 0 (0 = off)
    eval_n: int = 128                  # class-balanced samples per evaluation
    eval_sampler: str = "heun"         # sde | euler | heun
    eval_steps: int = 10               # sampler steps
    eval_space: str = "auto"           # auto | comma-separated: workshop, dinov2, inception
    eval_inception_weights: str | None = None
    eval_dinov2_weights: str | None = None   # None: target_encoder_weights when the target is dinov2-b
    # bookkeeping
    log_every: int = 10                # metrics-log line every N steps (means over the interval)
    snapshot_every: int = 100          # probe-set snapshot every N steps (0 = only first and last)
    checkpoint_every: int = 250        # resumable checkpoint every N steps (0 = only the last)
    keep_checkpoints: int = 2          # how many checkpoints to keep
    probe_size: int = 200              # images in the fixed, class-balanced probe set
    snapshot_recons: int = 64          # reconstructions stored per snapshot
    snapshot_t: tuple[float, ...] = (0.25, 0.5, 0.75)  # noise levels at which SiT tokens are snapshot
    latent_stats_batches: int = 8      # batches used to estimate the starting VAE's latent statistics
    device: str = "auto"               # auto | cpu | cuda | cuda:N
    cache_dir: str | None = None       # where the workshop encoders and VAEs are cached (default ~/.cache/repae_lab)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)


FIELD_TYPES: dict[str, Any] = typing.get_type_hints(Config)
FIELD_NAMES = tuple(f.name for f in fields(Config))

# ---------------------------------------------------------------------------------------------------------
# Presets: the workshop ones run on a laptop CPU in minutes; the paper ones restate REPAE_FACTS sections 2-4.

_PAPER_COMMON: dict[str, Any] = dict(
    dataset="imagefolder", resolution=256, num_workers=8,
    sit_size="XL", alignment_depth=8, projector_dim=2048, class_dropout_prob=0.1,
    target_encoder="dinov2-b", perceptual="lpips", disc_layers=3, disc_ndf=64,
    steps=400_000, batch_size=256, lr=1e-4, vae_lr=1e-4, disc_lr=1e-4, weight_decay=0.0,
    adam_beta1=0.9, adam_beta2=0.999, adam_eps=1e-8, grad_clip=1.0, ema_decay=0.9999,
    mixed_precision="fp16", proj_coeff=0.5, vae_align_proj_coeff=1.5, bn_momentum=0.1,
    l1_weight=1.0, perceptual_weight=1.0, kl_weight=1e-6, gan_weight=0.1, disc_start=0,
    log_every=100, snapshot_every=10_000, checkpoint_every=10_000, keep_checkpoints=3,
    probe_size=1000, snapshot_recons=16,
)

PRESETS: dict[str, dict[str, Any]] = {
    # digits at 16x16 -> 4x8x8 latent -> 16 tokens with patch 2
    "workshop": dict(
        dataset="digits", resolution=16, vae="workshop-16", vae_pretrain_steps=300, sit_size="W-tiny", patch_size=2,
        alignment_depth=2, projector_dim=256, disc_layers=2, disc_ndf=32,
        steps=500, batch_size=32, ema_decay=0.99, log_every=10, snapshot_every=100,
        checkpoint_every=250, probe_size=200, eval_every=250,
    ),
    # Fashion-MNIST at 32x32 -> 4x8x8 latent -> 16 tokens with patch 2
    "workshop-fashion": dict(
        dataset="fashion-mnist", resolution=32, vae="workshop-32", vae_pretrain_steps=300, sit_size="W", patch_size=2,
        alignment_depth=2, projector_dim=256, disc_layers=3, disc_ndf=32,
        steps=2000, batch_size=32, ema_decay=0.999, log_every=10, snapshot_every=250,
        checkpoint_every=500, probe_size=500, eval_every=500,
    ),
    # REPA-E SiT-XL/2 on SD-VAE (f8c4): 32x32x4 latent, 256 tokens
    "imagenet256-sit-xl2-sdvae": dict(_PAPER_COMMON, vae="stabilityai/sd-vae-ft-mse", patch_size=2),
    # REPA-E SiT-XL/1 on an f16c32 VAE (IN-VAE / VA-VAE shape): 16x16x32 latent, 256 tokens.
    # The default builds the f16c32 architecture from random weights (REPA-E Tab. 8 trains from scratch too);
    # set vae=FOLDER to start from a pretrained f16 VAE in the diffusers layout.
    "imagenet256-sit-xl1-f16": dict(_PAPER_COMMON, vae="f16c32", patch_size=1),
}


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def _coerce(key: str, value: Any) -> Any:
    """Turn a value from the CLI, YAML or Python into the field's type, or say what was expected."""
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
    need(cfg.mixed_precision in ("no", "bf16", "fp16"), f"mixed_precision must be no, bf16 or fp16, got '{cfg.mixed_precision}'.")
    need(cfg.perceptual in ("auto", "lpips", "workshop", "none"), f"perceptual must be auto, lpips, workshop or none, got '{cfg.perceptual}'.")
    need(cfg.batch_size % cfg.grad_accumulation == 0,
         f"batch_size ({cfg.batch_size}) must divide into grad_accumulation ({cfg.grad_accumulation}) micro-batches.")
    need(not (cfg.cache_latents and cfg.recipe in ("e2e-diffusion", "repa-e")),
         "cache_latents only applies to frozen-VAE recipes (vanilla, repa, on-frozen-e2e-vae): a VAE being trained "
         "changes its latents every step.")
    for key in ("steps", "batch_size", "grad_accumulation", "resolution", "patch_size", "alignment_depth", "projector_dim", "disc_layers", "disc_ndf", "latent_stats_batches", "encoder_steps"):
        need(getattr(cfg, key) >= 1, f"{key} must be at least 1, got {getattr(cfg, key)}.")
    for key in ("log_every", "snapshot_every", "checkpoint_every", "num_workers", "probe_size", "snapshot_recons", "disc_start", "vae_pretrain_steps"):
        need(getattr(cfg, key) >= 0, f"{key} must be 0 or more, got {getattr(cfg, key)}.")
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
    need(cfg.keep_checkpoints >= 1, f"keep_checkpoints must be at least 1, got {cfg.keep_checkpoints}.")
    for key in ("lr", "vae_lr", "disc_lr"):
        need(0 < getattr(cfg, key) < 1, f"{key} must be between 0 and 1 (the paper uses 1e-4), got {getattr(cfg, key)}.")
    need(0 <= cfg.ema_decay < 1, f"ema_decay must be in [0, 1), got {cfg.ema_decay}.")
    need(0 <= cfg.class_dropout_prob < 1, f"class_dropout_prob must be in [0, 1), got {cfg.class_dropout_prob}.")
    need(0 < cfg.bn_momentum <= 1, f"bn_momentum must be in (0, 1], got {cfg.bn_momentum}.")
    need(cfg.grad_clip > 0, f"grad_clip must be positive, got {cfg.grad_clip}.")
    need(all(0.0 <= t <= 1.0 for t in cfg.snapshot_t), f"snapshot_t values must lie in [0, 1], got {cfg.snapshot_t}.")
    for key in ("proj_coeff", "vae_align_proj_coeff", "l1_weight", "perceptual_weight", "kl_weight", "gan_weight", "weight_decay"):
        need(getattr(cfg, key) >= 0, f"{key} must be 0 or more, got {getattr(cfg, key)}.")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist; pass the path of a YAML file of key: value lines.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file '{path}' is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of key: value lines, not a {type(data).__name__}.")
    return data


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """Parse `key=value` strings from the command line."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value, e.g. steps=1000.")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def resolve_config(preset: str = "workshop", *, recipe: str | None = None, yaml_file: str | Path | None = None,
                   overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the preset, then a YAML file, then explicit overrides (later wins)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}.{_suggest(preset, PRESETS)}")
    values: dict[str, Any] = dict(PRESETS[preset], preset=preset)
    layers = [("preset", {}), ("YAML file", load_yaml(yaml_file) if yaml_file else {}), ("override", dict(overrides or {}))]
    if recipe is not None:
        layers[-1][1].setdefault("recipe", recipe)
    for source, layer in layers:
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
