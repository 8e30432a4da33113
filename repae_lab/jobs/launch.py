"""Starting a training run the way the workbench does: the training loop with the in-training evaluation and
the experiment trackers handed in (the loop itself imports neither: DESIGN.md layers)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config, ConfigError
from ..data import DatasetError
from ..evaluation import TrainingEvaluator
from ..metrics.feature_spaces import FeatureSpaceError
from ..rundir import CheckpointError, RunError
from ..sampling import SamplingError
from ..tracking import require, run_tracker, tracker_names
from ..training.loop import train as train_loop

# what bad input or a broken run directory raises: the commands, and a training child in its log, say it in one
# line (`repae-lab: error: ...`) instead of a traceback
USER_ERRORS = (ConfigError, DatasetError, RunError, CheckpointError, SamplingError, FeatureSpaceError)


def train(cfg: Config | None = None, out: str | Path | None = None, *, resume: str | Path | None = None,
          overrides: dict[str, Any] | None = None, progress: bool = True, on_metrics=None) -> dict[str, Any]:
    """Train `cfg` into `out` (or continue the run at `resume`, with `overrides`), evaluating every eval_every
    steps, and writing to the trackers cfg.tracker names. See training.loop.train; returns the run summary."""
    if cfg is not None:
        require(tracker_names(cfg.tracker))    # a missing tracker package fails before the run folder exists
    return train_loop(cfg, out, resume=resume, overrides=overrides, progress=progress, on_metrics=on_metrics,
                      evaluate=TrainingEvaluator(), track=run_tracker)
