"""Every per-snapshot probe of one snapshot: latent statistics, linear / k-NN probes, alignment to the target,
UMAP embeddings and PCA-RGB maps."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import alignment, linear, pca
from .features import ProbeError, snapshot_features
from .latent_stats import latent_statistics
from .settings import ProbeSettings
from .threads import single_threaded
from .umap_probe import umap_embedding


@dataclass
class SnapshotProbes:
    """The probes of one snapshot: JSON scalars (and per-channel lists), arrays (UMAP embeddings), timings in s."""
    step: int
    scalars: dict
    arrays: dict[str, np.ndarray]
    timings: dict[str, float]



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
        for name in settings.umap_features:
            if name in feats:
                arrays[f"umap/{name}"] = timed("umap", umap_embedding, feats[name], n_neighbors=settings.umap_neighbors,
                                               n_epochs=settings.umap_epochs, seed=settings.seed)
    if basis is not None:
        arrays["pca_rgb"] = timed("pca", rgb_uint8, tensors["latents"], basis)
    if labels is not None:
        arrays["labels"] = labels
    return SnapshotProbes(scalars["step"], scalars, arrays, timings)


def rgb_uint8(latents, basis: pca.PCABasis) -> np.ndarray:
    return np.round(pca.pca_rgb(latents, basis) * 255).astype(np.uint8)
