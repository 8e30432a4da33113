"""FLOP counting (repae_lab.flops): hand-computable cases, the SiT's own formula, the step sums, and a real step.

Everything runs on the meta device except the last two tests, which count and time tiny workshop steps.
"""
from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from repae_lab.config import resolve_config
from repae_lab.training.flops import (ComponentFlops, STEP_KINDS, attention_flops, component_flops, conv2d_flops,
                             forward_flops, linear_flops, sit_flops, state_component_flops, step_flops)
from repae_lab.models.sit import SiT, sit_config
from repae_lab.training.flops import count_flops

META = torch.device("meta")


def test_single_conv_and_linear_match_hand_counts():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)            # 17x17 -> 9x9
    assert forward_flops(conv, torch.empty(2, 3, 17, 17)) == 2 * conv2d_flops(3, 8, 3, (9, 9)) == 2 * 2 * 3 * 9 * 8 * 81
    grouped = nn.Conv2d(8, 16, (3, 1), groups=4)              # 10x10 -> 8x10, 2 input channels per group
    assert forward_flops(grouped, torch.empty(1, 8, 10, 10)) == conv2d_flops(8, 16, (3, 1), (8, 10), groups=4)
    lin = nn.Linear(5, 7)                                     # bias adds are not counted
    assert forward_flops(lin, torch.empty(2, 4, 5)) == linear_flops(5, 7, tokens=8) == 2 * 5 * 7 * 8


def test_tiny_vit_block_matches_hand_count():
    from timm.models.vision_transformer import Block

    d, t = 32, 10
    block = Block(dim=d, num_heads=4, mlp_ratio=4.0, qkv_bias=True)
    expected = (linear_flops(d, 3 * d, t) + linear_flops(d, d, t)             # qkv, attention output
                + linear_flops(d, 4 * d, t) + linear_flops(4 * d, d, t)       # MLP
                + attention_flops(t, d))                                      # Q K^T and A V, all heads
    assert forward_flops(block, torch.empty(1, t, d)) == expected


def test_counting_leaves_the_module_untouched():
    lin = nn.Linear(4, 4)
    before = lin.weight.detach().clone()
    forward_flops(lin, torch.empty(3, 4))
    assert lin.weight.device.type == "cpu" and torch.equal(lin.weight, before)


def test_dinov2_b_matches_vit_hand_count():
    timm = pytest.importorskip("timm")
    from repae_lab.models.target_encoders import DinoV2Target
    from repae_lab.training.flops import target_encoder_flops

    with META:
        vit = timm.create_model("vit_base_patch14_dinov2.lvd142m", pretrained=False, img_size=224, num_classes=0)
    t, d = 16 * 16 + 1, 768                                    # 256 patch tokens + CLS
    block = linear_flops(d, 3 * d, t) + linear_flops(d, d, t) + linear_flops(d, 4 * d, t) + linear_flops(4 * d, d, t)
    expected = 12 * (block + attention_flops(t, d)) + conv2d_flops(3, d, 14, (16, 16))
    assert target_encoder_flops(DinoV2Target(vit, 224), 3, 256) == expected


@pytest.mark.parametrize("size,patch,latent,channels", [("S", 2, 32, 4), ("XL", 2, 32, 4), ("XL", 1, 16, 32)])
def test_sit_counts_agree_with_count_flops_and_the_module(size, patch, latent, channels):
    cfg = sit_config(size, input_size=latent, patch_size=patch, in_channels=channels)
    with META:
        sit = SiT(cfg).eval()
    x = torch.empty(1, channels, latent, latent, device=META)
    t, y = torch.empty(1, device=META), torch.zeros(1, dtype=torch.long, device=META)
    assert sit_flops(cfg) == count_flops(cfg, batch=1, include_projectors=True) == forward_flops(sit, x, t, y)
    truncated = forward_flops(sit, x, t, y, fn=lambda m, *a: m(*a, stop_at_depth=cfg.alignment_depth))
    assert sit_flops(cfg, truncated=True) == truncated
    comp = component_flops(cfg, resolution=8 * latent, image_channels=3)
    assert comp.sit + comp.sit_projectors == count_flops(cfg)
    assert comp.sit_truncated < comp.sit * cfg.alignment_depth / cfg.depth * 1.01


def test_xl2_sd_vae_components_are_the_known_sizes():
    """Regression guard for the counts of the SD-VAE architecture at 256 px (136.4 / 311.1 GMACs): the decoder is
    the step's largest part, and its count must not drift silently when diffusers changes."""
    from repae_lab.models.vae import build_vae

    with META:
        vae = build_vae("sd-f8c4")
    comp = component_flops(sit_config("XL"), resolution=256, image_channels=3, vae=vae)
    assert math.isclose(comp.vae_encoder / 2, 136.4e9, rel_tol=0.01)
    assert math.isclose(comp.vae_decoder / 2, 311.1e9, rel_tol=0.01)


# Distinct magnitudes, so that any pass counted twice or left out changes the sum detectably.
COMP = ComponentFlops(sit=1e6, sit_truncated=3e5, sit_projectors=1e4, vae_encoder=2e7, vae_decoder=5e7,
                      target_encoder=7e3, discriminator=1e2, perceptual=1e1)


def _sum(**coef) -> float:
    return sum(getattr(COMP, k) * v for k, v in coef.items())


def test_repa_e_step_is_the_documented_sum_of_its_parts():
    cfg = resolve_config("workshop", recipe="repa-e")
    sf = step_flops(cfg, COMP)
    expected = _sum(target_encoder=1,                      # DINOv2 features, no grad
                    vae_encoder=3, vae_decoder=3,          # VAE trained: fwd + 2x bwd
                    sit_truncated=2, sit_projectors=2 + 3,  # frozen truncated SiT + projectors: fwd + 1x bwd; then trained
                    perceptual=1.5,                        # trunk on recon and x, gradient through the recon half
                    discriminator=2 + 6,                   # GAN term fwd + 1x bwd; D update on real+fake: 2 fwd + 4 bwd
                    sit=3)                                 # SiT update: fwd + 2x bwd
    assert sf.per_image == pytest.approx(expected, rel=1e-12)
    assert sf.total(4) == pytest.approx(4 * expected, rel=1e-12)
    assert sum(sf.by_component().values()) == pytest.approx(sf.per_image, rel=1e-12)
    assert [p.update for p in sf.passes][0] == "targets" and sf.passes[-1].update == "sit"


def test_other_recipes_and_switches():
    repa = resolve_config("workshop", recipe="repa")
    assert step_flops(repa, COMP).per_image == pytest.approx(_sum(target_encoder=1, vae_encoder=1, sit=3, sit_projectors=3))
    assert step_flops(repa, COMP, "repa-cached").per_image == pytest.approx(_sum(sit=3, sit_projectors=3))
    on_e2e = resolve_config("workshop", recipe="on-frozen-e2e-vae")
    assert step_flops(on_e2e, COMP).per_image == step_flops(repa, COMP).per_image
    vanilla = resolve_config("workshop", recipe="vanilla")   # projectors run but get no gradient
    assert step_flops(vanilla, COMP).per_image == pytest.approx(_sum(vae_encoder=1, sit=3, sit_projectors=1))
    e2e = resolve_config("workshop", recipe="e2e-diffusion")  # full frozen SiT pass for the diffusion loss
    assert step_flops(e2e, COMP).per_image == pytest.approx(
        _sum(vae_encoder=3, vae_decoder=3, sit=2 + 3, sit_projectors=1 + 1, perceptual=1.5, discriminator=8))
    no_grad_stop = resolve_config("workshop", recipe="repa-e", overrides=dict(stop_grad=False))
    assert step_flops(no_grad_stop, COMP).per_image == pytest.approx(
        _sum(target_encoder=1, vae_encoder=3, vae_decoder=3, sit=2 + 3, sit_projectors=2 + 3,
             perceptual=1.5, discriminator=8))
    no_gan = resolve_config("workshop", recipe="repa-e", overrides=dict(gan_weight=0.0))
    assert step_flops(no_gan, COMP).per_image == pytest.approx(step_flops(resolve_config("workshop"), COMP).per_image
                                                               - 8 * COMP.discriminator)
    no_reg = resolve_config("workshop", recipe="repa-e", overrides=dict(vae_reg=False))
    assert "discriminator" not in step_flops(no_reg, COMP).by_component()
    assert "perceptual" not in step_flops(no_reg, COMP).by_component()
    with pytest.raises(ValueError, match="repa-cached"):
        step_flops(repa, COMP, "cached")
    assert set(STEP_KINDS) >= {"vanilla", "repa", "e2e-diffusion", "repa-e", "on-frozen-e2e-vae"}


def test_analytic_step_matches_a_counted_real_step(tiny_config, one_thread):
    """Count every matmul / conv a real repa-e workshop step dispatches, forward and backward. The analytic sum
    may only be slightly higher: it prices the first layer's unneeded input gradient and ignores nothing else."""
    from repae_lab.training.step import train_step
    from repae_lab.training.state import build_state

    cfg = tiny_config("repa-e", device="cpu", encoder_steps=1)
    state = build_state(cfg, progress=False)
    x = torch.rand(cfg.batch_size, 1, cfg.resolution, cfg.resolution) * 2 - 1
    y = torch.randint(0, 10, (cfg.batch_size,))
    predicted = step_flops(cfg, state_component_flops(state)).total(cfg.batch_size)
    with FlopCounterMode(display=False) as counter:
        train_step(state, x, y, torch.Generator().manual_seed(0))
    counted = counter.get_total_flops()
    assert 1.0 <= predicted / counted < 1.05


def _benchmark_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"
    spec = importlib.util.spec_from_file_location("repae_throughput_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    """The steps below are tiny; on a shared CPU extra threads only spin-wait (and the benchmark sets threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_lpips_stand_in_costs_what_lpips_vgg_costs():
    lpips = pytest.importorskip("lpips")
    bench = _benchmark_module()
    with META, warnings.catch_warnings():
        warnings.simplefilter("ignore")      # torchvision's deprecation warning for lpips' pretrained=False
        real = lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False)   # random weights, no download
        stand_in = bench.RandomLPIPSVGG()
    x = torch.empty(1, 3, 64, 64, device=META)
    assert forward_flops(stand_in, x, x) == forward_flops(real, x, x) > 0
    assert [type(m) for m in stand_in.slices.modules()][1:] == [type(m) for m in real.net.modules()][1:]


def test_benchmark_runs_and_reports(tmp_path, encoder_cache, one_thread):
    import json

    bench = _benchmark_module()
    out = tmp_path / "perf.json"
    bench.main(["--device", "cpu", "--sizes", "workshop", "--recipes", "repa-cached,repa-e", "--batch", "4",
                "--steps", "1", "--warmup", "0", "--threads", "1", "--peak-tflops", "1",
                "--set", "sit_size=W-tiny", "projector_dim=64", f"cache_dir={encoder_cache}", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["recipe"] for r in rows] == ["repa-cached", "repa-e"]
    for r in rows:
        assert r["images_per_s"] > 0 and r["peak_memory_bytes"] > 0 and 0 < r["mfu"] < 1
        assert r["tflops"] == pytest.approx(r["flops_per_step"] / (r["step_ms"] / 1e3) / 1e12)
        assert not r["nonfinite_metrics"]
    assert rows[1]["flops_per_image"] > rows[0]["flops_per_image"]


def test_benchmark_paper_path_with_speed_switches_and_profile(tmp_path, one_thread, capsys):
    """The paper-size construction (SD-VAE, DINOv2-B, PatchGAN, LPIPS stand-in) at 64 px, with channels-last
    networks and a profiled step: what benchmarks/gpu_session.sh runs on a GPU, small enough for a CPU."""
    import json

    bench = _benchmark_module()
    out = tmp_path / "perf.json"
    bench.main(["--device", "cpu", "--sizes", "xl2-sdvae", "--recipes", "repa-e", "--batch", "2", "--steps", "1",
                "--warmup", "0", "--threads", "1", "--profile", "--json", str(out),
                "--set", "resolution=64", "sit_size=S", "channels_last=true"])
    (row,) = json.loads(out.read_text())["rows"]
    assert "error" not in row and not row["nonfinite_metrics"] and row["images_per_s"] > 0
    assert "aten::" in row["profile"] and "aten::" in capsys.readouterr().out
