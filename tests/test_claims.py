"""The claims benchmarks (benchmarks/workshop_claims.py, benchmarks/paper_claims.py) and notebook 08: the
arithmetic of speed-ups and spreads, and a smoke run of each that checks the tables and plots come out."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, logged_losses
from repae_lab.experiments.claims import FD_KEY, Arm, RunResult, by_arm, speedup, spread, steps_to_reach, train_arms
from repae_lab.experiments.claims_output import load_claims, load_followups

SMOKE = ["steps=6", "batch_size=8", "vae_pretrain_steps=20", "encoder_steps=30", "probe_size=20", "snapshot_recons=4",
         "latent_stats_batches=1", "log_every=1", "snapshot_every=3", "checkpoint_every=3", "eval_every=3",
         "eval_n=16", "eval_steps=2"]


def _result(arm: str, fd: list[tuple[int, float]], seed: int = 0) -> RunResult:
    return RunResult(arm, seed, Path(arm), {}, [{"step": s, "kind": "eval", FD_KEY: v} for s, v in fd], 0.0)


def test_steps_to_reach_interpolates_between_evaluations():
    curve = [(0, 40.0), (100, 20.0), (200, 10.0), (300, 12.0), (400, 5.0)]
    assert steps_to_reach(curve, 15.0) == 150.0
    assert steps_to_reach(curve, 10.0) == 200.0
    assert steps_to_reach(curve, 4.0) is None
    assert steps_to_reach(curve, 50.0) == 0.0


def test_speedup_is_the_reference_length_over_the_steps_needed():
    slow = _result("repa", [(0, 40.0), (200, 20.0), (400, 10.0)])
    fast = _result("repa-e", [(0, 40.0), (100, 20.0), (200, 10.0), (400, 5.0)])
    assert speedup(slow, fast) == (200.0, 2.0)
    assert speedup(fast, slow) == (None, None)                # never reaches 5.0
    flat = _result("vanilla", [(0, 40.0), (400, 41.0)])       # never got below the start: no reading
    assert speedup(flat, fast) == (None, None)


def test_spread_gives_mean_and_sample_std_of_what_exists():
    assert spread([1.0, 3.0]) == "2.00 ± 1.41"
    assert spread([2.0, None]) == "2.00"
    assert spread([None, float("nan")]) == "-"


def test_a_two_stage_arm_must_name_an_arm(tmp_path):
    with pytest.raises(ValueError, match="not an arm"):
        train_arms(tmp_path, "workshop", [([Arm("x", "on-frozen-e2e-vae", on_e2e_vae_of="repa-e")], [0])])


def test_notebook_08_says_which_command_makes_the_results(tmp_path):
    with pytest.raises(ValueError, match="benchmarks/paper_claims.py --out"):
        load_claims(tmp_path)


def _bench(script: str, out: Path, cache: str, *args: str) -> str:
    cmd = [sys.executable, f"benchmarks/{script}", "--out", str(out), *args, "--set", *SMOKE, f"cache_dir={cache}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def claims_smoke(tmp_path_factory, encoder_cache) -> tuple[Path, str]:
    """One `paper_claims.py --smoke` (every part) and what it printed. The workshop_claims and search smokes
    then run into its folder, as a user's second benchmark would: runs with the same name and settings are
    reused, not trained again (and each smoke stays a few minutes shorter)."""
    out = tmp_path_factory.mktemp("claims") / "pc"
    return out, _bench("paper_claims.py", out, encoder_cache, "--smoke")


@pytest.mark.slow
def test_workshop_claims_smoke_prints_the_table_and_reuses_its_runs(claims_smoke, encoder_cache):
    out, _ = claims_smoke                   # paper_claims' four recipes at seeds 0 and 1 are these runs
    text = _bench("workshop_claims.py", out, encoder_cache, "--seeds", "0", "1")
    assert text.count("finished already: reused") == 8
    for heading in ("FD at each evaluation", "At the end of training", "Speed-up of repa-e"):
        assert heading in text
    assert "| repa-e |" in text and " ± " in text                # two seeds: mean ± std
    assert (out / "workshop_fd_against_steps.png").stat().st_size > 1000     # not paper_claims' plot
    data = json.loads((out / "workshop_claims.json").read_text())
    assert sorted({(r["arm"], r["seed"]) for r in data["runs"]}) == sorted(
        (a, s) for a in ("vanilla", "repa", "e2e-diffusion", "repa-e") for s in (0, 1))
    assert all([s for s, _ in r["fd"]] == [0, 3, 6] for r in data["runs"])


@pytest.mark.slow
def test_paper_claims_smoke_writes_every_table_and_plot_and_notebook_08_shows_them(claims_smoke, tmp_path):
    out, text = claims_smoke
    for heading in ("Which claims reproduce", "1. Latent structure", "2. FD against steps", "3. Ablations",
                    "4. The E2E-VAE as a drop-in", "5. Alignment and latent scale", "6. The VAE's reconstruction",
                    "7. Where end-to-end tuning helps most"):
        assert heading in text, heading
    for arm in ("repa-e no stop-grad", "control: VAE reg only", "repa untrained target", "repa on E2E-VAE"):
        assert f"| {arm} |" in text, arm
    verdicts = [l for l in text.splitlines() if l.startswith("- **")]
    # a verdict per claim: the paper's 9, then the 4 of the REPA follow-ups (they run too when --only is not given)
    assert len(verdicts) == 9 + 4 and all(" here" in l for l in verdicts)
    for png in ("fd_against_steps.png", "fd_against_steps_all.png", "cknna_over_training.png",
                "latent_std_over_training.png"):
        assert (out / png).stat().st_size > 1000, png
    e2e = json.loads((out / "repa on E2E-VAE-s0" / "config.json").read_text())
    assert e2e["recipe"] == "on-frozen-e2e-vae" and e2e["vae"] == str((out / "e2e-vae" / "repa-e-s0").resolve())
    assert json.loads((out / "repa untrained target-s0" / "config.json").read_text())["encoder_steps"] == 0

    from repae_lab.notebooks.runner import run_notebook

    summary = run_notebook(ROOT / "notebooks" / "08_paper_claims.ipynb", tmp_path / "nb", {"results": str(out)},
                           kernel="python3")
    assert summary["status"] == "ok", summary["error"]
    assert any(k.startswith("final FD/repa-e/") for k in summary["headline"])
    html = (tmp_path / "nb" / summary["html"]).read_text()
    assert "Which claims reproduce" in html and "image/png" in html
    # the REPA follow-ups ran with the rest (no --only): their own report, and notebook 08's section shows it
    followups = (out / "repa_followups.md").read_text()
    assert len([l for l in followups.splitlines() if l.startswith("- **")]) == 4
    for arm in ("repa iREPA", "repa-e iREPA", "repa HASTE", "repa-e HASTE"):
        assert f"| {arm} |" in followups, arm
    assert json.loads((out / "repa-e HASTE-s0" / "config.json").read_text())["repa_stop_step"] == 3
    assert json.loads((out / "repa iREPA-s0" / "config.json").read_text())["projector"] == "conv"
    assert "Which follow-up claims reproduce" in html


def _paper_claims_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("paper_claims", ROOT / "benchmarks" / "paper_claims.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_a_verdict_says_when_it_rests_on_one_seed_or_sits_inside_the_spread_whichever_way_it_goes():
    verdict = _paper_claims_module().verdict
    assert "one seed" in verdict(True, "c", "e", ([1.0], [2.0]))
    assert "does not reproduce here (one seed" in verdict(False, "c", "e", ([2.0], [1.0]))
    inside = verdict(False, "c", "e", ([1.0, 1.4], [0.9, 1.3]))
    assert "within the seed spread" in inside and "against the claim" in inside
    assert "as claimed" in verdict(True, "c", "e", ([0.9, 1.3], [1.0, 1.4]))
    assert verdict(True, "c", "e", ([0.1, 0.11], [1.0, 1.01])).startswith("- **c**: reproduces here;")
    assert "not measured" in verdict(None, "c", "e", ([1.0], [2.0]))


def test_the_follow_up_arms_are_repa_and_repa_e_each_with_irepa_and_with_haste(tmp_path):
    bench = _paper_claims_module()
    arms = {a.name: a for a in bench.followup_arms(500)}
    assert {a.recipe for a in arms.values()} == {"repa", "repa-e"} and len(arms) == 4
    assert arms["repa-e iREPA"].overrides == {"projector": "conv", "target_norm": "spatial"}
    assert arms["repa HASTE"].overrides == {"repa_stop_step": 250}            # halfway through 500 steps
    assert [a.name for a in bench.baseline_arms()] == ["repa", "repa-e"]
    assert load_followups(tmp_path) is None


def test_the_follow_up_report_gives_a_verdict_per_claim_from_the_numbers(tmp_path):
    bench = _paper_claims_module()
    curve = lambda end: [(0, 100.0), (100, 60.0), (200, end)]
    results = [_result("repa", curve(40.0), s) for s in (0, 1)] + [_result("repa-e", curve(30.0), s) for s in (0, 1)]
    results += [_result("repa iREPA", [(0, 100.0), (100, 38.0), (200, 30.0)], s) for s in (0, 1)]
    results += [_result("repa-e iREPA", curve(31.0 + s), s) for s in (0, 1)]
    results += [_result("repa HASTE", curve(45.0 + s), s) for s in (0, 1)]
    text = bench.write_followups_report(tmp_path, results, [0, 1], 60.0, "cmd")
    verdicts = {l.split("**")[1]: l for l in text.splitlines() if l.startswith("- **")}
    assert "reproduces here" in verdicts["iREPA speeds up repa"] and "2.00x" in verdicts["iREPA speeds up repa"]
    assert "does not reproduce" in verdicts["iREPA speeds up repa-e"]
    assert "does not reproduce" in next(v for k, v in verdicts.items() if k.startswith("stopping repa'"))
    assert "not measured" in next(v for k, v in verdicts.items() if k.startswith("stopping repa-e'"))
    assert (tmp_path / "repa_followups.md").read_text() == text


def test_paper_claims_quick_is_seed_0_of_the_full_benchmark_so_the_full_reuses_its_runs():
    """--quick trains a subset of the full benchmark's (arm, seed) runs with the same settings: run after it,
    the full benchmark starts from the quick one's finished runs."""
    bench = _paper_claims_module()
    quick, full = bench.SETTINGS["quick"], bench.SETTINGS["full"]
    assert quick["common"] == full["common"] == {}
    assert set(quick["seeds"]) <= set(full["seeds"]) and set(quick["regime_seeds"]) <= set(full["regime_seeds"])
    quick_arms = {a.name for a in bench.regime_arms(500, quick.get("skip_regimes", ()))}
    full_arms = {a.name for a in bench.regime_arms(500, full.get("skip_regimes", ()))}
    assert quick_arms < full_arms and len(quick_arms) == 2


def test_a_job_that_needs_another_run_starts_as_soon_as_that_run_is_done(tmp_path, monkeypatch):
    """The two-stage arm waits for its E2E-VAE's run, and the free core meanwhile trains the next job."""
    import repae_lab.jobs.parallel_training as pt
    from repae_lab.rundir import RunError

    events, polls = [], {"a": 4, "b": 1, "c": 1, "d": 1}

    class FakeRun:                          # a training process that finishes after a few polls
        def __init__(self, run, **kwargs):
            self.run = run
            self.left, self.returncode = polls[self.run.name], None
            events.append(f"start {self.run.name}")

        def poll(self):
            self.left -= 1
            if self.left > 0:
                return None
            self.run.mkdir(parents=True, exist_ok=True)
            for name in ("config.json", "summary.json"):
                (self.run / name).write_text(json.dumps({"steps": 1}))
            self.returncode = 0
            events.append(f"done {self.run.name}")
            return 0

        def terminate(self):
            pass
    monkeypatch.setattr(pt, "start_training", FakeRun)
    monkeypatch.setattr(pt.time, "sleep", lambda s: None)
    job = lambda name, **kw: pt.RunJob(name, tmp_path / name, "workshop", "repa", **kw)
    d = job("d", after=tmp_path / "a", prepare=lambda: events.append("prepare d"))
    pt.train_in_parallel([d, job("a"), job("b"), job("c")], processes=2, log=lambda m: None)
    assert events[:3] == ["start a", "start b", "done b"] and events[3] == "start c"
    assert events.index("prepare d") == events.index("done a") + 1
    assert events.index("start d") == events.index("prepare d") + 1

    with pytest.raises(RunError, match="needs the finished run"):
        pt.train_in_parallel([job("e", after=tmp_path / "never")], processes=2, log=lambda m: None)



@pytest.mark.slow
def test_a_run_trained_in_a_forked_child_is_the_command_lines_run_and_a_failure_is_one_line(tmp_path, tiny):
    """train_in_parallel forks its children from a server that imported the library once (jobs/training_child.py):
    the run must come out bitwise as `python -m repae_lab train` trains it, one thread each."""
    import repae_lab.jobs.parallel_training as pt
    from repae_lab.jobs.training_child import train_command
    from repae_lab.rundir import RunError
    from repae_lab.rundir.checkpoints import latest_good_checkpoint, load_checkpoint

    overrides = tiny(steps=4, checkpoint_every=2)
    forked, command = (pt.RunJob(name, tmp_path / name, "workshop", "repa-e", overrides) for name in ("a", "b"))
    assert pt.train_in_parallel([forked], processes=2, log=lambda m: None) == [forked]
    subprocess.run(train_command(command.run, False, "workshop", "repa-e", overrides), cwd=ROOT, check=True,
                   capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert logged_losses(forked.run) == logged_losses(command.run)
    (a, _), (b, _) = (load_checkpoint(latest_good_checkpoint(run)) for run in (forked.run, command.run))
    assert a.keys() == b.keys() and all(torch.equal(a[g][k], b[g][k]) for g in a for k in a[g])
    assert (tmp_path / "a.log").read_text().startswith(f"run directory: {forked.run}")   # its output in its log

    broken = pt.RunJob("c", tmp_path / "c", "workshop", "repa-e", {**overrides, "dataset": "imagefolder",
                                                                  "data_root": str(tmp_path / "no-such-folder")})
    with pytest.raises(RunError, match=r"training c failed \(.*no-such-folder.*\); its log is .*c\.log"):
        pt.train_in_parallel([broken], processes=2, log=lambda m: None)


def test_without_a_forkserver_the_child_is_the_command_line_with_one_thread(tmp_path, monkeypatch):
    """Where multiprocessing has no forkserver (Windows), a training child is `python -m repae_lab train`."""
    import repae_lab.jobs.training_child as tc

    started = {}
    monkeypatch.setattr(tc, "_forkserver", lambda: None)
    monkeypatch.setattr(tc.subprocess, "Popen", lambda cmd, **kw: started.update(cmd=cmd, **kw) or "child")
    child = tc.start_training(run=tmp_path / "r", resume=False, preset="workshop", recipe="repa",
                              overrides={"steps": 4}, log=tmp_path / "r.log", one_thread=True)
    assert child == "child" and started["cmd"] == [sys.executable, "-m", "repae_lab", "train", "--preset", "workshop",
                                                   "--recipe", "repa", "--out", str(tmp_path / "r"), "--quiet",
                                                   "--set", "steps=4"]
    assert started["env"]["OMP_NUM_THREADS"] == "1" and started["stdout"].name == str(tmp_path / "r.log")

# ---------------------------------------------------------------------------------------------------------
# the speed-up search (paper_claims.py --only search, repae_lab/experiments/speedup_search.py)

def test_every_search_regime_gives_repa_and_repa_e_the_same_settings():
    from repae_lab.experiments import speedup_search as ss

    arms = ss.search_arms(ss.SEARCH_REGIMES, 500, log_every=10)
    assert len(arms) == 2 * len(ss.SEARCH_REGIMES) and len({a.name for a in arms}) == len(arms)
    for repa, repae in zip(arms[::2], arms[1::2]):
        assert (repa.recipe, repae.recipe) == ("repa", "repa-e")
        assert repa.overrides == repae.overrides and repa.note == repae.note
    by_name = {a.name: a for a in arms}
    # half the run, rounded down to the logging cadence: a resumable run checkpoints on a logged step
    assert by_name["S steps-x0.5 repa"].overrides == {"steps": 250, "checkpoint_every": 120}
    assert by_name["R4 repa"].overrides == {"steps": 1000, "checkpoint_every": 500}
    assert by_name["repa"].overrides == {}                  # the default regime is the claims' own repa run
    # every regime but the default changes a knob, and the SiT's width, channels, size and VAE pretraining each
    # have a regime of their own
    assert all(r.overrides for r in ss.SEARCH_REGIMES if r.name != "default")
    keys = {k for r in ss.SEARCH_REGIMES for k in r.overrides}
    assert {"vae_pretrain_steps", "vae", "resolution", "steps", "sit_size"} <= keys


def test_every_search_arm_is_a_valid_config_of_the_preset_it_runs_on():
    """What the command resolves before training: a regime whose settings the config refuses would stop the
    search hours in (half the steps once checkpointed off the logging cadence)."""
    from repae_lab.config import resolve_config
    from repae_lab.experiments import speedup_search as ss

    preset = resolve_config("workshop")
    for arm in ss.search_arms(ss.SEARCH_REGIMES, preset.steps, preset.log_every):
        cfg = resolve_config("workshop", recipe=arm.recipe, overrides=dict(arm.overrides))
        assert all(getattr(cfg, k) == v for k, v in arm.overrides.items() if k != "vae"), arm.name


def test_search_regimes_that_share_another_part_s_runs_have_exactly_that_part_s_settings():
    """Sharing a run folder is sound only when the settings are the same: section 7's regimes, the iREPA
    follow-ups and the claims' repa / repa-e."""
    from repae_lab.experiments import speedup_search as ss

    bench = _paper_claims_module()
    others = {a.name: a for a in [*bench.MAIN_ARMS, *bench.regime_arms(500), *bench.followup_arms(500)]}
    shared = [a for a in ss.search_arms(ss.SEARCH_REGIMES, 500) if a.name in others]
    assert len(shared) == 12                  # default, R1-R4, iREPA: six pairs
    for arm in shared:
        assert (arm.recipe, arm.overrides) == (others[arm.name].recipe, others[arm.name].overrides), arm.name


def test_the_search_selection_picks_regimes_and_names_unknown_ones():
    from repae_lab.experiments import speedup_search as ss

    picked, skipped = ss.select("latent-c8, sit-W,latent-c8", {})
    assert [r.name for r in picked] == ["latent-c8", "sit-W"] and skipped == []
    everything, skipped = ss.select(None, {"download": True})
    assert len(everything) == len(ss.SEARCH_REGIMES) and skipped == []
    with pytest.raises(ValueError, match="unknown regime.*nope.*known: default"):
        ss.select("default,nope", {})
    # shared networks are prepared once per distinct dataset / VAE setting, not per run
    variants = ss.shared_variants(ss.select("default,latent-c8,steps-x2,fashion-16,fashion-32", {"download": True})[0])
    assert variants == [{"vae": "workshop-16-c8"}, {"dataset": "fashion-mnist"},
                        {"dataset": "fashion-mnist", "resolution": 32, "vae": "workshop-32"}]


def test_a_missing_fashion_mnist_skips_its_regimes_with_one_line_each(tmp_path, monkeypatch):
    import repae_lab.data.loaders as loaders
    from repae_lab.experiments import speedup_search as ss

    monkeypatch.setattr(loaders, "DEBIAN_FASHION_MNIST", tmp_path / "none")
    picked, skipped = ss.select("default,fashion-16,fashion-32", {})
    assert [r.name for r in picked] == ["default"] and len(skipped) == 2
    assert all("\n" not in s and "apt-get install dataset-fashion-mnist" in s for s in skipped)
    assert ss.select("fashion-16", {"download": True})[1] == []          # a download may still find it
    # the IDX files where the loader looks: found
    (tmp_path / "fm").mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / "fm" / name).write_bytes(b"")
    assert ss.select("fashion-16", {"data_root": str(tmp_path / "fm")})[1] == []


def test_the_search_command_skips_a_missing_fashion_mnist_in_one_line_and_lists_the_rest(tmp_path):
    """The command itself (not only the library): --dry-run trains nothing, so this is quick."""
    cmd = [sys.executable, "benchmarks/paper_claims.py", "--out", str(tmp_path), "--only", "search", "--dry-run",
           "--regimes", "default,fashion-16", "--search-seeds", "1", "--set", f"data_root={tmp_path / 'no-fm'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert [l for l in proc.stdout.splitlines() if l.startswith("skipping regime")] == [
        l for l in proc.stdout.splitlines() if "fashion" in l.lower()] and "skipping regime fashion-16" in proc.stdout
    assert "estimated CPU time" in proc.stdout and "  repa-e: repa-e, no overrides, seeds [1]" in proc.stdout
    bad = subprocess.run(cmd[:-2] + ["--regimes", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "unknown regime(s) nope" in bad.stderr and "Traceback" not in bad.stderr


def test_the_estimate_counts_only_runs_still_to_train(tmp_path):
    from repae_lab.experiments import speedup_search as ss

    regimes = ss.select("default,steps-x2", {})[0]
    total, text = ss.estimate(tmp_path, regimes, [0, 1], 500)
    per_pair = 500 * (ss.CPU_SECONDS_PER_STEP["repa"] + ss.CPU_SECONDS_PER_STEP["repa-e"])
    assert total == pytest.approx(2 * per_pair + 2 * 2 * per_pair)          # two seeds; x2 is twice as long
    run = tmp_path / "repa-s0"                                              # a finished run is reused
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"steps": 500}))
    (run / "summary.json").write_text(json.dumps({"steps": 500}))
    one_less = total - 500 * ss.CPU_SECONDS_PER_STEP["repa"]
    assert ss.estimate(tmp_path, regimes, [0, 1], 500)[0] == pytest.approx(one_less)
    assert "estimated CPU time" in text and "steps-x2" in text


def _regime_results(names, curves):
    """Fake runs: for each (repa arm, repa-e arm) a curve per seed."""
    return [_result(arm, curve, seed) for (repa, repae), (c_repa, c_repae) in zip(names, curves)
            for seed, (a, b) in enumerate(zip(c_repa, c_repae)) for arm, curve in ((repa, a), (repae, b))]


def test_the_search_verdict_names_the_largest_like_for_like_speed_up_from_the_numbers(tmp_path):
    from repae_lab.experiments import speedup_search as ss

    regimes = ss.select("default,vae-pretrain-0,latent-c8", {})[0]
    slow = [(0, 100.0), (100, 50.0), (200, 10.0)]
    at = lambda step: [(0, 100.0), (step, 10.0), (200, 5.0)]            # reaches 10 at `step`: 200/step x
    curves = [([slow] * 3, [at(180), at(190), at(200)]),                # default: about 1.1x
              ([slow] * 3, [at(20)] * 3),                               # from scratch: large, but not ranked
              ([slow] * 3, [at(80), at(100), at(90)])]                  # c8: 2.5x, 2x, 2.2x
    results = _regime_results([r.arm_names() for r in regimes], curves)
    text = ss.write_report(tmp_path, results, regimes, [0, 1, 2], [], 1.0, "cmd", {})
    sentence = text.split("### The regime where repa-e's speed-up is largest\n\n")[1].splitlines()[0]
    assert "8 latent channels (latent-c8)" in sentence and "2.24 ± 0.25x over 3 seed(s)" in sentence
    assert "reaches 2x over 3 seeds" in sentence and "does not" not in sentence
    data = json.loads((tmp_path / "speedup_search.json").read_text())
    assert data["verdict"] == sentence and [r["reached"] for r in data["regimes"]] == ["3/3"] * 3
    assert "| VAE from scratch (0 pretraining steps) | vae_pretrain_steps=0 | no |" in text
    assert "Not ranked, as not like-for-like: vae-pretrain-0" in text

    # one seed below 2x, or one never reaching repa's FD (it counts as 0): no longer 2x over 3 seeds
    curves[2] = ([slow] * 3, [at(80), at(120), at(90)])
    results = _regime_results([r.arm_names() for r in regimes], curves)
    assert "does not reach 2x over 3 seeds" in ss.verdict([ss.regime_numbers(r, by_arm(results)) for r in regimes])
    rows = [{"regime": "a", "label": "A", "like_for_like": True, "reached": "2/3", "speedups": [3.0, 3.0, 0.0]},
            {"regime": "b", "label": "B", "like_for_like": True, "reached": "3/3", "speedups": [2.1, 2.2, 2.3]},
            {"regime": "c", "label": "C", "like_for_like": False, "reached": "3/3", "speedups": [9.0, 9.0, 9.0]}]
    assert ss.verdict(rows).startswith("The largest like-for-like speed-up is in the regime B (b): 2.20 ± 0.10x")
    assert ss.verdict(rows[:1]).endswith("it does not reach 2x over 3 seeds.")
    assert ss.verdict(rows[2:]) == "No like-for-like speed-up was measured yet."
    assert "(a lower bound" in ss.verdict([dict(rows[1], speedup="at least 2.20 ± 0.10")])
    assert ss.verdict([dict(rows[1], speedups=[2.5])]).endswith("does not reach 2x over 3 seeds (fewer than 3 seeds).")


def test_a_speed_up_against_a_plateau_is_not_counted_as_2x(tmp_path):
    """The longer run (1,000 steps, measured): repa's FD stops falling near step 500, repa-e reaches repa's final
    FD at step 490, so 1000 / 490 = 2.04x against repa's whole run, but repa itself got there by about step 600."""
    from repae_lab.experiments import speedup_search as ss
    from repae_lab.experiments.claims import own_reach_speedup

    regimes = ss.select("steps-x2", {})[0]
    plateau = [(0, 30.0), (400, 2.2), (500, 0.9), (600, 0.80), (800, 0.79), (1000, 0.80)]
    fast = [(0, 30.0), (400, 1.5), (500, 0.7), (1000, 0.75)]
    results = _regime_results([r.arm_names() for r in regimes], [([plateau] * 3, [fast] * 3)])
    row = ss.regime_numbers(regimes[0], by_arm(results))
    needs = 400 + 100 * (1.5 - 0.8) / (1.5 - 0.7)                        # repa-e at 0.80: step 487.5
    assert row["speedups"] == pytest.approx([1000 / needs] * 3)               # 2.05x
    assert row["own_reach_speedups"] == pytest.approx([600 / needs] * 3)      # 1.23x
    sentence = ss.verdict([row])
    assert "twice the steps (steps-x2): 1.23 ± 0.00x over 3 seed(s)" in sentence          # ranked by the smaller
    assert "it does not reach 2x over 3 seeds." in sentence
    assert "reaches 2x against repa's whole run (2.05 ± 0.00x) but not against the step where repa" in sentence
    text = ss.write_report(tmp_path, results, regimes, [0, 1, 2], [], 1.0, "cmd", {})
    assert "against repa's own first reach" in text
    # where repa's FD still falls at its end, the two readings are one number
    falling = [(0, 30.0), (500, 2.0), (1000, 0.8)]
    pair = _regime_results([("a", "b")], [([falling], [fast])])
    assert own_reach_speedup(*pair) == pytest.approx(1000 / needs)


@pytest.mark.slow
def test_paper_claims_search_smoke_trains_the_pairs_and_writes_the_report(claims_smoke, encoder_cache):
    """The default regime's pair is the claims' repa and repa-e (reused); half the steps is a pair of its own."""
    out, _ = claims_smoke
    text = _bench("paper_claims.py", out, encoder_cache, "--smoke", "--only", "search", "--regimes",
                  "default,steps-x0.5", "--search-seeds", "0")
    assert "estimated CPU time" in text and text.count("finished already: reused") == 2
    assert "The largest like-for-like speed-up" in text or "No like-for-like speed-up" in text
    assert json.loads((out / "S steps-x0.5 repa-e-s0" / "config.json").read_text())["steps"] == 3
    data = json.loads((out / "speedup_search.json").read_text())
    assert [r["regime"] for r in data["regimes"]] == ["default", "steps-x0.5"]
    assert (out / "speedup_search.md").read_text() in text
