"""Train several runs side by side in child processes, a few at a time, reusing finished runs and resuming
interrupted ones. The quickstart and the benchmarks (workshop_claims, paper_claims) share it.

On a small CPU machine two one-thread processes use the cores better than one process with two threads: the
workshop networks are too small for intra-op parallelism to pay, and the second thread mostly spin-waits.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import rundir
from ..config import Config, resolve_config
from ..rundir import RunError, layout
from .progress import Phase
from .runs import run_action, run_is_complete
from .training_child import start_training


@dataclass(frozen=True)
class RunJob:
    """One run to train: `recipe` on `preset` with `overrides`, into `run`; `name` labels its log and progress.
    `after`: a run that must be finished before this one starts (and `prepare()` runs just before it starts),
    e.g. a fresh SiT on the E2E-VAE exported from another run."""
    name: str
    run: Path
    preset: str
    recipe: str
    overrides: dict[str, Any] = field(default_factory=dict)
    after: Path | None = None
    prepare: Callable[[], Any] | None = field(default=None, compare=False)

    def config(self) -> Config:
        return resolve_config(self.preset, recipe=self.recipe, overrides=dict(self.overrides))


def check_jobs(jobs: Sequence[RunJob]) -> dict[str, str]:
    """What each job needs, before any work ("train", "resume" or "done": runs.run_action); a folder
    holding another run stops here."""
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"run names must be unique, got {names}")
    return {j.name: run_action(j.preset, j.recipe, j.run, j.overrides) for j in jobs}


def _steps_done(run: Path) -> int:
    records = [r for r in rundir.read_jsonl(run / layout.METRICS) if "kind" not in r and "event" not in r]
    return records[-1]["step"] if records else 0


def _next_ready(waiting: list[RunJob], running: dict) -> RunJob | None:
    """The first waiting job whose `after` run has finished; a job whose `after` will never finish (nothing
    running, and no waiting job trains it) is an error rather than a hang."""
    ready = next((j for j in waiting if j.after is None or run_is_complete(j.after)), None)
    if ready is None and waiting and not running:
        blocked = waiting[0]
        raise RunError(f"{blocked.name} needs the finished run '{blocked.after}', which no job here trains; "
                       f"train that run first.")
    return ready


def train_in_parallel(jobs: Sequence[RunJob], *, processes: int = 2, log: Callable[[str], None] = print,
                      title: str | None = None) -> list[RunJob]:
    """Train every job not yet finished, `processes` at a time (one thread each when several), following their
    metrics logs for one progress display. Jobs start in list order, except that one waits for its `after` run.
    Each run's output goes to RUN.log beside the run. A failed run stops the others and raises a RunError naming
    its log's last line. Returns the jobs that were trained."""
    states = check_jobs(jobs)
    todo = [j for j in jobs if states[j.name] != "done"]
    for job in jobs:
        if states[job.name] == "done":
            log(f"[{job.name}] finished already: reused ({job.run})")
    if not todo:
        return []
    total = sum(j.config().steps for j in todo)
    phase = Phase(title or f"training {', '.join(j.name for j in todo)}", total, log)
    waiting, running, started = list(todo), {}, {}
    try:
        while waiting or running:
            while len(running) < processes and (job := _next_ready(waiting, running)) is not None:
                waiting.remove(job)
                if job.prepare is not None:
                    job.prepare()
                job.run.parent.mkdir(parents=True, exist_ok=True)
                logfile = job.run.parent / f"{job.run.name}.log"
                resume = states[job.name] == "resume"
                running[job.name] = (start_training(
                    run=job.run, resume=resume, preset=job.preset, recipe=job.recipe, overrides=job.overrides,
                    log=logfile, one_thread=processes > 1), logfile)
                started[job.name] = time.time()
            time.sleep(0.5)
            phase.update(sum(_steps_done(j.run) for j in todo))
            for name, (proc, logfile) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                if proc.returncode != 0:
                    lines = logfile.read_text().strip().splitlines() if logfile.exists() else []
                    raise RunError(f"training {name} failed ({lines[-1] if lines else 'no output'}); its log is "
                                   f"{logfile}. Run the same command again to resume.")
                log(f"[{name}] trained in {time.time() - started[name]:.0f} s")
    finally:
        for proc, _ in running.values():     # an error or Ctrl-C: the children stop, resumable
            proc.terminate()
    phase.close()
    return list(todo)
