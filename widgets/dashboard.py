"""TrainingDashboard: a run's live curves, speed, time left and alarms, for a run training in this kernel or in
another process or host.

Two ways to stay current, neither a thread (ipykernel 7 does not reliably deliver widget updates made from one):
- in-kernel: `dashboard.train(cfg)` (or `train(cfg, out, on_metrics=dashboard.on_metrics)`): the training loop
  calls `on_metrics` on the kernel's thread at every log interval; the Stop button works there;
- polling: a timer on the kernel's event loop re-reads RUN/metrics.jsonl every few seconds (`start()`, on by
  default when the dashboard is shown in a kernel), for a run started elsewhere (a subprocess, papermill,
  torchrun, another host on a shared folder).
Both are throttled: at most `max_redraws_per_s` redraws a second, and every curve capped at `max_points`.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Sequence

import ipywidgets as W
import plotly.graph_objects as go

from repae_lab import rundir
from repae_lab.views.dashboard_data import (DashboardState, alarm_rows, alarms_html, dashboard_figure, figure_signature,
                                            status_line)

from . import kernel_events
from ._base import View, replace_figure


class StopTraining(Exception):
    """Raised from on_metrics after the Stop button was pressed; TrainingDashboard.train catches it."""


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class TrainingDashboard(View):
    """Live view of one run directory (it need not exist yet: the dashboard waits for its config.json).

        dashboard = TrainingDashboard("runs/demo")
        dashboard                                   # shows it; polls if the run trains elsewhere
        dashboard.train(cfg)                        # or: train it here, with a working Stop button

    `poll()` reads what is new and redraws (the timer calls it); `start(every)` / `stop()` control the timer.
    """

    title = "Training dashboard"

    def __init__(self, run: str | Path | Sequence[str | Path], *, max_points: int = 400,
                 max_redraws_per_s: float = 4.0, poll_every: float | None = 2.0):
        super().__init__()
        if not isinstance(run, (str, Path)):
            runs = list(run)
            if len(runs) != 1:
                raise ValueError(f"TrainingDashboard follows one run, got {len(runs)}; make one dashboard per run "
                                 f"(repae_lab.views.figures.training_curves compares finished runs).")
            run = runs[0]
        if max_points < 2 or max_redraws_per_s <= 0:
            raise ValueError("max_points must be at least 2 and max_redraws_per_s positive.")
        self.max_points, self.min_interval = int(max_points), 1.0 / max_redraws_per_s
        self.poll_every = poll_every
        self._reset(Path(run))
        self.status = W.HTML()
        self.progress_bar = W.FloatProgress(min=0.0, max=1.0, layout=W.Layout(width="240px"))
        self.alarm_box = W.HTML()
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger", disabled=True,
                                    tooltip="stop the run this dashboard trains (the last checkpoint is kept)")
        self.stop_button.on_click(self.guarded(lambda _: self.request_stop()))
        self.refresh_button = W.Button(description="refresh", icon="refresh")
        self.refresh_button.on_click(self.guarded(lambda _: self.refresh(force=True)))
        self.fig = go.FigureWidget(dashboard_figure(self.state, self.max_points))
        self.widget = W.VBox([W.HBox([self.progress_bar, self.stop_button, self.refresh_button]), self.status,
                              self.alarm_box, self.fig, self.output])
        self._timer: asyncio.TimerHandle | None = None
        self._loop = None
        self.redraws = 0
        self.refresh(force=True)
        if poll_every and _running_loop() is not None and not self.finished:
            self.start(poll_every)

    def _reset(self, run: Path) -> None:
        self.run = run
        self.state = DashboardState(run)
        self._last_draw = -1e9
        self._pending = False
        self._stop_requested = False
        self._training = False
        self._phase: str | None = None

    # -- reading and drawing --------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.state.progress().state == "finished"

    def poll(self) -> bool:
        """Read what the run wrote since the last poll and redraw if anything changed; True if it did."""
        return self.refresh()

    def refresh(self, force: bool = False) -> bool:
        changed = self.state.poll()
        if changed or force or self._pending:
            self._draw()
        else:
            self._draw_status()         # nothing new: only the clock moves ("no new metrics for ...")
        return changed

    def _draw_status(self) -> None:
        progress = self.state.progress()
        line = status_line(self.state, progress)
        if self._phase:
            line = f"{line} &nbsp; <i>{self._phase}</i>"
        self.status.value = f"<b>{line}</b>"
        self.progress_bar.value = progress.fraction
        self.progress_bar.bar_style = {"finished": "success", "quiet": "warning"}.get(progress.state, "info")
        if alarm_rows(self.state):
            self.progress_bar.bar_style = "danger"

    def _draw(self) -> None:
        self._draw_status()
        self.alarm_box.value = alarms_html(self.state)
        fresh = dashboard_figure(self.state, self.max_points)
        if figure_signature(fresh) != figure_signature(self.fig):
            replace_figure(self.fig, fresh)
        else:
            with self.fig.batch_update():
                for trace, new in zip(self.fig.data, fresh.data):
                    trace.x, trace.y = new.x, new.y
                    if new.hovertext is not None:
                        trace.hovertext = new.hovertext
                self.fig.layout.title.text = fresh.layout.title.text
        self._last_draw, self._pending = time.monotonic(), False
        self.redraws += 1

    # -- in-kernel mode -------------------------------------------------------------------------------------
    def on_metrics(self, step: int, means: dict[str, float]) -> None:
        """The training loop's callback (on the kernel's thread): redraws at most max_redraws_per_s times a
        second, and raises StopTraining once Stop was pressed."""
        kernel_events.deliver_widget_messages([self.stop_button.comm.comm_id] if self.stop_button.comm else [])
        if self._stop_requested:
            raise StopTraining(f"stopped from the dashboard at step {step}")
        self._pending = True
        if time.monotonic() - self._last_draw >= self.min_interval:
            self.guarded(self.refresh)()

    def request_stop(self) -> None:
        """What the Stop button does: the next on_metrics call stops the run."""
        if self._training:
            self._stop_requested = True
            self.stop_button.disabled = True
            self.stop_button.description = "stopping..."

    def train(self, cfg=None, out: str | Path | None = None, *, resume: str | Path | None = None,
              **kwargs) -> dict[str, Any]:
        """Train `cfg` into this dashboard's run directory (or `out`), or continue it (`resume=True` or a path),
        in this kernel, drawing as it goes. Stop (or interrupting the kernel) ends it cleanly: the last checkpoint
        is kept and the returned dict says {'stopped': True, 'step', 'checkpoint'}; otherwise the run summary."""
        from repae_lab.jobs.launch import train

        target = Path(resume if isinstance(resume, (str, Path)) else out if out is not None else self.run)
        if target != self.run:
            self._reset(target)
        self.stop()
        self._stop_requested, self._training = False, True
        self.stop_button.disabled, self.stop_button.description = False, "Stop"
        self._phase = "building the models (config.json appears when they are built)"
        self.refresh(force=True)
        stopped = None
        try:
            if resume is not None:
                summary = train(resume=target, progress=False, on_metrics=self.on_metrics, **kwargs)
            else:
                summary = train(cfg, target, progress=False, on_metrics=self.on_metrics, **kwargs)
        except StopTraining as err:
            stopped = str(err)
        except KeyboardInterrupt:
            stopped = "interrupted"
        except Exception as err:
            self._phase = f"failed: {err}"
            raise
        finally:
            self._training = False
            self.stop_button.disabled, self.stop_button.description = True, "Stop"
            if stopped is None and self._phase and not self._phase.startswith("failed"):
                self._phase = None
            self.refresh(force=True)
        if stopped is None:
            return summary
        ckpt = rundir.latest_good_checkpoint(self.run)
        self._phase = (f"{stopped}; last checkpoint {ckpt.name if ckpt else 'none'} kept: continue with "
                       f"dashboard.train(resume=True)")
        self._draw()
        return {"stopped": True, "step": self.state.last_step, "checkpoint": str(ckpt) if ckpt else None}

    # -- polling mode ---------------------------------------------------------------------------------------
    def start(self, every: float | None = None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Poll every `every` seconds from a timer on `loop` (the kernel's running event loop by default), until
        the run finishes or stop() is called."""
        every = every or self.poll_every or 2.0
        if every < self.min_interval:
            every = self.min_interval
        loop = loop or _running_loop()
        if loop is None:
            raise RuntimeError("no running event loop to poll from (outside a notebook kernel); call poll() "
                               "yourself, or pass loop=.")
        self.stop()
        self.poll_every, self._loop = every, loop
        self._timer = loop.call_later(every, self._tick)

    def stop(self) -> None:
        """Stop polling."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def polling(self) -> bool:
        return self._timer is not None

    def _tick(self) -> None:
        self._timer = None
        self.guarded(self.refresh)()
        if not self.finished and self._loop is not None and not self._loop.is_closed():
            self._timer = self._loop.call_later(self.poll_every, self._tick)

    # -- static export --------------------------------------------------------------------------------------
    def figures(self) -> list[go.Figure]:
        return [dashboard_figure(self.state, self.max_points)]

    def html_blocks(self) -> list[str]:
        return [f"<p><b>{status_line(self.state)}</b></p>", alarms_html(self.state)]
