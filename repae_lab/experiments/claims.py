"""The paper's claims measured at workshop scale: arms (a recipe with its settings) trained at several seeds,
side by side, and what their runs say, as mean and spread over the seeds.

benchmarks/workshop_claims.py (the default regime, issue 15) and benchmarks/paper_claims.py (every claim,
ablations and controls, issue 12) are thin commands over this; notebook 08 reads what they write.

Everything is resumable: each run is OUT/ARM-sSEED, reused when finished and resumed when interrupted, and the
E2E-VAEs of the two-stage arms are exported once to OUT/e2e-vae/ARM-sSEED.
"""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import rundir
from ..config import resolve_config
from ..evaluation.records import curve_of
from ..jobs.parallel_training import RunJob, train_in_parallel
from ..jobs.progress import Phase
from ..jobs.shared_networks import prepare_shared_networks as prepare
from ..models.export import export_vae
from ..probes import ProbeSettings, probe_run

FD_KEY = "eval/fd_workshop"
ACCURACY_KEY = "eval/accuracy_workshop"
# the evaluation protocol of both benchmarks: the preset's sampler (Heun) and guidance (2), 1,000 samples, every
# 100 steps, 6 Heun steps (11 network evaluations). Sampling is most of an evaluation's cost, and at 10 steps an
# evaluation cost as much as 100 training steps; 6 steps change a run's FD by less than the evaluation's own
# sampling noise and keep the recipes' order (docs/results.md, "the evaluation protocol"). One protocol, so that
# workshop_claims.py and paper_claims.py pointed at one folder share runs.
PROTOCOL = {"eval_every": 100, "eval_n": 1000, "eval_steps": 6}
# iREPA (arXiv 2512.10794, docs/repa_followups.md): the conv projector and spatially normalised targets, together
IREPA = {"projector": "conv", "target_norm": "spatial"}


@dataclass(frozen=True)
class Arm:
    """One row of the claims tables: `recipe` with `overrides`, trained at every seed. `on_e2e_vae_of` names
    another arm whose run at the same seed exports its tuned VAE for this one to train on (the two-stage use)."""
    name: str
    recipe: str
    overrides: dict[str, Any] = field(default_factory=dict)
    on_e2e_vae_of: str | None = None
    note: str = ""


def run_path(out: Path, arm: str, seed: int) -> Path:
    return Path(out) / f"{arm}-s{seed}"


def prepare_shared_networks(preset: str, seeds: Sequence[int], common: dict[str, Any], log,
                            variants: Sequence[dict[str, Any]] = ({},)) -> None:
    """The pretrained VAE, the REPA targets and the evaluator of every seed, trained (or loaded) here once, so
    that parallel runs never train the same cached network twice. `variants`: override sets whose networks
    differ from the common ones (another dataset, VAE or pretraining length), each prepared at every seed."""
    todo = [(v, s) for v in variants for s in seeds]
    phase = Phase("preparing the shared networks (cached after the first time)", len(todo), log)
    for i, (variant, seed) in enumerate(todo):
        prepare(resolve_config(preset, recipe="repa-e", overrides={**common, **variant, "seed": seed}), progress=False)
        phase.update(i + 1, f"seed {seed}" + "".join(f", {k}={v}" for k, v in variant.items()))
    phase.close()


def _export_e2e_vae(source: Path, out: Path) -> Path:
    """The E2E-VAE of a finished run, exported once (models/export.py)."""
    if not (out / "repae_lab_export.json").is_file():
        export_vae(source, out)
    return out


def train_arms(out: str | Path, preset: str, groups: Sequence[tuple[Sequence[Arm], Sequence[int]]],
               common: dict[str, Any] | None = None, *, processes: int = 2,
               log: Callable[[str], None] = print, shared_variants: Sequence[dict[str, Any]] = ()) -> None:
    """Train every arm of every (arms, seeds) group at each of its seeds (finished runs reused), in one
    schedule: an arm that trains on another arm's exported E2E-VAE starts as soon as that run has finished,
    beside the others, so no core idles on a phase boundary. `shared_variants`: override sets of arms whose
    cached networks differ from the common ones, prepared up front too (prepare_shared_networks)."""
    out, common = Path(out), dict(common or {})
    for arms, _ in groups:
        names = {a.name for a in arms}
        for arm in arms:
            if arm.on_e2e_vae_of and arm.on_e2e_vae_of not in names:
                raise ValueError(f"arm '{arm.name}' trains on the E2E-VAE of '{arm.on_e2e_vae_of}', which is not an arm")
    prepare_shared_networks(preset, sorted({s for _, seeds in groups for s in seeds}), common, log,
                            [{}, *shared_variants])

    def job(arm: Arm, seed: int) -> RunJob:
        overrides, after, prepare = {**common, **arm.overrides, "seed": seed}, None, None
        if arm.on_e2e_vae_of:
            after = run_path(out, arm.on_e2e_vae_of, seed)
            exported = out / "e2e-vae" / after.name
            overrides["vae"] = str(exported.resolve())
            prepare = lambda: _export_e2e_vae(after, exported)
        return RunJob(f"{arm.name}-s{seed}", run_path(out, arm.name, seed), preset, arm.recipe, overrides,
                      after=after, prepare=prepare)

    jobs, seen = [], {}
    for arms, seeds in groups:
        for s in seeds:
            for a in arms:
                # one run per (arm, seed) even where two parts list it (the speed-up search's default regime is
                # the claims' repa and repa-e); the same name for different settings would mix two runs
                if (key := (a.name, s)) in seen:
                    if (seen[key].recipe, seen[key].overrides) != (a.recipe, a.overrides):
                        raise ValueError(f"arm '{a.name}' is listed twice with different settings")
                    continue
                seen[key] = a
                jobs.append(job(a, s))
    # the two-stage jobs first among the waiting ones: each starts the moment its E2E-VAE's run is done
    jobs.sort(key=lambda j: j.after is None)
    train_in_parallel(jobs, processes=processes, log=log, title=f"training {len(jobs)} runs")


# ---------------------------------------------------------------------------------------------------------
# what the runs say

@dataclass
class RunResult:
    arm: str
    seed: int
    run: Path
    probes: dict[int, dict[str, Any]]          # probe scalars per snapshot step
    evals: list[dict[str, Any]]                # the evaluation records of the metrics log, in step order
    seconds: float

    @property
    def fd(self) -> list[tuple[int, float]]:
        """FD of the in-training evaluations against the step."""
        return curve_of(self.evals, FD_KEY)

    @property
    def accuracy(self) -> list[tuple[int, float]]:
        """Class accuracy of the same samples against the step."""
        return curve_of(self.evals, ACCURACY_KEY)

    @property
    def final_fd(self) -> float | None:
        return self.eval_at(FD_KEY)

    @property
    def final_accuracy(self) -> float | None:
        return self.eval_at(ACCURACY_KEY)

    def eval_at(self, key: str, *, first: bool = False) -> float | None:
        """`key` of the first (step 0: before tuning) or the last evaluation that has it."""
        values = [r[key] for r in self.evals if isinstance(r.get(key), (int, float))]
        return float(values[0 if first else -1]) if values else None

    def channel_std(self) -> list[float]:
        """Per-channel std of the latent at the last snapshot."""
        return [math.sqrt(v) for v in self.probes[max(self.probes)].get("channel_var", [])] if self.probes else []

    def probe(self, key: str, step: int | None = None) -> float | None:
        if not self.probes:
            return None
        values = self.probes[max(self.probes) if step is None else step]
        value = values.get(key)
        return float(value) if isinstance(value, (int, float)) else None


def collect(out: str | Path, arms: Sequence[Arm], seeds: Sequence[int], *, probes: bool = True,
            log: Callable[[str], None] = print) -> list[RunResult]:
    """Every arm's runs, probed (latent statistics and CKNNA per snapshot, cached in RUN/probes/) when
    `probes`; runs that do not exist yet are left out."""
    todo = [(a, s) for a in arms for s in seeds if (run_path(out, a.name, s) / "summary.json").is_file()]
    phase = Phase("probing the runs (cached)", len(todo), log) if probes else None
    results = []
    for i, (arm, seed) in enumerate(todo):
        run = run_path(out, arm.name, seed)
        scalars = {}
        if probes:
            scalars = probe_run(run, ProbeSettings(umap=False, aligned_umap=False), log=lambda m: None).scalars
            phase.update(i + 1, run.name)
        evals = [r for r in rundir.read_jsonl(run / "metrics.jsonl") if r.get("kind") == "eval"]
        summary = rundir.read_json(run / "summary.json") or {}
        results.append(RunResult(arm.name, seed, run, scalars, evals, float(summary.get("seconds", 0.0))))
    if phase:
        phase.close()
    return results


def by_arm(results: Sequence[RunResult]) -> dict[str, list[RunResult]]:
    out: dict[str, list[RunResult]] = {}
    for r in results:
        out.setdefault(r.arm, []).append(r)
    return out


def steps_to_reach(curve: Sequence[tuple[int, float]], target: float) -> float | None:
    """The first step at which an FD curve reaches `target` (linear between evaluations); None if never."""
    for (s0, f0), (s1, f1) in zip(curve, curve[1:]):
        if f1 <= target:
            if f0 <= target:
                return float(s0)
            return s0 + (s1 - s0) * (f0 - target) / (f0 - f1)
    if curve and curve[0][1] <= target:
        return float(curve[0][0])
    return None


def speedup(slow: RunResult, fast: RunResult) -> tuple[float | None, float | None]:
    """(steps `fast` needs to reach `slow`'s final FD, slow's steps / those steps): the paper's Fig. 1 reading."""
    if not slow.fd or not fast.fd or fast.fd[0][1] <= slow.fd[-1][1]:
        return None, None                 # no curve, or the reference never got below the common start
    steps = steps_to_reach(fast.fd, slow.fd[-1][1])
    first = first_evaluation(fast)
    if steps is not None and first is not None and steps < first:
        # reached before the first evaluation after the start: FD is far from linear there, so only the
        # first evaluation's step is known (the speed-up is a lower bound; speedup_row marks it)
        steps = float(first)
    return steps, (slow.fd[-1][0] / steps if steps else None)


def own_reach_speedup(slow: RunResult, fast: RunResult) -> float | None:
    """The steps `slow` itself needs to first reach its final FD over the steps `fast` needs: `speedup`'s
    number where slow's FD still falls at its end, and no credit for steps slow spends on a plateau (a run past
    its FD floor reaches its final FD long before its last step; the race is then to the floor, not to the end)."""
    steps = speedup(slow, fast)[0]
    own = steps_to_reach(slow.fd, slow.fd[-1][1]) if slow.fd else None
    return own / steps if steps and own else None


def first_evaluation(run: RunResult) -> int | None:
    """The step of the run's first evaluation after its start."""
    return next((s for s, _ in run.fd if s > run.fd[0][0]), None) if run.fd else None


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean(values: Sequence[float | None]) -> float | None:
    """The mean of the values that exist (None, NaN left out); None when none do."""
    vals = _finite(values)
    return statistics.fmean(vals) if vals else None


def spread(values: Sequence[float | None], digits: int = 2) -> str:
    """'mean ± std' over the values that exist (one value alone as itself); '-' when none."""
    vals = _finite(values)
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.fmean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fd_at_each_evaluation(results: Sequence[RunResult], arms: Sequence[str]) -> str:
    """FD (mean ± std over seeds) at every evaluation step, one row per arm."""
    groups = by_arm(results)
    steps = sorted({s for r in results for s, _ in r.fd})
    rows = []
    for arm in arms:
        runs = groups.get(arm, [])
        rows.append([arm] + [spread([dict(r.fd).get(s) for r in runs]) for s in steps])
    return markdown_table(["FD at step"] + [str(s) for s in steps], rows)


def seed_pairs(slow: Sequence[RunResult], fast: Sequence[RunResult]) -> list[tuple[RunResult, RunResult]]:
    """(slow run, fast run) for every seed both arms have."""
    return [(s, f) for s in slow for f in fast if s.seed == f.seed]


def reached_speedups(slow: Sequence[RunResult], fast: Sequence[RunResult]) -> list[float | None]:
    """speedup per seed pair, with 0 where `fast` never reached `slow`'s final FD within its run (no speed-up, not
    a missing number); None only where it cannot be read (no curve, or `slow` never got below the start)."""
    ups = []
    for s_, f_ in seed_pairs(slow, fast):
        x = speedup(s_, f_)[1]
        ups.append(0.0 if x is None and s_.fd and f_.fd and f_.fd[0][1] > s_.fd[-1][1] else x)
    return ups


def reached(found: Sequence[tuple[float | None, float | None]]) -> str:
    """'k/n': in how many of n seed pairs the fast arm reached the slow arm's final FD."""
    return f"{sum(1 for steps, _ in found if steps is not None)}/{len(found)}"


def speedup_row(label: str, slow: Sequence[RunResult], fast: Sequence[RunResult]) -> list[str]:
    """[label, slow's final FD, the steps fast needs to reach it, the speed-up, 'k/n' seed pairs that reached
    it], each over the seeds both arms have."""
    pairs = seed_pairs(slow, fast)
    found = [speedup(s, f) for s, f in pairs]
    bound = any(st is not None and st == first_evaluation(f) for (st, _), (_, f) in zip(found, pairs))
    # reached before fast's first evaluation in some seed: the steps are an upper, the speed-up a lower bound
    most, least = ("at most ", "at least ") if bound else ("", "")
    return [label, spread([s.final_fd for s, _ in pairs]), most + spread([st for st, _ in found], 0),
            least + spread([x for _, x in found]), reached(found)]


def speedup_rows(results: Sequence[RunResult], fast: str, slow: Sequence[str]) -> list[list[str]]:
    """speedup_row of `fast` against each arm of `slow`."""
    groups = by_arm(results)
    return [speedup_row(arm, groups.get(arm, []), groups.get(fast, [])) for arm in slow]


def _axes():
    # matplotlib and plotly (also through views.figures) belong to the optional notebook extra: imported where a
    # plot is drawn, so the benchmarks can train and tabulate on a host without it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.2), dpi=120)


def _save(fig, ax, path: str | Path, *, title: str, ylabel: str) -> Path:
    import matplotlib.pyplot as plt

    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def fd_plot(results: Sequence[RunResult], arms: Sequence[str], path: str | Path, *, title: str) -> Path:
    """FD against steps, mean over seeds with the min-max band, one line per arm (log scale), as a PNG."""
    groups = by_arm(results)
    fig, ax = _axes()
    for arm in arms:
        runs = [r for r in groups.get(arm, []) if r.fd]
        if not runs:
            continue
        steps = sorted(set.intersection(*[{s for s, _ in r.fd} for r in runs]))
        values = [[dict(r.fd)[s] for r in runs] for s in steps]
        line, = ax.plot(steps, [statistics.fmean(v) for v in values], marker="o", ms=3, label=arm)
        if len(runs) > 1:
            ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values], color=line.get_color(), alpha=0.15)
    ax.set_yscale("log")
    return _save(fig, ax, path, title=title, ylabel="FD (workshop evaluator, lower is better)")


def probe_curve_plot(results: Sequence[RunResult], arms: Sequence[str], key: str, path: str | Path, *,
                     title: str, ylabel: str) -> Path:
    """A probe scalar against the snapshot step, mean over seeds, one line per arm, as a PNG."""
    groups = by_arm(results)
    fig, ax = _axes()
    for arm in arms:
        runs = [r for r in groups.get(arm, []) if r.probes]
        if not runs:
            continue
        steps = sorted(set.intersection(*[set(r.probes) for r in runs]))
        means = [statistics.fmean([r.probe(key, s) for r in runs if r.probe(key, s) is not None] or [math.nan])
                 for s in steps]
        ax.plot(steps, means, marker="o", ms=3, label=arm)
    return _save(fig, ax, path, title=title, ylabel=ylabel)


def write_json(path: str | Path, results: Sequence[RunResult], extra: dict[str, Any] | None = None) -> Path:
    """Every number the tables are made of, for notebook 08 and for anyone comparing a rerun."""
    path = Path(path)
    rows = [{"arm": r.arm, "seed": r.seed, "run": str(r.run), "fd": r.fd, "accuracy": r.accuracy,
             "evals": [{k: v for k, v in e.items() if k == "step" or k.startswith("eval/")} for e in r.evals],
             "seconds": r.seconds,
             "probes": {str(s): {k: v for k, v in p.items() if isinstance(v, (int, float))} for s, p in r.probes.items()}}
            for r in results]
    path.write_text(json.dumps({"written": time.strftime("%Y-%m-%d %H:%M:%S"), **(extra or {}), "runs": rows}, indent=1))
    return path
