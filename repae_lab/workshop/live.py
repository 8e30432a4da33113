"""Watching a kit run train, in the notebook that trains it: an on_metrics callback that builds a view of the run
directory once training has written its config, shows it, and refreshes it at every log interval.

The view is whatever the notebook passes (the library imports no widgets): a class or function taking the run
directory and returning an object with `refresh()` that is displayable itself or through its `.widget`, such as
widgets.TrainingMonitor, or a dashboard with the same two members."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


def _display(obj) -> None:
    try:     # IPython only where there is a kernel to show the view in
        from IPython.display import display
    except ImportError:                      # outside IPython nothing is shown; training goes on
        return
    display(obj)


class LiveView:
    """on_metrics(step, means) for launch.train: view = factory(run) at the first call, then view.refresh()."""

    def __init__(self, factory: Callable[[Path], Any], run: str | Path, *, every: int = 1,
                 show: Callable[[Any], None] = _display):
        self.factory, self.run, self.every, self.show = factory, Path(run), max(1, every), show
        self.view, self.calls = None, 0

    def open(self) -> None:
        if self.view is None:
            self.view = self.factory(self.run)
            self.show(getattr(self.view, "widget", self.view))

    def refresh(self) -> None:
        if self.view is None:
            self.open()
        else:
            self.view.refresh()

    def __call__(self, step: int, means: dict) -> None:
        self.calls += 1
        if self.view is None or self.calls % self.every == 0:
            self.refresh()
