"""The shared training loop: every recipe runs the same loop around its step, keeping the run directory.

Determinism by construction: the data order is a per-epoch permutation seeded by (seed, epoch), and every
step reseeds its random streams from (seed, step) (training/batches.py); a resumed run therefore needs no RNG
state to continue exactly where it stopped. Evaluation is not part of training: a caller that wants FD curves
hands the loop an `evaluate(state, run) -> record` callable (evaluation/during_training.py makes one). Experiment
trackers (TensorBoard, W&B) are handed in the same way, as a `track(cfg, run) -> tracker` factory (tracking/).
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from tqdm.auto import tqdm

from .. import rundir
from ..config import Config, config_from_dict, resume_config
from ..models.from_run import run_vae_architecture, write_sit_config
from ..rundir import RunError, layout
from . import distributed as dist
from .alarms import AlarmMonitor
from .batches import batch_stream, step_generator, step_indices
from .checkpointing import checkpoint_files, restore_checkpoint
from .optim import to_device
from .snapshots import take_snapshot
from .state import TrainState, build_state
from .step import train_step
from .summary import SKIP_PREFIX, write_summary

PROGRESS_KEYS = ("loss/diffusion", "loss/repa", "loss/repa_vae", "loss/l1", "latent/spatial_var")

Evaluate = Callable[[TrainState, Path], dict[str, Any]]
# track(cfg, run) -> a tracker with begin(state), record(record), snapshot(state, tensors), close(); or None
Track = Callable[[Config, Path], Any]


class TrainingStopped(RunError):
    """An alarm stopped the run (alarm_policy=stop, or rollbacks exhausted)."""


def train(cfg: Config | None = None, out: str | Path | None = None, *, resume: str | Path | None = None,
          overrides: dict[str, Any] | None = None, progress: bool = True, on_metrics=None,
          evaluate: Evaluate | None = None, track: Track | None = None) -> dict[str, Any]:
    """Train `cfg` into run directory `out` (new), or continue the run at `resume` from its last good checkpoint.

    `overrides` change a resumed run's config (only RESUME_SAFE_KEYS; recorded in RUN/config_history.jsonl).
    `evaluate(state, run)`, when given, is called at step 0 and every cfg.eval_every steps on rank 0; its
    record is appended to the metrics log. `on_metrics(step, means)` gets every logged interval. `track(cfg, run)`,
    when given, is called on rank 0 once the run's config is known, before any network is built (it may refuse
    the config), and returns a tracker or None: the loop calls its begin(state) before the run's first step,
    record(r) with every metrics-log record, snapshot(state, tensors) after every probe snapshot, and close() at
    the end, error or not. Returns the run summary (also written to summary.json). One process at a time may
    write a run directory."""
    if resume is not None:
        run = rundir.check_run_dir(resume, "the folder a previous `repae-lab train --out` wrote")
    else:
        if cfg is None or out is None:
            raise RunError("train() needs a config and an output folder, or resume=RUN.")
        if overrides:
            raise RunError("overrides apply to a resumed run; for a new run put them in the config.")
        run = Path(out)
        if (run / layout.CONFIG).exists():
            raise RunError(f"'{run}' already holds a run; continue it with `repae-lab train --resume {run}` "
                           f"or pick a new --out folder.")
    created = resume is None and not run.exists()
    try:
        dist.init_from_env(cfg.device if cfg is not None else "auto")
    except ValueError as err:
        raise RunError(str(err)) from None
    try:
        # under torchrun only rank 0 writes the run directory, so only rank 0 holds its lock
        with rundir.RunLock(run) if dist.is_main() else nullcontext():
            return _train_locked(cfg, run, resume is not None, dict(overrides or {}), progress and dist.is_main(),
                                 on_metrics, evaluate, track)
    except rundir.RunLockedError as err:
        raise RunError(str(err)) from None
    except FirstStepFailed as err:
        if created and dist.is_main():           # it holds nothing yet, and would block the same --out
            shutil.rmtree(run, ignore_errors=True)
        raise RunError(f"{err}{' (the new run folder was removed)' if created else ''}") from None


class FirstStepFailed(RunError):
    """The very first training step of a run failed: a set-up the config allows but the models cannot run."""


def _train_locked(cfg, run: Path, resuming: bool, overrides: dict, progress: bool, on_metrics, evaluate,
                  track) -> dict[str, Any]:
    t_start = time.time()
    state = None
    if resuming:
        cfg, changes = _resumed_config(run, overrides)
    tracker = track(cfg, run) if track is not None and dist.is_main() else None   # may refuse: nothing written yet
    if resuming:
        _record_changes(run, cfg, changes)
        if dist.is_main():
            for path in rundir.remove_stale_temporaries(run):
                _warn(f"removed {path.relative_to(run)}, left by a writer that was killed")
            _check_environment(run)
        state = _restore(cfg, run, progress)
        if state is not None:
            _set_changed_learning_rates(state, changes)
        dist.barrier()                 # every rank has read the checkpoint before rank 0 edits the log
        if state is not None and dist.is_main():
            with _disk_errors("metrics log", state.step, run):
                _truncate_metrics(run, state.step)
    fresh = state is None              # a new run, or a resumed one with no usable checkpoint: start at step 0
    if fresh:
        state = build_state(cfg, progress=progress)
        if dist.is_main():
            with _disk_errors("run directory", 0, run):
                prepare_run_dir(cfg, run, state)
    if tracker is not None:
        tracker.begin(state)
    try:
        if fresh and dist.is_main():
            _snapshot(state, run, tracker)
        if fresh and cfg.eval_every and evaluate is not None:
            _evaluate(state, run, evaluate, tracker)   # the FD curve starts at step 0; missing weights fail first
        _loop(state, run, progress, on_metrics, evaluate, t_start, tracker)
    finally:
        if tracker is not None:
            tracker.close()
    summary = write_summary(run, cfg, time.time() - t_start) if dist.is_main() else {}
    dist.barrier()
    return summary


def _set_changed_learning_rates(state: TrainState, changes: dict) -> None:
    """A learning rate changed on resume replaces the one the optimizer state was saved with."""
    keys = {"sit": "lr", "vae": "vae_lr", "disc": "disc_lr"}
    for name, opt in state.optimizers.named().items():
        if keys[name] in changes:
            for group in opt.param_groups:
                group["lr"] = state.optimizers.base_lr(state.cfg, name)


def _resumed_config(run: Path, overrides: dict) -> tuple[Config, dict]:
    """The run's config.json with the resume's overrides applied (_record_changes writes them)."""
    try:
        saved = config_from_dict(json.loads((run / layout.CONFIG).read_text()))
    except (ValueError, UnicodeDecodeError) as err:
        raise RunError(f"'{run / layout.CONFIG}' is not a readable config ({str(err).splitlines()[0]}); restore "
                       f"it, or start a new run with --out.") from None
    return resume_config(saved, overrides)


def _record_changes(run: Path, cfg: Config, changes: dict) -> None:
    """The resume's changes into config.json and the config history."""
    if changes and dist.is_main():
        rundir.atomic_write_text(run / layout.CONFIG, cfg.to_json())
        step = max((int(p.name.split("-")[1]) for p in rundir.checkpoint_dirs(run)), default=0)
        rundir.append_jsonl(run / layout.CONFIG_HISTORY, {"time": round(time.time(), 1), "at_checkpoint": step,
                                                          "changes": changes})
        _warn(f"resuming with {', '.join(f'{k}={v[1]!r} (was {v[0]!r})' for k, v in changes.items())}")


def _restore(cfg: Config, run: Path, progress: bool) -> TrainState | None:
    """The state at the newest checkpoint that loads; None when there is none (the run then restarts at step
    0, as a fresh run would: the same pretrained VAE, the same result). A finished run is never restarted."""
    state = None
    for ckpt in rundir.good_checkpoints(run):
        if state is None:
            state = build_state(cfg, progress=progress, vae=run_vae_architecture(run))
        try:
            restore_checkpoint(state, ckpt)
        except rundir.ArchitectureMismatch as err:
            raise RunError(f"{ckpt.name} of '{run}' does not fit the run's config.json ({str(err).splitlines()[1].strip()}, "
                           f"...): was config.json edited? Put its model keys back, or start a new run with --out.") from None
        except rundir.CheckpointError as err:
            _warn(f"warning: {err}; falling back to the previous checkpoint")
            continue
        return state
    if (run / layout.SUMMARY).exists():
        raise RunError(f"'{run}' finished but none of its checkpoints can be read; it is not retrained over its "
                       f"history. Copy it elsewhere to keep its logs, then train a new run with --out.")
    if dist.is_main():
        _warn(f"'{run}' has no usable checkpoint (the run stopped before its first one, or every one is damaged): "
              f"starting it again from step 0, exactly as a fresh run would.")
    return None


def _check_environment(run: Path) -> None:
    """Bitwise resume holds only at the thread count the run started with (docs/reliability.md)."""
    env = rundir.read_json(run / layout.ENVIRONMENT) or {}
    threads = env.get("torch_threads")
    if threads is not None and threads != torch.get_num_threads():
        _warn(f"warning: '{run}' started with {threads} torch threads and this resume runs with "
              f"{torch.get_num_threads()}: it continues, but not bitwise as an uninterrupted run would (set "
              f"OMP_NUM_THREADS={threads} for that).")


def _warn(message: str) -> None:
    """A line on stderr that does not break a progress bar or a notebook's output."""
    print(f"repae-lab: {message}", file=sys.stderr)


def prepare_run_dir(cfg: Config, out: Path, state: TrainState) -> None:
    """The files a run writes before step 0. A metrics log from an earlier attempt that never checkpointed is
    emptied: the run starts again from step 0."""
    out.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_text(out / layout.CONFIG, cfg.to_json())
    rundir.atomic_write_text(out / layout.VAE_CONFIG, json.dumps(dict(state.nets.vae.config), indent=1, default=list))
    write_sit_config(out, state.nets.sit.cfg)
    rundir.atomic_write_text(out / layout.ENVIRONMENT, json.dumps(
        {"torch_threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(state.device)}, indent=1))
    rundir.atomic_write_text(out / layout.METRICS, "")
    if state.probe_indices is not None:
        labels = state.dataset.labels[state.probe_indices]
        rundir.atomic_write_text(out / layout.PROBE_SET, json.dumps(
            {"dataset": cfg.dataset, "indices": state.probe_indices.tolist(), "labels": labels.tolist()}))


def _loop(state: TrainState, run: Path, progress: bool, on_metrics, evaluate, t_start: float, tracker=None) -> None:
    """Steps until cfg.steps, each reseeded from (seed, step) so that a resumed run continues bitwise; logs,
    snapshots, checkpoints and evaluations at their cadences; alarms checked on every step's metrics."""
    cfg = state.cfg
    monitor = AlarmMonitor(cfg)
    batches = batch_stream(state.dataset, cfg, state.step)
    window: list[dict[str, float]] = []
    rollbacks = 0
    main = dist.is_main()
    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"{cfg.recipe} ({cfg.preset})", disable=not progress,
               dynamic_ncols=True)
    while state.step < cfg.steps:
        gen = step_generator(cfg.seed, state.step)
        x, y = next(batches)
        latents = None
        if state.latent_cache is not None:
            idx = step_indices(len(state.dataset), cfg, state.step)
            latents = tuple(to_device(c[idx], state.device).float() for c in state.latent_cache)
        # averaged over processes, so every rank sees the same numbers and takes the same alarm decisions
        metrics = dist.mean_across(_run_step(state, x, y, gen, latents))
        state.step += 1
        window.append(metrics)
        bar.update(1)
        alarms = monitor.check(state.step, metrics)
        for alarm in alarms if main else ():
            _log(run, alarm.record(cfg.alarm_policy), tracker)
            tqdm.write(f"repae-lab alarm [{alarm.kind}]: {alarm.message} (policy: {cfg.alarm_policy})", file=sys.stderr)
        if alarms and cfg.alarm_policy == "stop":
            raise TrainingStopped(f"{alarms[0].message}; stopped (alarm_policy=stop). The last checkpoint is kept: "
                                  f"resume with `repae-lab train --resume {run}` or roll back by hand.")
        if alarms and cfg.alarm_policy == "rollback":
            _roll_back(state, run, alarms[0], rollbacks, tracker)
            rollbacks += 1
            monitor.reset()
            window = []
            batches = batch_stream(state.dataset, cfg, state.step)
            bar.reset(total=cfg.steps)
            bar.update(state.step)
            continue
        if cfg.log_every and (state.step % cfg.log_every == 0 or state.step == cfg.steps):
            if main:
                last = _flush(run, state.step, window, t_start, tracker)
                bar.set_postfix({k.split("/")[-1]: f"{last[k]:.3g}" for k in PROGRESS_KEYS if k in last})
                if on_metrics is not None:
                    on_metrics(state.step, last)
            window = []
        if cfg.snapshot_every and state.step % cfg.snapshot_every == 0 and state.step != cfg.steps and main:
            _snapshot(state, run, tracker)
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step != cfg.steps:
            _checkpoint(state, run)
        if cfg.eval_every and evaluate is not None and (state.step % cfg.eval_every == 0 or state.step == cfg.steps):
            _evaluate(state, run, evaluate, tracker)
    bar.close()
    if window and main:
        _flush(run, state.step, window, t_start, tracker)
    if main:
        _snapshot(state, run, tracker)
    _checkpoint(state, run)


def _run_step(state: TrainState, x, y, gen, latents=None) -> dict[str, float]:
    """One step, with the failures a user can fix (out of memory, a set-up that cannot run) as one line."""
    try:
        return train_step(state, to_device(x, state.device), to_device(y, state.device), gen, latents)
    except torch.OutOfMemoryError as err:
        cfg = state.cfg
        raise RunError(f"out of GPU memory at step {state.step} with batch_size {cfg.batch_size}: lower it "
                       f"(--set batch_size={max(1, cfg.batch_size // 2)}) or use mixed_precision=bf16; "
                       f"resume with `repae-lab train --resume RUN` keeps what was done.") from err
    except (RuntimeError, ValueError) as err:
        if state.step:
            raise
        # the models were built, but this combination cannot run (a shape the config checks do not foresee)
        raise FirstStepFailed(f"the first training step failed: {str(err).splitlines()[0]}; check resolution, "
                              f"patch_size and the model sizes (`repae-lab train ... --dry-run` prints the "
                              f"config).") from err


def _flush(run: Path, step: int, window: list[dict[str, float]], t_start: float, tracker=None) -> dict[str, float]:
    """One metrics-log line: the means of the interval's steps, and for `skipped/*` the count of updates fp16's
    scaler skipped in it (the summary adds them up)."""
    keys = {k for m in window for k in m}
    means = {k: sum(m[k] for m in window if k in m) / (1 if k.startswith(SKIP_PREFIX) else sum(1 for m in window if k in m))
             for k in keys}
    record = {"step": step, "time": round(time.time() - t_start, 3), **{k: means[k] for k in sorted(means)}}
    _log(run, record, tracker)
    return means


def _log(run: Path, record: dict[str, Any], tracker) -> None:
    """One metrics-log record, also handed to the tracker when there is one (rank 0 only)."""
    rundir.append_jsonl(run / layout.METRICS, record)
    if tracker is not None:
        tracker.record(record)


@contextmanager
def _disk_errors(what: str, step: int, run: Path):
    """A failed write (full disk, quota, permissions) stops the run with what is still safe on disk.
    safetensors reports a failed write as a SafetensorError, not an OSError."""
    try:
        yield
    except (OSError, SafetensorError) as err:
        previous = rundir.latest_good_checkpoint(run, warn=lambda _: None)
        kept = f"the previous checkpoint {previous.name} is intact" if previous else "no earlier checkpoint exists"
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
        raise RunError(f"could not write the {what} of step {step} ({reason}); {kept}. Free disk space (or lower "
                       f"keep_checkpoints), then `repae-lab train --resume {run}`.") from err


def _snapshot(state: TrainState, run: Path, tracker=None) -> None:
    """The probe set through the current networks: what every probe and widget reads after the fact."""
    if state.probe_indices is None:
        return
    tensors, info = take_snapshot(state)
    with _disk_errors("probe snapshot", state.step, run):
        rundir.save_snapshot(run, state.step, tensors, info)
    if tracker is not None:
        tracker.snapshot(state, tensors)


def _evaluate(state: TrainState, run: Path, evaluate: Evaluate, tracker=None) -> None:
    """Rank 0 evaluates and logs the record; the others wait, so all leave the step together."""
    if dist.is_main():
        with _disk_errors("evaluation", state.step, run):
            _log(run, evaluate(state, run), tracker)
    dist.barrier()


def _checkpoint(state: TrainState, run: Path) -> None:
    """Rank 0 writes; every rank waits for it, so no process can later read a checkpoint still being written."""
    if dist.is_main():
        files, meta = checkpoint_files(state)
        with _disk_errors("checkpoint", state.step, run):
            rundir.save_checkpoint(run, state.step, files, meta, keep=state.cfg.keep_checkpoints)
    dist.barrier()


def _truncate_metrics(run: Path, step: int) -> None:
    """Records past `step` belong to steps that will be redone; alarm and rollback events are kept."""
    records = [r for r in rundir.read_jsonl(run / layout.METRICS) if r.get("step", 0) <= step or "event" in r]
    rundir.atomic_write_text(run / layout.METRICS, "".join(json.dumps(r) + "\n" for r in records))


def _roll_back(state: TrainState, run: Path, alarm, rollbacks: int, tracker=None) -> None:
    """alarm_policy=rollback: back to the last good checkpoint with lower learning rates, a bounded number of times."""
    cfg = state.cfg
    ckpt = rundir.latest_good_checkpoint(run)
    if ckpt is None or rollbacks >= cfg.max_rollbacks:
        why = "no checkpoint to roll back to" if ckpt is None else f"{cfg.max_rollbacks} rollbacks already"
        raise TrainingStopped(f"{alarm.message}; {why}, so the run stops. Inspect metrics.jsonl; resume with "
                              f"`repae-lab train --resume {run}` after changing what caused it.")
    restore_checkpoint(state, ckpt)
    dist.barrier()
    factor = cfg.rollback_lr_factor ** (rollbacks + 1)     # compounding: each rollback lowers it once more
    for name, opt in state.optimizers.named().items():
        for group in opt.param_groups:
            group["lr"] = state.optimizers.base_lr(cfg, name) * factor
    if not dist.is_main():
        return
    _truncate_metrics(run, state.step)
    _log(run, {"step": state.step, "event": "rollback", "alarm": alarm.kind, "checkpoint": ckpt.name, "lr_factor": factor,
               "lrs": {k: o.param_groups[0]["lr"] for k, o in state.optimizers.named().items()}}, tracker)
