"""Reading a run's cached probe results back (RUN/probes/, written by probes/runner.py): what notebooks and
widgets call; nothing here computes a probe."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from .. import rundir
from ..rundir import layout
from . import pca
from .umap_probe import trajectory_steps

PROBE_DIR = "probes"


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def read_tensors(path: Path, keys=None) -> tuple[dict[str, torch.Tensor], dict]:
    """Selected tensors of a safetensors file (all when keys is None), and its metadata; ({}, {}) if unreadable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            names = [k for k in f.keys() if keys is None or k in keys]
            return {k: f.get_tensor(k) for k in names}, meta
    except Exception:   # missing or torn: the caller recomputes
        return {}, {}



@dataclass
class RunProbes:
    """The cached probe results of one run: scalars per step, and loaders for the arrays."""
    run: Path
    config: dict
    scalars: dict[int, dict] = field(default_factory=dict)
    timings: dict[int, dict] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def recipe(self) -> str | None:
        return self.config.get("recipe")

    @property
    def steps(self) -> list[int]:
        return sorted(self.scalars)

    def embeddings(self, step: int) -> dict[str, np.ndarray]:
        """{'umap/latents': (N, 2), ..., 'labels': (N,)} of one step."""
        tensors, _ = read_tensors(self.run / PROBE_DIR / f"{step_name(step)}.safetensors")
        return {k: v.numpy() for k, v in tensors.items()}

    def pca_basis(self) -> pca.PCABasis | None:
        tensors, meta = read_tensors(self.run / PROBE_DIR / "pca.safetensors")
        if not tensors:
            return None
        basis = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("basis.")}
        return pca.PCABasis.from_tensors(basis, fitted_on=json.loads(meta.get("steps", "[]")))

    def pca_rgb(self, step: int) -> np.ndarray | None:
        """(N, h, w, 3) uint8 PCA-RGB maps of one step, in the run's shared basis and colours."""
        key = f"rgb.{step_name(step)}"
        tensors, _ = read_tensors(self.run / PROBE_DIR / "pca.safetensors", keys=(key,))
        return tensors[key].numpy() if key in tensors else None

    def aligned_umap(self) -> dict[int, np.ndarray]:
        """{step: (N, 2)} AlignedUMAP embeddings, row i the same probe image at every step."""
        tensors, _ = read_tensors(self.run / PROBE_DIR / "aligned_umap.safetensors")
        return {int(k.split("-")[1]): v.numpy() for k, v in sorted(tensors.items())}

    def rows(self) -> list[dict]:
        """One flat table row per step: run, recipe, step, then every scalar; plus AlignedUMAP movement."""
        moves = {}
        aligned = self.aligned_umap()
        if len(aligned) >= 2:
            steps = sorted(aligned)
            per_step = trajectory_steps([aligned[s] for s in steps]).mean(axis=1)
            moves = dict(zip(steps[1:], per_step.tolist()))
        rows = []
        for step in self.steps:
            row = {"run": self.name, "recipe": self.recipe, "step": step}
            row.update({k: v for k, v in self.scalars[step].items() if k not in ("step", "recipe")})
            if moves:
                row["aligned_umap_move"] = moves.get(step, float("nan"))
            rows.append(row)
        return rows


def load_probes(run) -> RunProbes:
    """What RUN/probes/ holds now (nothing is computed; run probe_run first for missing steps)."""
    run = Path(run)
    config = rundir.read_json(run / layout.CONFIG) or {}
    out = RunProbes(run=run, config=config)
    folder = run / PROBE_DIR
    if folder.is_dir():
        for path in sorted(folder.glob("step-*.json")):
            record = rundir.read_json(path)
            if record is not None:
                step = int(path.stem.split("-")[1])
                out.scalars[step] = record["scalars"]
                out.timings[step] = record.get("timings", {})
    return out
