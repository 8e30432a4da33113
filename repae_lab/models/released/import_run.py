"""Import a released SiT checkpoint as a repae_lab run directory, and load such a run back for sampling.

    OUT/
      config.json        a Config describing the imported model as well as the Config allows (run_config.py)
      sit_config.json    the SiTConfig (key "alignment_depth", z_dims a list): rebuilds the SiT on its own
      vae_config.json    the VAE's diffusers config
      imported.json      where it came from: source, sha256, kind, step, inferred architecture, notes
      checkpoints/step-NNNNNNNN/  sit (raw model), ema, vae [, discriminator] .safetensors, state.json, manifest.json

The checkpoint folder is written by rundir.save_checkpoint (sha256 manifest); the whole run directory is built
under a temporary name beside OUT and renamed into place, so an interrupted import leaves nothing half-written.
state.json has no optimizer state ({"step": N, "optimizers": {}, "scaler": null}): the official optimizer
states are not imported.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from ..from_run import write_sit_config
from ...rundir import atomic_write_text, save_checkpoint, sha256_file
from .errors import ReleasedModelError
from .latents_stats import SD_VAE_SCALE, bn_buffers, load_latents_stats, stats_from_bn
from .run_config import describe_as_config
from .sit_checkpoint import describe, load_sit_checkpoint
from .vae_loading import load_released_vae, with_latent_stats

IMPORTED_FILE = "imported.json"


def _set_latent_stats(sits, mean, std) -> None:
    buffers = bn_buffers(mean, std)
    for sit in sits:
        if sit.bn.running_mean.numel() != buffers["bn.running_mean"].numel():
            raise ReleasedModelError(f"the latent statistics have {buffers['bn.running_mean'].numel()} channels but the "
                                     f"SiT takes {sit.bn.running_mean.numel()}; pass the statistics of its VAE.")
        sit.bn.running_mean.copy_(buffers["bn.running_mean"])
        sit.bn.running_var.copy_(buffers["bn.running_var"])


def import_checkpoint(src, out, *, vae=None, latents_stats=None, num_heads: int | None = None,
                      num_classes: int | None = None, alignment_depth: int | None = None,
                      latent_scale: float = SD_VAE_SCALE, overwrite: bool = False, cache_dir=None) -> Path:
    """Write the run directory OUT for a released SiT checkpoint; returns OUT.

    `vae`: a VAE source (see load_released_vae) for checkpoints without one (REPA, train_ldm_only.py), or to
    replace the bundled one. `latents_stats`: a *-latents-stats.pt whose statistics replace the SiT's BatchNorm
    buffers (both raw and EMA). The other keywords are passed to load_sit_checkpoint."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ReleasedModelError(f"'{out}' already exists and is not empty; pick a new --out folder or pass "
                                 f"overwrite=True.")
    ck = load_sit_checkpoint(src, num_heads=num_heads, num_classes=num_classes, alignment_depth=alignment_depth,
                             latent_scale=latent_scale, cache_dir=cache_dir)
    notes = list(ck.notes)
    if vae is not None:
        the_vae = load_released_vae(vae, cache_dir=cache_dir)
        notes.append(f"VAE from {vae}")
    elif ck.vae is not None:
        the_vae = ck.vae
    else:
        raise ReleasedModelError(f"{ck.source} holds no VAE (a {ck.kind} checkpoint); pass the VAE it was trained on "
                                 f"with vae= (--vae SRC), e.g. REPA-E/e2e-vavae-hf or an SD-VAE folder.")
    if int(the_vae.config.latent_channels) != ck.config.in_channels:
        raise ReleasedModelError(f"the VAE has {the_vae.config.latent_channels} latent channels but the SiT takes "
                                 f"{ck.config.in_channels}; pass the VAE the SiT was trained on.")
    if latents_stats is not None:
        _set_latent_stats((ck.ema, ck.model), *load_latents_stats(latents_stats, cache_dir=cache_dir))
        notes.append(f"latent BatchNorm statistics replaced from {latents_stats}")
    mean, std = stats_from_bn(ck.ema.bn.running_mean, ck.ema.bn.running_var, ck.ema.bn.eps)
    if the_vae.config.get("latents_mean") is None:
        the_vae = with_latent_stats(the_vae, mean, std)
    cfg, cfg_notes = describe_as_config(ck, the_vae, vae_spec=str(vae) if vae is not None else None)
    step = int(ck.step or 0)
    source = Path(ck.source)
    record = {
        "source": str(src), "resolved": ck.source, "source_sha256": sha256_file(source) if source.is_file() else None,
        "kind": ck.kind,
        "step": step, "sit": describe(ck), "vae_source": str(vae) if vae is not None else "the checkpoint",
        "latents_stats_source": str(latents_stats) if latents_stats is not None else None,
        "fixed_scale": ck.fixed_scale, "sit_latents_mean": mean.tolist(), "sit_latents_std": std.tolist(),
        "args": ck.args, "notes": notes + cfg_notes, "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "importer": "repae_lab.models.released.import_checkpoint",
    }
    files = {"sit": ck.model.state_dict(), "ema": ck.ema.state_dict(), "vae": the_vae.state_dict()}
    if ck.discriminator is not None:
        files["discriminator"] = ck.discriminator.state_dict()

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.import-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    old = None
    try:
        atomic_write_text(tmp / "config.json", cfg.to_json())
        atomic_write_text(tmp / "vae_config.json", json.dumps(dict(the_vae.config), indent=1, default=list))
        write_sit_config(tmp, ck.config)
        atomic_write_text(tmp / IMPORTED_FILE, json.dumps(record, indent=1, default=str))
        save_checkpoint(tmp, step, files, {"step": step, "optimizers": {}, "scaler": None}, keep=1)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not out.exists():
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out
