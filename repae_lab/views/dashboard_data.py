"""What the training dashboard shows, computed from a run directory that may still be written: the metrics log
read incrementally, curves downsampled to a point cap, alarms, steps per second and the time left.

Everything here is plain data and plain plotly figures (widgets/dashboard.py wraps them in a FigureWidget, a
test or a static report uses them as they are). A run directory appears in stages: the folder, then
config.json once the models are built (seconds to minutes after a launch), then metrics.jsonl; every function
accepts each stage, so a dashboard can be opened before the run exists.
"""
from __future__ import annotations

import html
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .. import rundir
from ..rundir import layout

# panels by key prefix (the first match wins), in the order of the page, so that each panel holds numbers of
# one scale; keys of no listed prefix go to "other"
PANEL_GROUPS = ((("loss/diffusion", "loss/repa"), "diffusion, REPA"),
                (("loss/l1", "loss/perceptual", "loss/vae"), "VAE reconstruction"),
                (("loss/disc", "loss/gan"), "GAN"), (("loss/kl",), "KL (raw)"),
                (("loss/",), "other losses"), (("grad_norm/",), "gradient norms"),
                (("eval/fd", "eval/rfd"), "FD"), (("eval/",), "evaluation"),
                (("latent/spatial_var", "latent/total_variation"), "latent variance, TV"),
                (("latent/",), "latent mean, std"))
OTHER_PANEL = "other"
LINE_COLOURS = qualitative.Plotly + qualitative.D3
# what each alarm kind means, for the alarm list (training/alarms.py fires them)
ALARM_MEANINGS = {"nonfinite": "a loss or gradient norm is NaN or infinite",
                  "grad_collapse": "a module's gradient norm stays about zero",
                  "gan_collapse": "the discriminator wins outright",
                  "latent_collapse": "the latent's spatial variance collapsed"}
NOT_SERIES = ("step", "time", "time_written")


def panel_of(key: str) -> str:
    return next((title for prefixes, title in PANEL_GROUPS if key.startswith(prefixes)), OTHER_PANEL)


def downsample(steps, values, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `cap` points of a curve: for each of cap // 2 equal buckets its lowest and highest point, in step
    order, so spikes (and NaN gaps) survive; the last point is always kept. Curves under the cap are unchanged."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    n = len(steps)
    if cap < 2:
        raise ValueError(f"the point cap must be at least 2, got {cap}.")
    if n <= cap:
        return steps, values
    keep = set()
    for bucket in np.array_split(np.arange(n), cap // 2):
        chunk = values[bucket]
        nan = np.isnan(chunk)
        if nan.all():
            keep.add(int(bucket[0]))
            continue
        if nan.any():                           # a NaN inside the bucket stays a gap in the line
            keep.add(int(bucket[np.argmax(nan)]))
        finite = np.where(nan, np.nan, chunk)
        keep.update((int(bucket[np.nanargmin(finite)]), int(bucket[np.nanargmax(finite)])))
    keep.add(n - 1)
    index = np.array(sorted(keep))[-cap:] if len(keep) > cap else np.array(sorted(keep))
    return steps[index], values[index]


class MetricsTail:
    """The records appended to a metrics.jsonl since the previous read, without re-reading the file.

    A line still being written waits for its newline. When the file is replaced (a resume or a rollback rewrites
    it under a new inode) or shrinks, `read` starts over and says so, so that the reader drops what it had."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset, self.inode, self.partial = 0, None, b""

    def read(self) -> tuple[list[dict[str, Any]], bool]:
        """(new complete records, whether the file was replaced since the last read)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            reset = self.inode is not None
            self.offset, self.inode, self.partial = 0, None, b""
            return [], reset
        reset = self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset)
        if reset:
            self.offset, self.partial = 0, b""
        self.inode = st.st_ino
        if st.st_size == self.offset:
            return [], reset
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()                # b"" when the chunk ended with a newline
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue                          # a torn line left by a killed writer
            if isinstance(record, dict):
                records.append(record)
        return records, reset


@dataclass
class Progress:
    """Where a run stands: `state` is waiting (no config.json yet), starting (config, no metrics), training,
    finished, or quiet (no new metrics for a while: stopped, killed, or evaluating)."""
    state: str
    step: int = 0
    total: int | None = None
    steps_per_s: float | None = None
    eta_s: float | None = None
    elapsed_s: float | None = None
    quiet_s: float | None = None

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"


@dataclass
class DashboardState:
    """A run directory's metrics as read so far; `poll()` reads what is new."""
    run: Path
    config: dict | None = None
    summary: dict | None = None
    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    alarms: list[dict] = field(default_factory=list)
    rollbacks: list[dict] = field(default_factory=list)
    timeline: list[tuple[int, float]] = field(default_factory=list)   # (step, seconds since the run started)
    last_step: int = 0
    last_change: float | None = None                                  # wall clock of the last new record

    def __post_init__(self):
        self.run = Path(self.run)
        self.tail = MetricsTail(self.run / layout.METRICS)

    @property
    def label(self) -> str:
        recipe = (self.config or {}).get("recipe")
        return f"{self.run.name} ({recipe})" if recipe and recipe not in self.run.name else self.run.name

    @property
    def total(self) -> int | None:
        steps = (self.config or {}).get("steps")
        return int(steps) if isinstance(steps, (int, float)) else None

    def poll(self) -> bool:
        """Read what the run wrote since the last poll; True when anything changed."""
        changed = False
        if self.config is None:
            self.config = rundir.read_json(self.run / layout.CONFIG)
            changed = self.config is not None
        records, reset = self.tail.read()
        if reset:
            self.series, self.alarms, self.rollbacks, self.timeline, self.last_step = {}, [], [], [], 0
            changed = True
        for record in records:
            self.add(record)
        if records:
            changed, self.last_change = True, time.time()
        if self.summary is None and self.config is not None and (self.run / "summary.json").is_file():
            self.summary = rundir.read_json(self.run / "summary.json")
            changed = changed or self.summary is not None
        return changed

    def add(self, record: dict) -> None:
        """One metrics-log record: a logged interval, an evaluation, an alarm or a rollback."""
        event = record.get("event")
        if event == "alarm":
            self.alarms.append(record)
            return
        if event == "rollback":
            self.rollbacks.append(record)
            return
        if event is not None or not isinstance(record.get("step"), (int, float)):
            return
        step = int(record["step"])
        for key, value in record.items():
            if key in NOT_SERIES or "/" not in key or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            steps, values = self.series.setdefault(key, ([], []))
            steps.append(step)
            values.append(float(value))
        if record.get("kind") != "eval" and isinstance(record.get("time"), (int, float)):
            self.timeline.append((step, float(record["time"])))
        self.last_step = max(self.last_step, step)

    def progress(self, now: float | None = None, window: int = 20) -> Progress:
        """Steps per second over the last `window` logged intervals (since the last resume: the log's clock
        restarts there), and the time left at that speed."""
        now = time.time() if now is None else now
        if self.config is None:
            return Progress("waiting")
        total = self.total
        if not self.timeline:
            state = "finished" if self.summary else "starting"
            return Progress(state, self.last_step, total)
        since_resume = self.timeline
        for i in range(len(self.timeline) - 1, 0, -1):
            if self.timeline[i][1] < self.timeline[i - 1][1]:
                since_resume = self.timeline[i:]
                break
        recent = since_resume[-(window + 1):]
        rate = None
        if len(recent) >= 2 and recent[-1][1] > recent[0][1] and recent[-1][0] > recent[0][0]:
            rate = (recent[-1][0] - recent[0][0]) / (recent[-1][1] - recent[0][1])
        finished = bool(self.summary) and (total is None or self.summary.get("steps", 0) >= total)
        eta = 0.0 if finished else ((total - self.last_step) / rate if rate and total else None)
        quiet = None if self.last_change is None else max(0.0, now - self.last_change)
        if finished:
            state = "finished"
        else:
            patience = max(60.0, 10.0 / rate) if rate else 60.0
            state = "quiet" if quiet is not None and quiet > patience else "training"
        return Progress(state, self.last_step, total, rate, eta, self.timeline[-1][1], quiet)

    def panels(self, max_points: int = 400) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
        """{panel title: [(key, steps, values), ...]} in page order, each curve downsampled to max_points."""
        out: dict[str, list] = {}
        order = [title for _, title in PANEL_GROUPS] + [OTHER_PANEL]
        for key in sorted(self.series):
            steps, values = self.series[key]
            out.setdefault(panel_of(key), []).append((key, *downsample(steps, values, max_points)))
        return {title: out[title] for title in order if title in out}


def status_line(state: DashboardState, progress: Progress | None = None) -> str:
    """One line: what the run is doing, its step, speed and time left."""
    p = progress or state.progress()
    if p.state == "waiting":
        return (f"{state.run.name}: waiting for {layout.CONFIG} (a run writes it once its models are built)")
    total = p.total if p.total is not None else "?"
    head = f"{state.label}: step {p.step} / {total}"
    if p.state == "starting":
        return f"{head}, starting (no metrics logged yet)"
    speed = f"{p.steps_per_s:.2f} steps/s" if p.steps_per_s else "speed ?"
    if p.state == "finished":
        return f"{head} (finished in {format_seconds(p.elapsed_s)}, {speed})"
    tail = f", no new metrics for {format_seconds(p.quiet_s)}" if p.state == "quiet" else ""
    return f"{head}, {speed}, {format_seconds(p.eta_s)} left{tail}"


def alarm_rows(state: DashboardState) -> list[dict[str, Any]]:
    """The alarms and rollbacks in step order: {step, alarm, meaning, message, action}."""
    rows = [{"step": a.get("step"), "alarm": a.get("alarm", "?"), "meaning": ALARM_MEANINGS.get(a.get("alarm"), ""),
             "message": a.get("message", ""), "action": a.get("policy", "?")} for a in state.alarms]
    rows += [{"step": r.get("step"), "alarm": r.get("alarm", "?"), "meaning": "rollback",
              "message": f"restored {r.get('checkpoint', '?')}, learning rates x{r.get('lr_factor', '?')}",
              "action": "rolled back"} for r in state.rollbacks]
    return sorted(rows, key=lambda r: (r["step"] if isinstance(r["step"], int) else -1))


def alarms_html(state: DashboardState) -> str:
    rows = alarm_rows(state)
    if not rows:
        return "<span style='color:#2a7'>no alarms</span>"
    cells = "".join(f"<tr><td>{r['step']}</td><td><b style='color:#c22'>{html.escape(str(r['alarm']))}</b></td>"
                    f"<td>{html.escape(r['message'])}</td><td>{html.escape(str(r['action']))}</td></tr>" for r in rows)
    return (f"<b style='color:#c22'>{len(rows)} alarm{'s' if len(rows) > 1 else ''}</b>"
            f"<table><tr><th>step</th><th>alarm</th><th>message</th><th>policy's action</th></tr>{cells}</table>")


def dashboard_figure(state: DashboardState, max_points: int = 400) -> go.Figure:
    """The run's curves grouped in panels (losses, gradient norms, evaluation, latent statistics), one line per
    metric (trace.meta = its key), alarms as red dashed lines with a marker on every panel (meta 'alarms')."""
    panels = state.panels(max_points)
    titles = list(panels) or ["no metrics yet"]
    cols = min(3, len(titles))
    rows = math.ceil(len(titles) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, vertical_spacing=0.3 / rows if rows > 1 else 0.1,
                        horizontal_spacing=0.06)
    alarm_steps = [r["step"] for r in alarm_rows(state) if isinstance(r["step"], int)]
    alarm_text = [f"{r['alarm']} at step {r['step']}: {r['message']} ({r['action']})" for r in alarm_rows(state)
                  if isinstance(r["step"], int)]
    colour_index = 0
    for i, title in enumerate(titles):
        row, col = i // cols + 1, i % cols + 1
        curves = panels.get(title, [])
        for key, steps, values in curves:
            fig.add_trace(go.Scattergl(x=steps, y=values, mode="lines+markers" if len(steps) < 30 else "lines",
                                       name=key.split("/", 1)[-1], meta=key, legendgroup=title,
                                       legendgrouptitle_text=title,
                                       line=dict(width=1.5, color=LINE_COLOURS[colour_index % len(LINE_COLOURS)]),
                                       hovertemplate=f"{key}<br>step %{{x}}: %{{y:.4g}}<extra></extra>"),
                          row=row, col=col)
            colour_index += 1
        finite = [v for _, _, vals in curves for v in vals if math.isfinite(v)]
        top = max(finite) if finite else 0.0
        if finite and min(finite) > 0 and max(finite) / min(finite) > 50:
            fig.update_yaxes(type="log", row=row, col=col)   # lines of very different scales, all positive
        fig.add_trace(go.Scatter(x=alarm_steps, y=[top] * len(alarm_steps), mode="markers", meta="alarms",
                                 name="alarms", legendgroup="alarms", showlegend=i == 0,
                                 marker=dict(symbol="x", size=11, color="#d62728"), hovertext=alarm_text,
                                 hoverinfo="text"), row=row, col=col)
        for step in alarm_steps[:50]:
            fig.add_vline(x=step, line=dict(color="#d62728", dash="dash", width=1), row=row, col=col)
    fig.update_xaxes(title_text="step")
    fig.update_layout(height=270 * rows + 190, margin=dict(t=80, l=50, r=20, b=40), title=status_line(state),
                      legend=dict(groupclick="toggleitem", orientation="h", yanchor="top", y=-0.1 / rows,
                                  font=dict(size=11)))
    return fig


def figure_signature(fig: go.Figure) -> tuple:
    """What decides a dashboard figure's structure: its panels and the metric of every trace. Two figures with
    the same signature differ only in data, which a FigureWidget can take in place."""
    titles = tuple(a.text for a in fig.layout.annotations if a.yref == "paper")
    return titles, tuple((t.meta, t.xaxis) for t in fig.data), len(fig.layout.shapes)
