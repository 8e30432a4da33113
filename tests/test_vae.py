"""VAE wrappers (diffusers AutoencoderKL) and the PatchGAN discriminator. CPU only, offline."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from repae_lab.models.discriminator import (
    PatchDiscriminator,
    check_input_size,
    discriminator_hinge_loss,
    generator_hinge_loss,
    min_input_size,
)
from repae_lab.models.vae import (
    VAE_CONFIGS,
    build_vae,
    decode,
    downsample_factor,
    encode,
    kl_loss,
    latent_channels,
    load_vae,
    vae_from_spec,
)
from repae_lab.models.vae_files import latent_stats_from_config, save_e2e_vae


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Nothing here may touch the network; make any accidental hub lookup fail fast.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _tiny(name="workshop-16", seed=0):
    torch.manual_seed(seed)
    return build_vae(name).eval()


# --------------------------------------------------------------------------- #
# configs and shapes
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "name, channels, size",
    [("workshop-16", 1, 16), ("workshop-32", 1, 32), ("workshop-32-rgb", 3, 32)],
)
def test_workshop_roundtrip_shapes(name, channels, size):
    vae = _tiny(name)
    x = torch.rand(1, channels, size, size) * 2 - 1
    with torch.no_grad():
        z, posterior = encode(vae, x)
        y = decode(vae, z)
    assert z.shape == (1, 4, 8, 8)
    assert posterior.mean.shape == (1, 4, 8, 8)
    assert y.shape == x.shape
    assert latent_channels(vae) == 4
    assert downsample_factor(vae) == size // 8


@pytest.mark.parametrize("name, channels", [("workshop-16-c8", 8), ("workshop-16-c16", 16)])
def test_wider_workshop_latents_keep_the_8x8_grid_and_stay_small(name, channels):
    """The speed-up search varies the latent's channels alone: same 16x16 input, same 8x8 grid (so the same
    16 SiT tokens), a VAE still under 1M parameters."""
    vae = _tiny(name)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        z, _ = encode(vae, x)
        y = decode(vae, z)
    assert z.shape == (2, channels, 8, 8) and y.shape == x.shape
    assert sum(p.numel() for p in vae.parameters()) < 1_000_000


@pytest.mark.parametrize("name, shape", [("sd-f8c4", (1, 4, 32, 32)), ("f16c32", (1, 32, 16, 16))])
def test_large_configs_latent_shape_on_meta(name, shape):
    # The meta device runs the real forward's shape logic without allocating or computing.
    with torch.device("meta"):
        vae = build_vae(name)
        z, _ = encode(vae, torch.empty(1, 3, 256, 256), sample=False)
    assert tuple(z.shape) == shape
    assert downsample_factor(vae) == 256 // shape[-1]
    assert latent_channels(vae) == shape[1]


def test_sd_f8c4_small_forward():
    torch.manual_seed(0)
    vae = build_vae("sd-f8c4").eval()
    with torch.no_grad():
        z, _ = encode(vae, torch.rand(1, 3, 64, 64) * 2 - 1)
        y = decode(vae, z)
    assert z.shape == (1, 4, 8, 8)
    assert y.shape == (1, 3, 64, 64)


def test_build_vae_overrides_and_errors():
    vae = build_vae("workshop-32-rgb", in_channels=1)
    assert vae.config.in_channels == 1 and vae.config.out_channels == 1
    # The override must not leak into the shared table.
    assert VAE_CONFIGS["workshop-32-rgb"]["in_channels"] == 3

    custom = build_vae(dict(VAE_CONFIGS["workshop-16"], latent_channels=8))
    assert latent_channels(custom) == 8

    with pytest.raises(ValueError) as err:
        build_vae("no-such-vae")
    for name in VAE_CONFIGS:
        assert name in str(err.value)


def test_gradients_reach_encoder():
    # End-to-end training needs d(loss)/d(encoder) through the sample.
    vae = _tiny().train()
    z, posterior = encode(vae, torch.rand(2, 1, 16, 16) * 2 - 1, generator=torch.Generator().manual_seed(0))
    (z.square().mean() + kl_loss(posterior)).backward()
    assert vae.encoder.conv_in.weight.grad is not None
    assert vae.encoder.conv_in.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- #
# sampling
# --------------------------------------------------------------------------- #


def test_encode_sampling():
    vae = _tiny()
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        z_a, post = encode(vae, x, generator=torch.Generator().manual_seed(1))
        z_a2, _ = encode(vae, x, generator=torch.Generator().manual_seed(1))
        z_b, _ = encode(vae, x, generator=torch.Generator().manual_seed(2))
        z_mean, post_mean = encode(vae, x, sample=False)
    assert torch.equal(z_a, z_a2)
    assert not torch.allclose(z_a, z_b)
    assert torch.equal(z_mean, post_mean.mean)
    assert torch.allclose(z_mean, post.mean)
    assert not torch.allclose(z_a, z_mean)


# --------------------------------------------------------------------------- #
# KL
# --------------------------------------------------------------------------- #


def test_kl_loss_matches_hand_computation():
    # Batch of 2, one latent channel of 1x2 pixels: params = [mean; logvar] on dim 1.
    mean = torch.tensor([[[[0.0, 1.0]]], [[[2.0, -1.0]]]])
    logvar = torch.tensor([[[[0.0, 0.0]]], [[[torch.log(torch.tensor(4.0)), 0.0]]]])
    posterior = DiagonalGaussianDistribution(torch.cat([mean, logvar], dim=1))
    # 0.5 * (mu^2 + var - 1 - logvar) per element:
    # sample 0: 0 + 0.5 ; sample 1: 0.5*(4 + 4 - 1 - ln4) + 0.5
    s0 = 0.0 + 0.5
    s1 = 0.5 * (4 + 4 - 1 - torch.log(torch.tensor(4.0)).item()) + 0.5
    assert kl_loss(posterior).item() == pytest.approx((s0 + s1) / 2, rel=1e-6)

    deterministic = DiagonalGaussianDistribution(torch.cat([mean, logvar], dim=1), deterministic=True)
    assert kl_loss(deterministic).item() == 0.0


# --------------------------------------------------------------------------- #
# load / save
# --------------------------------------------------------------------------- #


def _assert_same_vae(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    x = torch.rand(2, a.config.in_channels, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(encode(a.eval(), x, sample=False)[0], encode(b.eval(), x, sample=False)[0])


def test_load_vae_from_local_folder(tmp_path):
    vae = _tiny()
    vae.save_pretrained(tmp_path / "vae", safe_serialization=True)
    loaded = load_vae(str(tmp_path / "vae"))
    _assert_same_vae(vae, loaded)

    # A pipeline-style folder (the VAE in a `vae/` subfolder) works either way.
    _assert_same_vae(vae, load_vae(str(tmp_path)))
    _assert_same_vae(vae, load_vae(str(tmp_path), subfolder="vae"))
    # vae_from_spec treats non-config names as paths.
    _assert_same_vae(vae, vae_from_spec(str(tmp_path / "vae")))
    with pytest.raises(ValueError, match="input channels"):
        vae_from_spec(str(tmp_path / "vae"), in_channels=3)


# diffusers passes a deprecated huggingface_hub argument on the hub path; not ours to fix.
@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated")
@pytest.mark.parametrize("spec", ["nobody-xyz/no-such-vae", "/definitely/not/a/vae/folder"])
def test_load_vae_bad_spec_gives_clear_error(spec):
    with pytest.raises(OSError) as err:
        load_vae(spec)
    msg = str(err.value)
    assert spec in msg
    assert "diffusers layout" in msg
    assert "HF_HUB_OFFLINE" in msg


def test_load_vae_folder_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="config.json"):
        load_vae(str(tmp_path / "empty"))


def test_save_e2e_vae_roundtrip(tmp_path):
    vae = _tiny()
    mean = torch.tensor([0.1, -0.2, 0.3, 0.0])
    std = torch.tensor([1.5, 0.5, 2.0, 1.0])
    out = save_e2e_vae(vae, tmp_path / "e2e-vae", latents_mean=mean, latents_std=std.view(1, 4, 1, 1))
    assert out == (tmp_path / "e2e-vae").resolve()
    assert (out / "config.json").is_file()
    assert (out / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((out / "config.json").read_text())["latents_mean"] == pytest.approx(mean.tolist())

    loaded = load_vae(str(out))
    stats = latent_stats_from_config(loaded)
    assert stats is not None
    assert torch.allclose(stats[0], mean) and torch.allclose(stats[1], std)
    _assert_same_vae(vae, loaded)

    # Overwriting an existing checkpoint is fine and leaves no temp/backup folders.
    save_e2e_vae(vae, out, latents_mean=mean + 1, latents_std=std)
    assert torch.allclose(latent_stats_from_config(load_vae(str(out)))[0], mean + 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e2e-vae"]


def test_save_e2e_vae_validates_stats(tmp_path):
    vae = _tiny()
    with pytest.raises(ValueError, match="latent channels"):
        save_e2e_vae(vae, tmp_path / "x", latents_mean=torch.zeros(3), latents_std=torch.ones(3))
    assert list(tmp_path.iterdir()) == []


def test_latent_stats_absent():
    assert latent_stats_from_config(_tiny()) is None


# --------------------------------------------------------------------------- #
# discriminator
# --------------------------------------------------------------------------- #


def test_discriminator_output_shapes():
    d16 = PatchDiscriminator(in_channels=1, n_layers=2, input_size=16)
    assert d16(torch.randn(2, 1, 16, 16)).shape == (2, 1, 2, 2)
    d32 = PatchDiscriminator(in_channels=3, n_layers=3)
    assert d32(torch.randn(2, 3, 32, 32)).shape == (2, 1, 2, 2)


def test_discriminator_default_layout():
    d = PatchDiscriminator()
    convs = [m for m in d.main if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert [c.bias is not None for c in convs] == [True, False, False, False, True]
    # taming key names, so released discriminator checkpoints load.
    keys = set(d.state_dict())
    for k in ["main.0.weight", "main.0.bias", "main.2.weight", "main.3.running_mean", "main.11.weight", "main.11.bias"]:
        assert k in keys
    bns = [m for m in d.main if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(bn.bias, torch.zeros_like(bn.bias)) for bn in bns)
    assert 0.9 < torch.cat([bn.weight for bn in bns]).mean() < 1.1
    assert convs[1].weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_discriminator_input_size_check():
    assert min_input_size(2) == 12
    assert min_input_size(3) == 24
    check_input_size(32, 3)
    with pytest.raises(ValueError, match="n_layers=2"):
        check_input_size(16, 3)
    with pytest.raises(ValueError, match="n_layers=2"):
        PatchDiscriminator(in_channels=1, n_layers=3, input_size=16)
    with pytest.raises(ValueError, match="n_layers=2"):
        PatchDiscriminator(in_channels=1, n_layers=3)(torch.randn(1, 1, 16, 16))


def test_hinge_losses():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - real) = [0, 0.5, 2] -> mean 2.5/3
    fake = torch.tensor([-2.0, 0.0, 1.0])  # relu(1 + fake) = [0, 1, 2]  -> mean 1
    assert discriminator_hinge_loss(real, fake).item() == pytest.approx(0.5 * (2.5 / 3 + 1.0))
    assert generator_hinge_loss(fake).item() == pytest.approx(1.0 / 3)


def test_workshop_vae_pretraining_reconstructs_and_is_cached(tmp_path):
    """The workshop presets start every recipe from a VAE pretrained on the dataset (as the paper starts from
    SD-VAE): it reconstructs far better than a fresh one, and the second request reads the cache."""
    import time

    from repae_lab.data import load_dataset
    from repae_lab.models.workshop_vae import pretrained_workshop_vae

    dataset = load_dataset("digits", resolution=16)
    x, _ = dataset.batch(torch.arange(64))

    def l1(vae):
        with torch.no_grad():
            z, _ = encode(vae, x, sample=False)
            return (decode(vae, z) - x).abs().mean().item()

    # 40 steps already reconstruct 5x better than a fresh VAE (measured; 150 steps: 11x)
    trained = pretrained_workshop_vae("workshop-16", dataset, steps=40, cache_dir=tmp_path, progress=False)
    assert trained.training and all(p.requires_grad for p in trained.parameters())
    torch.manual_seed(0)
    assert l1(trained) < 0.5 * l1(build_vae("workshop-16", in_channels=1))
    t0 = time.perf_counter()
    again = pretrained_workshop_vae("workshop-16", dataset, steps=40, cache_dir=tmp_path, progress=False)
    assert time.perf_counter() - t0 < 2.0
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), again.state_dict().values()))
    assert len(list((tmp_path / "vaes").glob("workshop-16-digits-16px-*.safetensors"))) == 1


def test_build_state_starts_from_the_pretrained_vae(tiny_config, encoder_cache):
    from repae_lab.data import load_dataset
    from repae_lab.models.workshop_vae import pretrained_workshop_vae
    from repae_lab.training.state import build_state

    for recipe in ("vanilla", "repa-e"):
        state = build_state(tiny_config(recipe), progress=False)
        expected = pretrained_workshop_vae("workshop-16", load_dataset("digits", resolution=16),
                                           steps=state.cfg.vae_pretrain_steps, cache_dir=encoder_cache)
        for key, value in expected.state_dict().items():
            assert torch.equal(state.nets.vae.state_dict()[key], value), (recipe, key)
        assert all(p.requires_grad for p in state.nets.vae.parameters()) == (recipe == "repa-e")
    fresh = build_state(tiny_config("repa-e", vae_pretrain_steps=0), progress=False)
    assert not torch.equal(fresh.nets.vae.state_dict()["encoder.conv_in.weight"], state.nets.vae.state_dict()["encoder.conv_in.weight"])
