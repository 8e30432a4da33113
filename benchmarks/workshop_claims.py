"""Does the default workshop regime show the paper's claims? vanilla, repa, e2e-diffusion and repa-e on the
`workshop` preset at its full length, 3 seeds, evaluated during training from 1,000 samples (issue 15;
docs/results.md quotes its output).

    .venv/bin/python benchmarks/workshop_claims.py --out runs/claims
    .venv/bin/python benchmarks/workshop_claims.py --out /tmp/smoke --seeds 0 --set steps=6 eval_every=3 eval_n=16

It prints (and writes OUT/workshop_claims.md, OUT/workshop_claims.json, OUT/workshop_fd_against_steps.png, named
apart from paper_claims.py's plot so the two can share a folder): FD at each evaluation and the final class
accuracy and latent spatial variance, mean ± std over the seeds, and the speed-up: the steps repa-e needs to reach
the final FD of repa and of vanilla. Finished runs are reused, so a second call only prints; an interrupted one
resumes.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from repae_lab.experiments.claims import (PROTOCOL, Arm, by_arm, collect, fd_at_each_evaluation, fd_plot,
                                          markdown_table, speedup_rows, spread, train_arms, write_json)
from repae_lab.config import parse_overrides

ARMS = (Arm("vanilla", "vanilla"), Arm("repa", "repa"), Arm("e2e-diffusion", "e2e-diffusion"), Arm("repa-e", "repa-e"))


def report(results, arms, seeds, wall_s: float, command: str) -> str:
    names = [a.name for a in arms]
    groups = by_arm(results)
    final = markdown_table(
        ["recipe", "final FD", "class accuracy", "latent spatial variance", "latent total variation", "train s"],
        [[a, spread([r.final_fd for r in groups.get(a, [])]),
          spread([r.final_accuracy for r in groups.get(a, [])], 3),
          spread([r.probe("spatial_var") for r in groups.get(a, [])], 3),
          spread([r.probe("total_variation") for r in groups.get(a, [])], 1),
          spread([r.seconds for r in groups.get(a, [])], 0)] for a in names])
    speed = markdown_table(["reference", "its final FD", "steps repa-e needs", "speed-up", "seeds reached"],
                           speedup_rows(results, "repa-e", ["repa", "vanilla"]))
    return "\n\n".join([
        f"seeds {list(seeds)}; mean ± std over seeds; wall time {wall_s / 60:.1f} min; `{command}`",
        "### FD at each evaluation", fd_at_each_evaluation(results, names),
        "### At the end of training", final, "### Speed-up of repa-e (the paper: 17x over REPA, 45x over SiT)", speed])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/claims", help="shared with paper_claims.py, which reuses these runs")
    parser.add_argument("--preset", default="workshop")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=3, help="runs trained at once (one thread each)")
    parser.add_argument("--set", dest="sets", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run (after the benchmark's protocol)")
    args = parser.parse_args()
    out = Path(args.out)
    common = {**PROTOCOL, **parse_overrides(args.sets)}
    t0 = time.time()
    train_arms(out, args.preset, [(ARMS, args.seeds)], common, processes=args.jobs)
    results = collect(out, ARMS, args.seeds)
    command = "python benchmarks/workshop_claims.py " + " ".join(
        [f"--out {args.out}", f"--seeds {' '.join(map(str, args.seeds))}"] + ([f"--set {' '.join(args.sets)}"] if args.sets else []))
    text = report(results, ARMS, args.seeds, time.time() - t0, command)
    fd_plot(results, [a.name for a in ARMS], out / "workshop_fd_against_steps.png",
            title=f"{args.preset} preset, {len(args.seeds)} seeds: FD against steps (mean, min-max band)")
    (out / "workshop_claims.md").write_text(text + "\n")
    write_json(out / "workshop_claims.json", results, {"command": command, "common": common})
    print(text)
    print(f"\nwritten: {out / 'workshop_claims.md'}, {out / 'workshop_fd_against_steps.png'}")


if __name__ == "__main__":
    main()
