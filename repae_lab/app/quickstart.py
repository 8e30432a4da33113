"""`repae-lab quickstart --out DIR`: the README's main job. It trains repa, e2e-diffusion and repa-e side by
side on the built-in data, probes and evaluates them, and writes DIR/report.html, the story in pictures.

Everything is reused when run again: finished runs are kept, interrupted ones resume, finished probes and
evaluations are read from their caches. The shared networks (the pretrained workshop VAE, the REPA target
encoder, the evaluator) are trained once, here, before the runs start, so parallel runs never train them twice.
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
from ..config import Config, ConfigError, config_from_dict, resolve_config
from ..rundir import RunError, layout
from .report import write_report

QUICKSTART_RECIPES = ("repa", "e2e-diffusion", "repa-e")


class Phase:
    """A progress display for one phase: a bar on a terminal, and a few whole lines anywhere else (a log file
    or a notebook must not receive thousands of carriage-return updates)."""

    def __init__(self, name: str, total: int, log: Callable[[str], None]):
        self.name, self.total, self.log, self.done, self.t0 = name, max(1, total), log, 0, time.time()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=name, leave=True, file=sys.stderr)
        else:
            log(f"[{name}] started")
        self._last_tenth = 0

    def update(self, done: int, detail: str = "") -> None:
        done = min(done, self.total)
        if self.bar is not None:
            self.bar.update(done - self.done)
            if detail:
                self.bar.set_postfix_str(detail)
        elif done * 10 // self.total > self._last_tenth:
            self._last_tenth = done * 10 // self.total
            self.log(f"[{self.name}] {done}/{self.total} {detail}".rstrip())
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.log(f"[{self.name}] done in {time.time() - self.t0:.0f} s")


def quickstart_configs(preset: str, recipes, overrides: dict[str, Any] | None) -> dict[str, Config]:
    return {r: resolve_config(preset, recipe=r, overrides=dict(overrides or {})) for r in recipes}


def _state_of(run: Path, cfg: Config) -> str:
    """'new', 'finished', 'interrupted', or RunError when the folder holds another run."""
    if not (run / layout.CONFIG).is_file():
        return "new"
    saved = config_from_dict(json.loads((run / layout.CONFIG).read_text()))
    differs = sorted(k for k, v in vars(saved).items() if getattr(cfg, k) != v)
    if differs:
        raise RunError(f"'{run}' holds a different run ({', '.join(differs)} differ); use another --out folder, "
                       f"or delete that one to start over.")
    summary = rundir.read_json(run / layout.SUMMARY) or {}
    return "finished" if summary.get("steps", -1) >= cfg.steps else "interrupted"


def prepare_shared_networks(cfg: Config, progress: bool) -> None:
    """Train (or load from the cache) what every run shares, once, in this process."""
    from ..evaluation.spaces import build_spaces, training_eval_spaces
    from ..training.state import build_state

    state = build_state(cfg, progress=progress)        # the pretrained VAE and the REPA target encoder
    names, weights = training_eval_spaces(cfg)
    build_spaces(names, dataset=state.dataset, weights=weights, cache_dir=cfg.cache_dir, progress=progress)


def _train_command(preset: str, recipe: str, run: Path, overrides: dict, resume: bool) -> list[str]:
    if resume:
        return [sys.executable, "-m", "repae_lab", "train", "--resume", str(run), "--quiet"]
    sets = [f"{k}={v}" for k, v in overrides.items()]
    return ([sys.executable, "-m", "repae_lab", "train", "--preset", preset, "--recipe", recipe, "--out", str(run),
             "--quiet"] + (["--set", *sets] if sets else []))


def train_side_by_side(preset: str, cfgs: dict[str, Config], runs: dict[str, Path], overrides: dict, *, jobs: int,
                       log) -> None:
    """Train every run not yet finished, `jobs` processes at a time (one thread each when several), following
    their metrics logs for the progress display. A failed run stops the quickstart with its log's last line."""
    todo = [(r, _state_of(runs[r], cfgs[r])) for r in cfgs]
    todo = [(r, s) for r, s in todo if s != "finished"]
    if not todo:
        log("[training] every run is finished already: reused")
        return
    total = sum(cfgs[r].steps for r, _ in todo)
    phase = Phase(f"training {', '.join(r for r, _ in todo)}", total, log)
    env = dict(os.environ)
    if jobs > 1:
        env["OMP_NUM_THREADS"] = "1"        # two busy threads per process on two cores only spin-wait
    waiting, running = list(todo), {}
    while waiting or running:
        while waiting and len(running) < jobs:
            recipe, state = waiting.pop(0)
            runs[recipe].parent.mkdir(parents=True, exist_ok=True)
            logfile = open(runs[recipe].parent / f"{recipe}.log", "w")
            cmd = _train_command(preset, recipe, runs[recipe], overrides, resume=state == "interrupted")
            running[recipe] = (subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, env=env), logfile)
        time.sleep(0.5)
        done = 0
        for recipe, _ in todo:
            records = [r for r in rundir.read_jsonl(runs[recipe] / layout.METRICS) if "kind" not in r and "event" not in r]
            done += records[-1]["step"] if records else 0
        phase.update(done)
        for recipe, (proc, logfile) in list(running.items()):
            if proc.poll() is None:
                continue
            logfile.close()
            del running[recipe]
            if proc.returncode != 0:
                for other, _ in running.values():
                    other.terminate()
                lines = Path(logfile.name).read_text().strip().splitlines()
                raise RunError(f"training {recipe} failed ({lines[-1] if lines else 'no output'}); its log is "
                               f"{logfile.name}. Run the quickstart again to resume.")
    phase.close()


def probe_and_evaluate(cfgs: dict[str, Config], runs: dict[str, Path], *, eval_n: int, log, progress: bool) -> list[dict]:
    """Probes (cached in RUN/probes/) and a final evaluation from eval_n samples (cached in RUN/eval/) per run;
    returns the results table."""
    from ..evaluation import evaluate_run
    from ..evaluation.records import protocol_tag
    from ..probes import ProbeSettings, load_probes, probe_run
    from ..sampling import SamplingSpec

    phase = Phase("probing and evaluating", 2 * len(cfgs), log)
    rows = []
    for i, (recipe, cfg) in enumerate(cfgs.items()):
        run = runs[recipe]
        probe_run(run, ProbeSettings(umap=False, aligned_umap=False))
        phase.update(2 * i + 1, recipe)
        spec = SamplingSpec(sampler=cfg.eval_sampler, steps=cfg.eval_steps, cfg_scale=cfg.eval_cfg_scale,
                            interval=tuple(cfg.eval_interval), seed=cfg.seed)
        cached = run / "eval" / f"step-{cfg.steps:08d}-{protocol_tag(spec, eval_n)}.json"
        record = rundir.read_json(cached) or evaluate_run(run, n=eval_n, spec=spec, save_samples=False,
                                                           progress=False)
        phase.update(2 * i + 2, recipe)
        probes = load_probes(run)
        last = probes.scalars[probes.steps[-1]] if probes.steps else {}
        summary = rundir.read_json(run / layout.SUMMARY) or {}
        rows.append({"recipe": recipe, "steps": summary.get("steps"), "minutes": round(summary.get("seconds", 0) / 60, 1),
                     f"FD (n={eval_n})": record.get("eval/fd_workshop"),
                     "class accuracy": record.get("eval/accuracy_workshop"),
                     "latent spatial variance": last.get("spatial_var"),
                     "latent total variation": last.get("total_variation"),
                     "CKNNA (SiT t=0.5 vs target)": last.get("cknna/sit_t50"),
                     "VAE rPSNR": record.get("eval/rpsnr")})
    phase.close()
    return rows


def quickstart(out: str | Path, *, preset: str = "workshop", recipes=QUICKSTART_RECIPES,
               overrides: dict[str, Any] | None = None, jobs: int = 2, eval_n: int = 1000, progress: bool = True,
               log: Callable[[str], None] = print) -> Path:
    """Train, probe and evaluate `recipes` on `preset` into OUT/runs/, and write OUT/report.html (returned)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out '{out}' is a file; pass a folder for the runs and the report.")
    if jobs < 1 or eval_n < 4:
        raise ConfigError(f"--jobs must be at least 1 and --eval-n at least 4, got {jobs} / {eval_n}.")
    overrides = dict(overrides or {})
    cfgs = quickstart_configs(preset, recipes, overrides)
    runs = {r: out / "runs" / r for r in recipes}
    for recipe in recipes:
        _state_of(runs[recipe], cfgs[recipe])            # a folder holding another run fails before any work
    t0 = time.time()
    phase = Phase("preparing the shared networks (cached after the first time)", 1, log)
    prepare_shared_networks(cfgs[recipes[-1]], progress=False)
    phase.update(1)
    phase.close()
    train_side_by_side(preset, cfgs, runs, overrides, jobs=jobs, log=log)
    rows = probe_and_evaluate(cfgs, runs, eval_n=eval_n, log=log, progress=progress)
    report = write_report(out, [runs[r] for r in recipes], rows,
                          title=f"REPA-E quickstart: {', '.join(recipes)} on the {preset} preset",
                          notes=[f"Each run: {cfgs[recipes[0]].steps} steps on {cfgs[recipes[0]].dataset} at "
                                 f"{cfgs[recipes[0]].resolution} px; the whole quickstart took "
                                 f"{(time.time() - t0) / 60:.1f} min here. The runs are in {out / 'runs'}."])
    log(f"\nreport: {report.resolve()}")
    log("next: open it in a browser; explore the runs with `jupyter lab notebooks/` "
        f"(02_latent_space: -p runs '[\"{runs[recipes[0]]}\", ...]'), or `repae-lab probe {out / 'runs'}/*`.")
    return report
