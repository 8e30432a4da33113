"""Loaders for released models (repae_lab.models.released), offline: random weights saved in the released layouts."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from repae_lab.models.discriminator import PatchDiscriminator
from repae_lab.models.from_run import load_for_sampling
from repae_lab.models.sit import SiT, SiTConfig
from repae_lab.models.released import (ReleasedModelError, diffusers_to_ldm, import_checkpoint, ldm_to_diffusers,
                                       load_latents_stats, load_released_discriminator, load_released_vae,
                                       load_sit_checkpoint, save_latents_stats)
from repae_lab.models.released.latents_stats import SD_VAE_SCALE, bn_buffers, stats_path_for

NUM_CLASSES = 10


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# --------------------------------------------------------------------------------------------- builders

def _randomise(module: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Every parameter random (adaLN-Zero would otherwise make the SiT output exactly zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return module


def small_sit(seed: int = 0, null_row: bool = True) -> SiT:
    cfg = SiTConfig(alignment_depth=1, input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2,
                    num_heads=4, num_classes=NUM_CLASSES, class_dropout_prob=0.1 if null_row else 0.0,
                    projector_dim=48, z_dims=(32,))
    sit = _randomise(SiT(cfg), seed)
    sit.bn.running_mean.copy_(torch.tensor([0.5, -0.2, 0.1, 0.0]))
    sit.bn.running_var.copy_(torch.tensor([4.0, 2.0, 1.5, 0.7]))
    return sit.eval()


def small_vae(seed: int = 0, *, latent: int = 4, attention_level: bool = False, quant: bool = True,
              widths=(32, 64, 64)) -> AutoencoderKL:
    torch.manual_seed(seed)
    n = len(widths)
    down = ["DownEncoderBlock2D"] * n
    up = ["UpDecoderBlock2D"] * n
    if attention_level:          # attention at the lowest resolution, as the official f16d32 VAEs
        down[-1], up[0] = "AttnDownEncoderBlock2D", "AttnUpDecoderBlock2D"
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=tuple(widths), layers_per_block=1,
                        latent_channels=latent, norm_num_groups=32, sample_size=32, down_block_types=tuple(down),
                        up_block_types=tuple(up), use_quant_conv=quant, use_post_quant_conv=quant)
    return _randomise(vae, seed + 100, std=0.05).eval()


def official_args(**overrides) -> argparse.Namespace:
    values = dict(model="SiT-B/2", num_classes=NUM_CLASSES, encoder_depth=1, cfg_prob=0.1, bn_momentum=0.1,
                  enc_type="dinov2-vit-b", vae="f8d4", resolution=32, batch_size=256, learning_rate=1e-4,
                  vae_learning_rate=1e-4, disc_learning_rate=1e-4, proj_coeff=0.5, vae_align_proj_coeff=1.5,
                  mixed_precision="fp16", seed=0, qk_norm=False, compile=True)
    values.update(overrides)
    return argparse.Namespace(**values)


def official_checkpoint(path, *, sit=None, ema=None, vae=None, disc=None, args=None, steps=1234, prefix="module."):
    """A dict laid out as train_repae.py saves it, written with torch.save."""
    sit = sit if sit is not None else small_sit(0)
    ema = ema if ema is not None else small_sit(1)
    vae = vae if vae is not None else small_vae(0)
    disc = disc if disc is not None else _randomise(PatchDiscriminator(3, ndf=16, n_layers=2), 3)
    opt = torch.optim.AdamW(sit.parameters(), lr=1e-4)
    sit(torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([1, 2]))[0].sum().backward()
    opt.step()
    ckpt = {"model": {prefix + k: v for k, v in sit.state_dict().items()}, "ema": ema.state_dict(),
            "vae": diffusers_to_ldm(vae.state_dict()), "discriminator": disc.state_dict(), "opt": opt.state_dict(),
            "opt_vae": {}, "opt_disc": {}, "args": args if args is not None else official_args(), "steps": steps}
    torch.save(ckpt, path)
    return dict(sit=sit, ema=ema, vae=vae, disc=disc, path=path)


def _inputs(seed: int = 5, n: int = 3):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 4, 8, 8, generator=gen), torch.rand(n, generator=gen),
            torch.randint(0, NUM_CLASSES, (n,), generator=gen))


def _same_output(a: SiT, b: SiT, atol=1e-6):
    x, t, y = _inputs()
    with torch.no_grad():
        va, za = a(x, t, y)
        vb, zb = b(x, t, y)
    assert torch.allclose(va, vb, atol=atol) and all(torch.allclose(p, q, atol=atol) for p, q in zip(za, zb))


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------------------------- SiT checkpoints

def test_official_checkpoint_loads_strictly_and_reproduces_the_saving_model(tmp_path):
    saved = official_checkpoint(tmp_path / "0001234.pt")
    ck = load_sit_checkpoint(tmp_path / "0001234.pt", num_heads=4)
    assert ck.kind == "repa-e" and ck.step == 1234 and not ck.fixed_scale
    c = ck.config
    assert (c.depth, c.hidden_size, c.patch_size, c.in_channels, c.input_size) == (2, 64, 2, 4, 8)
    assert (c.num_classes, c.z_dims, c.projector_dim, c.class_dropout_prob) == (NUM_CLASSES, (32,), 48, 0.1)
    _same_output(ck.ema, saved["ema"])
    _same_output(ck.model, saved["sit"])              # the module. prefix was stripped
    assert torch.allclose(ck.latents_mean, saved["ema"].bn.running_mean)
    assert torch.allclose(ck.latents_std ** 2, saved["ema"].bn.running_var + 1e-4)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ck.vae.encode(x).latent_dist.mean, saved["vae"].encode(x).latent_dist.mean, atol=1e-6)
        assert torch.allclose(ck.discriminator(x), saved["disc"].eval()(x), atol=1e-6)
    assert ck.vae.config.latents_mean == pytest.approx(ck.latents_mean.tolist())


def test_checkpoint_trained_without_label_dropout_has_no_null_row_and_still_loads(tmp_path):
    ema = small_sit(1, null_row=False)
    state = ema.state_dict()
    state["y_embedder.embedding_table.weight"] = state["y_embedder.embedding_table.weight"][:NUM_CLASSES]
    torch.save({"ema": state, "args": official_args(cfg_prob=0.0), "steps": 10}, tmp_path / "nodrop.pt")
    ck = load_sit_checkpoint(tmp_path / "nodrop.pt", num_heads=4)
    assert ck.config.num_classes == NUM_CLASSES and ck.config.class_dropout_prob == 0.0
    assert any("null-class row" in n for n in ck.notes)
    _same_output(ck.ema, ema)                         # real labels embed exactly as before


def test_repa_checkpoint_without_batchnorm_gets_the_fixed_sd_vae_scale(tmp_path):
    ema = small_sit(1)
    state = {k: v for k, v in ema.state_dict().items() if not k.startswith("bn.")}
    torch.save({"model": state, "ema": state, "opt": {}, "args": official_args(), "steps": 7}, tmp_path / "repa.pt")
    ck = load_sit_checkpoint(tmp_path / "repa.pt", num_heads=4)
    assert ck.kind == "repa" and ck.fixed_scale and ck.vae is None
    z = torch.randn(2, 4, 8, 8) * 5
    assert torch.allclose(ck.ema.normalize_latent(z), z * SD_VAE_SCALE, rtol=1e-5, atol=1e-6)
    assert torch.allclose(ck.ema.denormalize_latent(z * SD_VAE_SCALE), z, rtol=1e-5, atol=1e-5)


def test_bare_state_dict_with_compile_prefix_loads(tmp_path):
    ema = small_sit(2)
    torch.save({"_orig_mod." + k: v for k, v in ema.state_dict().items()}, tmp_path / "bare.pt")
    ck = load_sit_checkpoint(tmp_path / "bare.pt", num_heads=4, alignment_depth=1)
    assert ck.kind == "state-dict"
    _same_output(ck.ema, ema)


def test_mismatched_checkpoint_names_keys_and_shapes(tmp_path):
    saved = official_checkpoint(tmp_path / "ok.pt")
    state = saved["ema"].state_dict()
    state["blocks.1.attn.proj.weight"] = torch.randn(64, 32)
    del state["blocks.0.mlp.fc2.bias"]
    torch.save({"ema": state, "args": official_args()}, tmp_path / "bad.pt")
    with pytest.raises(ReleasedModelError) as err:
        load_sit_checkpoint(tmp_path / "bad.pt", num_heads=4)
    msg = _one_line(err)
    assert "blocks.1.attn.proj.weight" in msg and "(64, 32)" in msg and "(64, 64)" in msg
    assert "missing key blocks.0.mlp.fc2.bias" in msg


def test_heads_that_weights_cannot_tell_must_be_given(tmp_path):
    official_checkpoint(tmp_path / "c.pt")
    with pytest.raises(ReleasedModelError) as err:
        load_sit_checkpoint(tmp_path / "c.pt")
    assert "num_heads=" in _one_line(err)


def test_not_a_sit_and_not_a_checkpoint_are_refused_with_the_fix(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ReleasedModelError) as err:
        load_sit_checkpoint(tmp_path / "other.pt")
    assert "x_embedder.proj.weight" in _one_line(err)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ReleasedModelError) as err:
        load_sit_checkpoint(tmp_path / "list.pt")
    assert "neither an official training checkpoint" in _one_line(err)


class _Payload:
    """Unpickling this would create a file: proof that code ran on load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_with_an_arbitrary_class_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"ema": small_sit(0).state_dict(), "args": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ReleasedModelError) as err:
        load_sit_checkpoint(tmp_path / "evil.pt", num_heads=4)
    assert "refused" in _one_line(err)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------- VAEs

def _encode(vae, x):
    with torch.no_grad():
        d = vae.encode(x).latent_dist
        return d.mean, d.std


def test_diffusers_folder_and_ldm_state_dict_encode_identically(tmp_path):
    vae = small_vae(0)
    vae.save_pretrained(tmp_path / "diffusers")
    torch.save(diffusers_to_ldm(vae.state_dict()), tmp_path / "ldm.pt")
    from_folder = load_released_vae(tmp_path / "diffusers")
    from_ldm = load_released_vae(tmp_path / "ldm.pt")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    ref = _encode(vae, x)
    for loaded in (from_folder, from_ldm):
        got = _encode(loaded, x)
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    with torch.no_grad():
        assert torch.equal(from_ldm.decode(ref[0]).sample, vae.decode(ref[0]).sample)
    ldm = torch.load(tmp_path / "ldm.pt", weights_only=True)
    assert ldm["encoder.mid.attn_1.q.weight"].shape == (64, 64, 1, 1)       # LDM attention is a 1x1 conv
    assert "decoder.up.2.block.0.conv1.weight" in ldm and "encoder.down.0.block.0.conv1.weight" in ldm


def test_ldm_conversion_agrees_with_diffusers_single_file_conversion():
    single_file = pytest.importorskip("diffusers.loaders.single_file_utils")
    if not hasattr(single_file, "convert_ldm_vae_checkpoint"):
        pytest.skip("this diffusers version has no convert_ldm_vae_checkpoint")
    vae = small_vae(1)
    ldm = diffusers_to_ldm(vae.state_dict())
    ours = ldm_to_diffusers(ldm)
    theirs = single_file.convert_ldm_vae_checkpoint(ldm, dict(vae.config))
    assert set(ours) == set(theirs) == set(vae.state_dict())
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def _gn(x, sd, key):
    return F.group_norm(x, 32, sd[key + ".weight"], sd[key + ".bias"], eps=1e-6)


def _conv(x, sd, key, **kw):
    return F.conv2d(x, sd[key + ".weight"], sd[key + ".bias"], **kw)


def _ldm_resnet(x, sd, key):
    h = _conv(F.silu(_gn(x, sd, key + ".norm1")), sd, key + ".conv1", padding=1)
    h = _conv(F.silu(_gn(h, sd, key + ".norm2")), sd, key + ".conv2", padding=1)
    return (_conv(x, sd, key + ".nin_shortcut") if key + ".nin_shortcut.weight" in sd else x) + h


def _ldm_attention(x, sd, key):
    b, c, hh, ww = x.shape
    h = _gn(x, sd, key + ".norm")
    q, k, v = (_conv(h, sd, f"{key}.{n}").reshape(b, c, hh * ww) for n in "qkv")
    weights = torch.softmax(q.transpose(1, 2) @ k / c ** 0.5, dim=-1)           # (b, query, key)
    out = (v @ weights.transpose(1, 2)).reshape(b, c, hh, ww)
    return x + _conv(out, sd, key + ".proj_out")


def ldm_encoder_moments(sd, x, levels: int, blocks: int):
    """An independent, functional reading of the LDM encoder (taming layout), for the reference below."""
    h = _conv(x, sd, "encoder.conv_in", padding=1)
    for i in range(levels):
        for j in range(blocks):
            h = _ldm_resnet(h, sd, f"encoder.down.{i}.block.{j}")
            if f"encoder.down.{i}.attn.{j}.q.weight" in sd:
                h = _ldm_attention(h, sd, f"encoder.down.{i}.attn.{j}")
        if f"encoder.down.{i}.downsample.conv.weight" in sd:
            h = _conv(F.pad(h, (0, 1, 0, 1)), sd, f"encoder.down.{i}.downsample.conv", stride=2)
    h = _ldm_resnet(h, sd, "encoder.mid.block_1")
    h = _ldm_attention(h, sd, "encoder.mid.attn_1")
    h = _ldm_resnet(h, sd, "encoder.mid.block_2")
    h = _conv(F.silu(_gn(h, sd, "encoder.norm_out")), sd, "encoder.conv_out", padding=1)
    return _conv(h, sd, "quant_conv").chunk(2, dim=1)[0]


def test_ldm_vae_with_attention_levels_matches_an_independent_ldm_encoder():
    vae = small_vae(2, attention_level=True, latent=8)
    ldm = diffusers_to_ldm(vae.state_dict())
    assert "encoder.down.2.attn.0.q.weight" in ldm and "decoder.up.2.attn.0.q.weight" in ldm
    loaded = load_released_vae(ldm)
    assert loaded.config.down_block_types[-1] == "AttnDownEncoderBlock2D"
    assert loaded.config.up_block_types[0] == "AttnUpDecoderBlock2D"
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = ldm_encoder_moments(ldm, x, levels=3, blocks=1)
        assert torch.allclose(_encode(loaded, x)[0], ref, atol=1e-5)


def test_flux_style_16_channel_vae_from_a_single_file_and_a_folder_with_latent_stats(tmp_path):
    from safetensors.torch import save_file

    from repae_lab.models.vae_files import latent_stats_from_config

    vae = small_vae(3, latent=16, quant=False)
    save_file(vae.state_dict(), str(tmp_path / "flux_like.safetensors"))
    loaded = load_released_vae(tmp_path / "flux_like.safetensors")
    assert loaded.config.latent_channels == 16 and not loaded.config.use_quant_conv
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(_encode(loaded, x)[0], _encode(vae, x)[0])
    vae.register_to_config(latents_mean=[0.1] * 16, latents_std=[2.0] * 16, shift_factor=0.1159)
    vae.save_pretrained(tmp_path / "e2e-hf")
    mean, std = latent_stats_from_config(load_released_vae(tmp_path / "e2e-hf"))
    assert torch.allclose(mean, torch.full((16,), 0.1)) and torch.allclose(std, torch.full((16,), 2.0))


def test_vae_errors_name_the_problem_and_the_fix(tmp_path):
    vae = small_vae(0)
    state = vae.state_dict()
    vae.save_pretrained(tmp_path / "folder")
    wrong = small_vae(0, widths=(32, 64, 96))
    from safetensors.torch import save_file

    save_file(wrong.state_dict(), str(tmp_path / "folder" / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(ReleasedModelError) as err:
        load_released_vae(tmp_path / "folder")
    assert "(96," in _one_line(err) and "config.json" in _one_line(err)
    with pytest.raises(ReleasedModelError) as err:
        load_released_vae({**diffusers_to_ldm(state), "encoder.extra.weight": torch.zeros(1)})
    assert "encoder.extra.weight" in _one_line(err)
    with pytest.raises(ReleasedModelError) as err:
        load_released_vae(tmp_path / "missing" / "vae.pt")
    assert "does not exist" in _one_line(err)


def test_hub_ids_fail_fast_offline_with_the_fix(tmp_path):
    with pytest.raises(ReleasedModelError) as err:
        load_released_vae("REPA-E/e2e-sdvae-hf", cache_dir=tmp_path / "hf")
    assert "huggingface-cli download REPA-E/e2e-sdvae-hf" in _one_line(err)
    with pytest.raises(ReleasedModelError):
        load_sit_checkpoint("REPA-E/sit-repae-sdvae:checkpoints/0400000.pt", cache_dir=tmp_path / "hf")


# --------------------------------------------------------------------------------------------- statistics, discriminator

def test_latents_stats_file_convention_round_trips(tmp_path):
    mean, std = torch.tensor([0.3, -1.0, 0.0, 2.0]), torch.tensor([5.0, 0.5, 1.0, 3.0])
    save_latents_stats(tmp_path / "vae-latents-stats.pt", mean, std)
    raw = torch.load(tmp_path / "vae-latents-stats.pt", weights_only=True)
    assert raw["latents_scale"].shape == (1, 4, 1, 1) and torch.allclose(raw["latents_scale"].flatten(), 1 / std)
    assert torch.allclose(raw["latents_bias"].flatten(), mean)
    m2, s2 = load_latents_stats(tmp_path / "vae-latents-stats.pt")
    assert torch.allclose(m2, mean) and torch.allclose(s2, std)
    bn = torch.nn.BatchNorm2d(4, eps=1e-4, affine=False).eval()
    bn.load_state_dict({k[len("bn."):]: v for k, v in bn_buffers(mean, std).items()})
    z = torch.randn(2, 4, 3, 3)
    assert torch.allclose(bn(z), (z - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1), atol=1e-5)
    # an LDM .pt with its stats file beside it (the official naming) carries them into the config
    vae_path = tmp_path / "e2e-vae.pt"
    torch.save(diffusers_to_ldm(small_vae(0).state_dict()), vae_path)
    save_latents_stats(stats_path_for(vae_path), mean, std)
    assert load_released_vae(vae_path).config.latents_std == pytest.approx(std.tolist())
    torch.save({"latents_scale": torch.tensor([1.0, -1.0])}, tmp_path / "bad-latents-stats.pt")
    with pytest.raises(ReleasedModelError) as err:
        load_latents_stats(tmp_path / "bad-latents-stats.pt")
    assert "latents_bias" in _one_line(err)


def test_pretrained_discriminator_loads_strictly(tmp_path):
    disc = _randomise(PatchDiscriminator(3, ndf=16, n_layers=3), 4).eval()
    torch.save(disc.state_dict(), tmp_path / "sdvae-discriminator-ckpt.pt")
    loaded = load_released_discriminator(tmp_path / "sdvae-discriminator-ckpt.pt")
    assert loaded.n_layers == 3 and loaded.main[0].out_channels == 16
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), disc(x))
    state = {k: v for k, v in disc.state_dict().items() if k != "main.3.running_var"}
    with pytest.raises(ReleasedModelError) as err:
        load_released_discriminator(state)
    assert "main.3.running_var" in _one_line(err)


# --------------------------------------------------------------------------------------------- import and sample

def test_import_checkpoint_writes_a_run_directory_that_samples(tmp_path):
    from repae_lab.config import config_from_dict
    from repae_lab.rundir import latest_good_checkpoint, verify_checkpoint
    from repae_lab.sampling import SamplingSpec, generate_images

    saved = official_checkpoint(tmp_path / "0001234.pt")
    run = import_checkpoint(tmp_path / "0001234.pt", tmp_path / "run", num_heads=4)
    cfg = config_from_dict(json.loads((run / "config.json").read_text()))
    assert (cfg.recipe, cfg.patch_size, cfg.alignment_depth, cfg.projector_dim, cfg.steps) == ("repa-e", 2, 1, 48, 1234)
    assert cfg.resolution == 32 and cfg.disc_layers == 2 and cfg.disc_ndf == 16
    sit_json = json.loads((run / "sit_config.json").read_text())
    assert sit_json["alignment_depth"] == 1 and sit_json["z_dims"] == [32] and "encoder_depth" not in sit_json
    ckpt = latest_good_checkpoint(run)
    verify_checkpoint(ckpt)
    assert ckpt.name == "step-00001234"
    assert json.loads((ckpt / "state.json").read_text()) == {"step": 1234, "optimizers": {}, "scaler": None}
    assert {p.name for p in ckpt.iterdir()} >= {"sit.safetensors", "ema.safetensors", "vae.safetensors",
                                               "discriminator.safetensors", "manifest.json"}
    imported = json.loads((run / "imported.json").read_text())
    assert imported["kind"] == "repa-e" and imported["step"] == 1234 and len(imported["source_sha256"]) == 64

    loaded = load_for_sampling(run, device="cpu")
    ema, vae = loaded.ema, loaded.vae
    _same_output(ema, saved["ema"])
    images = generate_images(ema, vae, torch.arange(4) % NUM_CLASSES, SamplingSpec(sampler="euler", steps=4),
                             progress=False)
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 32, 32)

    with pytest.raises(ReleasedModelError) as err:
        import_checkpoint(tmp_path / "0001234.pt", run, num_heads=4)
    assert "overwrite" in _one_line(err)


def test_import_needs_a_vae_when_the_checkpoint_has_none(tmp_path):
    ema = small_sit(1)
    state = {k: v for k, v in ema.state_dict().items() if not k.startswith("bn.")}
    torch.save({"model": state, "ema": state, "args": official_args(), "steps": 3}, tmp_path / "repa.pt")
    with pytest.raises(ReleasedModelError) as err:
        import_checkpoint(tmp_path / "repa.pt", tmp_path / "run", num_heads=4)
    assert "--vae" in _one_line(err) and not (tmp_path / "run").exists()
    small_vae(0).save_pretrained(tmp_path / "sd-vae")
    mean, std = torch.zeros(4), torch.full((4,), 3.0)
    save_latents_stats(tmp_path / "stats.pt", mean, std)
    run = import_checkpoint(tmp_path / "repa.pt", tmp_path / "run", num_heads=4, vae=tmp_path / "sd-vae",
                            latents_stats=tmp_path / "stats.pt")
    loaded = load_for_sampling(run, device="cpu")
    ema2 = loaded.ema
    z = torch.randn(2, 4, 8, 8)
    assert torch.allclose(ema2.normalize_latent(z), z / 3.0, atol=1e-5)
    assert json.loads((run / "config.json").read_text())["recipe"] == "repa"


# --------------------------------------------------------------------------------------------- compare-vaes, CLI

def _digit_folder(root, per_class: int = 4, classes: int = 3):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for c in range(classes):
        (root / f"class_{c}").mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(digits.target == c)[:per_class]):
            arr = (digits.images[i] / 16 * 255).astype(np.uint8)
            Image.fromarray(arr).resize((40, 48), Image.NEAREST).convert("RGB").save(root / f"class_{c}" / f"{k}.png")
    return root


def test_compare_vaes_on_an_image_folder_writes_table_and_figures(tmp_path):
    from repae_lab.probes.vae_comparison import compare_vaes

    small_vae(0).save_pretrained(tmp_path / "sd-like")
    small_vae(3, latent=16, quant=False, widths=(32, 32)).save_pretrained(tmp_path / "flux-like")
    folder = _digit_folder(tmp_path / "images")
    result = compare_vaes([tmp_path / "sd-like", tmp_path / "flux-like"], folder, tmp_path / "out", n=12)
    by_name = {r["vae"]: r for r in result.rows}
    assert by_name["sd-like"]["latent"] == "4x8x8" and by_name["flux-like"]["latent"] == "16x16x16"
    for row in result.rows:
        assert row["linear_probe"] is not None and 0 <= row["linear_probe"] <= 1
        assert np.isfinite([row["spatial_var"], row["total_variation"], row["rpsnr"], row["rssim"]]).all()
    assert any("rFD skipped" in n for n in result.notes)
    for name in ("vae_comparison.csv", "vae_comparison.json", "vae_comparison.md", "pca_rgb.png",
                 "reconstructions.png"):
        assert (tmp_path / "out" / name).is_file()
    assert result.pca_maps["flux-like"].shape == (12, 16, 16, 3)


def test_cli_subcommands_import_and_compare(tmp_path, capsys):
    from repae_lab.commands import build_parser

    official_checkpoint(tmp_path / "c.pt")
    parser = build_parser()
    args = parser.parse_args(["import-checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path / "run"),
                              "--num-heads", "4"])
    assert args.func(args) == 0 and (tmp_path / "run" / "sit_config.json").is_file()
    args = parser.parse_args(["import-checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path / "run2")])
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("repae-lab: error:") and "num_heads" in err and "\n" not in err
    folder = _digit_folder(tmp_path / "images", per_class=2)
    args = parser.parse_args(["compare-vaes", "--vae", str(tmp_path / "run"), "--vae", "workshop-32-rgb",
                              "--images", str(folder), "--out", str(tmp_path / "cmp")])
    assert args.func(args) == 0 and (tmp_path / "cmp" / "vae_comparison.md").is_file()


@pytest.mark.slow
def test_compare_vaes_on_a_workshop_dataset_reports_rfd(tmp_path):
    from repae_lab.probes.vae_comparison import compare_vaes

    result = compare_vaes(["workshop-16", "workshop-32"], "digits", n=40, cache_dir=tmp_path / "cache",
                          dataset_resolution=16)
    assert all(np.isfinite(r["rfd_workshop"]) for r in result.rows)


@pytest.mark.slow
def test_an_imported_checkpoint_samples_and_probes_through_the_normal_commands(tmp_path, capsys):
    """import-checkpoint -> repae-lab sample and repae-lab probe, unchanged, on the imported run."""
    from repae_lab.commands import main

    official_checkpoint(tmp_path / "0001234.pt")
    folder = _digit_folder(tmp_path / "images", per_class=8, classes=3)
    run = tmp_path / "imported"
    assert main(["import-checkpoint", str(tmp_path / "0001234.pt"), "--out", str(run), "--num-heads", "4",
                 "--probe-data", str(folder), "--probe-size", "24"]) == 0
    assert main(["sample", str(run), "--n", "6", "--out", str(tmp_path / "s.npz"), "--sampler", "euler",
                 "--steps", "3", "--quiet"]) == 0
    with np.load(tmp_path / "s.npz") as data:
        assert data["arr_0"].shape == (6, 32, 32, 3)
    assert main(["probe", str(run), "--no-umap", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1234" in out                                   # the imported step is probed
    assert (run / "probes" / "step-00001234.json").is_file()
    scalars = json.loads((run / "probes" / "step-00001234.json").read_text())["scalars"]
    assert np.isfinite(scalars["spatial_var"]) and 0 <= scalars["linear/latents"] <= 1
