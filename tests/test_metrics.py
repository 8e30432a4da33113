"""Frechet distance, precision / recall, Inception Score, PSNR / SSIM, feature spaces and reference caching."""
import math
from unittest import mock

import numpy as np
import pytest
import scipy.linalg
import torch

from repae_lab.metrics.feature_spaces import (EvaluatorConfig, EvaluatorNet, FeatureSpaceError, WorkshopSpace,
                                              build_feature_space, dinov2_space, extract_features, inception_space,
                                              workshop_evaluator_for)
from repae_lab.metrics.space import state_fingerprint
from repae_lab.metrics.frechet import frechet_distance, frechet_distance_features, gaussian_stats
from repae_lab.metrics.inception_score import inception_score
from repae_lab.metrics.precision_recall import knn_radii, precision_recall
from repae_lab.metrics.reconstruction import psnr, ssim
from repae_lab.metrics.references import reference_statistics


# ---------------------------------------------------------------------------------------------------------
# Frechet distance.

def test_frechet_distance_of_two_known_gaussians_in_closed_form():
    """For 2x2 covariances Tr((AB)^1/2) = sqrt(Tr(AB) + 2 sqrt(det A det B)): an independent closed form."""
    mu1, mu2 = np.array([1.0, -2.0]), np.array([0.5, 1.0])
    a = np.array([[2.0, 0.6], [0.6, 1.0]])
    b = np.array([[0.5, -0.2], [-0.2, 3.0]])
    tr_sqrt = math.sqrt(np.trace(a @ b) + 2 * math.sqrt(np.linalg.det(a) * np.linalg.det(b)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(a) + np.trace(b) - 2 * tr_sqrt
    assert frechet_distance(mu1, a, mu2, b) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_of_diagonal_gaussians():
    """Commuting covariances: FD = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2."""
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = 3.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(np.zeros(3), np.diag(a), np.ones(3), np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_agrees_with_scipy_sqrtm_in_many_dimensions():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 40)), rng.normal(size=(40, 40))
    a, b = x @ x.T / 40, y @ y.T / 40 + 0.1 * np.eye(40)
    mu1, mu2 = rng.normal(size=40), rng.normal(size=40)
    root = scipy.linalg.sqrtm(a @ b).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(a + b - 2 * root)
    assert frechet_distance(mu1, a, mu2, b) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_a_set_against_itself_is_zero_and_samples_converge():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(500, 8, generator=gen, dtype=torch.float64)
    assert frechet_distance_features(feats, feats) == pytest.approx(0.0, abs=1e-9)
    # two large samples of N(0, I) and N(1, 4I) in 4 dims: FD = 4 * 1 + 4 * (2 - 1)^2 = 8
    a = torch.randn(200_000, 4, generator=gen, dtype=torch.float64)
    b = 1 + 2 * torch.randn(200_000, 4, generator=gen, dtype=torch.float64)
    assert frechet_distance_features(a, b) == pytest.approx(8.0, rel=0.01)


def test_frechet_distance_rejects_mismatched_spaces_and_bad_features():
    with pytest.raises(ValueError, match="different spaces"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))


# ---------------------------------------------------------------------------------------------------------
# Precision / recall, Inception Score.

def test_precision_and_recall_are_one_for_a_set_against_itself():
    feats = torch.randn(300, 5, generator=torch.Generator().manual_seed(1))
    assert precision_recall(feats, feats) == {"precision": 1.0, "recall": 1.0}


def test_precision_and_recall_drop_for_a_shifted_set():
    gen = torch.Generator().manual_seed(2)
    real = torch.randn(400, 5, generator=gen)
    near = torch.randn(400, 5, generator=gen)
    far = near + 3.0
    pr_near, pr_far = precision_recall(real, near), precision_recall(real, far)
    assert pr_near["precision"] > 0.6 and pr_near["recall"] > 0.6
    assert pr_far["precision"] < 0.2 and pr_far["recall"] < 0.2
    # a generator that drops half the distribution (first coordinate always >= 0): precision stays, recall falls
    half = near.clone()
    half[:, 0] = half[:, 0].abs()
    pr_half = precision_recall(real, half)
    assert pr_half["precision"] > pr_near["precision"] - 0.1
    assert pr_half["recall"] < pr_near["recall"] - 0.2


def test_knn_radius_is_the_kth_neighbour_not_the_point_itself():
    points = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    assert knn_radii(points, k=1).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert knn_radii(points, k=3).tolist() == [6.0, 5.0, 3.0, 6.0]


def test_inception_score_limits():
    assert inception_score(torch.zeros(100, 7), splits=5)[0] == pytest.approx(1.0)   # every image uncertain
    confident = torch.full((100, 10), -50.0)
    confident[torch.arange(100), torch.arange(100) % 10] = 50.0
    assert inception_score(confident, splits=5)[0] == pytest.approx(10.0, rel=1e-6)  # confident and diverse


# ---------------------------------------------------------------------------------------------------------
# Reconstruction.

def test_psnr_and_ssim():
    gen = torch.Generator().manual_seed(3)
    a = torch.randint(0, 256, (4, 3, 16, 16), generator=gen, dtype=torch.uint8)
    assert torch.allclose(ssim(a, a), torch.ones(4, dtype=torch.float64))
    assert psnr(a, a).min() >= 99.0                                    # capped, finite
    x = torch.full((1, 1, 8, 8), 0.5, dtype=torch.float64)
    assert psnr(x, x + 0.1).item() == pytest.approx(20.0)              # MSE 0.01 on a unit range
    noisy = (a.double() + 40 * torch.randn(a.shape, generator=gen, dtype=torch.float64)).clamp(0, 255).to(torch.uint8)
    s = ssim(a, noisy)
    assert (s < 0.9).all() and torch.allclose(s, ssim(noisy, a))


# ---------------------------------------------------------------------------------------------------------
# Feature spaces.

class TinyDataset:
    """Two classes of 8x8 images: a bright square in the top-left or the bottom-right corner."""
    name, num_classes, channels, resolution = "tiny-corners", 2, 1, 8

    def __init__(self, n=64):
        gen = torch.Generator().manual_seed(0)
        self.images = -1 + 0.1 * torch.rand(n, 1, 8, 8, generator=gen)
        self.targets = torch.arange(n) % 2
        self.images[self.targets == 0, :, :4, :4] = 1.0
        self.images[self.targets == 1, :, 4:, 4:] = 1.0

    def __len__(self):
        return len(self.images)

    @property
    def labels(self):
        return self.targets

    def batch(self, idx):
        return self.images[idx], self.targets[idx]


def test_workshop_evaluator_trains_caches_and_reloads(tmp_path):
    data = TinyDataset()
    net, stats = workshop_evaluator_for(data, cache_dir=tmp_path, steps=30, widths=(8, 16), progress=False)
    assert stats["train_accuracy"] > 0.9
    files = list((tmp_path / "evaluators").glob("*.safetensors"))
    assert len(files) == 1
    with mock.patch("repae_lab.metrics.workshop_evaluator.train_evaluator", side_effect=AssertionError("retrained")):
        again, stats_again = workshop_evaluator_for(data, cache_dir=tmp_path, steps=30, widths=(8, 16), progress=False)
    assert state_fingerprint(again) == state_fingerprint(net) and stats_again == stats
    space = WorkshopSpace(again, stats)
    feats, logits = extract_features(space, torch.zeros(5, 1, 8, 8, dtype=torch.uint8))
    assert feats.shape == (5, 16) and logits.shape == (5, 2)


def test_workshop_evaluator_differs_from_the_repa_target_architecture():
    from repae_lab.models.target_encoders import WorkshopEncoder, WorkshopEncoderConfig

    ours = {type(m) for m in EvaluatorNet(EvaluatorConfig()).modules()}
    target = {type(m) for m in WorkshopEncoder(WorkshopEncoderConfig()).modules()}
    assert torch.nn.BatchNorm2d in ours and torch.nn.MaxPool2d in ours          # residual, BN, max-pool
    assert torch.nn.BatchNorm2d not in target and torch.nn.GroupNorm in target   # plain, GroupNorm, strided


def test_reference_statistics_are_computed_once(tmp_path):
    data = TinyDataset()
    net, stats = workshop_evaluator_for(data, cache_dir=tmp_path, steps=5, widths=(8, 16), progress=False)
    space = WorkshopSpace(net, stats)
    ref = reference_statistics(space, data, cache_dir=tmp_path, progress=False)
    assert ref.n == 64 and ref.features.shape == (64, 16) and ref.stats.sigma.shape == (16, 16)
    with mock.patch("repae_lab.metrics.references.extract_features", side_effect=AssertionError("recomputed")):
        again = reference_statistics(space, data, cache_dir=tmp_path, progress=False)
    np.testing.assert_allclose(again.stats.mu, ref.stats.mu)
    subset = reference_statistics(space, data, n_ref=32, cache_dir=tmp_path, progress=False)
    assert subset.n == 32 and len(list((tmp_path / "references").glob("*.safetensors"))) == 2


def test_feature_spaces_take_uint8_only():
    space = WorkshopSpace(EvaluatorNet(EvaluatorConfig(widths=(8,))))
    with pytest.raises(FeatureSpaceError, match="uint8"):
        extract_features(space, torch.zeros(2, 1, 8, 8))


def _random_inception_weights(path):
    """The torch-fidelity Inception-V3 architecture with random weights (the real file cannot be downloaded here)."""
    from safetensors.torch import save_file

    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3", reason="pip install torch-fidelity")
    FeatureExtractorInceptionV3 = fidelity.FeatureExtractorInceptionV3

    with mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", return_value={}), \
            mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", return_value=None):
        net = FeatureExtractorInceptionV3("random", ["2048"])
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


def test_inception_space_loads_local_weights_and_gives_pool3_and_logits(tmp_path):
    weights = tmp_path / "inception.safetensors"
    _random_inception_weights(weights)
    space = inception_space(str(weights))
    images = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    feats, logits = extract_features(space, images)
    assert feats.shape == (3, 2048) and logits.shape == (3, 1008)
    assert torch.isfinite(feats).all()


def test_missing_weights_are_named_with_the_fix(tmp_path):
    pytest.importorskip("torch_fidelity", reason="pip install torch-fidelity")
    with pytest.raises(FeatureSpaceError, match="--inception-weights"):
        inception_space(None)
    with pytest.raises(FeatureSpaceError, match="does not exist"):
        inception_space(str(tmp_path / "nope.pth"))
    with pytest.raises(FeatureSpaceError, match="--dinov2-weights"):
        dinov2_space(str(tmp_path / "nope.safetensors"))
    with pytest.raises(FeatureSpaceError, match="unknown feature space 'clip'"):
        build_feature_space("clip")
    bad = tmp_path / "bad.pth"
    torch.save({"net": torch.nn.Linear(2, 2)}, bad)                  # a pickled module, not a state dict
    with pytest.raises(FeatureSpaceError, match="plain state dict"):
        inception_space(str(bad))


@pytest.mark.slow
def test_dinov2_space_with_random_weights_gives_cls_features():
    space = dinov2_space(None, pretrained=False)
    feats, logits = extract_features(space, torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8))
    assert feats.shape == (2, 768) and logits is None and torch.isfinite(feats).all()


# ---------------------------------------------------------------------------------------------------------
# The pipeline on a tiny run: `repae-lab sample`, `repae-lab eval` and the training-time evaluation.

@pytest.fixture
def quick_evaluator(monkeypatch):
    """Train the workshop evaluator for a few steps only: these tests check plumbing, not its accuracy."""
    import repae_lab.metrics.workshop_evaluator as we

    monkeypatch.setattr(we, "EVALUATOR_STEPS", 10)


@pytest.fixture
def tiny_run(tmp_path, tiny_config, quick_evaluator):
    from repae_lab.jobs.launch import train

    run = tmp_path / "run"
    train(tiny_config("repa-e", steps=2), run, progress=False)
    return run


@pytest.mark.slow
def test_cli_sample_and_eval_write_files_and_log_the_protocol(tiny_run, tmp_path, capsys):
    from repae_lab import rundir
    from repae_lab.commands import main

    out = tmp_path / "samples" / "s.npz"
    assert main(["sample", str(tiny_run), "--n", "12", "--out", str(out), "--sampler", "heun", "--steps", "3",
                 "--cfg", "1.5", "--interval", "0,0.6", "--seed", "4", "--quiet"]) == 0
    with np.load(out) as data:
        assert data["arr_0"].shape == (12, 16, 16, 3) and data["arr_0"].dtype == np.uint8
        assert sorted(np.bincount(data["labels"], minlength=10).tolist()) == [1] * 8 + [2] * 2
    assert out.with_suffix(".png").is_file()

    assert main(["eval", str(tiny_run), "--n", "24", "--sampler", "euler", "--steps", "2", "--quiet"]) == 0
    records = [r for r in rundir.read_jsonl(tiny_run / "metrics.jsonl") if r.get("kind") == "eval"]
    assert len(records) == 1
    rec = records[0]
    for key in ("eval/fd_workshop", "eval/precision_workshop", "eval/recall_workshop", "eval/is_workshop",
                "eval/accuracy_workshop", "eval/rpsnr", "eval/rssim", "eval/rfd_workshop"):
        assert math.isfinite(rec[key]), key
    p = rec["protocol"]
    assert p["n"] == 24 and p["sampling"]["sampler"] == "euler" and p["sampling"]["steps"] == 2
    assert p["spaces"]["workshop"]["n_ref"] == 1797 and "class-balanced" in p["labels"] and rec["step"] == 2
    written = list((tiny_run / "eval").glob("step-00000002-euler2-cfg1-n24.*"))
    assert sorted(f.suffix for f in written) == [".json", ".npz", ".png"]
    assert "eval/fd_workshop" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_during_training_leaves_the_training_state_alone(tiny_config, quick_evaluator, tmp_path):
    import repae_lab.evaluation as ev
    from repae_lab.training.state import build_state

    state = build_state(tiny_config("repa-e", eval_n=16, eval_steps=2), progress=False)
    state.nets.vae.train()
    state.step = 40
    before = {name: {k: v.clone() for k, v in getattr(state.nets, name).state_dict().items()}
              for name in ("sit", "ema", "vae")}
    rng = torch.get_rng_state()
    evaluate = ev.TrainingEvaluator()
    record = evaluate(state, tmp_path)
    assert record["step"] == 40 and record["kind"] == "eval" and math.isfinite(record["eval/fd_workshop"])
    assert record["protocol"]["during_training"] and record["protocol"]["n"] == 16
    for name, sd in before.items():
        for k, v in getattr(state.nets, name).state_dict().items():
            assert torch.equal(v, sd[k]), f"{name}.{k} changed"
    assert state.nets.vae.training, "the VAE must be back in training mode"
    assert torch.equal(torch.get_rng_state(), rng), "the global RNG must not move"
    assert (tmp_path / "eval" / "step-00000040-heun2-cfg2-n16.png").is_file()
    again = evaluate(state, tmp_path)                      # same protocol, same figures
    assert again["eval/fd_workshop"] == record["eval/fd_workshop"]


@pytest.mark.slow
def test_the_evaluation_cadence_does_not_change_training(tiny_config, quick_evaluator, tmp_path):
    """A run evaluated every 2 steps trains bitwise as one never evaluated (the claims benchmarks compare runs
    across evaluation cadences)."""
    from safetensors.torch import load_file

    from repae_lab import rundir
    from repae_lab.jobs.launch import train

    for every in (2, 0):
        train(tiny_config("repa-e", steps=4, eval_every=every, eval_n=16, eval_steps=2), tmp_path / f"e{every}",
              progress=False)
    logs = {e: rundir.read_jsonl(tmp_path / f"e{e}" / "metrics.jsonl") for e in (2, 0)}
    training = {e: [{k: v for k, v in r.items() if k != "time"} for r in log if "kind" not in r and "event" not in r]
                for e, log in logs.items()}
    assert [r["step"] for r in training[0]] == [1, 2, 3, 4] and training[2] == training[0]
    assert [r["step"] for r in logs[2] if r.get("kind") == "eval"] == [0, 2, 4]
    weights = {e: load_file(tmp_path / f"e{e}" / "checkpoints" / "step-00000004" / "vae.safetensors") for e in (2, 0)}
    assert all(torch.equal(weights[2][k], v) for k, v in weights[0].items())
