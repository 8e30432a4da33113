"""Every probe for every snapshot of a run, cached in the run directory (the table across runs: compare.py).

    RUN/probes/
      step-00000100.json           scalars of one snapshot (+ what they were computed from: cache key)
      step-00000100.safetensors    its UMAP embeddings (N, 2) and the probe labels
      pca.safetensors              one PCA basis over all the run's snapshots + every step's PCA-RGB maps (uint8)
      aligned_umap.safetensors     AlignedUMAP embeddings across the snapshot steps
      target_features.safetensors  target-encoder features of the probe images, for recipes that store none

A step is recomputed only when its snapshot file changed (size or mtime), the probe settings changed, or
PROBE_VERSION moved; the run-level PCA and AlignedUMAP are refitted only when the set of snapshots
changed, so the final pictures depend on the run alone, not on when it was probed. Every file is written
to a temporary name and renamed, and a step's JSON is written last, so a killed probe leaves a cache that
only ever misses entries, never holds half of one.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import safe_open

from .. import rundir
from ..rundir import layout
from . import pca
from .features import ProbeError, encoder_target_features, snapshot_features
from .results import PROBE_DIR, RunProbes, load_probes, read_tensors, step_name
from .settings import PROBE_VERSION, ProbeSettings, digest
from .snapshot_probes import probe_snapshot, rgb_uint8
from .threads import single_threaded
from .umap_probe import aligned_umap



def check_run(run) -> Path:
    """The run folder, or a ProbeError saying why it cannot be probed and what to pass instead."""
    run = Path(run)
    if not run.exists():
        raise ProbeError(f"'{run}' does not exist; pass a run directory written by `repae-lab train --out DIR`.")
    if not run.is_dir():
        raise ProbeError(f"'{run}' is a file; pass the run directory that holds config.json and snapshots/.")
    if not (run / layout.CONFIG).is_file():
        inner = sorted(p.name for p in run.iterdir() if p.is_dir() and (p / "config.json").is_file())
        hint = (f" It holds runs ({', '.join(inner[:5])}{', ...' if len(inner) > 5 else ''}): pass those, "
                f"e.g. `repae-lab probe {run}/*`." if inner else " Pass the folder `repae-lab train --out` wrote.")
        raise ProbeError(f"'{run}' is not a run directory (no config.json).{hint}")
    if not rundir.list_snapshots(run):
        probe_size = json.loads((run / "config.json").read_text()).get("probe_size")
        if probe_size == 0:
            raise ProbeError(f"'{run}' was trained with probe_size=0, so it has no snapshots to probe; "
                             f"train again with --set probe_size=200 (or more).")
        raise ProbeError(f"'{run}' has no snapshots yet (snapshots/ is empty or missing). The trainer writes one at "
                         f"step 0 and every snapshot_every steps; wait for the run to start, or check it finished "
                         f"its set-up.")
    return run


def _snapshot_keys(path: Path) -> tuple[list[str], tuple]:
    """Tensor names of a snapshot and its latents' shape, without loading the tensors."""
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        shape = tuple(f.get_slice("latents").get_shape()) if "latents" in keys else ()
    return keys, shape


def _target_for_run(run: Path, snapshots, log) -> tuple[np.ndarray | None, str | None]:
    """Targets for alignment: the snapshots' own tokens when stored, else the run's encoder on the probe images."""
    keys, latent_shape = _snapshot_keys(snapshots[0][1])
    if "target_tokens" in keys:
        return None, "snapshot"
    probe_set = (run / "probe_set.json").read_bytes() if (run / "probe_set.json").is_file() else b""
    config = json.loads((run / "config.json").read_text())
    key = digest({"probe_set": hashlib.sha256(probe_set).hexdigest(), "v": PROBE_VERSION,
                   **{k: config.get(k) for k in ("dataset", "resolution", "target_encoder", "target_encoder_weights",
                                                 "seed", "encoder_steps", "patch_size")}})
    path = run / PROBE_DIR / "target_features.safetensors"
    cached, meta = read_tensors(path)
    if cached and meta.get("key") == key:
        return cached["features"].numpy(), "encoder"
    try:
        feats = encoder_target_features(run, latent_size=latent_shape[-1])
    except ProbeError as err:
        _say(log, f"warning: {err}; alignment (cknna/mknn) is left out for this run")
        return None, None
    rundir.atomic_save_tensors(path, {"features": torch.from_numpy(feats)}, metadata={"key": key})
    return feats, "encoder"


def _say(log, msg: str) -> None:
    if log is not None:
        log(msg)


def probe_run(run, settings: ProbeSettings | None = None, *, recompute: bool = False,
              log: Callable[[str], None] | None = None) -> "RunProbes":
    """Compute (or reuse from RUN/probes/) every probe of every snapshot of `run`; returns the loaded results."""
    run = check_run(run)
    with single_threaded():
        _probe_run(run, settings or ProbeSettings(), recompute, log)
    return load_probes(run)


def _probe_run(run: Path, settings: ProbeSettings, recompute: bool, log) -> None:
    snapshots = rundir.list_snapshots(run)
    out = run / PROBE_DIR
    out.mkdir(exist_ok=True)
    target, target_source = _target_for_run(run, snapshots, log)
    step_key = settings.step_key()

    for step, path in snapshots:
        cache_key = {"settings": step_key, "snapshot": _fingerprint(path), "target": target_source}
        cached = rundir.read_json(out / f"{step_name(step)}.json")
        if not recompute and cached is not None and cached.get("cache_key") == cache_key:
            continue
        t0 = time.perf_counter()
        tensors, info = rundir.load_snapshot(path)
        info.setdefault("step", step)
        result = probe_snapshot(tensors, info, settings=settings,
                                target=target if target_source == "encoder" else None)
        if any(k.startswith("cknna/") for k in result.scalars):
            result.scalars["target_source"] = target_source
        arrays = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in result.arrays.items()}
        rundir.atomic_save_tensors(out / f"{step_name(step)}.safetensors", arrays)
        record = {"cache_key": cache_key, "scalars": result.scalars, "timings": result.timings}
        rundir.atomic_write_text(out / f"{step_name(step)}.json", json.dumps(record, indent=1, allow_nan=True))
        _say(log, f"{run.name}: probed step {step} in {time.perf_counter() - t0:.1f}s")

    _update_pca(run, snapshots, settings, recompute, log)
    if settings.aligned_umap:
        _update_aligned_umap(run, snapshots, settings, recompute, log)


def _run_level_key(snapshots, settings: ProbeSettings, extra) -> dict:
    return {"settings": settings.run_key(), "steps": [s for s, _ in snapshots],
            "snapshots": [_fingerprint(p) for _, p in snapshots], **extra}


def _update_pca(run: Path, snapshots, settings: ProbeSettings, recompute: bool, log) -> None:
    """One PCA basis over all of the run's snapshot latents, and every step's PCA-RGB map in its colours."""
    path = run / PROBE_DIR / "pca.safetensors"
    key = json.dumps(_run_level_key(snapshots, settings, {}), sort_keys=True)
    _, meta = read_tensors(path, keys=())
    if not recompute and meta.get("key") == key:
        return
    def latents(p):
        return read_tensors(p, keys=("latents",))[0]["latents"]

    # two passes over the snapshots, one latent tensor in memory at a time (paper runs have dozens of 16 MB ones)
    per_set = max(1, pca.MAX_FIT_VECTORS // len(snapshots))
    vectors = np.concatenate([pca.sample_pixel_vectors(latents(p), per_set, seed=i)
                              for i, (_, p) in enumerate(snapshots)])
    steps = [s for s, _ in snapshots]
    basis = pca.fit_pca_vectors(vectors, percentiles=settings.pca_percentiles, fitted_on=steps)
    tensors = {f"basis.{k}": v for k, v in basis.to_tensors().items()}
    for step, p in snapshots:
        tensors[f"rgb.{step_name(step)}"] = torch.from_numpy(rgb_uint8(latents(p), basis))
    rundir.atomic_save_tensors(path, tensors, metadata={"key": key, "steps": json.dumps(steps)})
    _say(log, f"{run.name}: PCA basis fitted on {len(snapshots)} snapshots")


def aligned_subset(steps: list[int], max_steps: int) -> list[int]:
    """At most `max_steps` of the steps, evenly spaced, first and last always included."""
    if len(steps) <= max_steps:
        return list(steps)
    picks = np.unique(np.round(np.linspace(0, len(steps) - 1, max_steps)).astype(int))
    return [steps[i] for i in picks]


def _update_aligned_umap(run: Path, snapshots, settings: ProbeSettings, recompute: bool, log) -> None:
    chosen = set(aligned_subset([s for s, _ in snapshots], settings.aligned_max_steps))
    subset = [(s, p) for s, p in snapshots if s in chosen]
    path = run / PROBE_DIR / "aligned_umap.safetensors"
    key = json.dumps(_run_level_key(subset, settings, {}), sort_keys=True)
    _, meta = read_tensors(path, keys=())
    if not recompute and meta.get("key") == key:
        return
    t0 = time.perf_counter()
    feats = []
    for _, p in subset:
        tensors, info = rundir.load_snapshot(p)
        named = snapshot_features(tensors, info)
        if settings.aligned_feature not in named:
            _say(log, f"warning: {run.name} has no '{settings.aligned_feature}' features; AlignedUMAP skipped")
            return
        feats.append(named[settings.aligned_feature])
    embeddings = aligned_umap(feats, n_neighbors=settings.umap_neighbors, n_epochs=settings.umap_epochs,
                              window=settings.aligned_window, seed=settings.seed)
    tensors = {step_name(s): torch.from_numpy(e) for (s, _), e in zip(subset, embeddings)}
    rundir.atomic_save_tensors(path, tensors, metadata={"key": key, "feature": settings.aligned_feature})
    _say(log, f"{run.name}: AlignedUMAP over {len(subset)} snapshots in {time.perf_counter() - t0:.1f}s")


def _fingerprint(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]
