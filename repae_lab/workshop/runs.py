"""The workshop kit's training runs: the ONE place their settings live.

The notebooks, `repae-lab workshop prepare` and the instructor's guide all read this table; change a setting
here (or in the `workshop` preset) and every prepared run is retrained under a new folder name, because a kit
run's folder is named by a digest of its full settings (kit.Kit.key), and the guide's numbers must be measured
again (tests/test_workshop_numbers.py compares these settings with docs/workshop_numbers.json).

Times are CPU seconds per training step measured with OMP_NUM_THREADS=1 on the project's 2-core machine
(benchmarks/workshop_times.py, recorded in docs/workshop_numbers.json); the notebooks print an estimate from
them before they train.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import PRESETS
from ..probes import ProbeSettings

PRESET = "workshop"

# every kit run: the workshop preset as it is (500 steps of digits at 16x16 on the W-tiny SiT, SiT lr 3e-3, an
# evaluation every 100 steps with guidance 2: the regime of the quickstart and docs/results.md, in which the
# paper's order of the recipes shows), with a snapshot every 50 steps rather than 100 for the explorer and the
# probes. Nothing else is pinned here, so the kit follows the preset; tests/test_workshop_numbers.py fails when
# these settings and those the guide's numbers were measured under (docs/workshop_numbers.json) drift apart.
COMMON: dict[str, Any] = dict(snapshot_every=50)


@dataclass(frozen=True)
class KitRun:
    name: str
    recipe: str
    shows: str                                    # one line: what the run is there to show
    notebook: str                                 # the kit notebook that uses it first
    overrides: dict[str, Any] = field(default_factory=dict)   # on top of COMMON
    vae_from: str | None = None                   # train on the exported E2E-VAE of this kit run
    seconds_per_step: float = 0.5                 # measured (module docstring)


KIT_RUNS: dict[str, KitRun] = {r.name: r for r in (
    KitRun("vanilla", "vanilla", "a latent diffusion model on the frozen, pretrained VAE", "1_why_latent_diffusion",
           seconds_per_step=0.073),
    KitRun("repa", "repa", "REPA: the SiT's tokens aligned with the target encoder, the VAE frozen", "3_repa_loss",
           seconds_per_step=0.083),
    # the full 500 steps although its latent collapses within 50: its FD leads every recipe's at steps 100-200
    # and falls behind all of them only from step 400 on (docs/workshop.md); notebook 4 trains it live
    KitRun("e2e-diffusion", "e2e-diffusion", "the diffusion loss reaching the VAE: the latent collapses",
           "4_collapse", seconds_per_step=0.296),
    KitRun("repa-e", "repa-e", "REPA-E: the VAE tuned by REPA, the diffusion loss stopped at the latent",
           "5_gradient_routing", seconds_per_step=0.295),
    KitRun("on-frozen-e2e-vae", "on-frozen-e2e-vae", "a fresh SiT (+ REPA) on the frozen E2E-VAE exported from repa-e",
           "7_e2e_vae", vae_from="repa-e", seconds_per_step=0.083),
)}

# the probes every kit notebook shows (no UMAP: its first fit costs ~15 s of JIT per process on a laptop; the
# explorer's PCA view, with one frame for all steps, shows a collapse as well)
PROBES = ProbeSettings(umap=False, aligned_umap=False)

# the one-off set-up every run shares (workshop target encoder, pretrained VAE, evaluator), measured the same way
# (kit.warm_up on an empty cache); and what a run adds to its steps (building its state, its six guided
# evaluations, snapshots, checkpoints): the live e2e-diffusion run's CPU time less its 500 steps
SETUP_SECONDS = 107.0
RUN_OVERHEAD_SECONDS = 37.0


def steps(name: str, overrides: dict[str, Any] | None = None) -> int:
    """The training steps of kit run `name`: the preset's unless runs.py or the notebook's overrides say others."""
    return {**PRESETS[PRESET], **COMMON, **KIT_RUNS[name].overrides, **(overrides or {})}["steps"]


def estimate_seconds(name: str, overrides: dict[str, Any] | None = None) -> float:
    return steps(name, overrides) * KIT_RUNS[name].seconds_per_step + RUN_OVERHEAD_SECONDS


def describe(name: str, overrides: dict[str, Any] | None = None) -> str:
    """'e2e-diffusion: 300 steps, about 2.3 min on a 2-core CPU' (the estimate from the measured step times)."""
    seconds = estimate_seconds(name, overrides)
    when = f"about {seconds / 60:.1f} min" if seconds >= 60 else f"about {seconds:.0f} s"
    return f"{name}: {steps(name, overrides)} steps of {KIT_RUNS[name].recipe}, {when} on a 2-core CPU"
