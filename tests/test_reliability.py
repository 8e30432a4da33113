"""Reliability (docs/reliability.md): kill -9 and exact resume, damaged checkpoints, unsafe pickles, alarms,
one writer per run directory, and the bad inputs a user can give."""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, logged_losses
from repae_lab import rundir
from repae_lab.training import loop as train_mod
from repae_lab.training.alarms import AlarmMonitor
from repae_lab.commands import main
from repae_lab.config import resolve_config
from repae_lab.models.sit import SiT, sit_config
from repae_lab.rundir.safe_load import CheckpointError, load_state_dict_checked, load_torch_file, released_sit_weights
from repae_lab.jobs.launch import train
from repae_lab.models.from_run import load_for_sampling
from repae_lab.rundir import RunError
from repae_lab.training.loop import TrainingStopped


@pytest.mark.slow
def test_kill_dash_nine_then_resume_matches_an_uninterrupted_run(tmp_path, tiny):
    overrides = tiny(steps=24, checkpoint_every=4, log_every=1)

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "repae_lab", "train", "--preset", "workshop", "--recipe", "repa-e",
                "--out", str(out), "--quiet", "--set", *[f"{k}={v}" for k, v in overrides.items()]]

    # the uninterrupted run in a process of its own too: the test process's thread settings, changed by the
    # tests before this one, would change the float reductions and with them the losses
    subprocess.run(command(tmp_path / "straight"), cwd=ROOT, check=True, capture_output=True, timeout=300)
    run = tmp_path / "killed"
    kill_at = random.Random(1234).randint(5, 18)
    cmd = command(run)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(rundir.read_jsonl(run / "metrics.jsonl")) >= kill_at:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed_at = len(rundir.read_jsonl(run / "metrics.jsonl"))
    assert killed_at < 24

    resumed = subprocess.run([sys.executable, "-m", "repae_lab", "train", "--resume", str(run), "--quiet"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert logged_losses(run) == logged_losses(tmp_path / "straight"), f"killed at step {killed_at}"


def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, tiny, capsys):
    cfg = resolve_config("workshop", recipe="repa-e", overrides=tiny(steps=4, checkpoint_every=2))
    train(cfg, tmp_path / "run", progress=False)
    newest = rundir.checkpoint_dirs(tmp_path / "run")[-1]
    blob = newest / "sit.safetensors"
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])      # truncated
    state = load_for_sampling(tmp_path / "run")
    assert state.step == 2
    assert "sit.safetensors is damaged" in capsys.readouterr().err


def test_a_checkpoint_without_manifest_is_incomplete(tmp_path, tiny):
    cfg = resolve_config("workshop", recipe="vanilla", overrides=tiny(steps=2))
    train(cfg, tmp_path / "run", progress=False)
    (rundir.checkpoint_dirs(tmp_path / "run")[-1] / "manifest.json").unlink()
    with pytest.raises(RunError, match="no complete checkpoint"):
        load_for_sampling(tmp_path / "run")


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    Exploit.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "payload": Exploit()}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_torch_file(path)
    assert not Exploit.marker.exists()


def test_released_style_checkpoint_with_namespace_loads(tmp_path):
    cfg = sit_config("W-tiny", input_size=8, patch_size=2, in_channels=4, num_classes=10, z_dims=(32,), alignment_depth=2,
                     projector_dim=32)
    sit = SiT(cfg)
    path = tmp_path / "0400000.pt"
    torch.save({"model": sit.state_dict(), "ema": sit.state_dict(), "opt": {"state": {}, "param_groups": []},
                "args": argparse.Namespace(model="SiT-XL/2", proj_coeff=0.5, encoder_depth=8), "steps": 400000}, path)
    obj = load_torch_file(path)
    assert obj["args"].proj_coeff == 0.5
    other = SiT(cfg)
    load_state_dict_checked(other, released_sit_weights(path), "SiT")
    assert all(torch.equal(a, b) for a, b in zip(sit.state_dict().values(), other.state_dict().values()))


def test_checkpoint_of_another_architecture_names_keys_and_shapes():
    small = SiT(sit_config("W-tiny", input_size=8, patch_size=2, in_channels=4, num_classes=10, z_dims=(32,), projector_dim=32,
                          alignment_depth=2))
    wide = SiT(sit_config("W-tiny", input_size=8, patch_size=4, in_channels=4, num_classes=10, z_dims=(32,), projector_dim=32,
                          alignment_depth=2))
    with pytest.raises(CheckpointError) as err:
        load_state_dict_checked(wide, small.state_dict(), "SiT")
    msg = str(err.value)
    assert "x_embedder.proj.weight: checkpoint has shape (128, 4, 2, 2), model expects (128, 4, 4, 4)" in msg
    assert "use the configuration it was trained with" in msg


# ---------------------------------------------------------------------------------------------------------
# Alarms: each fires on an injected fault, and each policy acts.

def _monitor(**overrides):
    return AlarmMonitor(resolve_config("workshop", overrides={"alarm_patience": 3, **overrides}))


@pytest.mark.parametrize("kind,metrics", [
    ("nonfinite", {"loss/diffusion": math.nan}),
    ("nonfinite", {"grad_norm/vae": math.inf}),
    ("grad_collapse", {"grad_norm/sit": 0.0}),
    ("gan_collapse", {"loss/disc": 0.0}),
    ("latent_collapse", {"latent/spatial_var": 1e-5}),
])
def test_each_alarm_fires_on_its_fault(kind, metrics):
    monitor = _monitor()
    healthy = {"loss/diffusion": 1.0, "grad_norm/sit": 0.5, "grad_norm/vae": 0.5, "loss/disc": 0.9,
               "latent/spatial_var": 1.0}
    assert monitor.check(1, healthy) == []
    fired = [a for step in range(2, 6) for a in monitor.check(step, {**healthy, **metrics})]
    assert [a.kind for a in fired] == [kind], fired     # once, and only that kind
    assert monitor.check(9, healthy) == []


def _inject(monkeypatch, faults: dict[int, dict], once: bool = True):
    real = train_mod.train_step
    seen = set()

    def faulty(state, x, y, gen, *rest):
        metrics = real(state, x, y, gen, *rest)
        step = state.step + 1
        if step in faults and not (once and step in seen):
            seen.add(step)
            metrics.update(faults[step])
        return metrics
    monkeypatch.setattr(train_mod, "train_step", faulty)


def test_policy_warn_records_and_continues(tmp_path, tiny, monkeypatch, capsys):
    _inject(monkeypatch, {3: {"loss/diffusion": math.nan}})
    cfg = resolve_config("workshop", overrides=tiny(steps=5))
    train(cfg, tmp_path / "run", progress=False)
    events = [r for r in rundir.read_jsonl(tmp_path / "run" / "metrics.jsonl") if r.get("event") == "alarm"]
    assert [(e["step"], e["alarm"], e["policy"]) for e in events] == [(3, "nonfinite", "warn")]
    assert "repae-lab alarm [nonfinite]" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 5


def test_policy_stop_stops_with_the_reason(tmp_path, tiny, monkeypatch):
    _inject(monkeypatch, {3: {"loss/repa": math.inf}})
    cfg = resolve_config("workshop", overrides=tiny(steps=6, alarm_policy="stop"))
    with pytest.raises(TrainingStopped, match="loss/repa"):
        train(cfg, tmp_path / "run", progress=False)


def test_policy_rollback_restores_the_checkpoint_with_a_lower_lr(tmp_path, tiny, monkeypatch):
    _inject(monkeypatch, {5: {"loss/diffusion": math.nan}})
    cfg = resolve_config("workshop", recipe="repa-e", overrides=tiny(steps=6, checkpoint_every=2, alarm_policy="rollback"))
    train(cfg, tmp_path / "run", progress=False)
    records = rundir.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    rollback = [r for r in records if r.get("event") == "rollback"]
    assert len(rollback) == 1 and rollback[0]["step"] == 4 and rollback[0]["checkpoint"] == "step-00000004"
    assert rollback[0]["lrs"] == {"sit": cfg.lr / 2, "vae": cfg.vae_lr / 2, "disc": cfg.disc_lr / 2}
    assert [r["step"] for r in records if "event" not in r] == [1, 2, 3, 4, 5, 6]   # steps 5-6 redone
    _, meta = rundir.load_checkpoint(rundir.latest_good_checkpoint(tmp_path / "run"))
    assert meta["optimizers"]["sit"]["param_groups"][0]["lr"] == cfg.lr / 2     # the lower lr is kept in the checkpoint


def test_rollback_without_checkpoint_stops(tmp_path, tiny, monkeypatch):
    _inject(monkeypatch, {2: {"loss/diffusion": math.nan}})
    cfg = resolve_config("workshop", overrides=tiny(steps=4, alarm_policy="rollback"))
    with pytest.raises(TrainingStopped, match="no checkpoint to roll back to"):
        train(cfg, tmp_path / "run", progress=False)


# ---------------------------------------------------------------------------------------------------------
# Concurrency and resources.

def test_second_writer_is_refused_and_a_dead_holder_leaves_no_lock(tmp_path, tiny, capsys):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from repae_lab.rundir import RunLock\n"
        f"lock = RunLock({str(run)!r}).__enter__(); print('locked', flush=True); time.sleep(60)")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    args = ["train", "--out", str(run), "--quiet", "--set", *[f"{k}={v}" for k, v in tiny(steps=1).items()]]
    assert main(args) == 2
    assert f"another training process (pid {holder.pid}) is writing" in capsys.readouterr().err
    holder.kill()
    holder.wait()
    assert main(args) == 0          # the kernel released the dead holder's lock


def test_reader_skips_a_line_being_written(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rundir.append_jsonl(path, {"step": 1, "loss/diffusion": 1.0})
    with open(path, "a") as f:
        f.write('{"step": 2, "loss/diff')            # a writer caught mid-line
    assert [r["step"] for r in rundir.read_jsonl(path)] == [1]


def test_full_disk_while_checkpointing_loses_nothing(tmp_path, tiny, monkeypatch, capsys):
    cfg = resolve_config("workshop", overrides=tiny(steps=4, checkpoint_every=2))
    from repae_lab.rundir import checkpoints

    real_save = checkpoints.save_file
    calls = {"n": 0}

    def save_until_full(tensors, path, metadata=None):
        if "step-00000004" in str(path) or ".tmp-step-00000004" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, path, metadata=metadata)
    monkeypatch.setattr(checkpoints, "save_file", save_until_full)
    args = ["train", "--out", str(tmp_path / "run"), "--quiet", "--set", *[f"{k}={v}" for k, v in tiny(steps=4, checkpoint_every=2).items()]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "step-00000002 is intact" in err
    assert [p.name for p in rundir.checkpoint_dirs(tmp_path / "run")] == ["step-00000002"]
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp*"))
    monkeypatch.setattr(checkpoints, "save_file", real_save)
    assert main(["train", "--resume", str(tmp_path / "run"), "--quiet"]) == 0


def test_gpu_out_of_memory_suggests_a_smaller_batch(tmp_path, tiny, monkeypatch, capsys):
    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    monkeypatch.setattr(train_mod, "train_step", oom)
    assert main(["train", "--out", str(tmp_path / "run"), "--quiet", "--set", *[f"{k}={v}" for k, v in tiny(batch_size=8).items()]]) == 2
    err = capsys.readouterr().err
    assert "out of GPU memory" in err and "--set batch_size=4" in err
