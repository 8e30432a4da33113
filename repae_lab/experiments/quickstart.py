"""`repae-lab quickstart --out DIR`: the README's main job. It trains repa, e2e-diffusion and repa-e side by
side on the built-in data, probes and evaluates them, and writes DIR/report.html, the story in pictures.

Everything is reused when run again: finished runs are kept, interrupted ones resume, finished probes and
evaluations are read from their caches. The shared networks (the pretrained workshop VAE, the REPA target
encoder, the evaluator) are trained once, here, before the runs start, so parallel runs never train them twice.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from .. import rundir
from ..config import Config, ConfigError, resolve_config
from ..evaluation import evaluate_run
from ..evaluation.records import protocol_tag
from ..jobs.parallel_training import RunJob, check_jobs, train_in_parallel
from ..jobs.progress import Phase
from ..jobs.shared_networks import prepare_shared_networks
from ..models.devices import pick_device
from ..probes import ProbeSettings, load_probes, probe_run
from ..rundir import RunError, layout
from ..sampling import SamplingSpec
from ..views.report import write_report

QUICKSTART_RECIPES = ("repa", "e2e-diffusion", "repa-e")
# The evaluation protocol of the three-seed tables in docs/results.md (claims.PROTOCOL): the preset's Heun sampler
# with 6 steps instead of 10. Sampling is most of an evaluation's cost, and the quickstart evaluates each run 7
# times (every 100 steps, then 1,000 samples at the end); at 10 steps that was a fifth of its CPU time. Over 3
# seeds at 6 steps the recipes keep the order the report shows (repa-e 0.66 +- 0.11 < repa 0.86 +- 0.06 <
# e2e-diffusion 4.34 +- 1.32). A setting the caller made is kept.
QUICKSTART_EVALUATION = {"eval_steps": 6}


def probe_and_evaluate_run(recipe: str, run: Path, cfg: Config, eval_n: int) -> dict[str, Any]:
    """One run's probes (cached in RUN/probes/) and final evaluation from eval_n samples (cached in RUN/eval/),
    as a row of the results table."""
    probe_run(run, ProbeSettings(umap=False, aligned_umap=False))
    spec = SamplingSpec(sampler=cfg.eval_sampler, steps=cfg.eval_steps, cfg_scale=cfg.eval_cfg_scale,
                        interval=tuple(cfg.eval_interval), seed=cfg.seed)
    cached = run / "eval" / f"step-{cfg.steps:08d}-{protocol_tag(spec, eval_n)}.json"
    record = rundir.read_json(cached) or evaluate_run(run, n=eval_n, spec=spec, save_samples=False, progress=False)
    probes = load_probes(run)
    last = probes.scalars[probes.steps[-1]] if probes.steps else {}
    summary = rundir.read_json(run / layout.SUMMARY) or {}
    return {"recipe": recipe, "steps": summary.get("steps"), "minutes": round(summary.get("seconds", 0) / 60, 1),
            f"FD (n={eval_n})": record.get("eval/fd_workshop"),
            "class accuracy": record.get("eval/accuracy_workshop"),
            "latent spatial variance": last.get("spatial_var"),
            "latent total variation": last.get("total_variation"),
            "CKNNA (SiT t=0.5 vs target)": last.get("cknna/sit_t50"),
            "VAE rPSNR": record.get("eval/rpsnr")}


def probe_and_evaluate(cfgs: dict[str, Config], runs: dict[str, Path], *, eval_n: int, log,
                       seconds: dict[str, float] | None = None) -> list[dict]:
    """probe_and_evaluate_run for every run, in this process: worker processes were measured slower here (43 s
    against 34 s for the three workshop runs on a 2-core CPU; each has to import torch and build its networks).
    Each run's seconds go into `seconds`."""
    phase = Phase("probing and evaluating", len(cfgs), log)
    rows = []
    for recipe, cfg in cfgs.items():
        t0 = time.perf_counter()
        rows.append(probe_and_evaluate_run(recipe, runs[recipe], cfg, eval_n))
        if seconds is not None:
            seconds[recipe] = time.perf_counter() - t0
        phase.update(len(rows), recipe)
    phase.close()
    return rows


def stage_times_line(times: dict[str, Any]) -> str:
    """'shared networks 52 s (VAE and target encoder 40, evaluator 12) · training 236 s (...) · ...'"""
    parts = []
    for stage, value in times.items():
        if isinstance(value, dict):
            total = value.get("total", sum(value.values()))
            detail = ", ".join(f"{k} {v:.0f}" for k, v in value.items() if k != "total")
            parts.append(f"{stage} {total:.0f} s ({detail})")
        else:
            parts.append(f"{stage} {value:.0f} s")
    return " · ".join(parts)


def quickstart_overrides(preset: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The caller's overrides on top of the quickstart's evaluation protocol and the device's speed switches."""
    return with_device_speed_switches(preset, {**QUICKSTART_EVALUATION, **(overrides or {})})


def with_device_speed_switches(preset: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The quickstart's runs on a GPU replay each step as a CUDA graph: a workshop step is a few thousand tiny
    kernels, and launching them took 75 ms per step on an H200 (docs/performance.md), longer than running them.
    They still train side by side, one process each, as on a CPU: starting a process (imports, CUDA, the
    networks) is then paid once in parallel. A setting the caller made is kept."""
    overrides = dict(overrides or {})
    cfg = resolve_config(preset, overrides=overrides)
    if pick_device(cfg.device).type == "cuda" and cfg.mixed_precision != "fp16":
        overrides.setdefault("cuda_graphs", True)
    return overrides


def quickstart(out: str | Path, *, preset: str = "workshop", recipes=QUICKSTART_RECIPES,
               overrides: dict[str, Any] | None = None, jobs: int = 3, eval_n: int = 1000, progress: bool = True,
               log: Callable[[str], None] = print) -> Path:
    """Train, probe and evaluate `recipes` on `preset` into OUT/runs/, and write OUT/report.html (returned)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out '{out}' is a file; pass a folder for the runs and the report.")
    if jobs < 1 or eval_n < 4:
        raise ConfigError(f"--jobs must be at least 1 and --eval-n at least 4, got {jobs} / {eval_n}.")
    overrides = quickstart_overrides(preset, overrides)
    run_jobs = [RunJob(r, out / "runs" / r, preset, r, overrides) for r in recipes]
    check_jobs(run_jobs)                                # a folder holding another run fails before any work
    cfgs = {j.name: j.config() for j in run_jobs}
    runs = {j.name: j.run for j in run_jobs}
    t0 = time.time()
    times: dict[str, Any] = {}                         # seconds by stage, printed and kept in OUT/stage_times.json
    phase = Phase("preparing the shared networks (cached after the first time)", 1, log)
    times["shared networks"] = prepare_shared_networks(cfgs[recipes[-1]], progress=False)
    phase.update(1)
    phase.close()
    t = time.time()
    if not train_in_parallel(run_jobs, processes=jobs, log=log, title=f"training {', '.join(recipes)}"):
        log("[training] every run is finished already: reused")
    # each run's own training seconds (from its summary; the runs overlap, so they add up to more than the stage)
    times["training"] = {"total": time.time() - t, **{
        r: (rundir.read_json(runs[r] / layout.SUMMARY) or {}).get("seconds", 0.0) for r in recipes}}
    t = time.time()
    times["probing and evaluating"] = {}
    rows = probe_and_evaluate(cfgs, runs, eval_n=eval_n, log=log, seconds=times["probing and evaluating"])
    times["probing and evaluating"]["total"] = time.time() - t
    t = time.time()
    report = write_report(out, [runs[r] for r in recipes], rows,
                          title=f"REPA-E quickstart: {', '.join(recipes)} on the {preset} preset",
                          notes=[f"Each run: {cfgs[recipes[0]].steps} steps on {cfgs[recipes[0]].dataset} at "
                                 f"{cfgs[recipes[0]].resolution} px; the whole quickstart took "
                                 f"{(time.time() - t0) / 60:.1f} min here. The runs are in {out / 'runs'}."])
    times["report"] = time.time() - t
    times["total"] = time.time() - t0
    rundir.atomic_write_text(out / "stage_times.json", json.dumps(times, indent=1))
    log(f"\ntime by stage (s): {stage_times_line(times)}")
    log(f"report: {report.resolve()}")
    log("next: open it in a browser; explore the runs with `jupyter lab notebooks/` "
        f"(02_latent_space: -p runs '[\"{runs[recipes[0]]}\", ...]'), or `repae-lab probe {out / 'runs'}/*`.")
    return report
