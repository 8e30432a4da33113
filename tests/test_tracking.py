"""Experiment tracking (issue 28): TensorBoard and W&B beside metrics.jsonl, read back with their own readers.

TensorBoard is read with its EventAccumulator (which applies purge steps as the TensorBoard UI does). W&B runs
offline (no WANDB_MODE, no API key) and its transaction logs (run-ID.wandb) are read record by record as wandb's
own protobuf Records (tracking.backends.transaction_log_records: the installed wandb has no reader of its own);
the images they name are opened from the run's files.
"""
from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from repae_lab import rundir
from repae_lab.commands import main
from repae_lab.jobs.launch import train
from repae_lab.config import ConfigError, resolve_config
from repae_lab.tracking import backends, record_scalars, tracker_names
from repae_lab.training import loop as train_mod

pytest.importorskip("tensorboard")
pytest.importorskip("wandb")

PICTURES = ("snapshot/pca_rgb", "snapshot/reconstructions", "samples/class_conditional")


@pytest.fixture(autouse=True)
def wandb_offline(tmp_path, monkeypatch):
    """No W&B credentials and no mode set: the tracker must choose offline by itself."""
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_PROJECT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(key, str(tmp_path / "wandb-home"))


def _tensorboard(logdir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _tb_steps(acc, tag: str) -> list[int]:
    return [e.step for e in acc.Scalars(tag)]


def _wandb_history(folder: Path) -> tuple[list[dict], set[str]]:
    """Every history row of every offline W&B run under `folder` ({'_step', key: value, image: {'path', ...}}),
    and their run ids."""
    rows, ids = [], set()
    for path in sorted(folder.glob("wandb/offline-run-*/run-*.wandb")):
        for record in backends.transaction_log_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                ids.add(record.run.run_id)
            elif kind == "history":         # an image is logged as nested keys: [name, 'path'], [name, 'width'], ...
                row: dict = {}
                for item in record.history.item:
                    key = [item.key] if item.key else list(item.nested_key)
                    if len(key) == 1:
                        row[key[0]] = json.loads(item.value_json)
                    else:
                        row.setdefault(key[0], {})["/".join(key[1:])] = json.loads(item.value_json)
                rows.append(row)
    return rows, ids


def _steps_with(rows: list[dict], key: str) -> list[int]:
    return [r["_step"] for r in rows if key in r]


def _metrics(run: Path) -> list[dict]:
    return [r for r in rundir.read_jsonl(run / "metrics.jsonl") if "event" not in r]


def _check_scalars(acc, rows, run: Path) -> None:
    """Every scalar of metrics.jsonl, under its own name, once per step, in both trackers."""
    records = _metrics(run)
    keys = {k for r in records for k in record_scalars(r)}
    assert "loss/diffusion" in keys and "grad_norm/sit" in keys
    for key in keys:
        want = [(r["step"], r[key]) for r in records if key in r]
        got = [(e.step, e.value) for e in acc.Scalars(key)]
        assert [s for s, _ in got] == [s for s, _ in want], key
        assert np.allclose([v for _, v in got], [v for _, v in want], rtol=1e-6), key
        in_wandb = [(r["_step"], r[key]) for r in rows if key in r]
        assert [s for s, _ in in_wandb] == [s for s, _ in want], key
        if key != "time":       # W&B keeps what a killed process logged past the checkpoint, with its wall time
            assert in_wandb == want, key


# ---------------------------------------------------------------------------------------------------------

def test_tracker_values_are_checked_and_named():
    assert tracker_names("none") == () and tracker_names("") == ()
    assert tracker_names("tensorboard, wandb") == ("tensorboard", "wandb")
    with pytest.raises(ConfigError, match="tracker must be none, tensorboard, wandb"):
        resolve_config("workshop", overrides={"tracker": "mlflow"})
    with pytest.raises(ConfigError, match="tracker_sample_steps"):
        resolve_config("workshop", overrides={"tracker_sample_steps": 0})
    assert resolve_config("workshop").tracker == "none"


def test_a_missing_tracker_package_is_a_one_line_error_before_any_work(tmp_path, tiny, monkeypatch, capsys):
    real = backends.importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    args = ["train", "--out", str(tmp_path / "run"), "--set", *[f"{k}={v}" for k, v in tiny(tracker="wandb").items()]]
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("repae-lab: error:")]
    want = ["repae-lab: error: tracker=wandb needs the wandb package: pip install 'repae_lab[tracking]'"]
    assert lines == want, err
    assert not (tmp_path / "run").exists()
    # asked for when resuming: refused before the networks are built, and the run is left as it was
    train(resolve_config("workshop", overrides=tiny(steps=2)), tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "config.json").read_text()
    assert main(["train", "--resume", str(tmp_path / "run"), "--set", "steps=4", "tracker=wandb"]) == 2
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("repae-lab: error:")] == want
    assert (tmp_path / "run" / "config.json").read_text() == before


def test_both_trackers_record_scalars_pictures_and_config(tmp_path, tiny):
    run = tmp_path / "run"
    cfg = resolve_config("workshop", overrides=tiny(steps=4, snapshot_every=2, tracker="tensorboard,wandb",
                                                    tracker_samples=10, tracker_sample_steps=2))
    train(cfg, run, progress=False)
    acc = _tensorboard(run / "tensorboard")
    rows, ids = _wandb_history(run)
    _check_scalars(acc, rows, run)
    for tag in PICTURES:
        assert [e.step for e in acc.Images(tag)] == [0, 2, 4], tag
        assert _steps_with(rows, tag) == [0, 2, 4], tag
    pca = Image.open(io.BytesIO(acc.Images("snapshot/pca_rgb")[-1].encoded_image_string))
    assert pca.size == (8 * 50 + 2, 4 * 50 + 2)      # 8 columns, 4 rows (probe images over their latents) of 48 px
    assert json.loads(acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode())["tracker"] == \
        "tensorboard,wandb"
    assert ids == {rundir.read_json(run / "wandb_run.json")["id"]}
    files = next(run.glob("wandb/offline-run-*/files"))
    for row in rows:
        for tag in PICTURES:
            if tag in row:
                assert Image.open(files / row[tag]["path"]).size == (row[tag]["width"], row[tag]["height"])


class Interrupt(Exception):
    pass


def _stop_at(stop: int):
    def on_metrics(step, _means):
        if step == stop:
            raise Interrupt
    return on_metrics


def test_kill_and_resume_logs_every_step_exactly_once(tmp_path, tiny):
    """Interrupted after step 6 (the last checkpoint is step 4), then resumed: TensorBoard purges what the
    interrupted process wrote past step 4, W&B continues the same run and skips the steps it holds."""
    run = tmp_path / "run"
    cfg = resolve_config("workshop", overrides=tiny(steps=8, checkpoint_every=4, snapshot_every=2, tracker_samples=4,
                                                    tracker_sample_steps=1, tracker="tensorboard,wandb"))
    with pytest.raises(Interrupt):
        train(cfg, run, progress=False, on_metrics=_stop_at(6))
    first_id = rundir.read_json(run / "wandb_run.json")["id"]
    train(resume=run, progress=False)
    acc = _tensorboard(run / "tensorboard")
    rows, ids = _wandb_history(run)
    assert ids == {first_id} and len(list(run.glob("wandb/offline-run-*"))) == 2
    assert _tb_steps(acc, "loss/diffusion") == list(range(1, 9))
    _check_scalars(acc, rows, run)
    for tag in PICTURES:
        assert [e.step for e in acc.Images(tag)] == [0, 2, 4, 6, 8], tag
        assert _steps_with(rows, tag) == [0, 2, 4, 6, 8], tag


@pytest.mark.slow
def test_kill_dash_nine_and_resume_logs_every_step_exactly_once(tmp_path, tiny):
    """As above, with the training process killed (SIGKILL) at a step past its checkpoint: no close, no flush."""
    run = tmp_path / "run"
    overrides = tiny(steps=16, checkpoint_every=6, snapshot_every=4, tracker_samples=4, tracker_sample_steps=1,
                     tracker="tensorboard,wandb")
    cmd = [sys.executable, "-m", "repae_lab", "train", "--out", str(run), "--quiet",
           "--set", *[f"{k}={v}" for k, v in overrides.items()]]
    # a process of its own, with a W&B service of its own (not this process's, which WANDB_SERVICE would share)
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(_metrics(run)) < 9:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    train(resume=run, progress=False)
    acc = _tensorboard(run / "tensorboard")
    rows, ids = _wandb_history(run)
    assert len(ids) == 1 and len(list(run.glob("wandb/offline-run-*"))) == 2
    assert _tb_steps(acc, "loss/diffusion") == list(range(1, 17))
    _check_scalars(acc, rows, run)
    for tag in PICTURES:
        assert [e.step for e in acc.Images(tag)] == [0, 4, 8, 12, 16], tag
        assert _steps_with(rows, tag) == [0, 4, 8, 12, 16], tag


def test_a_rollback_leaves_each_step_once(tmp_path, tiny, monkeypatch):
    real = train_mod.train_step
    done = set()

    def nan_at_5(state, *args):
        metrics = real(state, *args)
        if state.step + 1 == 5 and not done:
            done.add(5)
            metrics["loss/diffusion"] = math.nan
        return metrics
    monkeypatch.setattr(train_mod, "train_step", nan_at_5)
    run = tmp_path / "run"
    cfg = resolve_config("workshop", overrides=tiny(steps=6, checkpoint_every=2, alarm_policy="rollback",
                                                    tracker="tensorboard,wandb", tracker_samples=0))
    train(cfg, run, progress=False)
    acc = _tensorboard(run / "tensorboard")
    rows, _ = _wandb_history(run)
    assert _tb_steps(acc, "loss/diffusion") == [1, 2, 3, 4, 5, 6]
    _check_scalars(acc, rows, run)
    events = [json.loads(e.tensor_proto.string_val[0]) for e in acc.Tensors("events/text_summary")]
    assert [(e["event"], e["step"]) for e in events] == [("alarm", 5), ("rollback", 4)]


def test_a_failing_tracker_is_one_warning_and_the_run_goes_on(tmp_path, tiny, monkeypatch, capsys):
    def full_disk(self, step, values):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(backends.TensorBoardWriter, "scalars", full_disk)
    run = tmp_path / "run"
    train(resolve_config("workshop", overrides=tiny(steps=3, tracker="tensorboard,wandb", tracker_samples=0)), run,
          progress=False)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "tracker" in line]
    assert warnings == ["repae-lab: warning: tracker tensorboard failed (OSError: [Errno 28] No space left on "
                        "device); the run goes on without it"]
    assert [r["step"] for r in _metrics(run)] == [1, 2, 3]
    assert _steps_with(_wandb_history(run)[0], "loss/diffusion") == [1, 2, 3]


def test_export_tracker_writes_a_past_run_and_replaces_on_a_second_export(tmp_path, tiny, capsys):
    untracked_run = tmp_path / "repa-e"              # trained without a tracker: what export-tracker is for
    train(resolve_config("workshop", overrides=tiny(steps=4, snapshot_every=2)), untracked_run, progress=False)
    args = ["export-tracker", str(untracked_run), "--to", "tensorboard", str(tmp_path / "tb"),
            "--to", "wandb", str(tmp_path / "wb"), "--samples", "4"]
    assert main(args) == 0, capsys.readouterr().err
    assert main(args) == 0, capsys.readouterr().err             # again: replaces, never adds
    assert not (untracked_run / "tensorboard").exists()         # the run directory itself is left alone
    logdir = tmp_path / "tb" / untracked_run.name
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1
    acc = _tensorboard(logdir)
    assert len(list((tmp_path / "wb").glob("wandb/offline-run-*"))) == 1
    rows, ids = _wandb_history(tmp_path / "wb")
    assert len(ids) == 1 and ids.pop().startswith("export-")
    _check_scalars(acc, rows, untracked_run)
    for tag in PICTURES[:2]:
        assert [e.step for e in acc.Images(tag)] == [0, 2, 4]
        assert _steps_with(rows, tag) == [0, 2, 4]
    assert [e.step for e in acc.Images("samples/class_conditional")] == [4]   # the one checkpoint kept

    # an evaluation made again at a step (`repae-lab eval` after training) replaces the earlier numbers
    for fd in (2.0, 1.5):
        rundir.append_jsonl(untracked_run / "metrics.jsonl", {"step": 4, "kind": "eval", "eval/fd_workshop": fd})
    assert main(args[:5]) == 0
    assert [(e.step, e.value) for e in _tensorboard(logdir).Scalars("eval/fd_workshop")] == [(4, 1.5)]


def test_a_tracker_switched_on_when_resuming_gets_the_history_first(tmp_path, tiny):
    run = tmp_path / "run"
    cfg = resolve_config("workshop", overrides=tiny(steps=6, checkpoint_every=3, snapshot_every=3, tracker_samples=0))
    with pytest.raises(Interrupt):
        train(cfg, run, progress=False, on_metrics=_stop_at(4))
    train(resume=run, overrides={"tracker": "tensorboard"}, progress=False)
    acc = _tensorboard(run / "tensorboard")
    assert _tb_steps(acc, "loss/diffusion") == list(range(1, 7))
    assert [e.step for e in acc.Images("snapshot/pca_rgb")] == [0, 3, 6]


def test_export_tracker_writes_an_imported_released_model(tmp_path, capsys):
    """A released checkpoint imported as a run (one checkpoint, one snapshot of an image folder) exports too."""
    from test_released import _digit_folder, official_checkpoint

    official_checkpoint(tmp_path / "0001234.pt")
    run = tmp_path / "imported"
    images = _digit_folder(tmp_path / "images", per_class=4, classes=3)
    for command in (["import-checkpoint", tmp_path / "0001234.pt", "--out", run, "--num-heads", 4, "--probe-data", images,
                     "--probe-size", 12], ["export-tracker", run, "--to", "tensorboard", tmp_path / "tb", "--samples", 3]):
        assert main([str(a) for a in command]) == 0
    assert "Traceback" not in capsys.readouterr().err
    acc = _tensorboard(tmp_path / "tb" / "imported")
    for tag in PICTURES:
        assert [e.step for e in acc.Images(tag)] == [1234], tag
    pca = Image.open(io.BytesIO(acc.Images("snapshot/pca_rgb")[0].encoded_image_string))
    assert np.asarray(pca)[2:50, 2:50].std() > 0            # the probe image itself, above its latent
