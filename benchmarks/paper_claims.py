"""Every claim of REPA-E tested at workshop scale (issue 12; docs/results.md quotes its output).

    .venv/bin/python benchmarks/paper_claims.py --out runs/claims            # the whole benchmark
    .venv/bin/python benchmarks/paper_claims.py --out runs/claims --quick    # one seed
    .venv/bin/python benchmarks/paper_claims.py --out /tmp/smoke --smoke           # CI: a handful of steps
    .venv/bin/python benchmarks/paper_claims.py --out runs/claims --only followups # iREPA / HASTE arms alone

At equal steps and 3 seeds each it trains the four recipes, the three repa-e ablations, a control whose VAE
trains on its regularisation losses only (vae_align_proj_coeff=0: a VAE that merely trained longer), REPA with
an untrained target encoder, and the two-stage use (a fresh SiT with repa on the frozen, exported E2E-VAE of the
repa-e run, against the repa run on the original VAE). Then, to find where end-to-end tuning helps most, repa
against repa-e in four other regimes (one seed; --quick runs seed 0 and the first regime). It writes OUT/paper_claims.md (the tables,
with mean ± std over seeds and a verdict per claim), OUT/paper_claims.json and the PNG plots, and prints the
tables. Finished runs are reused and interrupted ones resume: run the same command again after a stop.

The REPA follow-ups (docs/repa_followups.md) have arms of their own: repa and repa-e each with iREPA (conv
projector + spatial target normalisation) and each with HASTE (the REPA term stopped halfway), against the repa
and repa-e arms at the same seeds. They write OUT/repa_followups.md and .json, with a verdict per claim.
`--only` picks parts: claims (the sections 1-6 and their verdicts), regimes (section 7), followups.

The speed-up search (`--only search`, never part of the default: hours of CPU) runs repa against repa-e in
regimes that each change one knob of the default one, identically for both recipes, at 3 seeds
(repae_lab/experiments/speedup_search.py); it prints its estimated CPU time first and writes
OUT/speedup_search.md and .json. `--regimes a,b` and `--search-seeds 0` run it in pieces; `--dry-run` prints
the plan and the estimate only:

    .venv/bin/python benchmarks/paper_claims.py --out runs/claims --only search --dry-run
    .venv/bin/python benchmarks/paper_claims.py --out runs/claims --only search --regimes latent-c8,sit-W
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from repae_lab.experiments.claims import (IREPA, PROTOCOL, Arm, by_arm, collect, fd_at_each_evaluation, fd_plot,
                                          markdown_table, mean, probe_curve_plot, reached_speedups, seed_pairs,
                                          speedup, speedup_row, speedup_rows, spread, train_arms, write_json)
from repae_lab.config import parse_overrides
from repae_lab.experiments import speedup_search

MAIN_ARMS = (
    Arm("vanilla", "vanilla"), Arm("repa", "repa"), Arm("e2e-diffusion", "e2e-diffusion"), Arm("repa-e", "repa-e"),
    Arm("repa-e no stop-grad", "repa-e", {"stop_grad": False}, note="the diffusion loss also reaches the VAE"),
    Arm("repa-e no BN", "repa-e", {"latent_norm": False}, note="latent BatchNorm frozen at the start"),
    Arm("repa-e no VAE reg", "repa-e", {"vae_reg": False}, note="no L1 / perceptual / KL / GAN on the VAE"),
    Arm("control: VAE reg only", "repa-e", {"vae_align_proj_coeff": 0.0},
        note="the VAE trains on its regularisation losses only, as long"),
    Arm("repa untrained target", "repa", {"encoder_steps": 0}, note="REPA towards a randomly initialised encoder"),
    Arm("repa on E2E-VAE", "on-frozen-e2e-vae", on_e2e_vae_of="repa-e",
        note="fresh SiT, frozen exported E2E-VAE of the repa-e run (Tab. 9)"),
)
# where might end-to-end tuning help most? repa against repa-e, each regime with its own overrides
REGIMES = {
    "VAE from scratch (Tab. 8)": {"vae_pretrain_steps": 0},
    "weaker starting VAE (50 pretraining steps)": {"vae_pretrain_steps": 50},
    "larger latent (8 channels)": {"vae": "workshop-16-c8"},
    "longer run (2x steps)": {"steps": "2x"},
}
# the REPA follow-ups, on the recipes that use REPA; "half" = the run's steps // 2. HASTE stops at a fixed
# iteration (250K of its SiT-XL/2 runs); halfway is where a workshop run's FD curve begins to flatten.
FOLLOWUP_ARMS = (
    Arm("repa iREPA", "repa", IREPA, note="conv projector + spatially normalised targets (arXiv 2512.10794)"),
    Arm("repa-e iREPA", "repa-e", IREPA, note="the same on both REPA terms of repa-e"),
    Arm("repa HASTE", "repa", {"repa_stop_step": "half"}, note="REPA term off from half the run (arXiv 2505.16792)"),
    Arm("repa-e HASTE", "repa-e", {"repa_stop_step": "half"}, note="both REPA terms off from half the run"),
)
FOLLOWUP_BASELINES = ("repa", "repa-e")      # the MAIN_ARMS the follow-ups are compared with
PARTS = ("claims", "regimes", "followups")   # what runs without --only
SEARCH = "search"                             # only when named: the speed-up search takes hours
SETTINGS = {   # what --quick and --smoke change; the full benchmark is the preset at its length
    # the regimes are a search (where does E2E help most?), run at one seed to keep the whole under 2 hours
    "full": dict(seeds=[0, 1, 2], regime_seeds=[0], common={}),
    # seed 0 of the full benchmark (its runs are reused by it), and one regime; the four recipes are also
    # workshop_claims.py's seed-0 runs when --out is the same folder
    "quick": dict(seeds=[0], regime_seeds=[0], common={},
                  skip_regimes=tuple(r for r in REGIMES if r != "VAE from scratch (Tab. 8)")),
    # one regime (the section still comes out), and seeds 0 and 1 of the rest: workshop_claims.py's smoke
    # reuses those four recipes' runs (tests/test_claims.py)
    "smoke": dict(seeds=[0, 1], regime_seeds=[0],
                  skip_regimes=tuple(r for r in REGIMES if r != "longer run (2x steps)"), common={
        "steps": 6, "batch_size": 8, "vae_pretrain_steps": 20, "encoder_steps": 30, "probe_size": 20,
        "snapshot_recons": 4, "latent_stats_batches": 1, "log_every": 1, "snapshot_every": 3, "checkpoint_every": 3,
        "eval_every": 3, "eval_n": 16, "eval_steps": 2}),
}


def regime_arms(steps: int, skip=()) -> list[Arm]:
    arms = []
    for i, (regime, overrides) in enumerate(REGIMES.items()):
        if regime in skip:
            continue
        overrides = {k: (2 * steps if v == "2x" else v) for k, v in overrides.items()}
        if "steps" in overrides:          # keep the checkpoint cadence a divisor of the longer run
            overrides["checkpoint_every"] = overrides["steps"] // 2
        arms += [Arm(f"R{i + 1} {recipe}", recipe, overrides, note=regime) for recipe in ("repa", "repa-e")]
    return arms


def followup_arms(steps: int) -> list[Arm]:
    """FOLLOWUP_ARMS with "half" resolved against the run length."""
    return [Arm(a.name, a.recipe, {k: (steps // 2 if v == "half" else v) for k, v in a.overrides.items()},
                note=a.note) for a in FOLLOWUP_ARMS]


def baseline_arms() -> list[Arm]:
    return [a for a in MAIN_ARMS if a.name in FOLLOWUP_BASELINES]


def write_followups_report(out: Path, results, seeds, wall_s: float, command: str) -> str:
    """OUT/repa_followups.md: FD curves, speed-ups and one verdict per claim of iREPA and HASTE, each from the
    numbers of its arm and its baseline at the same seeds."""
    g = by_arm(results)
    fmt = lambda x, d=2: "-" if x is None else f"{x:.{d}f}"
    finals = {a: [r.final_fd for r in g.get(a, [])] for a in list(FOLLOWUP_BASELINES) + [a.name for a in FOLLOWUP_ARMS]}
    fd = {a: mean(v) for a, v in finals.items()}
    names = list(FOLLOWUP_BASELINES) + [a.name for a in FOLLOWUP_ARMS]
    fd_plot(results, names, out / "followups_fd_against_steps.png", title="FD against steps, REPA follow-ups")
    pairs = [(base, f"{base} {method}") for method in ("iREPA", "HASTE") for base in FOLLOWUP_BASELINES]
    rows = [speedup_row(f"{arm} against {base}", g.get(base, []), g.get(arm, [])) for base, arm in pairs]
    claims = []
    for base in FOLLOWUP_BASELINES:
        arm = f"{base} iREPA"
        ups = reached_speedups(g.get(base, []), g.get(arm, []))
        claims.append(verdict(holds(lambda x: x > 1.0, mean(ups)), f"iREPA speeds up {base}",
                              f"speed-up to {base}'s final FD {fmt(mean(ups))}x (0 where it never got there); final "
                              f"FD {fmt(fd[arm])} against {fmt(fd[base])}", (ups, [1.0] * len(ups))))
    for base in FOLLOWUP_BASELINES:
        arm = f"{base} HASTE"
        claims.append(verdict(holds(lambda haste, full: haste < full, fd[arm], fd[base]),
                              f"stopping {base}'s REPA term halfway (HASTE) ends at a better FD than keeping it",
                              f"final FD {fmt(fd[arm])} against {fmt(fd[base])}", (finals[arm], finals[base])))
    sections = [f"Seeds {list(seeds)}; mean ± std over seeds; FD from the in-training evaluations (workshop "
                f"evaluator); wall time {wall_s / 60:.1f} min; `{command}`",
                "### Which follow-up claims reproduce at this scale", "\n".join(claims),
                "### Arms", markdown_table(["arm", "what it is", "final FD", "class accuracy"],
                    [[a, next((x.note for x in FOLLOWUP_ARMS if x.name == a), "the baseline"),
                      spread(finals[a]), spread([r.final_accuracy for r in g.get(a, [])], 3)] for a in names]),
                "### FD against steps", "![FD against steps](followups_fd_against_steps.png)",
                fd_at_each_evaluation(results, names),
                "### Speed-up to the baseline's final FD", markdown_table(
                    ["arm against its baseline", "baseline final FD", "steps the arm needs", "speed-up", "seeds reached"],
                    rows)]
    text = "\n\n".join(sections) + "\n"
    (out / "repa_followups.md").write_text(text)
    return text


def channel_std_table(groups, arms) -> str:
    channels = max((len(r.channel_std()) for a in arms for r in groups.get(a, [])), default=0)
    return markdown_table(["per-channel latent std at the end"] + [f"channel {c}" for c in range(channels)],
                          [[a] + [spread([r.channel_std()[c] for r in groups.get(a, []) if len(r.channel_std()) > c], 3)
                                  for c in range(channels)] for a in arms])


def verdict(ok: bool | None, claim: str, evidence: str, values: tuple = ()) -> str:
    """One line per claim. `values`: the per-seed numbers of the two arms compared; a claim that holds on the
    means but whose gap is smaller than either arm's seed spread is said to be within the spread, and one seed
    is said to be one seed, whether the claim holds or not."""
    mark = "reproduces here" if ok else ("does not reproduce here" if ok is not None else "not measured here")
    if ok is not None and len(values) == 2:          # one seed, or a gap inside the spread, either way
        a, b = ([v for v in vs if v is not None] for vs in values)
        order = "as claimed" if ok else "against the claim"
        if min(len(a), len(b)) < 2:
            mark += " (one seed: no spread to judge it by)"
        elif abs(mean(a) - mean(b)) <= max(statistics.stdev(a), statistics.stdev(b)):
            mark = f"within the seed spread here (the means order {order}; the gap is not larger than the spread)"
    return f"- **{claim}**: {mark}; {evidence}."


def holds(test, *values) -> bool | None:
    """test(*values), or None ("not measured") when any value is missing."""
    return None if any(v is None for v in values) else test(*values)


def write_report(out: Path, results, arms, regimes, seeds, wall_s: float, command: str) -> str:
    g = by_arm(results)
    names = [a.name for a in arms]
    finals = {a: [r.final_fd for r in g.get(a, [])] for a in names + [a.name for a in regimes]}
    fd = {a: mean(values) for a, values in finals.items()}
    fmt = lambda x, d=2: "-" if x is None else f"{x:.{d}f}"
    sections = [f"Seeds {list(seeds)}; mean ± std over seeds; FD from the in-training evaluations "
                f"(workshop evaluator, an encoder independent of the REPA target); wall time {wall_s / 60:.1f} min; "
                f"`{command}`"]

    # 1. Table 1 analogue
    sections += ["### 1. Latent structure at the end of training (Table 1 analogue)", markdown_table(
        ["arm", "what it is", "spatial variance", "total variation", "final FD", "class accuracy"],
        [[a.name, a.note or a.recipe, spread([r.probe("spatial_var") for r in g.get(a.name, [])], 3),
          spread([r.probe("total_variation") for r in g.get(a.name, [])], 1),
          spread([r.final_fd for r in g.get(a.name, [])]),
          spread([r.final_accuracy for r in g.get(a.name, [])], 3)] for a in arms])]
    # 2. FD against steps and the speed-up
    fd_plot(results, names[:4], out / "fd_against_steps.png", title="FD against steps, the four recipes")
    fd_plot(results, names, out / "fd_against_steps_all.png", title="FD against steps, every arm")
    sections += ["### 2. FD against steps and the speed-up", "![FD against steps](fd_against_steps.png)",
                 fd_at_each_evaluation(results, names),
                 markdown_table(["reference", "its final FD", "steps repa-e needs", "speed-up", "seeds reached"],
                                speedup_rows(results, "repa-e", ["repa", "vanilla"])),
                 "The paper: 17x over REPA, 45x over vanilla SiT (at 4M and 400K steps of ImageNet)."]
    # 3. ablations
    ablations = ["repa-e", "repa-e no stop-grad", "repa-e no BN", "repa-e no VAE reg", "control: VAE reg only"]
    sections += ["### 3. Ablations (the paper: no BN 18.1 vs 16.3 gFID, no stop-gradient 444)", markdown_table(
        ["arm", "final FD", "latent spatial variance", "VAE rPSNR at the end"],
        [[a, spread([r.final_fd for r in g.get(a, [])]), spread([r.probe("spatial_var") for r in g.get(a, [])], 3),
          spread([r.eval_at("eval/rpsnr") for r in g.get(a, [])])] for a in ablations])]
    # 4. drop-in
    sections += ["### 4. The E2E-VAE as a drop-in (the paper's Table 9)", markdown_table(
        ["fresh SiT trained with repa on", "final FD", "class accuracy"],
        [[label, spread([r.final_fd for r in g.get(a, [])]),
          spread([r.final_accuracy for r in g.get(a, [])], 3)]
         for label, a in (("the original VAE (the repa arm)", "repa"), ("the exported E2E-VAE", "repa on E2E-VAE"))])]
    # 5. CKNNA and channel std over training
    probe_curve_plot(results, ["repa", "repa-e"], "cknna/sit_t50", out / "cknna_over_training.png",
                     title="CKNNA of SiT tokens (t=0.5) with the REPA target", ylabel="CKNNA")
    probe_curve_plot(results, names[:4], "latent_std", out / "latent_std_over_training.png",
                     title="std of the latent over training", ylabel="latent std")
    steps = sorted({s for r in g.get("repa-e", []) for s in r.probes})
    sections += ["### 5. Alignment and latent scale over training", "![CKNNA](cknna_over_training.png)",
                 "![latent std](latent_std_over_training.png)", markdown_table(
                     ["CKNNA SiT t=0.5 at step"] + [str(s) for s in steps],
                     [[a] + [spread([r.probe("cknna/sit_t50", s) for r in g.get(a, []) if s in r.probes], 3)
                             for s in steps] for a in ("repa", "repa-e")]),
                 channel_std_table(g, names[:4])]
    # 6. reconstruction before / after
    sections += ["### 6. The VAE's reconstruction before and after end-to-end tuning", markdown_table(
        ["arm", "rPSNR at step 0", "rPSNR at the end", "rFD at step 0", "rFD at the end"],
        [[a, spread([r.eval_at("eval/rpsnr", first=True) for r in g.get(a, [])]),
          spread([r.eval_at("eval/rpsnr") for r in g.get(a, [])]),
          spread([r.eval_at("eval/rfd_workshop", first=True) for r in g.get(a, [])]),
          spread([r.eval_at("eval/rfd_workshop") for r in g.get(a, [])])]
         for a in ("e2e-diffusion", "repa-e", "control: VAE reg only")])]
    # 7. where end-to-end tuning helps most
    compared = [("the default regime", g.get("repa", []), g.get("repa-e", []))]
    run_regimes = {a.note for a in regimes}          # the ones this setting trained (--quick skips some)
    compared += [(regime, g.get(f"R{i + 1} repa", []), g.get(f"R{i + 1} repa-e", []))
                 for i, regime in enumerate(REGIMES) if regime in run_regimes]
    rows, measured = [], []
    for label, repa, repae in compared:
        _, repa_fd, _, found, n = speedup_row(label, repa, repae)
        rows.append([label, repa_fd, spread([r.final_fd for r in repae]), found, n])
        if (speedup_mean := mean([speedup(s_, f_)[1] for s_, f_ in seed_pairs(repa, repae)])) is not None:
            measured.append((speedup_mean, label))
    best = max(measured, default=None)
    sections += ["### 7. Where end-to-end tuning helps most (repa-e against repa, speed-up to repa's final FD)",
                 markdown_table(["regime", "repa final FD", "repa-e final FD", "speed-up", "seeds reached"], rows),
                 (f"The best speed-up found: {best[0]:.2f}x, {best[1]}." if best else "No speed-up measured.")
                 + " \"at least\": repa-e reached repa's final FD before its first evaluation after the start, so "
                   "only a bound is known."]
    # verdicts, each from the numbers above
    svs = {a: [r.probe("spatial_var") for r in g.get(a, [])] for a in names}
    sv = {a: mean(values) for a, values in svs.items()}
    speedups = [speedup(s_, f_)[1] for s_, f_ in seed_pairs(g.get("repa", []), g.get("repa-e", []))]
    su = mean(speedups)
    claims = [
        verdict(holds(lambda e2e, repae: e2e > 1.2 * repae, fd["e2e-diffusion"], fd["repa-e"]),
                "naive end-to-end tuning with the diffusion loss degrades generation",
                f"final FD {fmt(fd['e2e-diffusion'])} against repa-e's {fmt(fd['repa-e'])}",
                (finals["e2e-diffusion"], finals["repa-e"])),
        verdict(holds(lambda e2e, repa: e2e < 0.5 * repa, sv["e2e-diffusion"], sv["repa"]),
                "and collapses the latent (Table 1)",
                f"spatial variance {fmt(sv['e2e-diffusion'], 3)} against {fmt(sv['repa'], 3)} with the VAE frozen",
                (svs["e2e-diffusion"], svs["repa"])),
        verdict(holds(lambda repae, repa: repae < repa, fd["repa-e"], fd["repa"]),
                "repa-e beats repa at equal steps", f"final FD {fmt(fd['repa-e'])} against {fmt(fd['repa'])}",
                (finals["repa-e"], finals["repa"])),
        verdict(holds(lambda x: x > 1.0, su), "repa-e reaches repa's final FD in fewer steps (Fig. 1; 17x)",
                f"speed-up {fmt(su)}x against the paper's 17x", (speedups, [1.0] * len(speedups))),
        verdict(holds(lambda ablated, repae: ablated > 1.2 * repae, fd["repa-e no stop-grad"], fd["repa-e"]),
                "the stop-gradient is needed (Table 4)", f"{fmt(fd['repa-e no stop-grad'])} against {fmt(fd['repa-e'])}",
                (finals["repa-e no stop-grad"], finals["repa-e"])),
        verdict(holds(lambda ablated, repae: ablated > repae, fd["repa-e no BN"], fd["repa-e"]),
                "the latent BatchNorm helps (Table 4)", f"{fmt(fd['repa-e no BN'])} against {fmt(fd['repa-e'])}",
                (finals["repa-e no BN"], finals["repa-e"])),
        verdict(holds(lambda control, repae: control > repae, fd["control: VAE reg only"], fd["repa-e"]),
                "the gain comes from the REPA signal into the VAE, not from a VAE that trained longer",
                f"control {fmt(fd['control: VAE reg only'])} against repa-e {fmt(fd['repa-e'])}",
                (finals["control: VAE reg only"], finals["repa-e"])),
        verdict(holds(lambda untrained, repa: untrained > repa, fd["repa untrained target"], fd["repa"]),
                "the target encoder's quality matters (an untrained one helps less)",
                f"{fmt(fd['repa untrained target'])} against a trained target's {fmt(fd['repa'])}",
                (finals["repa untrained target"], finals["repa"])),
        verdict(holds(lambda e2e_vae, original: e2e_vae < original, fd["repa on E2E-VAE"], fd["repa"]),
                "the E2E-VAE is a better drop-in latent space for a fresh SiT (Table 9)",
                f"{fmt(fd['repa on E2E-VAE'])} against {fmt(fd['repa'])} on the original VAE",
                (finals["repa on E2E-VAE"], finals["repa"])),
    ]
    sections[1:1] = ["### Which claims reproduce at this scale", "\n".join(claims)]
    text = "\n\n".join(sections) + "\n"
    (out / "paper_claims.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/claims", help="shared with workshop_claims.py: its runs are reused")
    parser.add_argument("--preset", default="workshop")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="one seed, one regime (30 minutes or less on 2 cores)")
    size.add_argument("--smoke", action="store_true", help="a handful of steps: checks that the tables and plots come out")
    parser.add_argument("--jobs", type=int, default=3, help="runs trained at once (one thread each)")
    parser.add_argument("--no-regimes", action="store_true", help="leave out section 7 (where E2E helps most)")
    parser.add_argument("--only", nargs="+", choices=PARTS + (SEARCH,), default=list(PARTS),
                        help="train and report only these parts (default: all but the search)")
    parser.add_argument("--regimes", metavar="NAME,...", help="the speed-up search's regimes (default: all of: "
                        + ", ".join(r.name for r in speedup_search.SEARCH_REGIMES) + ")")
    parser.add_argument("--search-seeds", type=int, nargs="+", default=[0, 1, 2], help="the search's seeds")
    parser.add_argument("--dry-run", action="store_true", help="print the search's runs and estimate; train nothing")
    parser.add_argument("--set", dest="sets", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if (args.regimes or args.dry_run) and SEARCH not in args.only:
        parser.error("--regimes and --dry-run are for the speed-up search: add --only search")
    from repae_lab.config import resolve_config

    setting = SETTINGS["smoke" if args.smoke else "quick" if args.quick else "full"]
    out = Path(args.out)
    common = {**PROTOCOL, **setting["common"], **parse_overrides(args.sets)}
    resolved = resolve_config(args.preset, overrides=dict(common))
    steps = resolved.steps
    only = set(args.only)
    regimes = [] if args.no_regimes or "regimes" not in only else regime_arms(steps, setting.get("skip_regimes", ()))
    main_arms = list(MAIN_ARMS) if "claims" in only else (baseline_arms() if "followups" in only else [])
    followups = followup_arms(steps) if "followups" in only else []
    search, search_arms, skipped = [], [], []
    if SEARCH in only:
        try:
            search, skipped = speedup_search.select(args.regimes, common)
        except ValueError as err:
            parser.error(str(err))
        search_arms = speedup_search.search_arms(search, steps, resolved.log_every)
        print("\n".join(skipped + [speedup_search.estimate(out, search, args.search_seeds, steps)[1]]))
        if args.dry_run:
            print("\n".join(f"  {a.name}: {a.recipe}, {a.overrides or 'no overrides'}, seeds {args.search_seeds}"
                             for a in search_arms))
            return
    t0 = time.time()
    groups = [(main_arms + followups, setting["seeds"])] + ([(regimes, setting["regime_seeds"])] if regimes else [])
    groups = [g for g in groups + [(search_arms, args.search_seeds)] if g[0]]    # no networks for no runs
    if groups:
        train_arms(out, args.preset, groups, common, processes=args.jobs,
                   shared_variants=speedup_search.shared_variants(search))
    command = (f"python benchmarks/paper_claims.py --out {args.out}" + (" --quick" if args.quick else "")
               + (" --smoke" if args.smoke else "") + (f" --set {' '.join(args.sets)}" if args.sets else "")
               + (f" --only {' '.join(args.only)}" if only != set(PARTS) else "")
               + (f" --regimes {args.regimes}" if args.regimes else "")
               + (f" --search-seeds {' '.join(map(str, args.search_seeds))}" if SEARCH in only else ""))
    if "claims" in only or regimes:
        results = collect(out, MAIN_ARMS, setting["seeds"]) + (collect(out, regimes, setting["regime_seeds"]) if regimes else [])
        text = write_report(out, results, MAIN_ARMS, regimes, setting["seeds"], time.time() - t0, command)
        write_json(out / "paper_claims.json", results, {"command": command, "common": common,
                                                         "arms": {a.name: a.note for a in list(MAIN_ARMS) + regimes}})
        print(text)
        print(f"written: {out / 'paper_claims.md'} and its plots")
    if followups:
        results = collect(out, baseline_arms() + followups, setting["seeds"])
        text = write_followups_report(out, results, setting["seeds"], time.time() - t0, command)
        write_json(out / "repa_followups.json", results, {"command": command, "common": common,
                                                           "arms": {a.name: a.note for a in followups}})
        print(text)
        print(f"written: {out / 'repa_followups.md'} and its plot")
    if SEARCH in only:               # a report even when every regime was skipped: it says why
        results = collect(out, search_arms, args.search_seeds, probes=False)
        print(speedup_search.write_report(out, results, search, args.search_seeds, skipped, time.time() - t0,
                                          command, common))
        print(f"written: {out / 'speedup_search.md'} and .json")


if __name__ == "__main__":
    main()
