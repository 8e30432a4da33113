"""The run directory: the contract between training, probes, sampling, notebooks and widgets.

    RUN/
      config.json                  resolved Config, written before step 0
      vae_config.json              the VAE's diffusers config (rebuilds its architecture offline)
      metrics.jsonl                one JSON object per line, appended while training; readers skip a torn last line
      probe_set.json               indices and labels of the fixed, class-balanced probe images
      snapshots/step-00000100.safetensors (+ .json)   probe-set latents, SiT / target tokens, reconstructions
      checkpoints/step-00000250/   sit, ema, vae, discriminator, optimizer tensors (.safetensors) + state.json + manifest.json
      summary.json                 written when a run finishes

Every file is written to a temporary name and renamed into place, so a run killed at any instant leaves
only complete files. Nothing here unpickles: tensors are safetensors, everything else JSON.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from .safe_load import CheckpointError

CHECKPOINT_DIR = "checkpoints"
SNAPSHOT_DIR = "snapshots"


def _write_then_rename(path: Path, write) -> None:
    """write(tmp) then rename over `path`; a failed write leaves neither a half file nor the temporary."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    _write_then_rename(path, write)


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _write_then_rename(path, lambda tmp: save_file(cpu, str(tmp), metadata=metadata))


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One line per call; a single write() of a short line, flushed, so tailing readers see whole records."""
    with open(path, "a") as f:
        f.write(json.dumps(record, allow_nan=True) + "\n")
        f.flush()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete records; a line still being written (no newline yet, or torn) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or unreadable (every JSON file here is written
    atomically, so unreadable means not there yet)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


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

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
        manifest = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
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
    manifest = json.loads(manifest_path.read_text())
    for name, digest in manifest.items():
        f = Path(path) / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint '{path}' is missing {name}")
        if _sha256(f) != digest:
            raise CheckpointError(f"checkpoint '{path}': {name} is damaged (checksum mismatch)")


def load_checkpoint(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    verify_checkpoint(path)
    path = Path(path)
    files = {p.stem: load_file(str(p)) for p in path.glob("*.safetensors")}
    return files, json.loads((path / "state.json").read_text())


def latest_good_checkpoint(run_dir: Path, *, warn=print) -> Path | None:
    """The newest checkpoint that verifies; damaged newer ones are reported and skipped."""
    for path in reversed(checkpoint_dirs(run_dir)):
        try:
            verify_checkpoint(path)
            return path
        except CheckpointError as err:
            warn(f"warning: {err}; falling back to the previous checkpoint")
    return None


# ---------------------------------------------------------------------------------------------------------
# Snapshots of the probe set.

def snapshot_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / SNAPSHOT_DIR / f"step-{step:08d}.safetensors"


def save_snapshot(run_dir: Path, step: int, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> Path:
    path = snapshot_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(path, tensors, metadata={"info": json.dumps(info)})
    return path


def list_snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    root = Path(run_dir) / SNAPSHOT_DIR
    if not root.is_dir():
        return []
    return sorted((int(p.stem.split("-")[1]), p) for p in root.glob("step-*.safetensors"))


def load_snapshot(path: Path, keys: tuple[str, ...] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A snapshot's tensors (only `keys`, when given: the rest is never read from disk) and its info."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        info = json.loads((f.metadata() or {}).get("info", "{}"))
        tensors = {k: f.get_tensor(k) for k in f.keys() if keys is None or k in keys}
    return tensors, info


def iter_metrics(run_dir: Path, prefix: str | None = None) -> Iterator[dict[str, Any]]:
    for rec in read_jsonl(Path(run_dir) / "metrics.jsonl"):
        if prefix is None or any(k.startswith(prefix) for k in rec):
            yield rec


# ---------------------------------------------------------------------------------------------------------
# One writer per run directory.

class RunLockedError(RuntimeError):
    pass


class RunLock:
    """An exclusive flock on RUN/.lock: the kernel drops it when the holder dies, so a killed run never
    leaves the directory stuck. The holder's pid is written inside for the error message."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(f"another training process (pid {holder}) is writing '{self.path.parent}'; wait for "
                                 f"it to finish or stop it, or train into another --out folder.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
