"""UMAP of one snapshot, and AlignedUMAP across a run's snapshots (umap-learn).

A per-snapshot UMAP shows the class structure of a representation at one step. Independent UMAPs of
consecutive steps are not comparable (each is free to rotate, reflect and rearrange clusters), so to
follow one probe image through training we use AlignedUMAP: one embedding per step, fitted jointly with
a penalty that keeps each image near its position at the neighbouring steps. The probe set is the same
images in the same order at every step, so the relation between consecutive steps is the identity.

umap-learn (and numba, which comes with it) is imported lazily: importing it costs up to 15 s and its first
fits in a process ~15 s (UMAP) plus ~13 s (AlignedUMAP) of numba compilation, which nothing else in the library
should pay for.
"""
from __future__ import annotations

import inspect
import warnings
from contextlib import contextmanager

import numpy as np
import torch

DEFAULT_NEIGHBORS = 15
DEFAULT_MIN_DIST = 0.1
DEFAULT_EPOCHS = 200        # umap-learn uses 500 below 10k points; 200 already settles the clusters of 1k points


def _umap():
    try:
        import umap
    except ImportError as err:  # an optional dependency: everything else in the probes works without it
        raise ImportError("UMAP probes need umap-learn: pip install umap-learn") from err
    return umap


def _features(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"UMAP needs one feature vector per image, shape (N, D); got {x.shape}")
    return x


def _distances(x: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance matrix, handed to umap-learn as metric='precomputed'.

    Below 4,096 points umap-learn computes all distances itself through a Python-level metric callback
    (~500k calls for 1,000 points, 1-2 s); a matrix product does the same in milliseconds.
    """
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    d = torch.cdist(t, t)
    d = 0.5 * (d + d.T)                 # exactly symmetric, exact zero diagonal
    d.fill_diagonal_(0.0)
    return d.float().numpy()


@contextmanager
def _serial_numba():
    """Run umap-learn's numba code on one thread.

    AlignedUMAP's neighbourhood-similarity step launches a parallel numba kernel (in1d) once per point
    per neighbouring step: thousands of tiny parallel regions whose thread start-up and spin-waiting cost
    22 s of CPU at 1,000 points x 3 steps on 2 cores, against 0.1 s on one thread. With a fixed
    random_state the layout optimisation is serial anyway, so nothing is lost.
    """
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def umap_embedding(features, *, n_neighbors: int = DEFAULT_NEIGHBORS, min_dist: float = DEFAULT_MIN_DIST,
                   n_epochs: int = DEFAULT_EPOCHS, seed: int = 0) -> np.ndarray:
    """(N, D) features -> (N, 2) UMAP embedding; a fixed random_state makes it reproducible (and single-threaded)."""
    umap = _umap()
    x = _features(features)
    with warnings.catch_warnings(), _serial_numba():
        warnings.simplefilter("ignore")     # "n_jobs overridden by random_state", "precomputed: no transform"
        reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(x) - 1), min_dist=min_dist,
                            n_epochs=n_epochs, metric="precomputed", random_state=seed)
        return reducer.fit_transform(_distances(x)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# AlignedUMAP recompiles its layout optimiser on every fit: umap-learn 0.5.x wraps the per-epoch kernel in
# a fresh numba.njit(parallel=True) inside optimize_layout_aligned_euclidean, which costs 15-30 s of CPU
# per call (umap PR #1152 fixed the same problem for plain UMAP only). That would make every re-probe of
# a run pay the compile again. While our fit runs, the driver below stands in for umap's: the same kernel,
# compiled once per process (and cached on disk by numba), called epoch by epoch exactly as upstream does.
# The kernel has no prange loop, so a serial compile gives the same numbers. If a future umap-learn
# renames the kernel, the shim steps aside and umap's own driver runs.

_ALIGNED_EPOCH = None


def _aligned_epoch_kernel():
    global _ALIGNED_EPOCH
    if _ALIGNED_EPOCH is None:
        import numba
        from umap import layouts

        _ALIGNED_EPOCH = numba.njit(layouts._optimize_layout_aligned_euclidean_single_epoch, fastmath=True, cache=True)
    return _ALIGNED_EPOCH


def _make_aligned_driver(upstream):
    import numba

    signature = inspect.signature(upstream)     # upstream's defaults (a, b, gamma, ...) stay authoritative

    def driver(*args, **kwargs):
        p = signature.bind(*args, **kwargs)
        p.apply_defaults()
        p = p.arguments
        kernel = _aligned_epoch_kernel()
        heads = p["head_embeddings"]
        per_negative = numba.typed.List.empty_list(numba.types.float32[::1])
        next_negative = numba.typed.List.empty_list(numba.types.float32[::1])
        next_sample = numba.typed.List.empty_list(numba.types.float32[::1])
        for eps in p["epochs_per_sample"]:
            neg = (eps / p["negative_sample_rate"]).astype(np.float32)
            per_negative.append(neg)
            next_negative.append(neg.copy())
            next_sample.append(eps.astype(np.float32))
        alpha, n_epochs = p["initial_alpha"], p["n_epochs"]
        for n in range(n_epochs):
            kernel(heads, p["tail_embeddings"], p["heads"], p["tails"], p["epochs_per_sample"], p["a"], p["b"],
                   p["regularisation_weights"], p["relations"], p["rng_state"], p["gamma"], p["lambda_"],
                   heads[0].shape[1], p["move_other"], alpha, per_negative, next_negative, next_sample, n)
            alpha = p["initial_alpha"] * (1.0 - float(n) / float(n_epochs))
        return heads

    return driver


class _CompileOnce:
    """Context manager: AlignedUMAP uses the compile-once driver for the duration of one fit."""

    def __enter__(self):
        from umap import aligned_umap as module, layouts

        self.module, self.saved = module, getattr(module, "optimize_layout_aligned_euclidean", None)
        if self.saved is not None and hasattr(layouts, "_optimize_layout_aligned_euclidean_single_epoch"):
            module.optimize_layout_aligned_euclidean = _make_aligned_driver(self.saved)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            self.module.optimize_layout_aligned_euclidean = self.saved
        return False


def aligned_umap(feature_list, *, n_neighbors: int = DEFAULT_NEIGHBORS, min_dist: float = DEFAULT_MIN_DIST,
                 n_epochs: int = DEFAULT_EPOCHS, alignment_regularisation: float = 1e-2, window: int = 1,
                 seed: int = 0) -> list[np.ndarray]:
    """One (N, 2) embedding per feature set (e.g. per snapshot step), fitted jointly so row i stays put where it can.

    Every set must have the same N rows describing the same images in the same order (a run's probe set).
    `window`: how many neighbouring steps on each side pull on a point. 1 ties each step to the next and
    the previous, which is what a trajectory needs; umap-learn's default 3 costs ~60% more time (its
    regularisation loop runs over the window for every edge and negative sample) for slightly smoother paths.
    """
    umap = _umap()
    xs = [_features(x) for x in feature_list]
    if len(xs) < 2:
        return [umap_embedding(x, n_neighbors=n_neighbors, min_dist=min_dist, n_epochs=n_epochs, seed=seed) for x in xs]
    n = len(xs[0])
    if any(len(x) != n for x in xs):
        raise ValueError(f"AlignedUMAP needs the same images at every step; got row counts {[len(x) for x in xs]}")
    identity = {i: i for i in range(n)}
    with warnings.catch_warnings(), _serial_numba(), _CompileOnce():
        warnings.simplefilter("ignore")
        mapper = umap.AlignedUMAP(n_neighbors=min(n_neighbors, n - 1), min_dist=min_dist, n_epochs=n_epochs,
                                  alignment_regularisation=alignment_regularisation, alignment_window_size=window,
                                  metric="precomputed", random_state=seed)
        mapper.fit([_distances(x) for x in xs], relations=[identity] * (len(xs) - 1))
    return [np.asarray(e, dtype=np.float32) for e in mapper.embeddings_]


def trajectory_steps(embeddings) -> np.ndarray:
    """(S-1, N) distance each point moved between consecutive embeddings of an AlignedUMAP.

    Distances are in units of the embeddings' overall spread (RMS distance to the centroid), so runs
    whose embeddings happen to come out larger or smaller compare fairly.
    """
    e = np.stack([np.asarray(x, dtype=np.float64) for x in embeddings])       # (S, N, 2)
    spread = np.sqrt(((e - e.mean(axis=1, keepdims=True)) ** 2).sum(-1).mean())
    moves = np.linalg.norm(np.diff(e, axis=0), axis=-1)
    return moves / spread if spread > 0 else moves
