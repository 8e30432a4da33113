"""What may change when a run is resumed. A resume continues the run its checkpoint belongs to, so only keys
that leave that run the same run may change: its length, learning rates, the cadence of checkpoints,
snapshots, logs and evaluations, the alarm policy, the speed switches and the experiment trackers. Everything
else (recipe, models, data, loss weights, seed) would make the checkpoint a different experiment, and is refused
by name."""
from __future__ import annotations

from typing import Any

from .inputs import ConfigError
from .resolve import apply_overrides
from .schema import Config

RESUME_SAFE_KEYS = frozenset({
    "steps", "lr", "vae_lr", "disc_lr",
    "log_every", "snapshot_every", "checkpoint_every", "keep_checkpoints",
    "eval_every", "eval_n", "eval_sampler", "eval_steps", "eval_cfg_scale", "eval_interval", "eval_space", "eval_inception_weights", "eval_dinov2_weights",
    "alarm_policy", "rollback_lr_factor", "max_rollbacks", "alarm_patience", "alarm_grad_norm_min",
    "alarm_disc_loss_min", "alarm_spatial_var_ratio",
    "tf32", "cudnn_benchmark", "compile", "cuda_graphs", "low_precision_group_norm", "channels_last", "activation_checkpointing", "grad_accumulation",
    "mixed_precision", "num_workers", "device", "cache_dir",
    "tracker", "tracker_samples", "tracker_sample_steps",
})


def resume_config(saved: Config, overrides: dict[str, Any]) -> tuple[Config, dict[str, list]]:
    """(the config to resume with, {key: [old, new]} for every value that changes)."""
    new = apply_overrides(saved, overrides)
    changes = {k: [getattr(saved, k), getattr(new, k)] for k in overrides if getattr(saved, k) != getattr(new, k)}
    refused = sorted(k for k in changes if k not in RESUME_SAFE_KEYS)
    if refused:
        raise ConfigError(f"{', '.join(refused)} cannot change when a run is resumed (the checkpoint belongs to the "
                          f"run as it was); start a new run with --out instead. Keys that can change on resume: "
                          f"{', '.join(sorted(RESUME_SAFE_KEYS))}.")
    return new, changes
