"""The paper's two-stage use of REPA-E (REPAE_FACTS section 6; Tab. 9), as notebook 07 runs it: export a
repa-e run's tuned VAE (the E2E-VAE), then train a fresh SiT on it, frozen, and another on the VAE the run
started from, with the same settings, and compare the two."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from .. import rundir
from ..config import RECIPES, resolve_config
from ..jobs.cadence import CADENCE_KEYS, with_cadence
from ..models.export import export_vae
from ..notebooks.kernel_training import train_run
from ..notebooks.output import record_runs
from ..notebooks.params import NotebookError

# what a second-stage SiT trains with on each VAE; "repa" is the paper's (diffusion + 0.5 REPA)
SECOND_STAGE = {"repa": {"e2e": "on-frozen-e2e-vae", "original": "repa"},
                "vanilla": {"e2e": "vanilla", "original": "vanilla"}}
# keys of the source run that are not carried over to the second stage: what the recipe decides, the run's
# length and bookkeeping, and the switches that only concern tuning the VAE
NOT_CARRIED = {"recipe", "preset", "steps", "stop_grad", "latent_norm", "vae_reg", *CADENCE_KEYS}


def ensure_source(source: str | Path, preset: str, steps: int = 0, overrides: dict[str, Any] | None = None, *,
                  progress: bool = True) -> Path:
    """The repa-e run to export: used as it is when `source` holds a run, else trained there first (repa-e on
    `preset` for `steps` steps, 0 = the preset's, with `overrides`)."""
    source = Path(source)
    config = rundir.read_json(source / "config.json")
    if config is None:
        return train_run(preset, "repa-e", source, with_cadence(preset, overrides, steps), progress=progress)
    if not RECIPES[config.get("recipe", "repa-e")].trains_vae:
        raise NotebookError(f"'{source}' is a {config.get('recipe')} run: its VAE was frozen, so there is no tuned "
                            f"VAE to export; pass a repa-e run.")
    print(f"{source}: a {config.get('recipe')} run of {config.get('steps')} steps, used as the source", flush=True)
    return source


def export_e2e_vae(source: str | Path, out: str | Path) -> Path:
    """The E2E-VAE of `source` in `out` (models/export.py); an export of the same checkpoint is reused."""
    source, out = Path(source), Path(out)
    ckpt = rundir.latest_good_checkpoint(source)
    if ckpt is None:
        raise NotebookError(f"'{source}' has no good checkpoint to export; train it first (notebook 01).")
    done = rundir.read_json(out / "repae_lab_export.json")
    if done and done.get("run") == str(source.resolve()) and done.get("checkpoint") == ckpt.name:
        print(f"{out}: E2E-VAE of {source.name} ({ckpt.name}) found, reused", flush=True)
        action = "reused"
    else:
        export_vae(source, out)
        print(f"{out}: E2E-VAE of {source.name} ({ckpt.name}) exported", flush=True)
        action = "exported"
    record_runs([(out, action)])
    return out


def source_overrides(source: str | Path) -> tuple[str, dict[str, Any]]:
    """(preset, overrides) that rebuild the source run's settings (data, VAE, SiT, optimisation) for a second
    stage: every key whose value differs from its preset, except NOT_CARRIED."""
    config = rundir.read_json(Path(source) / "config.json")
    if not config:
        raise NotebookError(f"'{source}' is not a run directory (no config.json); pass a repa-e run.")
    preset = config.get("preset", "workshop")
    defaults = resolve_config(preset).to_dict()
    carried = {k: v for k, v in config.items() if k not in NOT_CARRIED and defaults.get(k) != v}
    return preset, json.loads(json.dumps(carried))


def second_stage_runs(source: str | Path, e2e_vae: str | Path, out_root: str | Path, *, steps: int,
                      losses: Sequence[str] = ("repa",), overrides: dict[str, Any] | None = None,
                      progress: bool = True) -> dict[str, Path]:
    """Train a fresh SiT for `steps` steps on the frozen E2E-VAE and on the source's original VAE, for each
    second-stage loss; returns {"repa on E2E-VAE": RUN, "repa on original VAE": RUN, ...}."""
    preset, carried = source_overrides(source)
    base = with_cadence(preset, {**carried, **dict(overrides or {})}, steps)
    runs = {}
    for loss in losses:
        recipes = SECOND_STAGE[loss]
        runs[f"{loss} on E2E-VAE"] = train_run(preset, recipes["e2e"], f"{out_root}-{loss}-e2e-vae-{steps}",
                                               {**base, "vae": str(e2e_vae)}, progress=progress)
        runs[f"{loss} on original VAE"] = train_run(preset, recipes["original"], f"{out_root}-{loss}-original-vae-{steps}",
                                                    base, progress=progress)
    return runs
