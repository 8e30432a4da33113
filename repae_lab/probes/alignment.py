"""Representation alignment between SiT tokens and the REPA target encoder: CKNNA and mutual k-NN.

Both follow the Platonic Representation Hypothesis paper (Huh et al. 2024, arXiv 2405.07987), which REPA
and REPA-E use to report alignment (REPA-E: CKNNA tracks gFID, vanilla REPA saturates near 0.42):

- every image is one feature vector (tokens mean-pooled), L2-normalised, so the kernels K = A A^T and
  L = B B^T are cosine similarities;
- mutual k-NN: for each image, the fraction of its k nearest neighbours under K that are also among its
  k nearest neighbours under L, averaged over images;
- CKNNA: CKA restricted to neighbour pairs. A pair (i, j) counts only where j is among i's k nearest
  neighbours in *both* spaces; the masked kernels go into the unbiased HSIC estimator (Song et al. 2012,
  eq. 5) and are normalised like CKA: HSIC(K', L') / sqrt(HSIC(K'', K'') HSIC(L'', L'')), where K''
  and L'' are each kernel masked by its own neighbours only.

Because only inner products of normalised vectors enter, both measures are unchanged by an orthogonal
rotation or a global rescaling of either side. k = 10 as in the paper. The masked kernels are not
symmetric matrices, so CKNNA(A, B) and CKNNA(B, A) differ in the third decimal; the probes always pass
(features, target).
"""
from __future__ import annotations

import numpy as np
import torch

DEFAULT_K = 10


def _normalised(features) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"alignment needs one feature vector per image, shape (N, D); got {x.shape}. "
                         f"Mean-pool tokens first (repae_lab.probes.per_image).")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class _Neighbours:
    """Each image's k nearest neighbours under the cosine kernel, as sparse (row, col) pairs.

    The masked kernels of CKNNA have only k entries per row, so everything after the top-k search works
    on these n*k pairs instead of n x n matrices: that is what keeps a 1,000-image snapshot at a few tens
    of milliseconds per comparison on a laptop CPU.
    """

    CHUNK = 2048    # rows of the similarity matrix held at once: 2048 x N doubles, bounded memory for any N

    def __init__(self, x: np.ndarray, k: int):
        t = torch.from_numpy(x)
        values, cols = [], []
        for start in range(0, len(x), self.CHUNK):
            sims = t[start:start + self.CHUNK] @ t.T
            rows = torch.arange(start, start + len(sims))
            sims[rows - start, rows] = float("-inf")        # an image is not its own neighbour
            v, c = torch.topk(sims, k, dim=1)               # ties broken by torch, deterministically on CPU
            values.append(v)
            cols.append(c)
        self.n, self.x = len(x), x
        rows = np.repeat(np.arange(self.n), k)
        keys = rows * self.n + torch.cat(cols).numpy().ravel()
        order = np.argsort(keys)
        self.keys, self.values = keys[order], torch.cat(values).numpy().ravel()[order]

    def kernel_at(self, keys: np.ndarray) -> np.ndarray:
        """Cosine similarity of the image pairs encoded in `keys` (row * n + col)."""
        rows, cols = np.divmod(keys, self.n)
        return np.einsum("ij,ij->i", self.x[rows], self.x[cols])


def _hsic_unbiased(n: int, keys_k, vals_k, keys_l, vals_l) -> float:
    """Unbiased HSIC (Song et al. 2012, eq. 5) of two sparse (n, n) kernels with zero diagonals.

    HSIC = [tr(K L) + 1'K1 1'L1 / ((n-1)(n-2)) - 2 1'K L1 / (n-2)] / (n (n-3)); the kernels are given as
    sorted keys (row * n + col) and their values.
    """
    rows_k, cols_k = np.divmod(keys_k, n)
    rows_l = keys_l // n
    # tr(K L) = sum_ij K_ij L_ji: look each K entry's transposed position up among L's keys
    transposed = cols_k * n + rows_k
    pos = np.searchsorted(keys_l, transposed)
    pos = np.minimum(pos, len(keys_l) - 1)
    hit = keys_l[pos] == transposed
    trace_kl = float(np.sum(vals_k[hit] * vals_l[pos[hit]]))
    sum_k, sum_l = float(vals_k.sum()), float(vals_l.sum())
    ones_kl1 = float(np.bincount(cols_k, vals_k, n) @ np.bincount(rows_l, vals_l, n))   # (1'K)(L1)
    value = trace_kl + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 * ones_kl1 / (n - 2)
    return value / (n * (n - 3))


def neighbours(features, k: int = DEFAULT_K) -> _Neighbours:
    """The k-NN structure of one per-image feature set; reuse it to compare one set against many."""
    x = _normalised(features)
    if not 2 <= k <= len(x) - 4:
        # the unbiased HSIC divides by (n - 3); a neighbourhood as big as the set says nothing local
        raise ValueError(f"k={k} needs at least k + 4 images, got {len(x)}")
    return _Neighbours(x, k)


def _as_neighbours(features, k: int) -> _Neighbours:
    return features if isinstance(features, _Neighbours) else neighbours(features, k)


def _pair(features_a, features_b, k: int) -> tuple[_Neighbours, _Neighbours]:
    na, nb = _as_neighbours(features_a, k), _as_neighbours(features_b, k)
    if na.n != nb.n:
        raise ValueError(f"the two feature sets describe different images: {na.n} vs {nb.n} rows")
    if na.keys.size // na.n != nb.keys.size // nb.n:
        raise ValueError("precomputed neighbourhoods use different k")
    return na, nb


def cknna(features_a, features_b, k: int = DEFAULT_K) -> float:
    """CKNNA between two per-image feature sets (rows = the same images). 1 for identical sets, ~0 for unrelated.

    Either argument may be a precomputed `neighbours(...)` result.
    """
    na, nb = _pair(features_a, features_b, k)
    n = na.n
    shared = np.intersect1d(na.keys, nb.keys, assume_unique=True)    # pairs that are neighbours in both spaces
    cross = _hsic_unbiased(n, shared, na.kernel_at(shared), shared, nb.kernel_at(shared))
    self_a = _hsic_unbiased(n, na.keys, na.values, na.keys, na.values)
    self_b = _hsic_unbiased(n, nb.keys, nb.values, nb.keys, nb.values)
    denom = np.sqrt(max(self_a, 0.0) * max(self_b, 0.0))
    return float(cross / denom) if denom > 0 else float("nan")


def mutual_knn(features_a, features_b, k: int = DEFAULT_K) -> float:
    """Mean fraction of shared k nearest neighbours (cosine) between the two spaces; chance is k / (N - 1)."""
    na, nb = _pair(features_a, features_b, k)
    shared = np.intersect1d(na.keys, nb.keys, assume_unique=True)
    return float(len(shared) / na.keys.size)


def alignment_to(target, features: dict, k: int = DEFAULT_K) -> dict[str, dict[str, float]]:
    """{name: {'cknna': ..., 'mknn': ...}} of every feature set against one target (its neighbours found once)."""
    nt = _as_neighbours(target, k)
    out = {}
    for name, x in features.items():
        nx = _as_neighbours(x, k)
        out[name] = {"cknna": cknna(nx, nt, k), "mknn": mutual_knn(nx, nt, k)}
    return out
