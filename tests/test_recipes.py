"""Gradient routing of each recipe (REPAE_FACTS section 1), and every recipe / ablation running a few steps."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from repae_lab.config import routing
from repae_lab.training.step import (StepDraws, encode_posterior_sample, latent_shape, sit_update, target_tokens,
                                     train_step, vae_update)
from repae_lab.training.batches import batch_indices, step_generator
from repae_lab.training.state import build_state


class RecordingOptimizer:
    """Stands in for an optimizer: keeps the gradients it would have applied, changes nothing."""

    def __init__(self, params):
        self.params = list(params)
        self.grads = None

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    def step(self):
        self.grads = [None if p.grad is None else p.grad.detach().clone() for p in self.params]


def _batch(state, step=0):
    cfg = state.cfg
    return state.dataset.batch(batch_indices(len(state.dataset), cfg.batch_size, cfg.seed, step))


def _draws_and_targets(state, x, gen):
    draws = StepDraws.draw(latent_shape(state.nets.vae, x), len(x), gen, x.device, state.cfg.class_dropout_prob)
    return draws, (target_tokens(state, x) if state.route.uses_repa else None)


def _nonzero(grads) -> int:
    return sum(1 for g in grads if g is not None and g.abs().sum() > 0)


@pytest.fixture
def repae_state(tiny_config):
    return build_state(tiny_config("repa-e"), progress=False)


def test_diffusion_loss_puts_zero_gradient_on_every_vae_parameter(repae_state):
    state = repae_state
    x, y = _batch(state)
    draws, targets = _draws_and_targets(state, x, step_generator(0, 0))
    z, _, _ = encode_posterior_sample(state, x, draws.eps, trains=True)
    assert z.requires_grad                      # z still carries the VAE's graph...
    for p in state.nets.vae.parameters():
        p.grad = None
    sit_update(state, z, y, draws, targets)
    # ...yet the SiT update leaves every VAE parameter without gradient
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in state.nets.vae.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in state.nets.sit.parameters())


def test_repa_loss_reaches_the_vae_and_leaves_the_sit_alone(repae_state):
    state = repae_state
    state.route = replace(state.route, vae_reg=False)       # the REPA term alone
    x, y = _batch(state)
    draws, targets = _draws_and_targets(state, x, step_generator(0, 0))
    rec = RecordingOptimizer(state.nets.vae.parameters())
    state.optimizers.vae = rec
    sit_before = {k: v.clone() for k, v in state.nets.sit.state_dict().items()}
    modes = []
    hook = state.nets.sit.register_forward_pre_hook(lambda m, a: modes.append((m.training, m.bn.training)))
    bn_hook = state.nets.sit.bn.register_forward_pre_hook(lambda m, a: modes.append((m.training, m.training)))
    try:
        _, _, metrics = vae_update(state, x, y, draws, targets)
    finally:
        hook.remove(), bn_hook.remove()
    assert "loss/repa_vae" in metrics and "loss/diffusion_vae" not in metrics
    assert _nonzero(rec.grads) > 0, "the REPA loss must put gradient on the VAE"
    encoder_grads = [g for g, (n, _) in zip(rec.grads, state.nets.vae.named_parameters()) if n.startswith("encoder.")]
    assert _nonzero(encoder_grads) > 0
    assert modes and all(mode == (False, False) for mode in modes), "the SiT must run in eval mode on the VAE side"
    after = state.nets.sit.state_dict()
    assert all(torch.equal(sit_before[k], after[k]) for k in sit_before), "the VAE update changed SiT weights or buffers"
    assert all(p.grad is None for p in state.nets.sit.parameters())
    assert all(p.requires_grad for p in state.nets.sit.parameters() if p is not state.nets.sit.pos_embed)


def test_vae_update_restores_sit_mode_and_grad_flags(repae_state):
    state = repae_state
    state.nets.sit.train()
    flags = [p.requires_grad for p in state.nets.sit.parameters()]
    x, y = _batch(state)
    draws, targets = _draws_and_targets(state, x, step_generator(0, 0))
    vae_update(state, x, y, draws, targets)
    assert state.nets.sit.training and [p.requires_grad for p in state.nets.sit.parameters()] == flags


def test_e2e_diffusion_lets_the_diffusion_loss_reach_the_vae(tiny_config):
    state = build_state(tiny_config("e2e-diffusion"), progress=False)
    state.route = replace(state.route, vae_reg=False)
    assert state.route.vae_gets_diffusion and not state.route.vae_gets_repa
    x, y = _batch(state)
    draws, targets = _draws_and_targets(state, x, step_generator(0, 0))
    rec = RecordingOptimizer(state.nets.vae.parameters())
    state.optimizers.vae = rec
    _, _, metrics = vae_update(state, x, y, draws, targets)
    assert "loss/diffusion_vae" in metrics
    assert _nonzero(rec.grads) > 0


def test_no_stop_grad_ablation_routes_diffusion_into_the_vae(tiny_config):
    route = routing(tiny_config("repa-e", stop_grad=False))
    assert route.vae_gets_diffusion and route.vae_gets_repa
    assert not routing(tiny_config("repa-e")).vae_gets_diffusion


@pytest.mark.parametrize("recipe", ["vanilla", "repa"])
def test_frozen_vae_recipes_leave_vae_bitwise_unchanged(tiny_config, recipe):
    state = build_state(tiny_config(recipe), progress=False)
    before = {k: v.clone() for k, v in state.nets.vae.state_dict().items()}
    bn_before = state.nets.sit.bn.running_mean.clone()
    for step in range(2):
        x, y = _batch(state, step)
        train_step(state, x, y, step_generator(0, step))
        state.step += 1
    assert all(torch.equal(before[k], v) for k, v in state.nets.vae.state_dict().items())
    assert state.optimizers.vae is None
    # the BatchNorm is a fixed normalisation when the VAE is frozen
    assert torch.equal(bn_before, state.nets.sit.bn.running_mean)


RUNS = [("vanilla", {}), ("repa", {}), ("e2e-diffusion", {}), ("repa-e", {}),
        ("repa-e", {"stop_grad": False}), ("repa-e", {"latent_norm": False}), ("repa-e", {"vae_reg": False}),
        ("repa-e", {"mixed_precision": "bf16"})]


@pytest.mark.parametrize("recipe,switches", RUNS, ids=[f"{r}-{'-'.join(f'{k}={v}' for k, v in s.items()) or 'default'}" for r, s in RUNS])
def test_each_recipe_and_ablation_runs_with_finite_losses(tiny_config, recipe, switches):
    state = build_state(tiny_config(recipe, **switches), progress=False)
    vae_before = {k: v.clone() for k, v in state.nets.vae.state_dict().items()}
    bn_before = state.nets.sit.bn.running_mean.clone()
    for step in range(3):
        x, y = _batch(state, step)
        metrics = train_step(state, x, y, step_generator(0, step))
        state.step += 1
        assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics
    assert "loss/diffusion" in metrics
    assert ("loss/repa" in metrics) == (recipe in ("repa", "repa-e"))
    vae_changed = any(not torch.equal(vae_before[k], v) for k, v in state.nets.vae.state_dict().items())
    assert vae_changed == (recipe in ("e2e-diffusion", "repa-e"))
    if switches.get("vae_reg") is False:
        assert "loss/l1" not in metrics and "loss/disc" not in metrics
    elif recipe in ("e2e-diffusion", "repa-e"):
        assert {"loss/l1", "loss/kl", "loss/perceptual", "loss/gan_g", "loss/disc"} <= set(metrics)
    bn_moved = not torch.equal(bn_before, state.nets.sit.bn.running_mean)
    assert bn_moved == (recipe in ("e2e-diffusion", "repa-e") and switches.get("latent_norm", True))


def test_ema_tracks_batchnorm_buffers(tiny_config):
    state = build_state(tiny_config("repa-e", ema_decay=0.5), progress=False)
    ema_before = state.nets.ema.bn.running_mean.clone()
    x, y = _batch(state)
    train_step(state, x, y, step_generator(0, 0))
    expected = 0.5 * ema_before + 0.5 * state.nets.sit.bn.running_mean
    assert torch.allclose(state.nets.ema.bn.running_mean, expected, atol=1e-6)


def test_step_is_deterministic_for_a_seed(tiny_config):
    losses = []
    for _ in range(2):
        state = build_state(tiny_config("repa-e"), progress=False)
        x, y = _batch(state)
        losses.append(train_step(state, x, y, step_generator(0, 0)))
    assert losses[0] == losses[1]


SWITCHES = [{"mixed_precision": "bf16"}, {"grad_accumulation": 2}, {"activation_checkpointing": True},
            {"channels_last": True}, {"tf32": False}]


@pytest.mark.parametrize("switches", SWITCHES, ids=[next(iter(s)) for s in SWITCHES])
def test_speed_switches_run_with_finite_losses(tiny_config, switches):
    state = build_state(tiny_config("repa-e", **switches), progress=False)
    for step in range(2):
        x, y = _batch(state, step)
        metrics = train_step(state, x, y, step_generator(0, step))
        state.step += 1
        assert all(math.isfinite(v) for v in metrics.values()), metrics


def test_grad_accumulation_keeps_the_step_of_the_full_batch(tiny_config):
    """Without batch statistics in play (frozen BN, no GAN), k micro-batches give the full batch's update."""
    results = []
    for k in (1, 2):
        # lr pinned: atol is in units of one Adam step, which moves near-zero gradients by about lr
        state = build_state(tiny_config("repa", grad_accumulation=k, lr=1e-4), progress=False)
        x, y = _batch(state)
        train_step(state, x, y, step_generator(0, 0))
        results.append(state.nets.sit.state_dict())
    for key in results[0]:
        assert torch.allclose(results[0][key], results[1][key], atol=1e-6), key


def test_cached_latents_give_the_same_run_as_encoding_each_step(tiny_config):
    from repae_lab.training.networks import encode_dataset
    runs = []
    for cache in (False, True):
        state = build_state(tiny_config("repa", cache_latents=cache), progress=False)
        x, y = _batch(state)
        idx = batch_indices(len(state.dataset), state.cfg.batch_size, state.cfg.seed, 0)
        latents = tuple(c[idx].float() for c in state.latent_cache) if cache else None
        runs.append(train_step(state, x, y, step_generator(0, 0), latents))
    # float16 storage of the cached mean / std is the only difference
    assert abs(runs[0]["loss/diffusion"] - runs[1]["loss/diffusion"]) < 1e-2


@pytest.mark.slow
def test_torch_compile_switch_runs(tiny_config, monkeypatch):
    # aot_eager traces forward and backward as inductor does and runs them eagerly: inductor's C++ code generation
    # took 44 s of the suite on 2 cores and tests torch rather than the switch (the GPU session compiles for real)
    monkeypatch.setenv("REPAE_LAB_COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    state = build_state(tiny_config("repa", compile=True), progress=False)
    x, y = _batch(state)
    metrics = train_step(state, x, y, step_generator(0, 0))
    assert math.isfinite(metrics["loss/diffusion"]) and state.sit_forward is not state.nets.sit


class HostReads(torch.overrides.TorchFunctionMode):
    """Counts the calls that copy a tensor's value to Python: on a GPU each one makes the CPU wait."""
    READS = {"item", "__float__", "__int__", "__bool__", "tolist", "numpy", "__index__"}

    def __init__(self):
        super().__init__()
        self.reads: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.READS:
            self.reads.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("recipe,switches", [("repa-e", {}), ("repa", {}), ("repa-e", {"grad_accumulation": 2})])
def test_a_step_reads_the_device_back_once(tiny_config, recipe, switches):
    """All of a step's metrics come back in one transfer at its end, so a GPU step never stalls midway."""
    state = build_state(tiny_config(recipe, **switches), progress=False)
    x, y = _batch(state)
    with HostReads() as mode:
        metrics = train_step(state, x, y, step_generator(0, 0))
    assert mode.reads == ["tolist"], mode.reads
    assert all(isinstance(v, float) for v in metrics.values())


def test_ema_update_matches_the_per_tensor_formula(tiny_config):
    from repae_lab.training.optim import update_ema

    state = build_state(tiny_config("repa-e"), progress=False)
    with torch.no_grad():
        for p in state.nets.sit.parameters():
            p.add_(torch.randn_like(p))
        state.nets.sit.bn.running_var.mul_(3.0)
        state.nets.sit.bn.num_batches_tracked.fill_(7)
    before = {k: v.clone() for k, v in state.nets.ema.state_dict().items()}
    update_ema(state.nets.ema, state.nets.sit, 0.9)
    model = state.nets.sit.state_dict()
    for key, after in state.nets.ema.state_dict().items():
        if after.dtype.is_floating_point:
            assert torch.allclose(after, 0.9 * before[key] + 0.1 * model[key], atol=1e-6), key
        else:
            assert torch.equal(after, model[key]), key


def test_channels_last_switch_converts_every_convolutional_network(tiny_config):
    state = build_state(tiny_config("repa-e", channels_last=True), progress=False)
    for name, module in (("vae", state.nets.vae), ("discriminator", state.nets.discriminator)):
        convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
        assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs), name
