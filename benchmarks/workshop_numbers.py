"""The numbers the instructor's guide (docs/workshop.md) quotes, measured on a prepared kit and written, with the
settings they were measured under, to docs/workshop_numbers.json; tests/test_workshop_numbers.py then fails when
runs.py or the preset moves away from those settings, or the guide from those numbers.

    OMP_NUM_THREADS=1 PYTHONPATH=. REPAE_LAB_CACHE=$(mktemp -d) /usr/bin/time \\
        python -m repae_lab workshop prepare --out /tmp/kit                          # note its user + sys CPU s
    OMP_NUM_THREADS=1 PYTHONPATH=. REPAE_LAB_CACHE=$(mktemp -d) \\
        python benchmarks/workshop_times.py live --out /tmp/live --json /tmp/live.json
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/workshop_times.py steps --out /tmp/kit --json /tmp/steps.json
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/workshop_numbers.py --kit /tmp/kit \\
        --times /tmp/steps.json /tmp/live.json --prepare-cpu-s SECONDS
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from repae_lab.config import PRESETS
from repae_lab.evaluation.records import eval_curve
from repae_lab.rundir import read_jsonl
from repae_lab.workshop import Kit, pictures
from repae_lab.workshop.runs import COMMON, KIT_RUNS, PRESET, steps

OUT = Path(__file__).resolve().parents[1] / "docs" / "workshop_numbers.json"
# the paper's numbers the guide sets beside the kit's (REPA-E, arXiv 2504.10483)
PAPER = {"gfid_e2e_va_vae_guided": 1.26, "gfid_without_stop_gradient": 444}


def settings(kit: Kit) -> dict:
    """What the numbers were measured under: the preset, runs.py's settings, and the folders they name."""
    return {"preset": PRESET, "preset_settings": PRESETS[PRESET], "common": COMMON,
            "overrides": {n: r.overrides for n, r in KIT_RUNS.items()},
            "folders": {n: kit.folder(n) for n in KIT_RUNS}}


def _r(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def logged(run: Path, key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in read_jsonl(run / "metrics.jsonl")
            if "event" not in r and r.get("kind") != "eval" and isinstance(r.get(key), (int, float))]


def evaluations(run: Path) -> dict:
    records = [r for r in read_jsonl(run / "metrics.jsonl") if r.get("kind") == "eval"]
    return {"fd": {str(s): _r(v) for s, v in eval_curve(run)},
            "class_accuracy": {str(r["step"]): _r(r["eval/accuracy_workshop"]) for r in records},
            "recon_psnr_step0": _r(records[0]["eval/rpsnr"], 3)}


def probe_numbers(kit: Kit, run: Path) -> dict:
    probes = kit.probes(run)
    out = {}
    for step in probes.steps:
        s = probes.scalars[step]
        row = {k: _r(s[k]) for k in ("spatial_var", "total_variation", "latent_std") if k in s}
        row.update({k: _r(v) for k, v in s.items() if re.match(r"(linear|cknna)/", k) and isinstance(v, float)})
        for k in ("bn_var", "channel_var"):
            if k in s:
                row[k] = [_r(v, 3) for v in s[k]]
        out[str(step)] = row
    return out


def token_cosine(run: Path) -> float:
    """pictures.token_alignment's mean per-token cosine at t = 0.5 (the number in its panel title)."""
    title = pictures.token_alignment([run]).layout.annotations[0].text
    return float(re.search(r"mean cos (-?[\d.]+)", title).group(1))


def measure(kit: Kit) -> dict:
    numbers = {}
    for name in KIT_RUNS:
        run = kit.run(name)
        losses = {k: logged(run, k) for k in ("loss/diffusion", "loss/repa", "loss/l1", "latent/spatial_var")}
        numbers[name] = {
            **evaluations(run),
            "logged": {k: {"first": _r(v[0][1]), "last": _r(v[-1][1]), "min": _r(min(x for _, x in v))}
                       for k, v in losses.items() if v},
            "probes": probe_numbers(kit, run),
            "token_cosine_t0.5": token_cosine(run),
        }
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kit", required=True, help="a kit folder made by `repae-lab workshop prepare --out`")
    parser.add_argument("--times", nargs="*", default=[], help="JSON files of benchmarks/workshop_times.py --json")
    parser.add_argument("--prepare-cpu-s", type=float, default=None, help="CPU seconds `prepare` took (user + sys)")
    parser.add_argument("--prepare-wall-s", type=float, default=None, help="and its wall-clock seconds")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    kit = Kit(args.kit, work_dir=args.kit, progress=False)
    missing = [n for n in KIT_RUNS if kit.find(n) is None]
    if missing:
        raise SystemExit(f"{args.kit} lacks the kit runs {', '.join(missing)} under today's settings: prepare it first")
    times = {}
    for path in args.times:
        times.update(json.loads(Path(path).read_text()))
    times.update({k: v for k, v in (("prepare_cpu_s", args.prepare_cpu_s), ("prepare_wall_s", args.prepare_wall_s))
                  if v is not None})
    if "steps" in times and "live" in times:
        # what a run costs beyond its steps (evaluations, snapshots, checkpoints), from the live run
        per_step = times["steps"]["e2e-diffusion"]["cpu_s_per_step"]
        overhead = times["live"]["train_live_e2e_diffusion"]["cpu_s"] - steps("e2e-diffusion") * per_step
        times["run_overhead_cpu_s"] = round(overhead, 1)
        times["estimated_run_cpu_s"] = {n: round(steps(n) * t["cpu_s_per_step"] + overhead)
                                        for n, t in times["steps"].items()}
    record = {"measured_with": settings(kit), "how": __doc__.split("\n\n")[1], "timings": times,
              "runs": measure(kit), "paper": PAPER}
    Path(args.out).write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
