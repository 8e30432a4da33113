"""The trackers of a training run, as the training loop calls them (training/loop.py `track`; jobs/launch.py hands
`run_tracker` in). Rank 0 only.

A tracker never stops a run: when one fails (a full disk under RUN/tensorboard, a W&B service that dies) it says
so in one warning line and is dropped, and training goes on with the others. A missing package is different: it
is refused before the run's networks are built, with the extra to install.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import rundir
from ..config import Config
from .backends import WANDB_STATE, TensorBoardWriter, WandbWriter, require, tracker_names
from .history import SnapshotPainter, replay, step_of, warn, write_record
from .pictures import eval_pictures, sample_grid, save_samples

TENSORBOARD_DIR = "tensorboard"


def run_tracker(cfg: Config, run: Path) -> "RunTracker | None":
    """The training loop's `track`: the trackers cfg.tracker names for `run`, or None when it names none. A
    ConfigError naming `pip install 'repae_lab[tracking]'` when a package is missing."""
    names = tracker_names(cfg.tracker)
    if not names:
        return None
    require(names)
    return RunTracker(cfg, Path(run), names)


def _has_events(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("events.out.tfevents.*"))


class RunTracker:
    """Every metrics-log record, snapshot picture and sample grid of a run, into each of its trackers."""

    def __init__(self, cfg: Config, run: Path, names: tuple[str, ...]):
        self.cfg, self.run, self.names = cfg, run, names
        self.writers: list = []
        self.painter: SnapshotPainter | None = None
        self.pictures = True

    def begin(self, state) -> None:
        """Open the trackers at the run's first step to come: state.step (0, or the checkpoint a resume starts
        from). A tracker that lacks some of the steps before it (switched on for a run with steps behind it, or
        W&B after a killed process whose last steps its service had not written) first gets them from the run
        directory."""
        self.painter = SnapshotPainter(self.run, dataset=state.dataset)
        for name in self.names:
            try:
                writer, has_upto = self._open(name, state.step)
            except Exception as err:
                self._failed(name, err)
                continue
            self.writers.append(writer)
            if 0 < state.step and has_upto < state.step:
                self._each(lambda w: replay(self.run, [w], after=has_upto, upto=state.step, painter=self.painter),
                           only=writer)

    def _open(self, name: str, step: int):
        """(the writer, the last step the tracker holds already)."""
        config = self.cfg.to_dict()
        if name == "tensorboard":
            logdir = self.run / TENSORBOARD_DIR
            if _has_events(logdir):
                # what an earlier process wrote past the checkpoint is redone now: TensorBoard drops it
                return TensorBoardWriter(logdir, purge_step=step + 1 if step else 0), step
            writer = TensorBoardWriter(logdir)
            writer.config(config)
            return writer, -1
        writer = WandbWriter(self.run, name=self.run.name, config=config, state_file=self.run / WANDB_STATE, warn=warn)
        return writer, writer.floor

    def record(self, record: dict[str, Any]) -> None:
        self._each(lambda w: write_record(w, record))
        if record.get("kind") == "eval" and self.writers:
            images = self._picture(lambda: eval_pictures(self.run, int(record["step"])))
            if images:
                self._each(lambda w: w.images(int(record["step"]), images))
        self._each(lambda w: w.flush())   # on disk with the metrics log: a run killed now loses neither

    def snapshot(self, state, tensors) -> None:
        if not self.writers:
            return
        images = self._picture(lambda: self.painter.pictures(tensors)) or {}
        grid = self._picture(lambda: sample_grid(state.nets.ema, state.nets.vae, self.cfg, state.device))
        if grid is not None:
            images["samples/class_conditional"] = grid
            self._picture(lambda: save_samples(self.run, state.step, grid))
        if images:
            self._each(lambda w: w.images(state.step, images))
        self._each(lambda w: w.flush())

    def close(self) -> None:
        """Close every tracker; what is past the newest checkpoint of a run that stopped early is trained again
        on resume, and a writer that holds it back (W&B's open row) drops it."""
        newest = max((step_of(p) for p in rundir.checkpoint_dirs(self.run)), default=-1)
        self._each(lambda w: w.close(redone_after=newest))
        self.writers = []

    def _picture(self, make):
        """A picture, or None (and, the first time, a warning) when it cannot be made: the scalars go on."""
        if not self.pictures:
            return None
        try:
            return make()
        except Exception as err:
            self.pictures = False
            warn(f"the trackers' pictures failed ({type(err).__name__}: {err}); they go on with scalars only")
            return None

    def _each(self, call, only=None) -> None:
        for writer in [only] if only is not None else list(self.writers):
            try:
                call(writer)
            except Exception as err:
                self._failed(writer.name, err)
                self.writers.remove(writer)
                try:
                    writer.close()
                except Exception:
                    pass

    def _failed(self, name: str, err: Exception) -> None:
        detail = str(err).splitlines()[0] if str(err) else ""
        warn(f"tracker {name} failed ({type(err).__name__}{': ' + detail if detail else ''}); the run goes on "
             f"without it")
