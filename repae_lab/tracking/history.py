"""A run directory's history written into trackers: what `repae-lab export-tracker` does for runs trained
without a tracker (imported released models and the claims benchmarks' runs included), and what a live tracker
does first when it is switched on for a run that already has steps behind it.

Everything comes from the run directory alone: the metrics log (every interval's means under their own names,
evaluations, alarm and rollback events), the snapshots (PCA-RGB latents, reconstructions against the probe
images), the sample grids of the evaluations and of the trackers (RUN/eval/*.png, RUN/tracker_samples/*.png),
the config, and, when asked, sample grids drawn from the checkpoints still kept.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from .. import rundir
from ..config import config_from_dict
from ..models.from_run import load_for_sampling
from ..rundir import RunError, layout
from .backends import TensorBoardWriter, WandbWriter, require
from .pictures import (SAMPLES_DIR, eval_pictures, first_snapshot_basis, sample_grid, samples_path,
                       saved_samples, snapshot_pictures)

NOT_SCALARS = ("step", "time_written")


def record_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics-log record under their own names (loss/..., grad_norm/..., eval/..., time)."""
    return {k: float(v) for k, v in record.items()
            if k not in NOT_SCALARS and isinstance(v, (int, float)) and not isinstance(v, bool)}


def write_record(writer, record: dict[str, Any]) -> None:
    """One metrics-log record: an interval's means or an evaluation as scalars; an alarm or a rollback as a line
    of text under 'events' (a rollback also rewinds the writer: the steps after it will be trained again)."""
    step = int(record.get("step", 0))
    if "event" in record:
        writer.text(step, "events", json.dumps(record))
        if record["event"] == "rollback":
            writer.rewind(step)
        return
    writer.scalars(step, record_scalars(record))


def warn(message: str) -> None:
    print(f"repae-lab: warning: {message}", file=sys.stderr)


class SnapshotPainter:
    """Pictures of a run's snapshots, in the PCA basis of its first snapshot, the probe images beside them (from
    `dataset`, or the run's dataset loaded when first needed; without one the pictures go without originals)."""

    def __init__(self, run: Path, dataset=None):
        self.run = Path(run)
        self.dataset = dataset
        self._basis = None
        self._images: dict[int, object] = {}            # probe position -> image
        self._looked_for_dataset = dataset is not None

    def basis(self, tensors):
        if self._basis is None:
            snapshots = rundir.list_snapshots(self.run)
            first = rundir.load_snapshot(snapshots[0][1], keys=("latents",))[0] if snapshots else tensors
            self._basis = first_snapshot_basis(first["latents"])
        return self._basis

    def _load_dataset(self):
        self._looked_for_dataset = True
        from ..data import DatasetError, load_dataset
        cfg = config_from_dict(rundir.read_json(self.run / layout.CONFIG))
        try:
            self.dataset = load_dataset(cfg.dataset, resolution=cfg.resolution, root=cfg.data_root)
        except (DatasetError, OSError) as err:
            warn(f"the probe images of '{self.run}' could not be loaded ({str(err).splitlines()[0]}); its "
                 f"pictures show the latents and reconstructions alone")

    def originals(self, indices, positions: list[int]):
        """The probe images at `positions` of the probe set `indices`, or None without the dataset."""
        if not self._looked_for_dataset:
            self._load_dataset()
        if self.dataset is None:
            return None
        missing = [p for p in positions if p not in self._images]
        if missing:
            self._images.update(zip(missing, self.dataset.batch(indices[missing])[0]))
        return torch.stack([self._images[p] for p in positions])

    def pictures(self, tensors) -> dict:
        return snapshot_pictures(tensors, self.basis(tensors), lambda at: self.originals(tensors["indices"], at))


def step_of(path: Path) -> int:
    """The step in a checkpoint's, snapshot's or evaluation's name (step-NNNNNNNN...)."""
    return int(re.match(r"step-(\d+)", path.name).group(1))


def replay(run: Path, writers: list, *, after: int = -1, upto: int | None = None, samples: int = 0,
           painter=None) -> None:
    """Write `run`'s history from step `after` + 1 up to step `upto` (to the end when None) into `writers`, step
    by step in order (W&B takes steps only forward). `samples` > 0 also draws that many samples from every
    checkpoint kept."""
    run = Path(run)
    cfg = config_from_dict(rundir.read_json(run / layout.CONFIG))
    within = lambda step: after < step and (upto is None or step <= upto)
    todo: dict[int, list[tuple[str, Any]]] = defaultdict(list)     # step -> ("record", record) | ("images", make)
    merged: dict[tuple[int, str], dict] = {}
    for record in rundir.read_jsonl(run / layout.METRICS):
        if "step" not in record:
            continue
        step = int(record["step"])
        if "event" in record:
            todo[step].append(("record", record))
            continue
        key = (step, record.get("kind", ""))
        if key not in merged:
            merged[key] = {}
            todo[step].append(("record", merged[key]))
        merged[key].update(record)      # an evaluation made again at a step (`repae-lab eval`) has the last word
    painter = painter or SnapshotPainter(run)
    for step, path in rundir.list_snapshots(run):
        todo[step].append(("images", lambda p=path: painter.pictures(rundir.load_snapshot(p)[0])))
    for step in {step_of(p) for p in (run / layout.EVAL_DIR).glob("step-*.png")}:
        todo[step].append(("images", lambda s=step: eval_pictures(run, s)))
    for step in (step_of(p) for p in (run / SAMPLES_DIR).glob("step-*.png")):
        todo[step].append(("images", lambda s=step: saved_samples(run, s)))
    for ckpt in rundir.good_checkpoints(run) if samples else ():
        if not samples_path(run, step_of(ckpt)).is_file():
            todo[step_of(ckpt)].append(("images", lambda c=ckpt: _checkpoint_samples(run, c, cfg, samples)))
    for step in sorted(s for s in todo if within(s)):
        for kind, item in todo[step]:
            if kind == "record":
                for writer in writers:
                    write_record(writer, item)
            else:
                images = item()
                for writer in writers:
                    writer.images(step, images)


def _checkpoint_samples(run: Path, ckpt: Path, cfg, n: int) -> dict:
    loaded = load_for_sampling(run, checkpoint=ckpt)
    grid = sample_grid(loaded.ema, loaded.vae, dataclasses.replace(cfg, tracker_samples=n), loaded.device)
    return {"samples/class_conditional": grid}


def export_run(run: str | Path, to: str, out: str | Path, *, samples: int = 0) -> Path:
    """Write `run`'s whole history into a tracker: to='tensorboard' -> OUT/RUN_NAME/ (event files; point
    `tensorboard --logdir OUT` at OUT to see several runs together); to='wandb' -> an offline W&B run in OUT/wandb/
    (upload with `wandb sync`). Exporting again replaces what the previous export of the run wrote."""
    run = rundir.check_run_dir(run, "a run directory (written by `repae-lab train` or `repae-lab import-checkpoint`)")
    require([to])
    out = Path(out)
    config = rundir.read_json(run / layout.CONFIG)
    if to == "tensorboard":
        target = out / run.name
        shutil.rmtree(target, ignore_errors=True)
        writer = TensorBoardWriter(target)
    else:
        # the same id for the same run directory, so a second export replaces the first
        run_id = "export-" + hashlib.sha1(str(run.resolve()).encode()).hexdigest()[:10]
        for old in (out / "wandb").glob(f"*-{run_id}"):
            shutil.rmtree(old, ignore_errors=True)
        writer = WandbWriter(out, name=run.name, config=config, run_id=run_id, mode="offline")
        target = writer.offline_dir
    try:
        if to == "tensorboard":
            writer.config(config)
        replay(run, [writer], samples=samples)
    finally:
        writer.close()
    if not any(target.iterdir()):
        raise RunError(f"nothing was written for '{run}'")
    return target
