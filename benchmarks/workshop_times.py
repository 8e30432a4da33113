"""How long the workshop kit's training takes on this machine (docs/workshop.md quotes its output).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/workshop_times.py steps [--steps 60]   # CPU s per step of every kit run
    OMP_NUM_THREADS=1 PYTHONPATH=. REPAE_LAB_CACHE=$(mktemp -d) python benchmarks/workshop_times.py live --out DIR
        # the set-up (kit.warm_up) on an empty cache, then notebook 4's live e2e-diffusion run, as CPU time

(PYTHONPATH=. so that a checkout's own repae_lab is timed, not an installed one.) --json FILE also writes the
results there, for benchmarks/workshop_numbers.py.

Process CPU time is reported beside wall time: on a shared machine the wall time says how busy it was, the CPU
time what one free core needs.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from repae_lab.jobs.launch import train
from repae_lab.config import resolve_config
from repae_lab.workshop import Kit
from repae_lab.workshop.runs import COMMON, KIT_RUNS, PRESET


def step_times(steps: int, kit: Kit) -> dict[str, dict[str, float]]:
    out = {}
    for name, spec in KIT_RUNS.items():
        marks = []
        extra = {"vae": str(kit.e2e_vae(spec.vae_from))} if spec.vae_from else {}
        with tempfile.TemporaryDirectory() as tmp:
            cfg = resolve_config(PRESET, recipe=spec.recipe, overrides={
                **COMMON, **spec.overrides, "steps": steps, "eval_every": 0, "snapshot_every": 0,
                "checkpoint_every": 0, **extra})
            train(cfg, Path(tmp) / "run", progress=False,
                  on_metrics=lambda step, means: marks.append((step, time.process_time(), time.perf_counter())))
        (s0, c0, w0), (s1, c1, w1) = marks[0], marks[-1]
        out[name] = {"cpu_s_per_step": round((c1 - c0) / (s1 - s0), 3), "wall_s_per_step": round((w1 - w0) / (s1 - s0), 3)}
        print(name, json.dumps(out[name]), flush=True)
    return out


def live(kit: Kit) -> dict[str, dict[str, float]]:
    c0, w0 = time.process_time(), time.perf_counter()
    kit.warm_up()
    c1, w1 = time.process_time(), time.perf_counter()
    print(f"warm_up: cpu {c1 - c0:.1f} s, wall {w1 - w0:.1f} s", flush=True)
    kit.train_live("e2e-diffusion")
    c2, w2 = time.process_time(), time.perf_counter()
    print(f"train_live('e2e-diffusion'): cpu {c2 - c1:.1f} s, wall {w2 - w1:.1f} s", flush=True)
    return {"warm_up": {"cpu_s": round(c1 - c0, 1), "wall_s": round(w1 - w0, 1)},
            "train_live_e2e_diffusion": {"cpu_s": round(c2 - c1, 1), "wall_s": round(w2 - w1, 1)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("steps", "live"))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default=None, help="kit folder (default: the kit's); live trains into OUT/work")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    kit = Kit(args.out, work_dir=Path(args.out or tempfile.mkdtemp()) / "work", progress=False)
    results = step_times(args.steps, kit) if args.what == "steps" else live(kit)
    if args.json:
        Path(args.json).write_text(json.dumps({args.what: results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
