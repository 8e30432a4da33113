"""Loading checkpoints that travel between people without ever running code from them.

Our own run directories hold only safetensors and JSON. Checkpoints released by the REPA / REPA-E code
are one torch.save dict (model, ema, optimizer states, an argparse Namespace of arguments, steps): these
are read with torch.load(weights_only=True), whose unpickler only builds tensors and plain containers,
plus the one extra type those files hold (argparse.Namespace). Anything else in the pickle is refused.
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file

from .errors import ArchitectureMismatch, CheckpointError

SAFE_GLOBALS = [argparse.Namespace]


def load_torch_file(path: str | Path) -> Any:
    """torch.load with weights_only=True and the allowlist above; unsafe pickles raise CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file '{path}' does not exist.")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refused to load '{path}': it holds pickled objects outside the safe allowlist "
            f"(tensors, containers, argparse.Namespace), so loading it could run code. If you trust its author, "
            f"convert it to safetensors on a sandboxed machine. Detail: {str(err).splitlines()[0]}") from None
    except (RuntimeError, EOFError) as err:
        raise CheckpointError(f"'{path}' is not a readable torch checkpoint (truncated or corrupt?): {err}") from None


def load_weights_file(path: str | Path) -> Any:
    """A .safetensors file, or a torch file through load_torch_file: never an unsafe unpickling."""
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"weights file '{path}' does not exist.")
        return load_file(str(path))
    return load_torch_file(path)


def state_dict_mismatch(module: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Human-readable differences between a module and a state dict (missing, unexpected, shape)."""
    own = module.state_dict()
    problems = [f"missing key {k} (expected shape {tuple(own[k].shape)})" for k in own if k not in state]
    problems += [f"unexpected key {k} (shape {tuple(state[k].shape)})" for k in state if k not in own]
    problems += [f"{k}: checkpoint has shape {tuple(state[k].shape)}, model expects {tuple(own[k].shape)}"
                 for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    return problems


def load_state_dict_checked(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict) with an error that names the mismatched keys and shapes and the likely fix."""
    problems = state_dict_mismatch(module, state)
    if problems:
        shown = "\n  ".join(problems[:12]) + (f"\n  ... and {len(problems) - 12} more" if len(problems) > 12 else "")
        raise ArchitectureMismatch(
            f"the {what} checkpoint does not fit this architecture ({len(problems)} differences):\n  {shown}\n"
            f"It was probably written with another model size, patch size, latent channels, number of classes "
            f"or target encoder: use the configuration it was trained with.")
    module.load_state_dict(state, strict=True)


def released_sit_weights(path: str | Path, *, prefer_ema: bool = True) -> dict[str, torch.Tensor]:
    """The SiT weights of a released REPA / REPA-E checkpoint (.pt dict or a bare state dict)."""
    obj = load_torch_file(path)
    if isinstance(obj, dict) and ("ema" in obj or "model" in obj):
        key = "ema" if prefer_ema and "ema" in obj else "model"
        obj = obj[key]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"'{path}' holds no SiT state dict (expected a dict of tensors, or one under 'ema'/'model').")
    # checkpoints saved from torch.compile or DDP wrappers carry a prefix on every key
    for prefix in ("_orig_mod.", "module."):
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj
