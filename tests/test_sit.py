import math

import numpy as np
import pytest
import torch

from repae_lab.models.sit import SiT, SiTConfig, sincos_pos_embed_2d, sit_config
from repae_lab.training.flops import count_flops


def _b2_expected_shapes(depth=12, d=768, c=4, p=2, n_cls=1000, z=768, pd=2048):
    shapes = {
        "pos_embed": (1, 256, d),
        "x_embedder.proj.weight": (d, c, p, p),
        "x_embedder.proj.bias": (d,),
        "t_embedder.mlp.0.weight": (d, 256),
        "t_embedder.mlp.0.bias": (d,),
        "t_embedder.mlp.2.weight": (d, d),
        "t_embedder.mlp.2.bias": (d,),
        "y_embedder.embedding_table.weight": (n_cls + 1, d),
        "projectors.0.0.weight": (pd, d),
        "projectors.0.0.bias": (pd,),
        "projectors.0.2.weight": (pd, pd),
        "projectors.0.2.bias": (pd,),
        "projectors.0.4.weight": (z, pd),
        "projectors.0.4.bias": (z,),
        "final_layer.linear.weight": (p * p * c, d),
        "final_layer.linear.bias": (p * p * c,),
        "final_layer.adaLN_modulation.1.weight": (2 * d, d),
        "final_layer.adaLN_modulation.1.bias": (2 * d,),
        "bn.running_mean": (c,),
        "bn.running_var": (c,),
        "bn.num_batches_tracked": (),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        shapes.update({
            b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
            b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
            b + "mlp.fc1.weight": (4 * d, d), b + "mlp.fc1.bias": (4 * d,),
            b + "mlp.fc2.weight": (d, 4 * d), b + "mlp.fc2.bias": (d,),
            b + "adaLN_modulation.1.weight": (6 * d, d), b + "adaLN_modulation.1.bias": (6 * d,),
        })
    return shapes


def _b2_config():
    return sit_config("B", patch_size=2, input_size=32, in_channels=4, num_classes=1000, z_dims=(768,))


def test_b2_state_dict_keys_and_strict_load():
    expected = _b2_expected_shapes()
    with torch.device("meta"):
        model = SiT(_b2_config())
    sd = model.state_dict()
    assert set(sd) == set(expected)
    for k, shape in expected.items():
        assert tuple(sd[k].shape) == shape, k
    # A synthetic "released checkpoint" (meta tensors: no memory) loads strictly.
    ckpt = {k: torch.empty(s, device="meta", dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32)
            for k, s in expected.items()}
    result = model.load_state_dict(ckpt, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def _n_params(model, skip="projectors"):
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith(skip))


@pytest.mark.parametrize("size,target", [("B", 130e6), ("L", 458e6), ("XL", 675e6)])
def test_param_counts(size, target):
    with torch.device("meta"):
        model = SiT(sit_config(size, patch_size=2))
    assert abs(_n_params(model) - target) / target < 0.02


def test_sit_config_unknown_name():
    with pytest.raises(ValueError, match="XL") as exc:
        sit_config("XXL")
    assert "W-tiny" in str(exc.value)
    cfg = sit_config("XL", patch_size=4)
    assert (cfg.depth, cfg.hidden_size, cfg.num_heads, cfg.patch_size) == (28, 1152, 16, 4)
    assert cfg.alignment_depth == 8
    # no silent change of the alignment depth: the paper's default (8) does not fit a 4-block SiT, and says so
    with pytest.raises(ValueError, match=r"alignment_depth must be in \[1, 4\], got 8"):
        SiT(sit_config("W-tiny"))
    assert sit_config("W", z_dims=[384, 768]).z_dims == (384, 768)


def _tiny(**kw):
    base = dict(input_size=16, in_channels=4, num_classes=10, alignment_depth=2, projector_dim=64, z_dims=(32, 48))
    base.update(kw)
    return sit_config("W-tiny", **base)


def _randomize_zero_init(model):
    # adaLN-Zero makes the net the identity at init; perturb so tests exercise every path.
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))


def _inputs(n=3, c=4, s=16, n_cls=10):
    torch.manual_seed(0)
    return torch.randn(n, c, s, s), torch.rand(n), torch.randint(0, n_cls, (n,))


@pytest.mark.parametrize("patch", [1, 2, 4])
def test_forward_shapes(patch):
    model = SiT(_tiny(patch_size=patch)).eval()
    x, t, y = _inputs()
    v, zs = model(x, t, y)
    assert v.shape == x.shape
    T = (16 // patch) ** 2
    assert [z.shape for z in zs] == [(3, T, 32), (3, T, 48)]
    assert model.pos_embed.shape == (1, T, 128) and not model.pos_embed.requires_grad


def test_zero_velocity_at_init():
    model = SiT(_tiny())
    v, _ = model(*_inputs())
    assert torch.count_nonzero(v) == 0


def test_truncated_forward_matches_full():
    model = SiT(_tiny()).eval()
    _randomize_zero_init(model)
    x, t, y = _inputs()
    v, zs_full = model(x, t, y)
    none, zs_trunc = model(x, t, y, stop_at_depth=model.cfg.alignment_depth)
    assert none is None and v.abs().sum() > 0
    for a, b in zip(zs_full, zs_trunc):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError):
        model(x, t, y, stop_at_depth=1)  # before the alignment depth: no features to return


def test_unpatchify_inverts_patch_layout():
    model = SiT(_tiny(patch_size=4))
    x = torch.randn(2, 4, 16, 16)
    # Patch tokens laid out channel-last inside each patch, row-major over patches.
    tokens = x.reshape(2, 4, 4, 4, 4, 4).permute(0, 2, 4, 3, 5, 1).reshape(2, 16, 64)
    torch.testing.assert_close(model.unpatchify(tokens), x)


def test_label_dropout():
    model = SiT(_tiny(class_dropout_prob=1.0))
    _randomize_zero_init(model)
    x, t, y = _inputs()
    emb = model.y_embedder
    null = torch.full_like(y, 10)
    model.train()
    assert torch.equal(emb.drop_labels(y), null)
    model.eval()
    torch.manual_seed(3)
    v_forced, _ = model(x, t, y, force_drop_ids=torch.ones(3, dtype=torch.bool))
    model.train()  # train mode with p=1: every label dropped -> same as forced drop
    v_train, _ = model(x, t, y)
    torch.testing.assert_close(v_train, v_forced)
    model.eval()  # eval never drops at random
    assert torch.equal(emb.drop_labels(y), y)
    # force mask is per-sample, accepts 0/1 ints
    assert torch.equal(emb.drop_labels(y, torch.tensor([1, 0, 1])), torch.tensor([10, y[1].item(), 10]))


def test_bn_train_updates_running_stats():
    model = SiT(_tiny()).train()
    z = torch.randn(8, 4, 16, 16) * torch.tensor([1.0, 2.0, 3.0, 0.5]).view(1, 4, 1, 1) + 5.0
    out = model.normalize_latent(z)
    m = 0.1
    torch.testing.assert_close(model.bn.running_mean, (1 - m) * 0 + m * z.mean((0, 2, 3)))
    torch.testing.assert_close(model.bn.running_var, (1 - m) * 1 + m * z.var((0, 2, 3), unbiased=True))
    torch.testing.assert_close(out.mean((0, 2, 3)), torch.zeros(4), atol=1e-4, rtol=0)
    assert model.bn.num_batches_tracked.item() == 1


def test_bn_eval_roundtrip_init_and_grad():
    model = SiT(_tiny()).eval()
    mean, var = torch.tensor([0.5, -1.0, 2.0, 0.0]), torch.tensor([4.0, 0.25, 1.0, 9.0])
    model.init_latent_stats(mean, var)
    assert torch.equal(model.bn.running_mean, mean) and torch.equal(model.bn.running_var, var)
    z = torch.randn(2, 4, 16, 16, requires_grad=True)
    x = model.normalize_latent(z)
    torch.testing.assert_close(x, (z - mean.view(1, 4, 1, 1)) / torch.sqrt(var.view(1, 4, 1, 1) + 1e-4))
    torch.testing.assert_close(model.denormalize_latent(x), z)
    x.sum().backward()
    assert z.grad is not None
    torch.testing.assert_close(z.grad[0, :, 0, 0], 1 / torch.sqrt(var + 1e-4))
    assert torch.equal(model.bn.running_mean, mean)  # eval mode leaves the stats alone


def test_pos_embed_matches_reference_layout():
    # Independent numpy reference of the MAE/DiT layout: first half encodes column, second row.
    d, g = 16, 4
    omega = 1.0 / 10000 ** (np.arange(d // 4) / (d / 4))
    rows, cols = np.divmod(np.arange(g * g), g)

    def e(pos):
        out = np.outer(pos, omega)
        return np.concatenate([np.sin(out), np.cos(out)], 1)

    ref = np.concatenate([e(cols), e(rows)], 1)
    np.testing.assert_allclose(sincos_pos_embed_2d(d, g).numpy(), ref, atol=1e-6)


def test_timestep_embedding_is_cos_sin_of_raw_t():
    from repae_lab.models.sit import TimestepEmbedder

    t = torch.tensor([0.0, 0.5, 1.0])
    emb = TimestepEmbedder.sinusoid(t, 256)
    assert emb.shape == (3, 256)
    torch.testing.assert_close(emb[:, 0], torch.cos(t))  # frequency 1 first, no x1000
    torch.testing.assert_close(emb[:, 128], torch.sin(t))


def test_qk_norm_keys_only_when_enabled():
    plain = SiT(_tiny()).state_dict()
    assert not any("q_norm" in k for k in plain)
    normed = SiT(_tiny(qk_norm=True)).eval()
    assert "blocks.0.attn.q_norm.weight" in normed.state_dict()
    v, _ = normed(*_inputs())
    assert v.shape == (3, 4, 16, 16)


def test_count_flops_xl2_matches_dit_gflops():
    # DiT paper: SiT/DiT-XL/2 at 256px = 118.6 GFLOPs counted as MACs.
    cfg = sit_config("XL", patch_size=2)
    flops = count_flops(cfg, batch=1, include_projectors=False)
    assert math.isclose(flops / 2, 118.6e9, rel_tol=0.01)
    assert count_flops(cfg, batch=4) > 4 * flops
