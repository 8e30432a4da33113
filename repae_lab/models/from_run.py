"""The models of a run directory, for sampling, evaluation, probes and export: the EMA SiT, the raw SiT and the
(tuned) VAE of one checkpoint, and nothing else.

Building these needs no dataset, target encoder, discriminator or optimizer: the architectures come from
RUN/sit_config.json and RUN/vae_config.json. Runs written before sit_config.json existed get theirs from
config.json and the shapes of the checkpoint's tensors (the label table gives the classes, the projector the
target width).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from .. import rundir
from ..config import Config, config_from_dict
from ..rundir import layout
from ..rundir.safe_load import load_state_dict_checked
from .devices import pick_device
from .sit import SiT, SiTConfig, sit_config
from .vae import downsample_factor, latent_channels


@dataclass
class LoadedRun:
    """One checkpoint of a run, ready to sample: `ema` is what the paper samples with, `sit` the raw weights.
    Both SiTs and the VAE are frozen and in eval mode; `ema.denormalize_latent` maps SiT-space latents back to
    the VAE's."""
    run: Path
    cfg: Config
    step: int
    checkpoint: Path
    sit: SiT
    ema: SiT
    vae: AutoencoderKL
    device: torch.device

    @property
    def num_classes(self) -> int:
        return self.ema.cfg.num_classes


def run_config(run: str | Path) -> Config:
    """A run's Config from its config.json."""
    run = rundir.check_run_dir(run)
    return config_from_dict(json.loads((run / layout.CONFIG).read_text()))


def run_vae_architecture(run: str | Path) -> AutoencoderKL:
    """The run's VAE architecture (random weights) from vae_config.json: no hub access needed to resume or sample."""
    path = Path(run) / layout.VAE_CONFIG
    if not path.is_file():
        raise rundir.RunError(f"'{run}' has no {layout.VAE_CONFIG}; it was not written by `repae-lab train` (or is "
                            f"incomplete).")
    return AutoencoderKL.from_config(json.loads(path.read_text()))


def write_sit_config(run: str | Path, sit_cfg: SiTConfig) -> None:
    rundir.atomic_write_text(Path(run) / layout.SIT_CONFIG, json.dumps(sit_cfg.to_dict(), indent=1))


def run_sit_config(run: str | Path, cfg: Config, vae, sit_weights: dict[str, torch.Tensor]) -> SiTConfig:
    """The run's SiT architecture: sit_config.json, or (older runs) the config plus the checkpoint's shapes."""
    path = Path(run) / layout.SIT_CONFIG
    if path.is_file():
        return SiTConfig.from_dict(json.loads(path.read_text()))
    rows = sit_weights["y_embedder.embedding_table.weight"].shape[0]
    z_dims = tuple(int(sit_weights[f"projectors.{j}.4.weight"].shape[0])
                   for j in range(sum(1 for k in sit_weights if k.startswith("projectors.") and k.endswith(".4.weight"))))
    return sit_config(cfg.sit_size, input_size=cfg.resolution // downsample_factor(vae), patch_size=cfg.patch_size,
                      in_channels=latent_channels(vae), num_classes=rows - 1,
                      class_dropout_prob=cfg.class_dropout_prob, alignment_depth=cfg.alignment_depth,
                      projector_dim=cfg.projector_dim, z_dims=z_dims, bn_momentum=cfg.bn_momentum)


def load_for_sampling(run: str | Path, *, checkpoint: str | Path | None = None, device=None) -> LoadedRun:
    """The EMA SiT, raw SiT and VAE of a run's newest good checkpoint (or the given one), frozen, in eval mode."""
    run = rundir.check_run_dir(run)
    cfg = run_config(run)
    ckpt = Path(checkpoint) if checkpoint else rundir.latest_good_checkpoint(run)
    if ckpt is None:
        raise rundir.RunError(f"run '{run}' has no complete checkpoint yet: it writes one every checkpoint_every "
                            f"({cfg.checkpoint_every}) steps and at the end; train on, or resume it with "
                            f"`repae-lab train --resume {run}`.")
    files, state = rundir.load_checkpoint(ckpt)
    device = torch.device(device) if device is not None else pick_device(cfg.device)
    vae = run_vae_architecture(run)
    load_state_dict_checked(vae, files["vae"], "VAE")
    sit_cfg = run_sit_config(run, cfg, vae, files["ema"])
    models = {}
    for name in ("sit", "ema"):
        model = SiT(sit_cfg)
        load_state_dict_checked(model, files[name], "EMA SiT" if name == "ema" else "SiT")
        models[name] = model.to(device).eval().requires_grad_(False)
    return LoadedRun(run=run, cfg=cfg, step=int(state["step"]), checkpoint=ckpt, sit=models["sit"],
                     ema=models["ema"], vae=vae.to(device).eval().requires_grad_(False), device=device)
