"""Where released weights come from: a local file or folder, or a Hugging Face hub id (where there is internet).

Nothing here runs code from a checkpoint: safetensors files are read as tensors, and pickled .pt / .ckpt /
.bin files only through `repae_lab.rundir.safe_load.load_torch_file` (torch.load with weights_only=True and the
argparse.Namespace allowlist).

Hub specs are `org/name` (the whole repository, downloaded once into the HF cache) or `org/name:path/in/repo`
(one file). With HF_HUB_OFFLINE=1 only the local cache is consulted, so an offline machine fails at once with
a message instead of retrying the network.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import hf_hub_download, snapshot_download
from safetensors.torch import load_file

from ...rundir.safe_load import CheckpointError, load_torch_file
from .errors import ReleasedModelError, one_line

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")          # DDP and torch.compile wrappers
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(:.+)?$")


def offline() -> bool:
    # read at call time: huggingface_hub freezes HF_HUB_OFFLINE when imported
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def locate(spec, *, cache_dir=None, allow_patterns=None) -> Path:
    """A local path as it is, or the local copy of a hub repository / file."""
    text = str(spec).strip()
    for scheme in ("hf://", "hf:"):
        if text.startswith(scheme):
            text = text[len(scheme):]
    path = Path(text).expanduser()
    if path.exists():
        return path
    if not _HUB_ID.match(text) or text.startswith((".", "~", "/")):
        raise ReleasedModelError(f"'{spec}' does not exist; pass an existing file or folder, or a hub id such as "
                                 f"REPA-E/e2e-sdvae-hf (or REPA-E/sit-repae-sdvae:checkpoints/0400000.pt for one file).")
    repo, _, inner = text.partition(":")
    try:
        if inner:
            return Path(hf_hub_download(repo, inner, cache_dir=cache_dir, local_files_only=offline()))
        return Path(snapshot_download(repo, cache_dir=cache_dir, local_files_only=offline(),
                                      allow_patterns=allow_patterns))
    except Exception as err:  # the hub client raises many types (offline, 404, gated, network)
        where = "the local Hugging Face cache (HF_HUB_OFFLINE is set)" if offline() else "the Hugging Face hub"
        raise ReleasedModelError(
            f"'{spec}' is not a local path and could not be fetched from {where} ({type(err).__name__}: "
            f"{one_line(err)[:200]}); on a machine with internet run `huggingface-cli download {repo}` and pass "
            f"the downloaded folder or file instead.") from None


def read_weights(path) -> Any:
    """The object stored in a weights file: a dict of tensors (safetensors), or what a safe torch.load gives."""
    path = Path(path)
    if not path.is_file():
        raise ReleasedModelError(f"'{path}' is not a file; pass a .safetensors / .pt / .ckpt / .bin weights file.")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as err:
            raise ReleasedModelError(f"'{path}' is not a readable safetensors file ({one_line(err)}); "
                                     f"re-download it or pass another file.") from None
    try:
        return load_torch_file(path)
    except CheckpointError as err:
        raise ReleasedModelError(str(err)) from None


def is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


def strip_prefixes(state: dict[str, torch.Tensor], prefixes=WRAPPER_PREFIXES) -> dict[str, torch.Tensor]:
    """Drop prefixes that every key shares (repeatedly: DDP around a compiled model gives module._orig_mod.)."""
    changed = True
    while changed and state:
        changed = False
        for prefix in prefixes:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def _step_of(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else -1


def find_weights_file(folder: Path, *, what: str, exclude=("latents-stats", "discriminator")) -> Path:
    """The one weights file a folder stands for: checkpoints/<newest step>.pt, else the only weights file."""
    folder = Path(folder)
    ckpts = sorted((folder / "checkpoints").glob("*.pt")) if (folder / "checkpoints").is_dir() else []
    if ckpts:
        return max(ckpts, key=_step_of)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES
                   and not any(word in p.name for word in exclude))
    if len(files) == 1:
        return files[0]
    found = ", ".join(p.name for p in files[:6]) or "no weights files"
    raise ReleasedModelError(f"cannot tell which file of folder '{folder}' holds the {what} (found: {found}); "
                             f"pass the file itself.")
