"""Training from a notebook: in the kernel (one process) or under torchrun in a subprocess (several processes or
machines), with progress that papermill can show.

A progress bar under papermill shows nothing useful: the log says only "Executing 4/13" and the saved notebook
holds a widget frozen at "0/80". Here the run's metrics log (RUN/metrics.jsonl, the run-directory contract) is
followed instead, and one plain line is printed every few steps and for every evaluation, so the progress
appears in `papermill --log-output`, in the executed notebook (papermill saves it while a cell runs) and in
JupyterLab alike. In a kernel, the live curves are shown too and replaced by a one-line note at the end.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .. import rundir
from ..config import ConfigError, resolve_config
from ..data import DatasetError
from ..jobs.runs import ensure_run, run_action
from ..rundir import RunError
from .output import figure_bundle, record_runs
from .params import NotebookError

LINES_PER_RUN = 20           # progress lines a run prints (plus one per evaluation)
FIGURE_EVERY_S = 15.0        # the live curves are redrawn at most this often
SHOWN = (("loss/diffusion", "diffusion"), ("loss/repa", "repa"), ("loss/repa_vae", "repa_vae"), ("loss/l1", "l1"),
         ("latent/spatial_var", "spatial_var"))
EVAL_SHOWN = ("eval/fd_", "eval/accuracy_", "eval/rpsnr")
ACTIONS = {"train": "trained", "resume": "resumed", "done": "reused"}


class MetricsTail:
    """The complete lines appended to a metrics log since the last read (a torn last line waits for the next
    read; a log rewritten by a resume is read again from the start)."""

    def __init__(self, path: str | Path):
        self.path, self.offset = Path(path), 0

    def read(self) -> list[dict[str, Any]]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:
            self.offset = 0
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        records = []
        for line in chunk[:end].splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def _value(key: str, v: float) -> str:
    if "accuracy" in key or key.startswith(("eval/precision", "eval/recall")):
        return f"{v:.1%}"
    return f"{v:.4g}"


class ProgressPrinter:
    """Prints the run's progress from its metrics log: a line every `every` steps (default: about
    LINES_PER_RUN lines per run), each evaluation, each alarm. Call it as the loop's on_metrics callback, or
    call poll() while another process trains."""

    def __init__(self, run: str | Path, total: int, *, every: int | None = None, out: Callable[[str], None] | None = None,
                 figure: bool = False):
        self.run, self.total = Path(run), int(total)
        self.every = max(1, int(every) if every else self.total // LINES_PER_RUN)
        self.out = out or (lambda line: print(line, flush=True))
        self.tail = MetricsTail(self.run / "metrics.jsonl")
        self.last_step = -1                       # the newest step printed
        self.shown: set[tuple[str, int]] = set()  # evaluations and events already printed (a resume re-reads the log)
        self.next_line = 0
        self.started = time.time()
        self.first: tuple[float, int] | None = None  # (wall time, step) of the first record seen: the rate's origin
        self.handle = None
        self.figure_at = 0.0
        if figure:
            self._start_figure()

    def skip_logged(self) -> None:
        """Print only what comes after the records already in the log (a resumed run)."""
        for r in self.tail.read():
            step = int(r.get("step", 0))
            kind = r.get("kind") or r.get("event")
            if kind is not None:
                self.shown.add((kind, step))
            else:
                self.last_step = max(self.last_step, step)
        self.next_line = (self.last_step // self.every + 1) * self.every

    def __call__(self, step=None, means=None) -> None:
        self.poll()

    def poll(self) -> None:
        for record in self.tail.read():
            self._show(record)
        self._redraw()

    def _show(self, r: dict[str, Any]) -> None:
        step = int(r.get("step", 0))
        width = len(str(self.total))
        kind = r.get("kind") or r.get("event")
        if kind is not None:
            if (kind, step) in self.shown:
                return
            self.shown.add((kind, step))
        if "event" in r:
            self.out(f"step {step:>{width}}/{self.total}  {r['event']}: {r.get('message') or r.get('alarm') or ''}")
        elif r.get("kind") == "eval":
            numbers = "  ".join(f"{k[5:]} {_value(k, v)}" for k, v in sorted(r.items())
                                if k.startswith(EVAL_SHOWN) and isinstance(v, (int, float)))
            self.out(f"step {step:>{width}}/{self.total}  evaluation: {numbers}")
        elif step > self.last_step and (step >= self.next_line or step >= self.total):
            now = time.time()
            if self.first is None:
                self.first = (now, step)
            losses = "  ".join(f"{name} {r[k]:.4g}" for k, name in SHOWN if isinstance(r.get(k), (int, float)))
            timing = f"{_duration(now - self.started)} elapsed"
            t0, s0 = self.first
            if step > s0 and step < self.total:
                timing += f", ~{_duration((now - t0) / (step - s0) * (self.total - step))} left"
            self.out(f"step {step:>{width}}/{self.total} ({100 * step / self.total:3.0f}%)  {losses}  [{timing}]")
            self.last_step = step
            self.next_line = (step // self.every + 1) * self.every

    # -- the live curves (in a kernel only) -------------------------------------------------------------------
    def _start_figure(self) -> None:
        # IPython and plotly (through views.figures) are imported only where the live curves are drawn: training
        # from a notebook under torchrun or papermill needs neither
        try:
            from IPython import get_ipython
            from IPython.display import HTML, display
        except ImportError:
            return
        if get_ipython() is None:
            return
        self.handle = display(HTML("<i>waiting for the first metrics...</i>"), display_id=True)

    def _redraw(self, force: bool = False) -> None:
        if self.handle is None or (not force and time.time() - self.figure_at < FIGURE_EVERY_S):
            return
        from ..views.figures import training_curves

        self.figure_at = time.time()
        if (self.run / "metrics.jsonl").is_file():
            self.handle.update(figure_bundle(training_curves([self.run])), raw=True)

    def finish(self, note: str) -> None:
        self.poll()
        if self.handle is not None:
            from IPython.display import HTML

            self.handle.update(HTML(f"<i>{note}</i>"))      # the final curves follow in their own cell


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def torchrun_command(preset: str, recipe: str, out: str | Path, overrides: dict[str, Any] | None = None, *,
                     processes: int = 1, nnodes: int = 1, node_rank: int = 0, rdzv_endpoint: str = "",
                     resume: bool = False) -> list[str]:
    """The torchrun command line that trains (or resumes) this run: PyTorch's own launcher, never ours."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
    if nnodes > 1:
        cmd += ["--nnodes", str(nnodes), "--node_rank", str(node_rank), "--rdzv_backend", "c10d",
                "--rdzv_endpoint", rdzv_endpoint]
    else:
        cmd += ["--standalone"]
    cmd += ["-m", "repae_lab", "train", "--quiet"]
    if resume:
        return cmd + ["--resume", str(out)]
    cmd += ["--preset", preset, "--recipe", recipe, "--out", str(out)]
    sets = [f"{k}={_cli_value(v)}" for k, v in (overrides or {}).items()]
    return cmd + (["--set", *sets] if sets else [])


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def run_torchrun(cmd: list[str], run: Path, printer: ProgressPrinter | None, *, poll_seconds: float = 2.0) -> None:
    """Start torchrun, follow the run's metrics log until it exits; its output goes to RUN/torchrun.log."""
    run.mkdir(parents=True, exist_ok=True)
    log_path = run / "torchrun.log"
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=os.getcwd())
        try:
            while proc.poll() is None:
                if printer is not None:
                    printer.poll()
                time.sleep(poll_seconds)
        except BaseException:
            proc.terminate()                     # an interrupted cell stops the processes it started
            proc.wait(timeout=60)
            raise
    if proc.returncode:
        raise NotebookError(f"torchrun exited with status {proc.returncode}; the last lines of {log_path}:\n"
                            f"{_log_tail(log_path)}")


def train_run(preset: str, recipe: str, out: str | Path, overrides: dict[str, Any] | None = None, *,
              processes: int = 1, nnodes: int = 1, node_rank: int = 0, rdzv_endpoint: str = "",
              progress: bool = True, every: int | None = None, record: bool = True) -> Path:
    """jobs.runs.ensure_run for notebooks: train, resume or reuse the run in `out`, printing its progress.

    processes * nnodes > 1 trains under torchrun in a subprocess (with nnodes > 1, start the same notebook on
    every machine with its node_rank and machine 0's rdzv_endpoint; the run directory must be on a shared
    filesystem) and follows the metrics log until it ends. Errors in the input stop with one line
    (NotebookError). Records the run directory for run-notebook's summary."""
    stops = (ConfigError, RunError, DatasetError)       # bad input: one line, not a traceback from the loop
    run = Path(out)
    overrides = dict(overrides or {})
    try:
        action = run_action(preset, recipe, run, overrides)
        cfg = resolve_config(preset, recipe=recipe, overrides=overrides)
    except stops as err:
        raise NotebookError(str(err)) from None
    if nnodes > 1 and not rdzv_endpoint:
        raise NotebookError("nnodes > 1 needs rdzv_endpoint: HOST:PORT of machine 0, e.g. -p rdzv_endpoint node0:29500.")
    world = processes * nnodes
    if action == "done":
        print(f"{run}: finished run of {cfg.steps} steps found, reused", flush=True)
    else:
        where = f"torchrun, {processes} process(es) x {nnodes} machine(s)" if world > 1 else "this kernel"
        verb = "resuming" if action == "resume" else "training"
        print(f"{verb} {cfg.recipe} ({cfg.preset}) for {cfg.steps} steps into {run} in {where}", flush=True)
        printer = ProgressPrinter(run, cfg.steps, every=every, figure=progress) if progress else None
        if printer is not None and action == "resume":
            printer.skip_logged()
        try:
            if world > 1:
                cmd = torchrun_command(preset, recipe, run, overrides, processes=processes, nnodes=nnodes,
                                       node_rank=node_rank, rdzv_endpoint=rdzv_endpoint, resume=action == "resume")
                run_torchrun(cmd, run, printer)
            else:
                ensure_run(preset, recipe, run, overrides, progress=False, on_metrics=printer)
        except stops as err:
            raise NotebookError(str(err)) from None
        summary = rundir.read_json(run / "summary.json") or {}
        note = f"{run}: {summary.get('steps', '?')} steps in {_duration(summary.get('seconds', 0))}"
        if printer is not None:
            printer.finish(note)
        print(note, flush=True)
    if record:
        record_runs([(run, ACTIONS[action])])
    return run
