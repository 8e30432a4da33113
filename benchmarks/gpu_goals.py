"""The GPU issue's goals, each with the figure measured for it and "met" / "not met" / "not measured".

    python benchmarks/gpu_goals.py OUT/results.json       # what benchmarks/gpu_session.py wrote

Goals (repae_lab issue 24; one H100 / H200, SiT-XL/2 + SD-VAE + DINOv2-B/14, batch 32, bf16):
  1. the full repa-e step at least 2x the official loop's images/s, at least 35% MFU, at most 60 GB peak memory;
  2. the first compiled repa-e step within 90 s; the SiT update (repa-cached) at least 45% MFU compiled;
  3. a workshop repa-e step at most 15 ms; the quickstart on one GPU within 90 s;
  4. the CUDA tests pass (fp16's skipped updates reported as skipped, one synchronisation per step);
  5. the whole session within 9 minutes.
A figure comes from the fastest configuration measured for it (eager, eager with the VAE's GroupNorms in bf16,
CUDA graphs, or regionally compiled with CUDA graphs), and the goal line names that configuration.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

THROUGHPUT_STAGES = ("eager", "eager-gn", "graphs", "compiled")   # paper-size throughput, in gpu_session.py's names


@dataclass
class Goal:
    name: str
    target: str
    figure: str | None                 # None: not measured
    met: bool | None = None            # None with a figure: a CPU stand-in's figure, which meets no GPU goal

    @property
    def status(self) -> str:
        if self.figure is None:
            return "not measured"
        return "stand-in" if self.met is None else ("met" if self.met else "not met")


def _rows(results: dict, stage: str) -> list[dict]:
    figures = results.get("stages", {}).get(stage, {}).get("figures") or {}
    return [r for r in figures.get("rows", []) if "step_ms" in r]


def _best(results: dict, recipe: str, stages=THROUGHPUT_STAGES, size: str | None = "xl2-sdvae"):
    """(the fastest row of `recipe`, the stage it came from) over the given stages."""
    found = [(r, s) for s in stages for r in _rows(results, s)
             if r["recipe"] == recipe and (size is None or r["size"] == size)]
    return max(found, key=lambda rs: rs[0]["images_per_s"], default=(None, None))


def _config(row: dict, stage: str) -> str:
    parts = [stage]
    if row.get("compile", "none") != "none":
        parts.append(f"compile={row['compile']}")
    if row.get("cuda_graphs"):
        parts.append("cuda graphs")
    if str(row.get("overrides", {}).get("low_precision_group_norm", "")).lower() == "true":
        parts.append("bf16 GroupNorm")
    return ", ".join(dict.fromkeys(parts))


def goals(results: dict) -> list[Goal]:
    stages = results.get("stages", {})
    out = []
    repae, where = _best(results, "repa-e")
    official = (stages.get("official", {}).get("figures") or {}).get("images_per_s")
    ratio = repae["images_per_s"] / official if repae and official else None
    out.append(Goal("repa-e images/s against the official loop", ">= 2.0x",
                    f"{ratio:.2f}x ({repae['images_per_s']:.1f} vs {official:.1f} img/s; {_config(repae, where)})"
                    if ratio else None, ratio is not None and ratio >= 2.0))
    mfu = repae.get("mfu") if repae else None
    out.append(Goal("repa-e MFU", ">= 35%", f"{100 * mfu:.1f}% ({_config(repae, where)})" if mfu else None,
                    mfu is not None and mfu >= 0.35))
    lowest, low_where = min(((r, s) for s in THROUGHPUT_STAGES for r in _rows(results, s)
                             if r["recipe"] == "repa-e" and r["size"] == "xl2-sdvae"),
                            key=lambda rs: rs[0]["peak_memory_bytes"], default=(None, None))
    memory = lowest["peak_memory_bytes"] / 1e9 if lowest else None
    out.append(Goal("repa-e peak memory", "<= 60 GB", f"{memory:.1f} GB ({_config(lowest, low_where)})"
                    if memory else None, memory is not None and memory <= 60))
    compiled = next((r for r in _rows(results, "compiled") if r["recipe"] == "repa-e" and r["size"] == "xl2-sdvae"), None)
    first = compiled["warmup_ms"][0] / 1e3 if compiled and compiled.get("warmup_ms") else None
    out.append(Goal("first compiled repa-e step (compilation included)", "<= 90 s",
                    f"{first:.0f} s" if first is not None else None, first is not None and first <= 90))
    cached = next((r for r in _rows(results, "compiled") if r["recipe"] == "repa-cached" and r["size"] == "xl2-sdvae"), None)
    cached_mfu = cached.get("mfu") if cached else None
    out.append(Goal("repa-cached (SiT update) MFU, compiled", ">= 45%",
                    f"{100 * cached_mfu:.1f}%" if cached_mfu else None, cached_mfu is not None and cached_mfu >= 0.45))
    workshop, w_where = _best(results, "repa-e", ("workshop-eager", "workshop-graphs"), size="workshop")
    step = workshop["step_ms"] if workshop else None
    out.append(Goal("workshop repa-e step", "<= 15 ms", f"{step:.1f} ms ({_config(workshop, w_where)})"
                    if step is not None else None, step is not None and step <= 15))
    quick = stages.get("quickstart", {})
    quick_s = quick.get("seconds") if quick.get("status") == "ok" else None
    out.append(Goal("quickstart on one GPU (probes and evaluations included)", "<= 90 s",
                    f"{quick_s:.0f} s" if quick_s is not None else _unfinished(quick), quick_s is not None and quick_s <= 90))
    tests = stages.get("pytest-cuda", {})
    out.append(Goal("CUDA tests (tests/test_cuda.py)", "all pass",
                    tests.get("status") if tests.get("status") in ("ok", "failed", "timed out") else None,
                    tests.get("status") == "ok"))
    session = results.get("session_s")
    out.append(Goal("the whole GPU session", "<= 540 s", f"{session:.0f} s" if session is not None else None,
                    session is not None and session <= 540))
    if results.get("device", "cuda") != "cuda":        # `gpu_session.py --device cpu`: mechanics, not figures
        for goal in out:
            goal.met = None
    return out


def _unfinished(stage: dict) -> str | None:
    """A stage that ran but did not finish is a figure too: it took longer than its limit."""
    if stage.get("status") == "timed out":
        return f"over {stage.get('seconds', 0):.0f} s (stopped)"
    return None


def comparison_table(results: dict) -> str:
    """Every paper-size throughput row side by side: eager, CUDA graphs, compiled."""
    lines = [f"{'recipe':<13} {'configuration':<34} {'img/s':>8} {'step ms':>8} {'MFU':>6} {'peak GB':>8} {'1st step s':>10}"]
    for stage in THROUGHPUT_STAGES:
        for r in _rows(results, stage):
            mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "n/a"
            first = f"{r['warmup_ms'][0] / 1e3:.1f}" if r.get("warmup_ms") else ""
            lines.append(f"{r['recipe']:<13} {_config(r, stage):<34} {r['images_per_s']:>8.1f} {r['step_ms']:>8.1f} "
                         f"{mfu:>6} {r['peak_memory_bytes'] / 1e9:>8.1f} {first:>10}")
    official = (results.get("stages", {}).get("official", {}).get("figures") or {})
    if official.get("images_per_s"):
        lines.append(f"{'official':<13} {'train_repae.py loop, eager':<34} {official['images_per_s']:>8.1f} "
                     f"{official['median_step_s'] * 1e3:>8.1f} {'':>6} {official.get('peak_mem_gb') or 0:>8.1f} "
                     f"{official.get('first_step_s', 0):>10.1f}")
    return "\n".join(lines)


def format_goals(found: list[Goal]) -> str:
    width = max(len(g.name) for g in found)
    lines = [f"{g.name:<{width}}  {g.target:>9}  {g.status:<12}  {g.figure or ''}" for g in found]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python benchmarks/gpu_goals.py OUT/results.json")
    results = json.loads(Path(argv[0]).read_text())
    print(format_goals(goals(results)))
    print(comparison_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
