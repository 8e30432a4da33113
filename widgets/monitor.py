"""TrainingMonitor: a run's curves, re-read from metrics.jsonl while it trains (in a subprocess, on another
machine with a shared folder, or under torchrun), with a refresh button and optional auto-refresh."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import ipywidgets as W
import plotly.graph_objects as go

from repae_lab import rundir
from repae_lab.app.figures import training_curves


class TrainingMonitor:
    """Loss curves of one or more runs. `refresh()` re-reads the logs and updates the lines in place;
    `start(every=10)` does so every `every` seconds from a background thread until `stop()`.

        TrainingMonitor(["runs/workshop-repa-e"])
    """

    def __init__(self, runs: Sequence[str | Path] | str | Path):
        runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
        self.runs = [Path(r) for r in runs]
        missing = [str(r) for r in self.runs if not (r / "config.json").is_file()]
        if missing:
            raise ValueError(f"not a run directory (no config.json): {', '.join(missing)}; pass folders "
                             f"written by `repae-lab train --out`.")
        self.figure = go.FigureWidget(training_curves(self.runs))
        self.status = W.HTML()
        self.button = W.Button(description="refresh", icon="refresh")
        self.button.on_click(lambda _: self.refresh())
        self.widget = W.VBox([W.HBox([self.button, self.status]), self.figure])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()

    def refresh(self) -> None:
        """Re-read every run's metrics.jsonl. A metric that first appears now (e.g. the first evaluation)
        rebuilds the figure; otherwise the lines are extended in place."""
        fresh = training_curves(self.runs)
        keys = lambda fig: [(t.meta, t.legendgroup) for t in fig.data]
        if keys(fresh) != keys(self.figure):
            with self.figure.batch_update():
                self.figure.data = []
                self.figure.layout = fresh.layout
                for trace in fresh.data:
                    self.figure.add_trace(trace)
        else:
            with self.figure.batch_update():
                for trace, new in zip(self.figure.data, fresh.data):
                    trace.x, trace.y = new.x, new.y
        self.status.value = " &nbsp; ".join(self._progress(r) for r in self.runs)

    @staticmethod
    def _progress(run: Path) -> str:
        config = rundir.read_json(run / "config.json") or {}
        records = [r for r in rundir.read_jsonl(run / "metrics.jsonl") if "event" not in r]
        done = records[-1]["step"] if records else 0
        total = config.get("steps", "?")
        finished = " (finished)" if (run / "summary.json").is_file() else ""
        return f"<b>{run.name}</b>: step {done} / {total}{finished}"

    def start(self, every: float = 10.0) -> None:
        """Refresh every `every` seconds in a background thread (stop with stop())."""
        self.stop()
        self._stop.clear()

        def loop():
            while not self._stop.wait(every):
                self.refresh()

        self._thread = threading.Thread(target=loop, daemon=True, name="repae-lab-monitor")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
