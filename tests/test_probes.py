"""Latent probes: alignment, linear probes, PCA, latent statistics, UMAP, and the cached runner.

Everything runs on small synthetic features and a fake run directory written with the real snapshot
format, so no training is needed; seeds are fixed throughout.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from repae_lab import rundir
from repae_lab.probes import (
    PCABasis,
    ProbeError,
    ProbeSettings,
    alignment_to,
    check_run,
    cknna,
    compare_runs,
    cross_validated,
    comparison_pca_basis,
    default_table_dir,
    effective_rank,
    effective_rank_pixels,
    fit_pca_basis,
    high_frequency_share,
    knn_accuracy,
    latent_statistics,
    linear_probe_accuracy,
    load_probes,
    mutual_knn,
    pca_rgb,
    probe_run,
    spatial_variance,
    stratified_folds,
    stratified_split,
    summary_table,
    total_variation,
)

NO_UMAP = ProbeSettings(umap=False, aligned_umap=False)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _orthogonal(d, seed=1):
    q, _ = np.linalg.qr(_rng(seed).normal(size=(d, d)))
    return q


# ---------------------------------------------------------------------------------------------------------
# Alignment (CKNNA, mutual k-NN).

def _dense_cknna(a, b, k=10):
    """The textbook dense form of CKNNA (Huh et al. 2024), to check the sparse implementation against."""
    def hsic(K, L):
        m = len(K)
        K, L = K.copy(), L.copy()
        np.fill_diagonal(K, 0)
        np.fill_diagonal(L, 0)
        return ((K * L.T).sum() + K.sum() * L.sum() / ((m - 1) * (m - 2)) - 2 * (K @ L).sum() / (m - 2)) / (m * (m - 3))

    def mask(K):
        s = K.copy()
        np.fill_diagonal(s, -np.inf)
        m = np.zeros_like(K)
        np.put_along_axis(m, np.argsort(-s, axis=1)[:, :k], 1.0, axis=1)
        return m

    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    K, L = a @ a.T, b @ b.T
    mk, ml = mask(K), mask(L)
    both = mk * ml
    return hsic(both * K, both * L) / np.sqrt(hsic(mk * K, mk * K) * hsic(ml * L, ml * L))


def test_cknna_of_features_with_themselves_is_one():
    x = _rng().normal(size=(200, 32))
    assert cknna(x, x) == pytest.approx(1.0, abs=1e-9)
    assert mutual_knn(x, x) == pytest.approx(1.0)


def test_cknna_near_zero_for_independent_features():
    rng = _rng(2)
    values = [cknna(rng.normal(size=(300, 64)), rng.normal(size=(300, 64))) for _ in range(3)]
    assert abs(np.mean(values)) < 0.08
    # mutual k-NN at chance: k / (n - 1)
    assert mutual_knn(rng.normal(size=(300, 64)), rng.normal(size=(300, 64))) < 0.1


def test_cknna_invariant_to_rotation_and_global_scale_of_either_side():
    rng = _rng(3)
    x = rng.normal(size=(200, 24))
    y = x @ rng.normal(size=(24, 16)) + 0.7 * rng.normal(size=(200, 16))    # related, not identical
    base = cknna(x, y)
    assert 0.1 < base < 0.95
    assert cknna(x @ _orthogonal(24), y) == pytest.approx(base, abs=1e-9)
    assert cknna(x, y @ _orthogonal(16)) == pytest.approx(base, abs=1e-9)
    assert cknna(5.0 * x, y) == pytest.approx(base, abs=1e-9)
    assert cknna(x, 0.01 * y) == pytest.approx(base, abs=1e-9)


def test_cknna_sparse_implementation_matches_dense_definition():
    rng = _rng(4)
    x = rng.normal(size=(120, 10))
    y = x @ rng.normal(size=(10, 12)) + rng.normal(size=(120, 12))
    assert cknna(x, y, k=10) == pytest.approx(_dense_cknna(x, y, k=10), rel=1e-9)


def test_alignment_to_many_matches_pairwise_and_rejects_mismatched_rows():
    rng = _rng(5)
    t = rng.normal(size=(80, 8))
    feats = {"a": t + 0.3 * rng.normal(size=t.shape), "b": rng.normal(size=(80, 5))}
    out = alignment_to(t, feats)
    assert out["a"]["cknna"] == pytest.approx(cknna(feats["a"], t))
    assert out["b"]["mknn"] == pytest.approx(mutual_knn(feats["b"], t))
    with pytest.raises(ValueError, match="different images"):
        cknna(t, t[:-1])
    with pytest.raises(ValueError, match="at least"):
        cknna(t[:10], t[:10], k=10)


# ---------------------------------------------------------------------------------------------------------
# Linear and k-NN probes.

def _clusters(n_per=30, classes=5, dim=20, sep=8.0, seed=6):
    rng = _rng(seed)
    centres = rng.normal(size=(classes, dim)) * sep
    y = np.repeat(np.arange(classes), n_per)
    return centres[y] + rng.normal(size=(len(y), dim)), y


def test_linear_probe_near_perfect_on_separable_clusters():
    x, y = _clusters()
    split = stratified_split(y, 0.25, seed=0)
    assert linear_probe_accuracy(x, y, split) >= 0.98
    assert knn_accuracy(x, y, split, k=5) >= 0.98


def test_linear_probe_near_chance_on_shuffled_labels():
    x, y = _clusters(n_per=60, classes=5)
    shuffled = _rng(7).permutation(y)
    split = stratified_split(shuffled, 0.25, seed=0)
    assert linear_probe_accuracy(x, shuffled, split) < 0.4     # chance 0.2
    assert knn_accuracy(x, shuffled, split) < 0.4


def test_stratified_folds_test_every_image_once_and_cross_validate():
    x, y = _clusters(n_per=20, classes=4)
    folds = stratified_folds(y, 4, seed=0)
    tested = np.concatenate([te for _, te in folds])
    assert sorted(tested.tolist()) == list(range(len(y)))
    assert all(np.bincount(y[te]).tolist() == [5, 5, 5, 5] for _, te in folds)
    assert all(not set(tr) & set(te) for tr, te in folds)
    assert cross_validated(linear_probe_accuracy, x, y, folds) >= 0.98
    shuffled = _rng(15).permutation(y)
    assert cross_validated(knn_accuracy, x, shuffled, stratified_folds(shuffled, 4)) < 0.45


def test_stratified_split_is_fixed_and_balanced():
    y = np.repeat(np.arange(4), 10)
    tr1, te1 = stratified_split(y, 0.3, seed=0)
    tr2, te2 = stratified_split(y, 0.3, seed=0)
    assert np.array_equal(te1, te2) and np.array_equal(tr1, tr2)
    assert np.bincount(y[te1]).tolist() == [3, 3, 3, 3]
    assert not set(tr1) & set(te1)


# ---------------------------------------------------------------------------------------------------------
# Latent statistics.

def test_spatial_variance_and_total_variation_match_hand_computation():
    # image 0, channel 0: [[1, 2], [3, 5]]; channel 1 constant 4; image 1 all zeros
    z = torch.zeros(2, 2, 2, 2)
    z[0, 0] = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    z[0, 1] = 4.0
    # spatial variance: channel 0 of image 0 has mean 2.75 and unbiased variance
    # (1.75^2 + 0.75^2 + 0.25^2 + 2.25^2) / 3 = 8.75 / 3; the other three (image, channel) pairs are 0
    assert spatial_variance(z) == pytest.approx((8.75 / 3) / 4)
    # total variation of image 0: vertical |3-1| + |5-2| = 5, horizontal |2-1| + |5-3| = 3 -> 8; image 1: 0
    assert total_variation(z) == pytest.approx(8.0 / 2)


def test_total_variation_on_a_ramp():
    z = torch.arange(12.0).reshape(1, 1, 3, 4)          # +1 per column, +4 per row
    # horizontal: 3 rows x 3 diffs of 1 = 9; vertical: 2 x 4 diffs of 4 = 32
    assert total_variation(z) == pytest.approx(41.0)


def test_high_frequency_share_extremes():
    const = torch.ones(1, 2, 8, 8)
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]).remainder(2).float().expand(1, 2, 8, 8)
    smooth = torch.linspace(0, 1, 8)[None, :].expand(8, 8).reshape(1, 1, 8, 8)
    assert high_frequency_share(const) == 0.0
    assert high_frequency_share(checker) == pytest.approx(1.0)
    assert high_frequency_share(smooth) < 0.2
    noise = torch.from_numpy(_rng(8).normal(size=(64, 1, 16, 16)))
    assert high_frequency_share(noise) == pytest.approx(1 - np.pi * 0.25 ** 2, abs=0.05)   # outside the disc


def test_effective_rank():
    rng = _rng(9)
    assert effective_rank(np.outer(rng.normal(size=50), rng.normal(size=6))) == pytest.approx(1.0, abs=1e-6)
    assert effective_rank(rng.normal(size=(5000, 4))) == pytest.approx(4.0, abs=0.05)
    z = torch.from_numpy(rng.normal(size=(20, 4, 3, 3)))
    assert 3.5 < effective_rank_pixels(z) <= 4.0


def test_latent_statistics_keys_and_bn():
    z = torch.from_numpy(_rng(10).normal(size=(6, 3, 4, 4)))
    stats = latent_statistics(z, z / 2, torch.zeros(3), torch.ones(3))
    assert len(stats["channel_mean"]) == 3 and len(stats["bn_var"]) == 3
    assert stats["spatial_var_norm"] == pytest.approx(stats["spatial_var"] / 4)
    assert json.dumps(stats)


# ---------------------------------------------------------------------------------------------------------
# PCA and PCA-RGB.

def test_pca_basis_is_deterministic_and_rgb_in_range():
    z = torch.from_numpy(_rng(11).normal(size=(10, 4, 5, 5)) * np.array([3, 2, 1, 0.5])[None, :, None, None])
    b1, b2 = fit_pca_basis([z]), fit_pca_basis([z.clone()])
    assert np.array_equal(b1.components, b2.components) and np.array_equal(b1.lo, b2.lo)
    assert np.allclose(b1.components @ b1.components.T, np.eye(3), atol=1e-9)
    assert np.all(np.diff(b1.explained_variance_ratio) <= 0)
    rgb = pca_rgb(z, b1)
    assert rgb.shape == (10, 5, 5, 3) and rgb.min() >= 0 and rgb.max() <= 1
    again = PCABasis.from_tensors(b1.to_tensors())
    assert np.array_equal(pca_rgb(z, again), rgb)


def test_pca_rgb_of_fewer_than_three_channels_is_grey_in_missing_axes():
    z = torch.from_numpy(_rng(12).normal(size=(4, 2, 3, 3)))
    rgb = pca_rgb(z, fit_pca_basis(z))
    assert np.allclose(rgb[..., 2], 0.5)


# ---------------------------------------------------------------------------------------------------------
# UMAP (umap-learn; the first fit in a process compiles numba code).

umap = pytest.importorskip("umap", reason="UMAP probes need umap-learn")


@pytest.mark.slow
def test_aligned_umap_identical_snapshots_move_less_than_shuffled():
    from repae_lab.probes import aligned_umap, trajectory_steps

    x, _ = _clusters(n_per=25, classes=4, dim=12, sep=3.0, seed=13)
    shuffled = x[_rng(14).permutation(len(x))]
    same = trajectory_steps(aligned_umap([x, x.copy()], n_epochs=100)).mean()
    moved = trajectory_steps(aligned_umap([x, shuffled], n_epochs=100)).mean()
    assert same < 0.5 * moved


# ---------------------------------------------------------------------------------------------------------
# The runner over a (fake) run directory in the real snapshot format.

def _fake_snapshot(n=60, classes=4, seed=0, drift=0.0):
    rng = _rng(seed)
    y = np.repeat(np.arange(classes), n // classes)
    centres = _rng(100).normal(size=(classes, 4 * 4 * 4))
    z = centres[y] * 2 + rng.normal(size=(n, 64)) + drift
    target = np.repeat((centres[y][:, None, :8] * 3 + rng.normal(size=(n, 4, 8)))[:, :, :], 1, axis=0)
    sit = np.concatenate([target, rng.normal(size=(n, 4, 8))], axis=2)
    tensors = {
        "latents": torch.from_numpy(z).float().reshape(n, 4, 4, 4),
        "latents_norm": torch.from_numpy(z).float().reshape(n, 4, 4, 4) / 2,
        "sit_tokens_t50": torch.from_numpy(sit).half(),
        "target_tokens": torch.from_numpy(target).half(),
        "labels": torch.from_numpy(y),
        "indices": torch.arange(n),
        "bn_mean": torch.zeros(4), "bn_var": torch.ones(4),
    }
    return tensors


def _fake_run(path, steps=(0, 10), recipe="repa-e", with_target=True, identical=False):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"recipe": recipe, "probe_size": 60}))
    for i, step in enumerate(steps):
        tensors = _fake_snapshot(seed=0 if identical else i, drift=0.0 if identical else 0.5 * i)
        if not with_target:
            del tensors["target_tokens"]
        info = {"step": step, "recipe": recipe, "snapshot_t": [0.5],
                "pooled": {"sit_tokens_t50": False, "target_tokens": False}}
        rundir.save_snapshot(path, step, tensors, info)
    return path


def test_probe_run_caches_and_recomputes_only_new_snapshots(tmp_path):
    run = _fake_run(tmp_path / "runs" / "a")
    said = []
    res = probe_run(run, NO_UMAP, log=said.append)
    assert res.steps == [0, 10]
    assert sum("probed step" in s for s in said) == 2
    row = res.scalars[0]
    for key in ("linear/latents", "knn/sit_t50", "cknna/sit_t50", "mknn/latents", "spatial_var",
                "total_variation", "effective_rank_pixels", "high_freq_share", "bn_var"):
        assert key in row, key
    assert row["linear/latents"] > 0.9 and row["cknna/sit_t50"] > 0.3

    said.clear()
    probe_run(run, NO_UMAP, log=said.append)
    assert said == []                                      # nothing new, nothing recomputed

    tensors = _fake_snapshot(seed=5, drift=1.0)
    rundir.save_snapshot(run, 20, tensors, {"step": 20, "recipe": "repa-e", "pooled": {}})
    said.clear()
    res = probe_run(run, NO_UMAP, log=said.append)
    probed = [s for s in said if "probed step" in s]
    assert len(probed) == 1 and probed[0].startswith("a: probed step 20 ") and res.steps == [0, 10, 20]
    assert any("PCA basis fitted on 3" in s for s in said)   # the run-level basis covers the new step too


def test_pca_basis_same_across_calls_and_rgb_same_for_identical_snapshots(tmp_path):
    run = _fake_run(tmp_path / "run", steps=(0, 5), identical=True)
    first = probe_run(run, NO_UMAP).pca_basis()
    second = probe_run(run, NO_UMAP, recompute=True).pca_basis()
    assert np.array_equal(first.components, second.components)
    assert np.array_equal(first.lo, second.lo) and np.array_equal(first.hi, second.hi)
    assert first.fitted_on == [0, 5]
    res = load_probes(run)
    rgb0, rgb5 = res.pca_rgb(0), res.pca_rgb(5)
    assert rgb0.dtype == np.uint8 and rgb0.shape == (60, 4, 4, 3)
    assert np.array_equal(rgb0, rgb5)


def test_compare_runs_writes_csv_and_json(tmp_path):
    a = _fake_run(tmp_path / "runs" / "a")
    b = _fake_run(tmp_path / "runs" / "b", recipe="e2e-diffusion")
    results, csv_path, json_path = compare_runs([a, b], settings=NO_UMAP)
    assert csv_path.parent == (tmp_path / "runs").resolve()
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["run"], r["step"]) for r in rows] == [("a", "0"), ("a", "10"), ("b", "0"), ("b", "10")]
    assert "channel_mean" not in rows[0]                      # lists only in the JSON
    table = json.loads(json_path.read_text())
    assert table["rows"][2]["recipe"] == "e2e-diffusion" and len(table["rows"][0]["channel_mean"]) == 4
    out = tmp_path / "elsewhere"
    _, csv2, _ = compare_runs([a], out_dir=out, settings=NO_UMAP)
    assert csv2 == out / "probe_table.csv"
    assert default_table_dir([a, tmp_path / "x" / "c"]) == a


def test_table_columns_headline_first_and_summary(tmp_path):
    a = _fake_run(tmp_path / "runs" / "a")
    results, csv_path, _ = compare_runs([a], settings=NO_UMAP)
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header[:4] == ["run", "recipe", "step", "n_images"] and header[4].startswith("linear/")
    lines = summary_table(results).splitlines()
    assert "cknna/sit_t50" in lines[0] and len(lines) == 2 and lines[1].startswith("a ")
    assert len(summary_table(results, all_steps=True).splitlines()) == 3


def test_comparison_pca_basis_shared_across_runs(tmp_path):
    a = _fake_run(tmp_path / "a")
    b = _fake_run(tmp_path / "b", steps=(0, 7))
    basis = comparison_pca_basis([a, b])
    assert basis.fitted_on == ["a@10", "b@7"]
    assert np.array_equal(basis.components, comparison_pca_basis([a, b]).components)
    with pytest.raises(ProbeError, match="no snapshot at step 10"):
        comparison_pca_basis([a, b], step=10)


def test_run_without_target_and_no_encoder_skips_alignment(tmp_path):
    run = _fake_run(tmp_path / "run", with_target=False)
    (run / "config.json").write_text(json.dumps({"recipe": "vanilla", "not_a_config_key": 1}))
    said = []
    res = probe_run(run, NO_UMAP, log=said.append)
    assert any("alignment (cknna/mknn) is left out" in s for s in said)
    assert not any(k.startswith("cknna/") for k in res.scalars[0])
    assert "linear/sit_t50" in res.scalars[0]


def test_clear_errors_for_bad_run_folders(tmp_path):
    with pytest.raises(ProbeError, match="does not exist"):
        check_run(tmp_path / "missing")
    parent = tmp_path / "runs"
    _fake_run(parent / "a")
    with pytest.raises(ProbeError, match="not a run directory.*holds runs \\(a\\)"):
        check_run(parent)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"probe_size": 200}))
    with pytest.raises(ProbeError, match="no snapshots yet"):
        check_run(empty)
    (empty / "config.json").write_text(json.dumps({"probe_size": 0}))
    with pytest.raises(ProbeError, match="probe_size=0"):
        check_run(empty)


@pytest.mark.slow
def test_probe_run_with_umap_and_aligned_umap(tmp_path):
    run = _fake_run(tmp_path / "run", steps=(0, 10, 20))
    settings = ProbeSettings(umap_epochs=50)
    res = probe_run(run, settings)
    emb = res.embeddings(10)
    assert emb["umap/latents"].shape == (60, 2) and emb["umap/sit_t50"].shape == (60, 2)
    aligned = res.aligned_umap()
    assert sorted(aligned) == [0, 10, 20] and aligned[0].shape == (60, 2)
    rows = res.rows()
    assert np.isnan(rows[0]["aligned_umap_move"]) and rows[1]["aligned_umap_move"] > 0


@pytest.mark.slow
def test_probe_real_tiny_run_through_the_cli(tmp_path, tiny, capsys):
    """The real snapshot format end to end. A repa-e run stores target tokens; a copy of it stripped of them
    (what a vanilla or e2e-diffusion run writes) gets them from the run's own cached workshop encoder, and
    the two must agree: same probe images, same frozen encoder. (Slow only when this test is the first in
    the session to need the workshop encoder, which then trains once for the whole session.)"""
    import shutil

    from repae_lab.commands import main
    from repae_lab.config import resolve_config
    from repae_lab.jobs.launch import train

    from repae_lab.probes.threads import single_threaded

    runs = tmp_path / "runs"
    cfg = resolve_config("workshop", recipe="repa-e", overrides=tiny(probe_size=40, snapshot_every=2, steps=2))
    with single_threaded():     # tiny CPU work: one thread is 6x faster than two on a busy 2-core machine
        train(cfg, runs / "repa-e", progress=False)
    stripped = runs / "no-target"
    stripped.mkdir()
    for name in ("config.json", "probe_set.json"):
        shutil.copy(runs / "repa-e" / name, stripped / name)
    for step, path in rundir.list_snapshots(runs / "repa-e"):
        tensors, info = rundir.load_snapshot(path)
        del tensors["target_tokens"]
        rundir.save_snapshot(stripped, step, tensors, info)

    assert main(["probe", str(runs / "repa-e"), str(stripped), "--no-umap", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "repa-e" in out and "no-target" in out and "probe_table.csv" in out
    rows = json.loads((runs / "probe_table.json").read_text())["rows"]
    by = {(r["run"], r["step"]): r for r in rows}
    assert sorted(by) == [("no-target", 0), ("no-target", 2), ("repa-e", 0), ("repa-e", 2)]
    assert by[("repa-e", 2)]["target_source"] == "snapshot" and by[("no-target", 2)]["target_source"] == "encoder"
    for key in ("cknna/sit_t50", "mknn/latents", "linear/target", "spatial_var"):
        assert by[("no-target", 2)][key] == pytest.approx(by[("repa-e", 2)][key], abs=0.02), key
    assert main(["probe", str(runs)]) == 2
    assert "holds runs (no-target, repa-e)" in capsys.readouterr().err


def test_image_pca_embeddings_share_one_frame_across_steps():
    """A latent space that shrinks 10x between snapshots must look 10x smaller, not be rescaled."""
    from repae_lab.probes import image_pca_embeddings

    gen = torch.Generator().manual_seed(0)
    early = torch.randn(50, 4, 3, 3, generator=gen) * torch.linspace(0.2, 3, 36).view(1, 4, 3, 3)
    late = 0.1 * early
    a, b = image_pca_embeddings([early, late])
    assert a.shape == b.shape == (50, 2)
    assert np.allclose(b - b.mean(0), 0.1 * (a - a.mean(0)), atol=1e-9)
    # the first axis carries the most variance of the two sets together
    assert a[:, 0].var() >= a[:, 1].var()
