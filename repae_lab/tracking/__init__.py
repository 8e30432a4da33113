"""Experiment tracking: a run's metrics, evaluations, snapshot pictures, sample grids and config in TensorBoard
and Weights & Biases, beside the run directory (RUN/tensorboard/, RUN/wandb/), which stays the record.

`--set tracker=tensorboard` (or wandb, or tensorboard,wandb) turns it on for a run: jobs/launch.py hands
`run_tracker` to the training loop, which calls it on rank 0 (the loop never imports this package). `repae-lab
export-tracker RUN --to tensorboard DIR` writes a finished run's history (history.export_run). The packages are
the optional extra `repae_lab[tracking]`.
"""
from .backends import TRACKERS, TensorBoardWriter, WandbWriter, require, tracker_names
from .history import export_run, record_scalars, replay
from .live import RunTracker, run_tracker

__all__ = ["TRACKERS", "RunTracker", "TensorBoardWriter", "WandbWriter", "export_run", "record_scalars", "replay",
           "require", "run_tracker", "tracker_names"]
