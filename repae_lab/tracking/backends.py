"""The two trackers the field uses, behind one small interface: scalars, pictures, text and the run's config
at a step, a rewind when steps are about to be redone, and close.

TensorBoard writes event files into a folder (RUN/tensorboard/ for a training run). A resumed run opens its
writer with purge_step = the resume step + 1: TensorBoard's readers then drop what the killed process wrote past
the checkpoint, as metrics.jsonl is truncated there, so no step is shown twice.

W&B cannot take back a step it holds (its steps only go forward), so the W&B writer never logs a step at or
below the last one W&B holds for the run: the newest step in the run's local transaction logs
(RUN/wandb/*-ID/run-ID.wandb, which the W&B service writes in both modes) or on the server (online). A killed
process loses what the service had not written yet; the resumed run sends those steps again. RUN/wandb_run.json
keeps the run id, so a resumed run continues the same W&B run (resume="allow"). Without WANDB_MODE and without an
API key (WANDB_API_KEY or a netrc entry) it runs offline, into RUN/wandb/, for `wandb sync` later.
"""
from __future__ import annotations

import html
import importlib.util
import json
import netrc
import os
import secrets
import struct
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from .. import rundir
from ..config import ConfigError

TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb"}   # tracker name -> the package it needs
EXTRA_HINT = "pip install 'repae_lab[tracking]'"
WANDB_STATE = "wandb_run.json"          # in the run directory: {"id", "project"}
HPARAM_METRICS = ("loss/diffusion", "loss/repa", "loss/l1", "latent/spatial_var", "eval/fd_workshop",
                  "eval/fd_dinov2", "eval/fd_inception")


def tracker_names(value: str) -> tuple[str, ...]:
    """'tensorboard,wandb' -> ('tensorboard', 'wandb'); 'none' or '' -> ()."""
    return tuple(dict.fromkeys(x.strip() for x in value.split(",") if x.strip() not in ("", "none")))


def require(names) -> None:
    """A one-line ConfigError naming the extra when a tracker's package is not installed."""
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"unknown tracker '{name}'; choose tensorboard or wandb.")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ConfigError(f"tracker={name} needs the {TRACKERS[name]} package: {EXTRA_HINT}")


def hparams(config: dict[str, Any]) -> dict[str, Any]:
    """A config as TensorBoard's HParams plugin takes it: numbers, strings and booleans only."""
    return {k: v if isinstance(v, (bool, int, float, str)) else ("none" if v is None else str(v))
            for k, v in config.items()}


class TensorBoardWriter:
    """TensorBoard event files in `logdir`; `purge_step` drops earlier writers' events from that step on."""
    name = "tensorboard"

    def __init__(self, logdir: str | Path, purge_step: int | None = None):
        self.logdir = Path(logdir)
        self._writer = self._open(purge_step)

    def _open(self, purge_step):
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.logdir), purge_step=purge_step, flush_secs=15)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self._writer.add_scalar(key, value, step)

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        for key, image in images.items():
            self._writer.add_image(key, image, step, dataformats="HWC")

    def text(self, step: int, tag: str, text: str) -> None:
        self._writer.add_text(tag, text, step)

    def config(self, config: dict[str, Any]) -> None:
        """The config as text (indented: a code block in TensorBoard's markdown) and as HParams, so runs can be
        compared by their keys in the HPARAMS tab."""
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        self.text(0, "config", "    " + json.dumps(config, indent=1).replace("\n", "\n    "))
        for summary in hparams_summaries(hparams(config), dict.fromkeys(HPARAM_METRICS, 0.0)):
            self._writer.file_writer.add_summary(summary)

    def rewind(self, step: int) -> None:
        """Steps after `step` will be written again: a new writer purges what was written past it."""
        self._writer.close()
        self._writer = self._open(step + 1)

    def flush(self) -> None:
        self._writer.flush()

    def close(self, redone_after: int | None = None) -> None:
        self._writer.close()


def wandb_has_credentials() -> bool:
    """An API key in the environment, or a netrc entry for the W&B host (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode() -> str | None:
    """None (wandb reads WANDB_MODE itself) when WANDB_MODE is set; else online with credentials, offline without."""
    if os.environ.get("WANDB_MODE"):
        return None
    return "online" if wandb_has_credentials() else "offline"


def transaction_log_records(path: Path):
    """The protobuf Records (wandb.proto.wandb_internal_pb2.Record) of a W&B transaction log (run-ID.wandb).
    The file is a 7-byte header (':W&B', two key bytes, a version byte), then 32 KiB blocks of chunks, each with
    a 7-byte header (crc32c, little-endian length, type: 1 full, 2 first, 3 middle, 4 last); the reading stops
    at a chunk a killed writer left unfinished. (The installed wandb has no reader of its own in Python.)"""
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        return
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        room = 32768 - pos % 32768
        if room < 7:                          # a block's tail too short for a chunk header is padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 or pos + 7 + length > len(data):
            return
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            try:
                record.ParseFromString(pending)
            except DecodeError:
                return
            pending = b""
            yield record


def last_logged_step(directory: Path, run_id: str) -> int:
    """The newest history step of run `run_id` in the transaction logs under `directory` (RUN/wandb); -1 if none."""
    steps = [record.history.step.num for path in Path(directory).glob(f"*-{run_id}/run-{run_id}.wandb")
             for record in transaction_log_records(path) if record.WhichOneof("record_type") == "history"]
    return max(steps, default=-1)


class WandbWriter:
    """One W&B run in `directory`/wandb/. Each step's values are gathered into one row, sent when the next step
    begins. `state_file` (RUN/wandb_run.json), when given, keeps the run id, so a later writer continues the same
    run; steps W&B holds already are skipped."""
    name = "wandb"

    def __init__(self, directory: str | Path, *, name: str, config: dict[str, Any], run_id: str | None = None,
                 state_file: Path | None = None, mode: str | None = None, warn=None):
        import wandb

        self._wandb = wandb
        state = (rundir.read_json(state_file) if state_file is not None else None) or {}
        self.run_id = state.get("id") or run_id or secrets.token_hex(4)
        self.project = state.get("project") or os.environ.get("WANDB_PROJECT") or "repae_lab"
        if state_file is not None:                        # before init: a run killed inside init keeps its id
            rundir.atomic_write_text(state_file, json.dumps({"id": self.run_id, "project": self.project}))
        self._row: dict[str, Any] = {}
        self._row_step: int | None = None
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        kwargs = dict(dir=str(directory), project=self.project, name=name, id=self.run_id, resume="allow",
                      config=config, tags=[str(config.get("recipe", "")), str(config.get("preset", ""))])
        mode = mode or wandb_mode()
        try:
            self._run = self._init(mode, kwargs)
        except Exception as err:                          # no network, a bad key: keep the history offline
            if mode == "offline":
                raise
            if warn is not None:
                warn(f"W&B could not start online ({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                     f"logging offline into {directory / 'wandb'} (upload later with `wandb sync`)")
            self._run = self._init("offline", kwargs)
        # the last step W&B holds: steps at or below it are skipped (the server's, when online and resumed)
        self.floor = max(last_logged_step(directory / "wandb", self.run_id),
                         int(getattr(self._run, "starting_step", 0) or 0) - 1)
        self.committed = self.floor

    def _init(self, mode: str | None, kwargs: dict):
        return self._wandb.init(mode=mode, settings=self._wandb.Settings(silent=True, console="off", init_timeout=60),
                                **kwargs)

    @property
    def offline_dir(self) -> Path:
        return Path(self._run.dir).parent

    def _commit(self) -> None:
        if self._row_step is not None:
            self._run.log(self._row, step=self._row_step, commit=True)
            self.committed = self._row_step
        self._row, self._row_step = {}, None

    def _log(self, step: int, values: dict[str, Any]) -> None:
        if step <= self.floor or not values:
            return
        if self._row_step is not None and step > self._row_step:
            self._commit()
        if self._row_step is None:
            self._row_step = step
        self._row.update(values)          # a step below the open row's (after a rollback) joins that row

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self._log(step, dict(values))

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        self._log(step, {k: self._wandb.Image(v) for k, v in images.items()})

    def text(self, step: int, tag: str, text: str) -> None:
        self._log(step, {tag: self._wandb.Html(f"<pre>{html.escape(text)}</pre>", inject=False)})

    def config(self, config: dict[str, Any]) -> None:
        self._run.config.update(config, allow_val_change=True)

    def rewind(self, step: int) -> None:
        """W&B keeps what it holds: the redone steps already sent are skipped; the open row takes the redone
        values of its step."""
        self.floor = max(self.floor, self.committed)

    def flush(self) -> None:
        pass

    def close(self, redone_after: int | None = None) -> None:
        """Send the open row, unless its step is past `redone_after` (the newest checkpoint of an interrupted
        run: a resume trains that step again and sends it whole), then finish the W&B run."""
        if redone_after is not None and self._row_step is not None and self._row_step > redone_after:
            self._row, self._row_step = {}, None
        self._commit()
        self._run.finish()
