"""Linear and k-NN probing of frozen features: how much class information a representation exposes.

REPA-E's claim is that end-to-end tuning through the alignment loss makes the VAE latent itself more
semantic (and keeps the SiT's features aligned); a logistic-regression probe on frozen latents and on
mean-pooled SiT tokens measures that directly. Both probes use the same fixed, stratified held-out split,
so accuracies are comparable across snapshots and runs of one probe set; the runner cross-validates
over k stratified folds so every probe image is tested once.
"""
from __future__ import annotations

import warnings

import numpy as np
from threadpoolctl import threadpool_limits

DEFAULT_TEST_FRACTION = 0.25
DEFAULT_FOLDS = 4
DEFAULT_KNN_K = 10


def stratified_split(labels, test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, test_idx): `test_fraction` of every class held out, chosen by a fixed seed.

    Depends only on the labels and the seed, so every snapshot of a run (same probe images) uses the
    same split.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        n_test = min(max(n_test, 1), len(idx) - 1) if len(idx) > 1 else 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def stratified_folds(labels, n_folds: int = DEFAULT_FOLDS, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(train_idx, test_idx)] for k-fold cross-validation: every image is held out exactly once.

    Each class is shuffled by a fixed seed and dealt round-robin to the folds, so every fold has the
    class balance of the whole set. With the workshop's 200 probe images one 25% split tests only 50
    images (+-0.05 accuracy from the split alone); four folds test all 200 at four times the cost.
    """
    labels = np.asarray(labels)
    if n_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {n_folds}")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=int)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        fold_of[idx[rng.permutation(len(idx))]] = np.arange(len(idx)) % n_folds
    everything = np.arange(len(labels))
    return [(everything[fold_of != f], everything[fold_of == f]) for f in range(n_folds)]


def cross_validated(probe, features, labels, splits, **kwargs) -> float:
    """Accuracy of `probe` (linear_probe_accuracy or knn_accuracy) pooled over splits, weighted by test size."""
    correct = total = 0.0
    for train, test in splits:
        if len(test) == 0 or len(np.unique(np.asarray(labels)[train])) < 2:
            continue
        correct += probe(features, labels, (train, test), **kwargs) * len(test)
        total += len(test)
    return correct / total if total else float("nan")


def _prepare(features, labels, split):
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"probes need one feature vector per image, shape (N, D); got {x.shape}")
    y = np.asarray(labels)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} feature rows but {len(y)} labels")
    train, test = split if split is not None else stratified_split(y)
    if len(np.unique(y[train])) < 2 or len(test) == 0:
        raise ValueError("a probe needs at least two classes in the training split and a non-empty test split")
    return x, y, train, test


def linear_probe_accuracy(features, labels, split=None, *, C: float = 1.0, max_iter: int = 1000) -> float:
    """Held-out accuracy of multinomial logistic regression on standardised features.

    Standardisation (train-split mean / std) makes the L2 penalty C mean the same thing whatever the
    feature scale, so a latent that merely shrank (e2e collapse) is not penalised for its scale alone.
    """
    # scikit-learn is imported here, not at the top: it would add ~0.8 s to every start of the repae-lab command
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x, y, train, test = _prepare(features, labels, split)
    mu = x[train].mean(axis=0)
    sd = x[train].std(axis=0)
    x = (x - mu) / np.where(sd > 1e-12, sd, 1.0)
    clf = LogisticRegression(C=C, max_iter=max_iter)
    # one thread: a probe-sized fit is too small to gain from BLAS / OpenMP threads, and on a busy 2-core
    # laptop their spin-waiting made it 10x slower (2.2 s against 0.17 s for 150 x 256 features)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # a probe that has not fully converged after max_iter is still a fair, comparable number
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x[train], y[train])
    return float((clf.predict(x[test]) == y[test]).mean())


def knn_accuracy(features, labels, split=None, *, k: int = DEFAULT_KNN_K) -> float:
    """Held-out accuracy of a k-nearest-neighbour vote under cosine similarity (train split as the memory).

    Votes are weighted by similarity so ties resolve towards the closer neighbours. No fitting at all:
    it reads the geometry of the representation as it is.
    """
    x, y, train, test = _prepare(features, labels, split)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    k = min(k, len(train))
    sims = x[test] @ x[train].T
    nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    classes = np.unique(y)
    votes = np.zeros((len(test), len(classes)))
    cls_index = np.searchsorted(classes, y[train][nearest])
    np.add.at(votes, (np.arange(len(test))[:, None], cls_index), 1.0 + 1e-6 * np.take_along_axis(sims, nearest, 1))
    return float((classes[votes.argmax(axis=1)] == y[test]).mean())
