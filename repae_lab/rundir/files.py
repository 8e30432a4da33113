"""Writing and reading the files of a run directory so that a run killed at any instant leaves only complete
files: everything is written under a temporary name and renamed into place; the metrics log is appended one
whole line at a time and read back skipping a torn last line; sha256_file hashes a file for manifests and
provenance records."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file


def write_then_rename(path: Path, write) -> None:
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
    write_then_rename(path, write)


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    write_then_rename(path, lambda tmp: save_file(cpu, str(tmp), metadata=metadata))


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


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
