"""Samplers on an analytic problem, guidance intervals, labels, determinism and the ADM .npz layout."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from repae_lab.models.sit import SiT, sit_config
from repae_lab.models.vae import build_vae
from repae_lab.sampling import (DEFAULT_STEPS, GuidedVelocity, SamplingError, SamplingSpec, class_balanced_labels,
                                generate_images, load_npz, ode_times, per_sample_generators, randn, sample_euler,
                                sample_euler_maruyama, sample_heun, score_from_velocity, sde_times, sit_velocity,
                                time_grid, write_samples)


# ---------------------------------------------------------------------------------------------------------
# A Gaussian mixture: for x_t = (1 - t) x0 + t eps the marginal of component k is N((1-t) m_k, S_k) with
# S_k = (1-t)^2 C_k + t^2 I, and E[eps | x_t, k] = t S_k^-1 r, E[x0 | x_t, k] = m_k + (1-t) C_k S_k^-1 r with
# r = x - (1-t) m_k. The exact velocity E[eps - x0 | x_t] mixes those with the posterior component weights.

class GaussianMixture:
    def __init__(self, means, covs, weights):
        self.means = torch.tensor(means, dtype=torch.float64)
        self.covs = torch.stack([torch.as_tensor(c, dtype=torch.float64) for c in covs])
        w = torch.tensor(weights, dtype=torch.float64)
        self.weights = w / w.sum()

    def mean(self):
        return self.weights @ self.means

    def cov(self):
        d = self.means - self.mean()
        return (self.weights[:, None, None] * (self.covs + d[:, :, None] * d[:, None, :])).sum(0)

    def _parts(self, x, t):
        a, dim = 1 - t, x.shape[1]
        logps, vs = [], []
        for m, c, w in zip(self.means, self.covs, self.weights):
            s = a ** 2 * c + t ** 2 * torch.eye(dim, dtype=torch.float64)
            s_inv = torch.linalg.inv(s)
            r = x - a * m
            s_inv_r = r @ s_inv
            logps.append(-0.5 * (r * s_inv_r).sum(1) - 0.5 * torch.logdet(s) - 0.5 * dim * math.log(2 * math.pi) + w.log())
            vs.append(t * s_inv_r - m - a * (s_inv_r @ c))
        return torch.stack(logps, 1), torch.stack(vs, 1)

    def velocity(self, x, t, y=None):
        t = float(t[0])                      # the samplers give every sample the same t
        logps, vs = self._parts(x.double(), t)
        post = torch.softmax(logps, 1)
        return (post[:, :, None] * vs).sum(1).to(x.dtype)

    def log_density(self, x, t):
        return torch.logsumexp(self._parts(x, t)[0], 1)

    def sample(self, n, gen):
        k = torch.multinomial(self.weights, n, replacement=True, generator=gen)
        chol = torch.linalg.cholesky(self.covs)
        z = torch.randn(n, self.means.shape[1], 1, generator=gen, dtype=torch.float64)
        return self.means[k] + (chol[k] @ z).squeeze(-1)


MIXTURE = GaussianMixture(
    means=[[-2.0, 0.0, 0.5], [2.0, 0.5, -0.5], [0.0, 2.5, 1.0]],
    covs=[[[0.10, 0.05, 0.0], [0.05, 0.20, 0.0], [0.0, 0.0, 0.05]],
          [[0.05, 0.0, 0.0], [0.0, 0.05, 0.0], [0.0, 0.0, 0.05]],
          [[0.30, 0.0, 0.02], [0.0, 0.02, 0.0], [0.02, 0.0, 0.10]]],
    weights=[0.5, 0.3, 0.2])
N_ANALYTIC = 10_000
# Tolerances on the largest absolute error of any entry of the mean and of the covariance (the mixture's
# variances are 3.2, 1.0 and 0.37). Over 200 sets of 10,000 exact draws the 99th percentiles of these errors
# were 0.047 and 0.046: the tolerances leave room for Monte Carlo error and little else. Euler with 5 steps
# misses the covariance by about 0.55.
MEAN_TOL, COV_TOL = 0.06, 0.08


def _moment_errors(x):
    return ((x.mean(0) - MIXTURE.mean()).abs().max().item(), (torch.cov(x.T) - MIXTURE.cov()).abs().max().item())


def _noise(seed=0):
    return torch.randn(N_ANALYTIC, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_exact_mixture_samples_meet_the_tolerance():
    """The tolerance is about sampling error, not about the sampler: exact draws pass it."""
    mean_err, cov_err = _moment_errors(MIXTURE.sample(N_ANALYTIC, torch.Generator().manual_seed(5)))
    assert mean_err < MEAN_TOL and cov_err < COV_TOL


def test_closed_form_velocity_gives_the_score_of_the_marginal():
    """score_from_velocity(v) equals grad log p_t computed by autograd on the mixture's marginal density."""
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64, requires_grad=True)
    for t in (0.2, 0.5, 0.9):
        grad, = torch.autograd.grad(MIXTURE.log_density(x, t).sum(), x)
        tt = torch.full((64,), t, dtype=torch.float64)
        score = score_from_velocity(MIXTURE.velocity(x.detach(), tt), x.detach(), tt)
        torch.testing.assert_close(score, grad, rtol=1e-9, atol=1e-9)


def test_heun_50_steps_reproduces_the_mixture():
    x = sample_heun(MIXTURE.velocity, _noise(), None, ode_times(50), disable=True)
    mean_err, cov_err = _moment_errors(x)
    assert mean_err < MEAN_TOL, f"Heun-50 mean off by {mean_err:.3f}"
    assert cov_err < COV_TOL, f"Heun-50 covariance off by {cov_err:.3f}"


def test_sde_250_steps_reproduces_the_mixture():
    x = sample_euler_maruyama(MIXTURE.velocity, _noise(), None, sde_times(250), disable=True,
                              generator=torch.Generator().manual_seed(1))
    mean_err, cov_err = _moment_errors(x)
    assert mean_err < MEAN_TOL, f"SDE-250 mean off by {mean_err:.3f}"
    assert cov_err < COV_TOL, f"SDE-250 covariance off by {cov_err:.3f}"


def test_euler_5_steps_measurably_misses_the_mixture():
    """The moment test has teeth: five Euler steps spread the samples too wide."""
    x = sample_euler(MIXTURE.velocity, _noise(), None, ode_times(5), disable=True)
    _, cov_err = _moment_errors(x)
    assert cov_err > 3 * COV_TOL, f"Euler-5 covariance error {cov_err:.3f} should be far above {COV_TOL}"


def test_sde_with_the_wrong_score_sign_fails_the_same_test(monkeypatch):
    """A sign error in the reverse drift (the easy mistake) is caught by the moment test."""
    import repae_lab.sampling.samplers as samplers

    monkeypatch.setattr(samplers, "sde_drift", lambda v, x, t: v + samplers.broadcast_time(t, x) * score_from_velocity(v, x, t))
    x = sample_euler_maruyama(MIXTURE.velocity, _noise(), None, sde_times(100), disable=True,
                              generator=torch.Generator().manual_seed(1))
    assert _moment_errors(x)[1] > COV_TOL


def test_sde_is_deterministic_for_a_generator_and_stochastic_across_them():
    def run(seed):
        return sample_euler_maruyama(MIXTURE.velocity, _noise()[:200], None, sde_times(20), disable=True,
                                     generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(3), run(3))
    assert not torch.allclose(run(3), run(4))


def test_callback_sees_every_step_and_the_grids_have_the_paper_shape():
    seen = []
    sample_heun(MIXTURE.velocity, _noise()[:10], None, ode_times(4), disable=True, callback=lambda d: seen.append(d))
    assert [d["i"] for d in seen] == [0, 1, 2, 3]
    assert {"x", "t", "t_next", "v", "denoised"} <= set(seen[0])
    ts = sde_times(250)
    assert len(ts) == 251 and ts[0] == 1 and ts[-2] == pytest.approx(0.04) and ts[-1] == 0
    assert len(time_grid("heun")) == DEFAULT_STEPS["heun"] + 1 and time_grid("euler")[-1] == 0


# ---------------------------------------------------------------------------------------------------------
# Guidance interval.

class LabelNet:
    """v = 1 for a class label, 0 for the null class: the guided velocity is then exactly the scale."""

    def __init__(self, null):
        self.null = null

    def __call__(self, x, t, y):
        return (y != self.null).to(x.dtype).view(-1, 1).expand_as(x).clone()


def test_guidance_is_applied_exactly_inside_the_interval():
    null, scale, low, high = 10, 3.0, 0.25, 0.625
    model = GuidedVelocity(LabelNet(null), null, scale, (low, high))
    seen = []
    ts = ode_times(8)                     # multiples of 1/8: the interval ends fall exactly on grid points
    sample_euler(model, torch.zeros(6, 2), torch.arange(6), ts, disable=True, callback=lambda d: seen.append(d))
    for step, calls in zip(seen, model.calls):
        inside = low <= step["t"] <= high
        assert torch.all(step["v"] == (scale if inside else 1.0)), step["t"]
        assert calls == (12 if inside else 6)           # the null-class half runs only where guidance is on
    assert sorted(d["t"] for d in seen if torch.all(d["v"] == scale)) == [0.25, 0.375, 0.5, 0.625]


def test_guidance_scale_one_is_a_single_conditional_pass():
    model = GuidedVelocity(LabelNet(10), 10, 1.0, (0.0, 1.0))
    out = model(torch.zeros(4, 2), torch.full((4,), 0.5), torch.arange(4))
    assert torch.all(out == 1) and model.calls == [4]


def test_guidance_mixes_per_sample_when_times_differ():
    model = GuidedVelocity(LabelNet(10), 10, 2.0, (0.0, 0.5))
    out = model(torch.zeros(2, 3), torch.tensor([0.4, 0.6]), torch.tensor([1, 2]))
    assert torch.equal(out[:, 0], torch.tensor([2.0, 1.0]))


@pytest.mark.parametrize("interval", [(-0.1, 0.5), (0.2, 1.5), (0.7, 0.3), ("a", 1)])
def test_bad_interval_is_named(interval):
    with pytest.raises(SamplingError, match="interval"):
        GuidedVelocity(LabelNet(10), 10, 2.0, interval)


# ---------------------------------------------------------------------------------------------------------
# Labels and bad input.

@pytest.mark.parametrize("n,classes", [(100, 10), (1000, 10), (37, 10), (5, 10), (50_000, 1000)])
def test_class_balanced_labels_are_exact(n, classes):
    labels = class_balanced_labels(n, classes, seed=7)
    counts = torch.bincount(labels, minlength=classes)
    assert len(labels) == n and counts.sum() == n
    assert counts.max() - counts.min() <= (0 if n % classes == 0 else 1)
    assert (counts == n // classes + 1).sum() == n % classes
    assert torch.equal(labels, class_balanced_labels(n, classes, seed=7))
    if n >= 2 * classes:
        assert not torch.equal(labels, class_balanced_labels(n, classes, seed=8))
        assert not torch.equal(labels, labels.sort().values)          # shuffled, not sorted by class


def test_bad_arguments_name_the_problem():
    with pytest.raises(SamplingError, match="n must be a positive"):
        class_balanced_labels(0, 10)
    with pytest.raises(SamplingError, match="unknown sampler 'ddim'"):
        SamplingSpec(sampler="ddim")
    with pytest.raises(SamplingError, match="steps must be a positive"):
        SamplingSpec(sampler="heun", steps=0)
    with pytest.raises(SamplingError, match="interval"):
        SamplingSpec(interval=(0.5, 1.2))
    with pytest.raises(SamplingError, match="t_last"):
        sde_times(10, t_last=0.0)
    with pytest.raises(SamplingError, match=r"\[0, 1\]"):
        ode_times(10, t_start=1.5)


# ---------------------------------------------------------------------------------------------------------
# The pipeline on a tiny random SiT and VAE.

def _tiny_models(seed=0):
    torch.manual_seed(seed)
    vae = build_vae("workshop-16", in_channels=1).eval()
    cfg = sit_config("W-tiny", input_size=8, patch_size=2, in_channels=4, num_classes=10, z_dims=(16,),
                     projector_dim=32, alignment_depth=2)
    sit = SiT(cfg).eval()
    return sit, vae


class RecordingVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []
        self.dummy = nn.Parameter(torch.zeros(1))

    def decode(self, z):
        self.seen.append(z.clone())
        return type("Out", (), {"sample": torch.zeros(len(z), 1, 8, 8)})()


def test_latents_are_denormalised_with_the_bn_running_statistics():
    sit, _ = _tiny_models()
    sit.init_latent_stats(torch.tensor([3.0, -1.0, 0.0, 2.0]), torch.tensor([4.0, 1.0, 0.25, 9.0]))
    vae = RecordingVAE()
    # a fresh SiT's final layer is zero-initialised, so v = 0 and the ODE leaves the noise untouched
    generate_images(sit, vae, torch.arange(3), SamplingSpec(sampler="euler", steps=2, seed=5), progress=False)
    noise = randn((3, 4, 8, 8), per_sample_generators(5, range(3)))
    std = torch.sqrt(torch.tensor([4.0, 1.0, 0.25, 9.0]) + sit.bn.eps).view(1, 4, 1, 1)
    torch.testing.assert_close(vae.seen[0], noise * std + torch.tensor([3.0, -1.0, 0.0, 2.0]).view(1, 4, 1, 1))


def test_generation_is_deterministic_and_independent_of_batch_size():
    sit, vae = _tiny_models()
    with torch.no_grad():                 # give the velocity something to do
        sit.final_layer.linear.weight.normal_(0, 0.05)
    labels = class_balanced_labels(6, 10, seed=1)
    spec = SamplingSpec(sampler="sde", steps=6, cfg_scale=2.0, interval=(0.0, 0.7), seed=1)
    a = generate_images(sit, vae, labels, spec, batch_size=6, progress=False)
    b = generate_images(sit, vae, labels, spec, batch_size=4, progress=False)
    c = generate_images(sit, vae, labels, SamplingSpec(sampler="sde", steps=6, cfg_scale=2.0, interval=(0.0, 0.7),
                                                       seed=2), progress=False)
    assert a.dtype == torch.uint8 and a.shape == (6, 1, 16, 16)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_npz_has_the_adm_layout(tmp_path):
    sit, vae = _tiny_models()
    labels = class_balanced_labels(12, 10, seed=0)
    images = generate_images(sit, vae, labels, SamplingSpec(sampler="heun", steps=3), progress=False)
    files = write_samples(tmp_path / "samples.npz", images, labels, {"sampler": "heun"})
    with np.load(files["npz"]) as data:
        arr, saved_labels = data["arr_0"], data["labels"]
    assert arr.dtype == np.uint8 and arr.shape == (12, 16, 16, 3)      # NHWC, grey repeated to RGB
    assert np.array_equal(arr[..., 0], arr[..., 2])
    assert np.array_equal(arr[..., 0], images[:, 0].numpy())
    assert np.array_equal(saved_labels, labels.numpy())
    assert files["png"].is_file() and files["json"].is_file()
    back, back_labels = load_npz(files["npz"], channels=1)
    assert torch.equal(back, images) and torch.equal(back_labels, labels)


def test_sit_velocity_uses_the_null_class_for_the_unconditional_half():
    sit, _ = _tiny_models()
    seen = []
    sit.y_embedder.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    model = sit_velocity(sit, cfg_scale=1.5, interval=(0, 1))
    model(torch.zeros(2, 4, 8, 8), torch.full((2,), 0.5), torch.tensor([3, 4]))
    assert seen[-1].tolist() == [3, 4, 10, 10]


def test_sampling_skips_the_alignment_projectors_and_gets_the_same_velocity():
    sit, _ = _tiny_models()
    calls = []
    for proj in sit.projectors:
        proj.register_forward_hook(lambda m, args, out: calls.append(1))
    x, t, y = torch.randn(2, 4, 8, 8), torch.full((2,), 0.5), torch.tensor([3, 4])
    with torch.no_grad():
        full, zs = sit(x, t, y)
        assert calls and zs
        calls.clear()
        velocity = sit_velocity(sit)(x, t, y)
    assert not calls, "sampling ran the projectors"
    assert torch.equal(velocity, full)
