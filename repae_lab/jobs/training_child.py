"""One run trained in a child process of its own, forked from a server that has already imported the library.

A fresh `python -m repae_lab train` spends about 7 s on the 2-core machine importing torch, diffusers (which
imports torch._dynamo and scipy) and timm before its first step: as long as a workshop run's first 60 steps, and
a benchmark or a test suite trains dozens of short runs. multiprocessing's forkserver imports all that once and
forks each child from that state, so a child still is a process of its own (its own thread count, log and exit
status; killed and resumed like any run) but starts in a fraction of a second, and trains bitwise as the command
line does (tests/test_claims.py). Where there is no forkserver (Windows), the child is that command line.

The child takes the parent's working folder and environment as they are when it starts; only values that the
imported packages read once at import time (e.g. HF_HUB_OFFLINE) are those of the server's start.
"""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import resolve_config
from ..training.summary import format_summary
from .launch import USER_ERRORS, train

PRELOAD = ["repae_lab.jobs.launch"]     # what a training child imports: torch, diffusers, timm, the library


@dataclass(frozen=True)
class ChildRequest:
    """What the child needs, picklable: the run, how to start it, and the parent's state it must take on."""
    run: str
    resume: bool
    preset: str
    recipe: str
    overrides: dict[str, Any]
    log: str
    one_thread: bool
    cwd: str
    env: dict[str, str]


def _train_in_child(request: ChildRequest) -> None:
    os.chdir(request.cwd)
    os.environ.clear()
    os.environ.update(request.env)
    fd = os.open(request.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    if request.one_thread:    # OMP_NUM_THREADS is read when OpenMP loads, which the server did before the fork
        torch.set_num_threads(1)
    code = 0
    try:
        if request.resume:
            summary = train(resume=request.run, progress=False)
        else:
            cfg = resolve_config(request.preset, recipe=request.recipe, overrides=dict(request.overrides))
            summary = train(cfg, request.run, progress=False)
        if summary:
            print(format_summary(summary))
    except USER_ERRORS as err:          # the parent reports the log's last line
        print(f"repae-lab: error: {err}", file=sys.stderr)
        code = 2
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


class _ForkedChild:
    """A forked child with the part of subprocess.Popen's interface that train_in_parallel uses."""

    def __init__(self, process: multiprocessing.process.BaseProcess):
        self.process = process

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    def poll(self) -> int | None:
        return self.process.exitcode

    def terminate(self) -> None:
        self.process.terminate()


def _forkserver():
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)      # no effect once the server runs: it has imported them already
    return context


def _set_value(value: Any) -> str:
    """A --set value that the CLI's YAML reading gives back as the same Python value."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_set_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def train_command(run: Path, resume: bool, preset: str, recipe: str, overrides: dict[str, Any]) -> list[str]:
    """The same run as a `python -m repae_lab train` command line (the child where there is no forkserver)."""
    base = [sys.executable, "-m", "repae_lab", "train"]
    if resume:
        return base + ["--resume", str(run), "--quiet"]
    sets = [f"{k}={_set_value(v)}" for k, v in overrides.items()]
    return (base + ["--preset", preset, "--recipe", recipe, "--out", str(run), "--quiet"]
            + (["--set", *sets] if sets else []))


def start_training(*, run: Path, resume: bool, preset: str, recipe: str, overrides: dict[str, Any], log: Path,
                   one_thread: bool):
    """Start training `run` (or resuming it) in a child process writing to `log`, one torch thread if asked.
    Returns an object with poll(), returncode and terminate()."""
    env = dict(os.environ)
    if one_thread:
        env["OMP_NUM_THREADS"] = "1"
    context = _forkserver()
    if context is None:
        with open(log, "a") as logfile:
            return subprocess.Popen(train_command(run, resume, preset, recipe, overrides), stdout=logfile,
                                    stderr=subprocess.STDOUT, env=env)
    request = ChildRequest(str(run), resume, preset, recipe, dict(overrides), str(log), one_thread, os.getcwd(), env)
    process = context.Process(target=_train_in_child, args=(request,), name=f"train {run.name}")
    process.start()
    return _ForkedChild(process)
