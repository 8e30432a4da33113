"""Starting a training run the way the workbench does: the training loop with the in-training evaluation
handed in (the loop itself never imports evaluation: DESIGN.md layers)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config
from ..evaluation import TrainingEvaluator
from ..training.loop import train as train_loop


def train(cfg: Config | None = None, out: str | Path | None = None, *, resume: str | Path | None = None,
          overrides: dict[str, Any] | None = None, progress: bool = True, on_metrics=None) -> dict[str, Any]:
    """Train `cfg` into `out` (or continue the run at `resume`, with `overrides`), evaluating every eval_every
    steps. See training.loop.train; returns the run summary."""
    return train_loop(cfg, out, resume=resume, overrides=overrides, progress=progress, on_metrics=on_metrics,
                      evaluate=TrainingEvaluator())
