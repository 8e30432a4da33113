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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import rundir
from . import alignment, linear, pca
from .features import ProbeError, encoder_target_features, snapshot_features
from .latent_stats import latent_statistics
from .threads import single_threaded

PROBE_DIR = "probes"
PROBE_VERSION = 2


@dataclass(frozen=True)
class ProbeSettings:
    k: int = alignment.DEFAULT_K              # neighbours for CKNNA and mutual k-NN (Huh et al. 2024 use 10)
    knn_k: int = linear.DEFAULT_KNN_K         # neighbours of the k-NN classifier
    folds: int = linear.DEFAULT_FOLDS         # stratified cross-validation folds of the linear / k-NN probes
    seed: int = 0                             # the held-out split and UMAP's random state
    umap: bool = True                         # per-snapshot UMAP embeddings
    umap_features: tuple[str, ...] = ("latents", "sit_t50")  # which features get a UMAP (missing ones are skipped)
    umap_neighbors: int = 15
    umap_epochs: int = 200
    aligned_umap: bool = True                 # AlignedUMAP of `aligned_feature` across the run's snapshots
    aligned_feature: str = "latents"
    aligned_window: int = 1                   # neighbouring steps each side that pull on a point (see aligned_umap)
    aligned_max_steps: int = 12               # more snapshots than this: an evenly spaced subset, first and last kept
    pca_percentiles: tuple[float, float] = pca.DEFAULT_PERCENTILES  # colour range of each PCA axis

    # the fields a single step's results depend on; the rest only touch run-level files
    _STEP_FIELDS = ("k", "knn_k", "folds", "seed", "umap", "umap_features", "umap_neighbors", "umap_epochs")

    def step_key(self) -> str:
        return _digest({name: getattr(self, name) for name in self._STEP_FIELDS} | {"v": PROBE_VERSION})

    def run_key(self) -> str:
        return _digest(asdict(self) | {"v": PROBE_VERSION})


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=list).encode()).hexdigest()[:16]


@dataclass
class SnapshotProbes:
    """The probes of one snapshot: JSON scalars (and per-channel lists), arrays (UMAP embeddings), timings in s."""
    step: int
    scalars: dict
    arrays: dict[str, np.ndarray]
    timings: dict[str, float]


# ---------------------------------------------------------------------------------------------------------
# One snapshot.

def probe_snapshot(tensors: dict, info: dict, *, settings: ProbeSettings | None = None, target=None,
                   basis: pca.PCABasis | None = None) -> SnapshotProbes:
    """Every per-snapshot probe: latent statistics, linear / k-NN probes, alignment to the target, UMAP.

    `target` stands in for a snapshot without target tokens (see features.encoder_target_features);
    with neither, the alignment scalars are left out. With `basis`, arrays['pca_rgb'] holds the
    (N, h, w, 3) uint8 PCA-RGB maps.
    """
    with single_threaded():
        return _probe_snapshot(tensors, info, settings or ProbeSettings(), target, basis)


def _probe_snapshot(tensors, info, settings: ProbeSettings, target, basis) -> SnapshotProbes:
    timings: dict[str, float] = {}
    clock = time.perf_counter

    def timed(name, fn, *args, **kwargs):
        t0 = clock()
        out = fn(*args, **kwargs)
        timings[name] = timings.get(name, 0.0) + clock() - t0
        return out

    feats = snapshot_features(tensors, info, target=target)
    labels = tensors["labels"].numpy() if "labels" in tensors else None
    n = len(feats["latents"])
    if n < settings.k + 4:
        raise ProbeError(f"the snapshot has {n} probe images; the probes need at least {settings.k + 4} "
                         f"(train with a larger probe_size, e.g. --set probe_size=200)")
    scalars: dict = {"step": int(info.get("step", -1)), "recipe": info.get("recipe"), "n_images": n}

    scalars.update(timed("latent_stats", latent_statistics, tensors["latents"], tensors.get("latents_norm"),
                         tensors.get("bn_mean"), tensors.get("bn_var")))
    explained = timed("pca", pca.explained_variance, tensors["latents"])
    scalars["pca_explained"] = explained
    scalars["pca_explained_top3"] = float(sum(explained))

    if labels is not None and len(np.unique(labels)) >= 2:
        splits = linear.stratified_folds(labels, settings.folds, settings.seed)
        for name, x in feats.items():
            scalars[f"linear/{name}"] = timed("linear_probe", linear.cross_validated, linear.linear_probe_accuracy,
                                              x, labels, splits)
            scalars[f"knn/{name}"] = timed("knn_probe", linear.cross_validated, linear.knn_accuracy,
                                           x, labels, splits, k=settings.knn_k)

    if "target" in feats:
        others = {name: x for name, x in feats.items() if name != "target"}
        for name, scores in timed("alignment", alignment.alignment_to, feats["target"], others, settings.k).items():
            scalars[f"cknna/{name}"] = scores["cknna"]
            scalars[f"mknn/{name}"] = scores["mknn"]

    arrays: dict[str, np.ndarray] = {}
    if settings.umap:
        from .umap_probe import umap_embedding

        for name in settings.umap_features:
            if name in feats:
                arrays[f"umap/{name}"] = timed("umap", umap_embedding, feats[name], n_neighbors=settings.umap_neighbors,
                                               n_epochs=settings.umap_epochs, seed=settings.seed)
    if basis is not None:
        arrays["pca_rgb"] = timed("pca", _rgb_uint8, tensors["latents"], basis)
    if labels is not None:
        arrays["labels"] = labels
    return SnapshotProbes(scalars["step"], scalars, arrays, timings)


def _rgb_uint8(latents, basis: pca.PCABasis) -> np.ndarray:
    return np.round(pca.pca_rgb(latents, basis) * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------
# Run directories.

def check_run(run) -> Path:
    """The run folder, or a ProbeError saying why it cannot be probed and what to pass instead."""
    run = Path(run)
    if not run.exists():
        raise ProbeError(f"'{run}' does not exist; pass a run directory written by `repae-lab train --out DIR`.")
    if not run.is_dir():
        raise ProbeError(f"'{run}' is a file; pass the run directory that holds config.json and snapshots/.")
    if not (run / "config.json").is_file():
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


def _fingerprint(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _step_name(step: int) -> str:
    return f"step-{step:08d}"


def _read_tensors(path: Path, keys=None) -> tuple[dict[str, torch.Tensor], dict]:
    """Selected tensors of a safetensors file (all when keys is None), and its metadata; ({}, {}) if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            names = [k for k in f.keys() if keys is None or k in keys]
            return {k: f.get_tensor(k) for k in names}, meta
    except Exception:   # missing or torn: the caller recomputes
        return {}, {}


def _snapshot_keys(path: Path) -> tuple[list[str], tuple]:
    """Tensor names of a snapshot and its latents' shape, without loading the tensors."""
    from safetensors import safe_open

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
    key = _digest({"probe_set": hashlib.sha256(probe_set).hexdigest(), "v": PROBE_VERSION,
                   **{k: config.get(k) for k in ("dataset", "resolution", "target_encoder", "target_encoder_weights",
                                                 "seed", "encoder_steps", "patch_size")}})
    path = run / PROBE_DIR / "target_features.safetensors"
    cached, meta = _read_tensors(path)
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
        cached = rundir.read_json(out / f"{_step_name(step)}.json")
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
        rundir.atomic_save_tensors(out / f"{_step_name(step)}.safetensors", arrays)
        record = {"cache_key": cache_key, "scalars": result.scalars, "timings": result.timings}
        rundir.atomic_write_text(out / f"{_step_name(step)}.json", json.dumps(record, indent=1, allow_nan=True))
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
    _, meta = _read_tensors(path, keys=())
    if not recompute and meta.get("key") == key:
        return
    def latents(p):
        return _read_tensors(p, keys=("latents",))[0]["latents"]

    # two passes over the snapshots, one latent tensor in memory at a time (paper runs have dozens of 16 MB ones)
    per_set = max(1, pca.MAX_FIT_VECTORS // len(snapshots))
    vectors = np.concatenate([pca.sample_pixel_vectors(latents(p), per_set, seed=i)
                              for i, (_, p) in enumerate(snapshots)])
    steps = [s for s, _ in snapshots]
    basis = pca.fit_pca_vectors(vectors, percentiles=settings.pca_percentiles, fitted_on=steps)
    tensors = {f"basis.{k}": v for k, v in basis.to_tensors().items()}
    for step, p in snapshots:
        tensors[f"rgb.{_step_name(step)}"] = torch.from_numpy(_rgb_uint8(latents(p), basis))
    rundir.atomic_save_tensors(path, tensors, metadata={"key": key, "steps": json.dumps(steps)})
    _say(log, f"{run.name}: PCA basis fitted on {len(snapshots)} snapshots")


def aligned_subset(steps: list[int], max_steps: int) -> list[int]:
    """At most `max_steps` of the steps, evenly spaced, first and last always included."""
    if len(steps) <= max_steps:
        return list(steps)
    picks = np.unique(np.round(np.linspace(0, len(steps) - 1, max_steps)).astype(int))
    return [steps[i] for i in picks]


def _update_aligned_umap(run: Path, snapshots, settings: ProbeSettings, recompute: bool, log) -> None:
    from .umap_probe import aligned_umap

    chosen = set(aligned_subset([s for s, _ in snapshots], settings.aligned_max_steps))
    subset = [(s, p) for s, p in snapshots if s in chosen]
    path = run / PROBE_DIR / "aligned_umap.safetensors"
    key = json.dumps(_run_level_key(subset, settings, {}), sort_keys=True)
    _, meta = _read_tensors(path, keys=())
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
    tensors = {_step_name(s): torch.from_numpy(e) for (s, _), e in zip(subset, embeddings)}
    rundir.atomic_save_tensors(path, tensors, metadata={"key": key, "feature": settings.aligned_feature})
    _say(log, f"{run.name}: AlignedUMAP over {len(subset)} snapshots in {time.perf_counter() - t0:.1f}s")


# ---------------------------------------------------------------------------------------------------------
# Reading results back (what notebooks and widgets call; computes nothing).

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
        tensors, _ = _read_tensors(self.run / PROBE_DIR / f"{_step_name(step)}.safetensors")
        return {k: v.numpy() for k, v in tensors.items()}

    def pca_basis(self) -> pca.PCABasis | None:
        tensors, meta = _read_tensors(self.run / PROBE_DIR / "pca.safetensors")
        if not tensors:
            return None
        basis = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("basis.")}
        return pca.PCABasis.from_tensors(basis, fitted_on=json.loads(meta.get("steps", "[]")))

    def pca_rgb(self, step: int) -> np.ndarray | None:
        """(N, h, w, 3) uint8 PCA-RGB maps of one step, in the run's shared basis and colours."""
        key = f"rgb.{_step_name(step)}"
        tensors, _ = _read_tensors(self.run / PROBE_DIR / "pca.safetensors", keys=(key,))
        return tensors[key].numpy() if key in tensors else None

    def aligned_umap(self) -> dict[int, np.ndarray]:
        """{step: (N, 2)} AlignedUMAP embeddings, row i the same probe image at every step."""
        tensors, _ = _read_tensors(self.run / PROBE_DIR / "aligned_umap.safetensors")
        return {int(k.split("-")[1]): v.numpy() for k, v in sorted(tensors.items())}

    def rows(self) -> list[dict]:
        """One flat table row per step: run, recipe, step, then every scalar; plus AlignedUMAP movement."""
        moves = {}
        aligned = self.aligned_umap()
        if len(aligned) >= 2:
            from .umap_probe import trajectory_steps

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
    config = rundir.read_json(run / "config.json") or {}
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
