"""Checkpoints: one folder per step (RUN/checkpoints/step-NNNNNNNN/), written under a temporary name then
renamed, with a manifest of sha256 sums so a reader can tell a complete checkpoint from a damaged one.
Tensors are safetensors (optimizer states included), everything else JSON: nothing is unpickled."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError
from .files import sha256_file

CHECKPOINT_DIR = "checkpoints"


# ---------------------------------------------------------------------------------------------------------
# Optimizer state as safetensors + JSON (no pickle).

def optimizer_to_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{pid}.{name}"] = value
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            pid, name = key[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(pid), {})[name] = value
    for key, value in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# ---------------------------------------------------------------------------------------------------------
# Checkpoints: one folder per step, written under a temporary name then renamed; a manifest of sha256 sums
# lets a reader tell a complete checkpoint from a damaged one.

def checkpoint_dirs(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")), key=lambda p: p.name)


def save_checkpoint(run_dir: Path, step: int, files: dict[str, dict[str, torch.Tensor]], state: dict[str, Any],
                    keep: int) -> Path:
    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, tensors in files.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / f"{name}.safetensors"))
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        manifest = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in checkpoint_dirs(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def verify_checkpoint(path: Path) -> None:
    manifest_path = Path(path) / "manifest.json"
    if not manifest_path.is_file():
        raise CheckpointError(f"checkpoint '{path}' has no manifest.json (incomplete write)")
    try:
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a mapping")
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"checkpoint '{path}': manifest.json is unreadable ({err})") from None
    for name, digest in manifest.items():
        f = Path(path) / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint '{path}' is missing {name}")
        if sha256_file(f) != digest:
            raise CheckpointError(f"checkpoint '{path}': {name} is damaged (checksum mismatch)")


def load_checkpoint(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """The tensors of every file and state.json of a verified checkpoint; CheckpointError when any cannot be
    read, even with a consistent manifest (e.g. a file replaced together with its checksum)."""
    verify_checkpoint(path)
    path = Path(path)
    try:
        files = {p.stem: load_file(str(p)) for p in path.glob("*.safetensors")}
        return files, json.loads((path / "state.json").read_text())
    except (SafetensorError, OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"checkpoint '{path}' cannot be read ({str(err).splitlines()[0] if str(err) else err})") from None


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def good_checkpoints(run_dir: Path, *, warn=_warn) -> Iterator[Path]:
    """The checkpoints that verify, newest first, verified one at a time as they are asked for; damaged ones are
    reported (to stderr) and skipped."""
    for path in reversed(checkpoint_dirs(run_dir)):
        try:
            verify_checkpoint(path)
        except CheckpointError as err:
            warn(f"warning: {err}; falling back to the previous checkpoint")
            continue
        yield path


def latest_good_checkpoint(run_dir: Path, *, warn=_warn) -> Path | None:
    """The newest checkpoint that verifies; damaged newer ones are reported and skipped."""
    return next(good_checkpoints(run_dir, warn=warn), None)


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Folders and files a killed writer left under temporary names (checkpoints/.tmp-step-N-PID/, .NAME.tmpPID):
    only the lock holder may call this, so none of them can still be being written. Returns what was removed."""
    run_dir = Path(run_dir)
    stale = list((run_dir / CHECKPOINT_DIR).glob(".tmp-step-*")) if (run_dir / CHECKPOINT_DIR).is_dir() else []
    for folder in (run_dir, run_dir / CHECKPOINT_DIR, run_dir / "snapshots", run_dir / "eval", run_dir / "probes"):
        if folder.is_dir():
            stale += [p for p in folder.glob(".*.tmp*") if p.is_file()]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return stale
