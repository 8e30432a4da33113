"""A TrainState to and from a checkpoint folder (rundir/checkpoints.py writes and verifies the files).

The file and tensor names are the checkpoint format: sit, ema, vae, discriminator and optimizers
(prefixed sit / vae / disc); state.json holds the step, the optimizers' scalars and fp16's scaler."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import rundir
from ..rundir.safe_load import load_state_dict_checked
from .optim import with_runtime_flags


def checkpoint_files(state) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    nets = state.nets
    files = {"sit": nets.sit.state_dict(), "ema": nets.ema.state_dict(), "vae": nets.vae.state_dict()}
    if nets.discriminator is not None:
        files["discriminator"] = nets.discriminator.state_dict()
    opt_tensors, opt_meta = {}, {}
    for name, opt in state.optimizers.named().items():
        t, m = rundir.optimizer_to_tensors(opt, name)
        opt_tensors.update(t)
        opt_meta[name] = m
    files["optimizers"] = opt_tensors
    scaler = state.optimizers.scaler
    meta = {"step": state.step, "optimizers": opt_meta, "scaler": scaler.state_dict() if scaler is not None else None}
    return files, meta


def restore_checkpoint(state, path: Path) -> None:
    files, meta = rundir.load_checkpoint(path)
    nets = state.nets
    load_state_dict_checked(nets.sit, files["sit"], "SiT")
    load_state_dict_checked(nets.ema, files["ema"], "EMA SiT")
    load_state_dict_checked(nets.vae, files["vae"], "VAE")
    if nets.discriminator is not None:
        load_state_dict_checked(nets.discriminator, files["discriminator"], "discriminator")
    for name, opt in state.optimizers.named().items():
        saved = meta["optimizers"][name]
        saved = {**saved, "param_groups": with_runtime_flags(saved["param_groups"], opt)}
        rundir.optimizer_from_tensors(opt, name, files.get("optimizers", {}), saved)
    scaler = state.optimizers.scaler
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    state.step = int(meta["step"])
    if state.graphed_step is not None:      # the optimizers' state tensors were replaced: re-capture
        state.graphed_step.reset()
