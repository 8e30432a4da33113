"""Recipes side by side at equal steps (notebooks 03 and 05): training them, REPA-E's Table 1 analogue, FD
against steps. Every number comes from the runs trained here: their in-training evaluations and the probes of
their snapshots."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import plotly.graph_objects as go

from .. import rundir
from ..jobs.cadence import with_cadence
from ..views.figures import RUN_COLOURS, run_label
from ..notebooks.kernel_training import train_run

# Table 1 of REPA-E measures latent collapse by spatial variance and total variation; the other columns are what
# this workbench can say about the same runs: sample quality, the SiT's alignment with the target, the VAE
TABLE1_PROBES = (("spatial_var", "latent spatial variance"), ("total_variation", "latent total variation"),
                 ("cknna/sit_t50", "CKNNA SiT vs target"), ("linear/sit_t50", "linear probe SiT tokens"))
TABLE1_EVALS = (("eval/fd_workshop", "FD (workshop)"), ("eval/fd_dinov2", "FD DINOv2"), ("eval/fd_inception", "FID"),
                ("eval/accuracy_workshop", "class accuracy of samples"), ("eval/rpsnr", "VAE rPSNR"))


def run_name(out_root: str | Path, recipe: str, steps: int) -> Path:
    """Where a comparison keeps a recipe's run: OUT_ROOT-RECIPE-STEPS (notebooks 03 and 05 share them)."""
    return Path(f"{out_root}-{recipe}-{steps}")


def recipe_runs(preset: str, recipes: Sequence[str], steps: int, out_root: str | Path,
                overrides: dict[str, Any] | None = None, *, progress: bool = True) -> list[Path]:
    """Train (or reuse) every recipe for `steps` steps with the same overrides and a cadence that suits the
    length (jobs/cadence.py); returns the run directories in the recipes' order."""
    overrides = with_cadence(preset, overrides, steps)
    return [train_run(preset, recipe, run_name(out_root, recipe, steps), overrides, progress=progress)
            for recipe in recipes]


def last_eval(run: str | Path) -> dict[str, float]:
    """The eval/ numbers of a run's newest evaluation record ({} when it never evaluated)."""
    evals = [r for r in rundir.read_jsonl(Path(run) / "metrics.jsonl") if r.get("kind") == "eval"]
    return {k: v for k, v in (evals[-1] if evals else {}).items()
            if k.startswith("eval/") and isinstance(v, (int, float))}


def table1_rows(runs: Sequence[str | Path], probes: Sequence | None = None) -> list[dict[str, Any]]:
    """One row per run: recipe, steps, the last evaluation's FD / accuracy / rPSNR, and the last snapshot's
    latent statistics and alignment probes (probes: RunProbes in the runs' order)."""
    rows = []
    for i, run in enumerate(map(Path, runs)):
        config = rundir.read_json(run / "config.json") or {}
        summary = rundir.read_json(run / "summary.json") or {}
        row: dict[str, Any] = {"run": run.name, "recipe": config.get("recipe"), "steps": summary.get("steps")}
        evals = last_eval(run)
        row.update({label: evals[k] for k, label in TABLE1_EVALS if k in evals})
        if probes is not None:
            p = probes[i]
            values = p.scalars.get(p.steps[-1], {}) if p.steps else {}
            row.update({label: values[k] for k, label in TABLE1_PROBES if isinstance(values.get(k), (int, float))})
        rows.append(row)
    return rows


def fd_key(runs: Sequence[str | Path]) -> str | None:
    """The FD the runs were evaluated with (workshop, DINOv2 or Inception), the first one any run logs."""
    for key, _ in TABLE1_EVALS[:3]:
        if any(key in r for run in runs for r in rundir.read_jsonl(Path(run) / "metrics.jsonl")
               if r.get("kind") == "eval"):
            return key
    return None


def fd_figure(runs: Sequence[str | Path], key: str | None = None) -> go.Figure:
    """FD of the in-training evaluations against the step, one line per run."""
    key = key or fd_key(runs)
    fig = go.Figure()
    for j, run in enumerate(map(Path, runs)):
        points = [(r["step"], r[key]) for r in rundir.read_jsonl(run / "metrics.jsonl")
                  if key and r.get("kind") == "eval" and isinstance(r.get(key), (int, float))]
        if points:
            fig.add_trace(go.Scatter(x=[s for s, _ in points], y=[v for _, v in points], mode="lines+markers",
                                     name=run_label(run), line=dict(color=RUN_COLOURS[j % len(RUN_COLOURS)])))
    fig.update_layout(title=f"{key or 'FD'} against steps (lower is better)" if key else
                      "no evaluations: train with eval_every > 0", xaxis_title="step", yaxis_title=key or "",
                      height=380, margin=dict(t=60, l=50, r=20, b=40))
    return fig


def headline_numbers(rows: list[dict[str, Any]], columns: Sequence[str]) -> dict[str, float]:
    """{'COLUMN/recipe': value} for the sweep index, from table rows."""
    out = {}
    for row in rows:
        for c in columns:
            if isinstance(row.get(c), (int, float)):
                out[f"{c}/{row.get('recipe') or row['run']}"] = row[c]
    return out


def claims_verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """What a table1_rows table says about REPA-E's central claims, one sentence each, computed from the
    numbers (a claim the runs do not show is said not to show; one they cannot test is left out)."""
    by_recipe = {r.get("recipe"): r for r in rows}
    fd_col = next((label for key, label in TABLE1_EVALS[:3] if any(label in r for r in rows)), None)

    def value(recipe: str, column: str | None) -> float | None:
        v = by_recipe.get(recipe, {}).get(column) if column else None
        return float(v) if isinstance(v, (int, float)) else None

    out = []
    e2e, repae, repa = (value(r, fd_col) for r in ("e2e-diffusion", "repa-e", "repa"))
    if e2e is not None and repae is not None:
        shows = e2e > 1.2 * repae
        out.append(f"Naive end-to-end tuning (e2e-diffusion) ends at {fd_col} {e2e:.2f}, {e2e / repae:.1f}x repa-e's "
                   f"{repae:.2f}: the paper's claim that it degrades generation "
                   f"{'shows' if shows else 'does not show'} here.")
    sv_col = "latent spatial variance"
    sv_e2e, sv_ref = value("e2e-diffusion", sv_col), value("repa", sv_col) or value("repa-e", sv_col)
    if sv_e2e is not None and sv_ref:
        out.append(f"Its latent's spatial variance is {sv_e2e:.3g} against {sv_ref:.3g}: the latent "
                   f"{'collapsed' if sv_e2e < 0.2 * sv_ref else 'did not collapse'} (Table 1).")
    if repa is not None and repae is not None:
        out.append(f"repa-e ends at {fd_col} {repae:.2f} against repa's {repa:.2f} at the same steps: REPA-E "
                   f"{'beats' if repae < repa else 'does not beat'} REPA here.")
    acc = "class accuracy of samples"
    for recipe in ("repa", "repa-e"):
        a = value(recipe, acc)
        if a is not None:
            out.append(f"{recipe}: the evaluator recognises the requested digit in {100 * a:.0f}% of the samples"
                       f"{'' if a >= 0.8 else ' (the SiT has not learned the classes yet: train longer)'}.")
    return out
