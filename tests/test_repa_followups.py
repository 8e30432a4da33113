"""The REPA follow-ups as switches on the same step (docs/repa_followups.md): iREPA's conv projector and spatial
target normalisation (arXiv 2512.10794) and HASTE's alignment stop step (arXiv 2505.16792). What each changes,
that the default computes what it did before they existed, and that a bad value is one line of error."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY
from repae_lab.commands import main
from repae_lab.config import ConfigError
from repae_lab.losses import spatial_normalize
from repae_lab.models.sit import ConvProjector, SiT, sit_config
from repae_lab.training.batches import batch_indices, step_generator
from repae_lab.training.state import build_state
from repae_lab.training.step import repa_is_on, target_tokens, train_step
from test_speed_paths import StandInGraphs

PARITY = ROOT / "tests" / "fixtures" / "repa_followups_parity_v1.json"


def _steps(state, n):
    out = []
    for _ in range(n):
        cfg = state.cfg
        x, y = state.dataset.batch(batch_indices(len(state.dataset), cfg.batch_size, cfg.seed, state.step))
        out.append(train_step(state, x, y, step_generator(cfg.seed, state.step)))
        state.step += 1
    return out


def _tiny_sit(**overrides) -> SiT:
    torch.manual_seed(0)
    return SiT(sit_config("W-tiny", input_size=8, in_channels=4, num_classes=10, alignment_depth=2, projector_dim=64,
                          z_dims=(32,), **overrides))


# ---------------------------------------------------------------------------------------------------------
# iREPA's conv projector

def test_the_conv_projector_maps_the_token_grid_to_target_tokens():
    sit = _tiny_sit(projector_type="conv", projector_kernel=3)
    proj = sit.projectors[0]
    assert isinstance(proj, ConvProjector) and proj.conv.weight.shape == (32, sit.cfg.hidden_size, 3, 3)
    assert set(sit.state_dict()) - set(_tiny_sit().state_dict()) == {"projectors.0.conv.weight", "projectors.0.conv.bias"}
    x, t, y = torch.randn(3, 4, 8, 8), torch.rand(3), torch.tensor([0, 1, 2])
    velocity, (z,) = sit(x, t, y)
    assert velocity.shape == (3, 4, 8, 8) and z.shape == (3, 16, 32)          # 4x4 tokens of patch 2


def test_a_conv_projector_sees_neighbouring_tokens_and_a_1x1_one_is_a_per_token_linear():
    tokens = torch.randn(2, 16, 8)
    conv = ConvProjector(8, 5, kernel=1)
    linear = torch.nn.functional.linear(tokens, conv.conv.weight[:, :, 0, 0], conv.conv.bias)
    assert torch.allclose(conv(tokens), linear, atol=1e-6)
    conv3 = ConvProjector(8, 5, kernel=3)
    moved = tokens.clone()
    moved[:, 5] += 1.0                                           # token (1, 1) of the 4x4 grid
    changed = (conv3(moved) - conv3(tokens)).abs().sum(-1)[0].reshape(4, 4) > 0
    assert changed[:3, :3].all() and not changed[3].any() and not changed[:, 3].any()   # its 3x3 neighbourhood


def test_the_projector_switch_reaches_the_sit_of_a_run_and_its_flop_count(tiny_config):
    from repae_lab.training.flops import count_flops

    state = build_state(tiny_config("repa", projector="conv", projector_kernel=1), progress=False)
    assert isinstance(state.nets.sit.projectors[0], ConvProjector) and state.nets.sit.cfg.projector_type == "conv"
    assert isinstance(state.nets.ema.projectors[0], ConvProjector)          # the EMA is the same network
    cfg = state.nets.sit.cfg
    with_proj, without = count_flops(cfg), count_flops(cfg, include_projectors=False)
    assert with_proj - without == 2 * cfg.num_patches * cfg.hidden_size * cfg.z_dims[0]


# ---------------------------------------------------------------------------------------------------------
# parity: with the switches off, the step is the one before they existed

def test_the_default_step_computes_what_it_did_before_the_switches_existed(encoder_cache):
    """Reference numbers from commit 45edf41 (tests/fixtures/repa_followups_parity_v1.json), one thread. Another
    thread count or another CPU (its convolution kernels) moves them: on a Sapphire Rapids core (AMX) the weight
    sums moved by under 1e-5, the losses by under 1e-4, but the generator's GAN loss by 2.4e-3, because it is the
    mean of the PatchGAN's logits behind a training-mode BatchNorm, a small number left after cancellation. A
    changed step moves far more: the same steps under seed 1 moved the weight sums by 2e-3 to 4e-2 and the GAN
    loss by 0.43."""
    from repae_lab.config import resolve_config

    expected = json.loads(PARITY.read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for recipe in ("repa", "repa-e"):
            state = build_state(resolve_config("workshop", recipe=recipe, overrides={**TINY, "cache_dir": encoder_cache}),
                                progress=False)
            last = _steps(state, 3)[-1]
            got = {k: v for k, v in last.items() if k.startswith("loss/")}
            got["sit_param_sum"] = float(sum(p.detach().double().sum() for p in state.nets.sit.parameters()))
            got["vae_param_sum"] = float(sum(p.detach().double().sum() for p in state.nets.vae.parameters()))
            assert got.keys() == expected[recipe].keys()
            for key, value in expected[recipe].items():
                rel = 1e-2 if key == "loss/gan_g" else 5e-4
                assert got[key] == pytest.approx(value, rel=rel, abs=1e-6), (recipe, key)
    finally:
        torch.set_num_threads(threads)


def test_switches_set_to_their_off_values_train_bitwise_as_the_default(tiny_config):
    default = build_state(tiny_config("repa-e"), progress=False)
    off = build_state(tiny_config("repa-e", projector="mlp", target_norm="none", target_norm_gamma=0.3,
                                  repa_stop_step=0), progress=False)
    late = build_state(tiny_config("repa-e", repa_stop_step=100), progress=False)   # after the run's 3 steps
    a, b, c = _steps(default, 3), _steps(off, 3), _steps(late, 3)
    assert a == b == c
    for pa, pb in zip(default.nets.sit.parameters(), late.nets.sit.parameters()):
        assert torch.equal(pa, pb)


# ---------------------------------------------------------------------------------------------------------
# iREPA's spatial normalisation of the targets

def test_spatial_normalisation_centres_and_scales_each_channel_over_the_tokens():
    torch.manual_seed(0)
    tokens = 3.0 + 2.0 * torch.randn(4, 16, 8) + torch.randn(4, 1, 8) * 5      # a large shared (global) part
    full = spatial_normalize(tokens, gamma=1.0)
    assert full.mean(dim=1).abs().max() < 1e-5
    assert torch.allclose(full.std(dim=1), torch.ones(4, 8), atol=1e-4)
    partial = spatial_normalize(tokens, gamma=0.6)
    # (x - g m) / s = (x - m) / s + (1 - g) m / s: the same contrast between tokens, 40% of the mean kept
    assert torch.allclose(partial - full, (0.4 * tokens.mean(1, keepdim=True) / tokens.std(1, keepdim=True))
                          .expand_as(full), atol=1e-4)
    assert torch.allclose(spatial_normalize(tokens, gamma=0.0), tokens / (tokens.std(1, keepdim=True) + 1e-6))


def test_target_norm_normalises_the_targets_of_the_step(tiny_config):
    raw = build_state(tiny_config("repa"), progress=False)
    normed = build_state(tiny_config("repa", target_norm="spatial", target_norm_gamma=0.6), progress=False)
    x, _ = raw.dataset.batch(torch.arange(8))
    (r,), (n,) = target_tokens(raw, x), target_tokens(normed, x)
    assert torch.allclose(n, spatial_normalize(r, 0.6), atol=1e-5)
    assert not torch.allclose(n, r)
    assert _steps(normed, 1)[0]["loss/repa"] != _steps(raw, 1)[0]["loss/repa"]


# ---------------------------------------------------------------------------------------------------------
# HASTE's stop step: no REPA loss and no gradient through it from the step on

def _projector_grads(state):
    return [p.grad for p in state.nets.sit.projectors.parameters()]


@pytest.mark.parametrize("recipe", ["repa", "repa-e"])
def test_the_repa_term_and_its_gradients_stop_at_the_stop_step(tiny_config, recipe):
    state = build_state(tiny_config(recipe, repa_stop_step=2, steps=4), progress=False)
    for step in range(4):
        on = step < 2
        assert repa_is_on(state) == on
        metrics = _steps(state, 1)[0]
        assert ("loss/repa" in metrics) == on and ("loss/repa_vae" in metrics) == (on and recipe == "repa-e")
        grads = _projector_grads(state)
        if on:
            assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None for g in grads), "the projector takes no part after the stop step"
        assert metrics["loss/diffusion"] > 0                       # the SiT still trains on the diffusion loss


def test_after_the_stop_a_repa_e_vae_gets_no_repa_gradient(tiny_config):
    """Without its regularisation the repa-e VAE learns from the REPA term alone: it has a gradient before the
    stop step and none after it (its weights then stay as they are)."""
    state = build_state(tiny_config("repa-e", vae_reg=False, repa_stop_step=1, steps=3), progress=False)
    vae = state.nets.vae
    _steps(state, 1)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.parameters())
    for p in vae.parameters():
        p.grad = None
    before = [p.detach().clone() for p in vae.parameters()]
    metrics = _steps(state, 2)
    assert all(p.grad is None for p in vae.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters()))
    assert all("loss/repa_vae" not in m and "grad_norm/vae" not in m for m in metrics)


def test_after_the_stop_the_repa_e_vae_loss_is_its_regularisation_alone(tiny_config):
    state = build_state(tiny_config("repa-e", repa_stop_step=1, steps=2), progress=False)
    before, after = _steps(state, 2)
    assert "loss/repa_vae" in before and "loss/repa_vae" not in after
    reg = sum(after[f"loss/{k}"] * w for k, w in (("l1", 1.0), ("kl", 1e-6), ("perceptual", 1.0), ("gan_g", 0.1)))
    assert after["loss/vae_total"] == pytest.approx(reg, rel=1e-5)


def test_a_graphed_step_takes_a_new_graph_at_the_stop_step(tiny_config):
    """The stop is part of the CUDA-graph key: one graph before it, one after, and the same numbers as eager."""
    overrides = dict(repa_stop_step=3, steps=6)
    eager = build_state(tiny_config("repa-e", **overrides), progress=False)
    graphed = build_state(tiny_config("repa-e", **overrides), progress=False)
    graphed.graphed_step = StandInGraphs()
    a, b = _steps(eager, 6), _steps(graphed, 6)
    assert len(graphed.graphed_step.recorded) == 2, "one graph with REPA, one without"
    assert {k[1] for k in graphed.graphed_step.graphs} == {True, False}
    assert a == b and "loss/repa" in b[2] and "loss/repa" not in b[3]
    for pa, pb in zip(eager.nets.sit.state_dict().values(), graphed.nets.sit.state_dict().values()):
        assert torch.equal(pa, pb)


def test_a_compiled_sit_runs_across_the_stop_step(tiny_config, monkeypatch):
    """compile=full wraps the SiT's training forward; the stop reaches it as its `project` argument (a guard,
    not a tensor value), so the compiled run goes on without the projectors as the eager one does."""
    monkeypatch.setenv("REPAE_LAB_COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    eager = build_state(tiny_config("repa", repa_stop_step=1, steps=2), progress=False)
    compiled = build_state(tiny_config("repa", repa_stop_step=1, steps=2, compile="full"), progress=False)
    for a, b in zip(_steps(eager, 2), _steps(compiled, 2)):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    assert all(g is None for g in _projector_grads(compiled))


# ---------------------------------------------------------------------------------------------------------
# the config: visible in --dry-run, bad values one line each

def test_dry_run_shows_the_follow_up_keys(capsys):
    assert main(["train", "--preset", "workshop", "--recipe", "repa-e", "--set", "projector=conv", "projector_kernel=5",
                 "target_norm=spatial", "target_norm_gamma=0.8", "repa_stop_step=250", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for text in ('"projector": "conv"', '"projector_kernel": 5', '"target_norm": "spatial"',
                 '"target_norm_gamma": 0.8', '"repa_stop_step": 250'):
        assert text in out, text
    assert main(["train", "--preset", "workshop", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert '"projector": "mlp"' in out and '"target_norm": "none"' in out and '"repa_stop_step": null' in out


@pytest.mark.parametrize("setting, phrase", [
    ("projector=convv", "projector must be one of mlp, conv"),
    ("projector_kernel=4", "projector_kernel must be an odd number"),
    ("target_norm=spatiall", "target_norm must be one of none, spatial"),
    ("target_norm_gamma=1.5", "target_norm_gamma must be in [0, 1]"),
    ("repa_stop_step=-3", "repa_stop_step must be 0 or more"),
    ("repa_stop_step=soon", "config key 'repa_stop_step' expects"),
])
def test_a_bad_follow_up_value_is_one_line_of_error(capsys, setting, phrase):
    assert main(["train", "--preset", "workshop", "--set", setting, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert phrase in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_the_switches_resolve_from_python_too(tiny_config):
    assert tiny_config(projector="conv").projector == "conv"
    assert tiny_config(repa_stop_step="none").repa_stop_step is None
    with pytest.raises(ConfigError, match="did you mean 'spatial'|Did you mean 'spatial'"):
        tiny_config(target_norm="spatail")
