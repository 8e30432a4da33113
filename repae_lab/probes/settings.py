"""What the probes compute with (ProbeSettings) and the cache keys derived from it: a probe result is reused
only while the settings it was computed with, and PROBE_VERSION, stay the same."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from . import alignment, linear, pca

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
        return digest({name: getattr(self, name) for name in self._STEP_FIELDS} | {"v": PROBE_VERSION})

    def run_key(self) -> str:
        return digest(asdict(self) | {"v": PROBE_VERSION})


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=list).encode()).hexdigest()[:16]
