"""The workshop kit's training runs: the ONE place their settings live.

The notebooks, `repae-lab workshop prepare` and the instructor's guide all read this table; change a setting
here (steps, learning rates, ...) and every prepared run is retrained under a new folder name, because a kit
run's folder is named by a digest of its full settings (kit.Kit.path).

Times are CPU seconds per training step measured with OMP_NUM_THREADS=1 on the project's 2-core machine (see
docs/workshop.md for the command); the notebooks print an estimate from them before they train.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..probes import ProbeSettings

PRESET = "workshop"

# every kit run: 300 steps of the workshop preset (digits at 16x16, W-tiny SiT on 16 tokens), a snapshot every
# 50 steps for the explorer and the probes, an evaluation (FD in the workshop evaluator's space) at 0, 150, 300.
# The kit keeps the SiT learning rate and the unguided evaluation that the instructor's guide
# (docs/workshop.md) was measured with; the preset's default regime (lr 3e-3, guidance 2; docs/results.md)
# replaces them once the guide's numbers are measured again under it.
COMMON: dict[str, Any] = dict(steps=300, snapshot_every=50, eval_every=150, checkpoint_every=150, log_every=10,
                              lr=1e-4, eval_cfg_scale=1.0)


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
           seconds_per_step=0.12),
    KitRun("repa", "repa", "REPA: the SiT's tokens aligned with the target encoder, the VAE frozen", "3_repa_loss",
           seconds_per_step=0.15),
    # 200 steps: trained live in notebook 4 within 3 minutes; the latent has collapsed long before
    KitRun("e2e-diffusion", "e2e-diffusion", "the diffusion loss reaching the VAE: the latent collapses",
           "4_collapse", overrides=dict(steps=200, eval_every=100, checkpoint_every=100), seconds_per_step=0.51),
    KitRun("repa-e", "repa-e", "REPA-E: the VAE tuned by REPA, the diffusion loss stopped at the latent",
           "5_gradient_routing", seconds_per_step=0.44),
    KitRun("on-frozen-e2e-vae", "on-frozen-e2e-vae", "a fresh SiT (+ REPA) on the frozen E2E-VAE exported from repa-e",
           "7_e2e_vae", vae_from="repa-e", seconds_per_step=0.13),
)}

# the probes every kit notebook shows (no UMAP: its first fit costs ~15 s of JIT per process on a laptop; the
# explorer's PCA view, with one frame for all steps, shows a collapse as well)
PROBES = ProbeSettings(umap=False, aligned_umap=False)

# the one-off set-up every run shares (workshop target encoder, pretrained VAE, evaluator), measured the same way;
# and what a run adds to its steps (building its state, evaluations, snapshots, checkpoints)
SETUP_SECONDS = 150.0
RUN_OVERHEAD_SECONDS = 5.0


def estimate_seconds(name: str, overrides: dict[str, Any] | None = None) -> float:
    run = KIT_RUNS[name]
    steps = {**COMMON, **run.overrides, **(overrides or {})}["steps"]
    return steps * run.seconds_per_step + RUN_OVERHEAD_SECONDS


def describe(name: str, overrides: dict[str, Any] | None = None) -> str:
    """'e2e-diffusion: 300 steps, about 2.3 min on a 2-core CPU' (the estimate from the measured step times)."""
    run = KIT_RUNS[name]
    steps = {**COMMON, **run.overrides, **(overrides or {})}["steps"]
    seconds = estimate_seconds(name, overrides)
    when = f"about {seconds / 60:.1f} min" if seconds >= 60 else f"about {seconds:.0f} s"
    return f"{name}: {steps} steps of {run.recipe}, {when} on a 2-core CPU"
