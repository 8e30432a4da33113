"""The run directory: the contract between training, probes, sampling, evaluation, notebooks and widgets.

Its layout is in rundir/layout.py. Every file is written under a temporary name and renamed into place (rundir/
files.py), checkpoints carry sha256 manifests (rundir/checkpoints.py), and nothing is unpickled: tensors are
safetensors, everything else JSON; foreign torch files go through rundir/safe_load.py.
"""
from .checkpoints import (CHECKPOINT_DIR, checkpoint_dirs, good_checkpoints, latest_good_checkpoint, load_checkpoint,
                          optimizer_from_tensors, optimizer_to_tensors, remove_stale_temporaries, save_checkpoint,
                          verify_checkpoint)
from .errors import ArchitectureMismatch, CheckpointError, RunError
from .files import (append_jsonl, atomic_save_tensors, atomic_write_text, read_json, read_jsonl, sha256_file,
                    write_then_rename)
from .layout import check_run_dir
from .lock import RunLock, RunLockedError
from .snapshots import SNAPSHOT_DIR, list_snapshots, load_snapshot, save_snapshot, snapshot_path

__all__ = ["ArchitectureMismatch", "CHECKPOINT_DIR", "SNAPSHOT_DIR", "CheckpointError", "RunError", "RunLock", "RunLockedError",
           "append_jsonl", "atomic_save_tensors", "atomic_write_text", "check_run_dir", "checkpoint_dirs",
           "good_checkpoints", "latest_good_checkpoint", "remove_stale_temporaries", "list_snapshots", "load_checkpoint", "load_snapshot", "optimizer_from_tensors",
           "optimizer_to_tensors", "read_json", "read_jsonl", "save_checkpoint", "save_snapshot", "sha256_file", "snapshot_path",
           "verify_checkpoint", "write_then_rename"]
