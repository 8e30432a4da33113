"""Everything the project measures on a lent GPU, in one call that fits the device budget (9 minutes).

    python benchmarks/gpu_session.py --out OUT                   # on the GPU host (benchmarks/gpu_session.sh)
    python benchmarks/gpu_session.py --out OUT --device cpu      # here: the same stages with CPU stand-ins

Each stage runs in its own process with its own time limit, cut further so that the whole session ends before
`--budget` seconds; a stage that does not fit is reported as not run. Results are packed into OUT as each stage
ends, into a few files (the device tool brings back at most 8):
    OUT/results.json   every stage: exit status, seconds, the figures it wrote (throughput rows, the official loop)
    OUT/session.log    every stage's output, in order
    OUT/goals.txt      the issue's goals, each with its figure and met / not met (benchmarks/gpu_goals.py)
    OUT/profile.txt    the kernel profile of one repa-e step, per update
So a stage that runs long, or a machine taken back mid-session, loses nothing already measured.

The stages, most important first: eager throughput of repa-cached / repa / repa-e at the paper size (SiT-XL/2,
SD-VAE, DINOv2-B/14, batch 32, bf16); the official REPA-E loop on the same chip (`../shared/tools/official_step.py`
copied to .official/ with a checkout of End2End-Diffusion/REPA-E in .official/REPA-E: never committed, carried
to the GPU host); the same three with CUDA graphs; the workshop step eager and as a CUDA graph; regional
compilation with CUDA graphs (the first step's compile time is the warm-up figure); the quickstart on the GPU;
the CUDA tests; a profile. With `--device cpu` every stage runs at the workshop size instead (the official loop at
SiT-B/2, batch 1), so the session's own mechanics are checked without a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = ROOT / ".official"
RESULTS, LOG, GOALS, PROFILE = "results.json", "session.log", "goals.txt", "profile.txt"

DEVICE_INFO = ("import sys, torch; print(sys.version.split()[0], torch.__version__); "
               "print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')")


@dataclass
class Stage:
    name: str
    limit: int                         # seconds at most
    command: list[str]
    json_out: Path | None = None       # a JSON file the command writes (its figures)
    needs: Path | None = None          # skipped (and said so) where this path is missing
    env: dict[str, str] = field(default_factory=dict)


def stages(device: str, work: Path, official_dir: Path = OFFICIAL) -> list[Stage]:
    py = sys.executable
    gpu = device == "cuda"
    if gpu:
        size = ["--device", "cuda", "--precision", "bf16", "--sizes", "xl2-sdvae", "--batch", "32"]
        timing = ["--steps", "8", "--warmup", "3"]
        graphs = ["--cuda-graphs"]
        workshop = ["--device", "cuda", "--precision", "bf16", "--sizes", "workshop", "--steps", "20", "--warmup", "4"]
        official = ["--device", "cuda", "--batch", "32", "--precision", "bf16", "--steps", "8", "--warmup", "3"]
        quick = ["--out", str(work / "quickstart")]
    else:   # stand-ins: the same stages, small enough for a CPU
        size = ["--device", "cpu", "--precision", "fp32", "--sizes", "workshop", "--batch", "8", "--threads", "1"]
        timing = ["--steps", "1", "--warmup", "1"]
        graphs = []
        workshop = size + timing
        official = ["--device", "cpu", "--model", "SiT-B/2", "--batch", "1", "--precision", "fp32", "--steps", "1",
                    "--warmup", "1"]
        quick = ["--out", str(work / "quickstart"), "--eval-n", "40", "--set", "steps=10", "vae_pretrain_steps=10",
                 "encoder_steps=10", "eval_every=0", "probe_size=40"]
    bench = [py, str(ROOT / "benchmarks" / "throughput.py"), *size, *timing]

    def out(name):
        return work / f"{name}.json"

    return [
        Stage("device", 30, [py, "-c", DEVICE_INFO]),
        Stage("eager", 100, [*bench, "--recipes", "repa-cached,repa,repa-e", "--json", str(out("eager"))], out("eager")),
        Stage("official", 60, [py, str(official_dir / "official_step.py"), str(official_dir / "REPA-E"), *official,
                               "--json", str(out("official"))], out("official"), needs=official_dir / "REPA-E"),
        # the VAE's GroupNorms in bf16: about 23 GB less saved for backward (benchmarks/activation_memory.py)
        Stage("eager-gn", 45, [*bench, "--recipes", "repa-e", "--set", "low_precision_group_norm=true",
                               "--json", str(out("eager-gn"))], out("eager-gn")),
        Stage("graphs", 80, [*bench, "--recipes", "repa-cached,repa-e", *graphs, "--set", "low_precision_group_norm=true",
                             "--json", str(out("graphs"))], out("graphs")),
        Stage("workshop-eager", 40, [py, str(ROOT / "benchmarks" / "throughput.py"), *workshop,
                                     "--recipes", "repa,repa-e", "--json", str(out("workshop-eager"))], out("workshop-eager")),
        Stage("workshop-graphs", 40, [py, str(ROOT / "benchmarks" / "throughput.py"), *workshop, *graphs,
                                      "--recipes", "repa,repa-e", "--json", str(out("workshop-graphs"))],
              out("workshop-graphs")),
        # repa-e first: its first step holds the compilation from a cold cache (the goal is 90 s)
        Stage("compiled", 130, [*bench, "--recipes", "repa-e,repa-cached,repa", "--compile", "regional", *graphs,
                                "--json", str(out("compiled"))], out("compiled")),
        Stage("quickstart", 100, [py, "-m", "repae_lab", "quickstart", *quick],
              env={"REPAE_LAB_CACHE": str(work / "cache")}),     # an empty cache: shared networks included
        Stage("pytest-cuda", 100, [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda",
                                   str(ROOT / "tests" / "test_cuda.py")]),
        Stage("profile", 60, [*bench, "--recipes", "repa-e", "--steps", "1", "--profile",
                              "--json", str(out("profile"))], out("profile")),
    ]


def run_stage(stage: Stage, seconds: float, log) -> dict:
    """Run one stage within `seconds`; its output goes to the log, its figures into the returned record."""
    record = {"limit_s": round(seconds), "command": " ".join(stage.command)}
    if stage.needs is not None and not stage.needs.exists():
        record.update(status="skipped", why=f"{stage.needs} is missing")
        return record
    if seconds < 5:
        record.update(status="not run", why="no time left in the session's budget")
        return record
    log.write(f"\n===== {stage.name} (limit {seconds:.0f} s): {record['command']}\n")
    log.flush()
    t0 = time.time()
    try:
        done = subprocess.run(stage.command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=seconds,
                              env={**os.environ, "PYTHONUNBUFFERED": "1", **stage.env})
        record.update(status="ok" if done.returncode == 0 else "failed", exit=done.returncode)
    except subprocess.TimeoutExpired:
        record.update(status="timed out", exit=None)
    record["seconds"] = round(time.time() - t0, 1)
    if stage.json_out is not None and stage.json_out.exists():
        record["figures"] = json.loads(stage.json_out.read_text())
    log.write(f"===== {stage.name}: {record['status']} after {record['seconds']} s\n")
    log.flush()
    return record


def write_results(out: Path, results: dict) -> None:
    """Rewrite the packed files after every stage (a rename: never half a file)."""
    from gpu_goals import comparison_table, format_goals, goals     # beside this file

    report = format_goals(goals(results)) + "\n" + comparison_table(results) + "\n"
    for name, text in ((RESULTS, json.dumps(results, indent=1)), (GOALS, report)):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out / name)
    profile = results["stages"].get("profile", {}).get("figures", {}).get("rows", [])
    if profile and profile[0].get("profile"):
        (out / PROFILE).write_text(profile[0]["profile"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT", "gpu-out"), help="folder for the packed results ($OUT)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: small stand-ins for every stage")
    p.add_argument("--budget", type=float, default=530, help="seconds the whole session may take")
    p.add_argument("--only", default=None, help="comma-separated stage names to run (default: all)")
    p.add_argument("--official", type=Path, default=OFFICIAL, help="folder with official_step.py and REPA-E/ "
                                                                     "(a checkout of End2End-Diffusion/REPA-E)")
    args = p.parse_args(argv)
    t_start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).parent))
    results: dict = {"device": args.device, "budget_s": args.budget, "stages": {}}
    with tempfile.TemporaryDirectory(prefix="gpu-session-") as tmp, open(out / LOG, "w") as log:
        chosen = stages(args.device, Path(tmp), args.official)
        if args.device == "cpu":       # stand-ins run slower on a CPU than the real stages on a GPU
            for stage in chosen:
                stage.limit *= 2
        if args.only:
            names = {n.strip() for n in args.only.split(",")}
            chosen = [s for s in chosen if s.name in names]
        for stage in chosen:
            left = args.budget - (time.time() - t_start) - 5           # 5 s to pack what was measured
            results["stages"][stage.name] = run_stage(stage, min(stage.limit, left), log)
            results["session_s"] = round(time.time() - t_start, 1)
            write_results(out, results)
            print(f"{stage.name}: {results['stages'][stage.name]['status']} "
                  f"({results['stages'][stage.name].get('seconds', 0)} s)", flush=True)
    print((out / GOALS).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
