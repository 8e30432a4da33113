"""Target encoders: the cached workshop encoder and DINOv2 loaded offline from a local weights file."""
from __future__ import annotations

import pytest
import torch

from repae_lab.data import load_dataset
from repae_lab.models import target_encoders as te


def test_workshop_encoder_is_trained_once_then_loaded_from_cache(tmp_path, monkeypatch):
    ds = load_dataset("digits", resolution=16)
    first = te.workshop_encoder_for(ds, grid=4, cache_dir=tmp_path, steps=40, progress=False)
    tokens = first(ds.batch(torch.arange(6))[0])
    assert tokens.shape == (6, 16, first.embed_dim)
    assert not any(p.requires_grad for p in first.parameters()) and not first.training

    def no_training(*a, **k):
        raise AssertionError("the cached encoder was retrained")
    monkeypatch.setattr(te, "train_workshop_encoder", no_training)
    second = te.workshop_encoder_for(ds, grid=4, cache_dir=tmp_path, steps=40, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_workshop_encoder_learns_the_classes(tmp_path):
    ds = load_dataset("digits", resolution=16)
    images, labels = ds.batch(torch.arange(len(ds)))
    model, stats = te.train_workshop_encoder(images, labels, te.WorkshopEncoderConfig(grid=4), steps=150,
                                             progress=False)
    assert stats["train_accuracy"] > 0.9


def test_corrupt_cache_entry_is_rebuilt(tmp_path):
    ds = load_dataset("digits", resolution=16)
    te.workshop_encoder_for(ds, grid=4, cache_dir=tmp_path, steps=5, progress=False)
    (entry,) = (tmp_path / "encoders").glob("*.safetensors")
    entry.write_bytes(b"garbage")
    model = te.workshop_encoder_for(ds, grid=4, cache_dir=tmp_path, steps=5, progress=False)
    assert model(ds.batch(torch.arange(2))[0]).shape == (2, 16, 128)


@pytest.mark.slow
def test_dinov2_loads_offline_from_a_local_weights_file(tmp_path):
    """The real loading path with random weights in timm's layout (no pretrained weights exist offline)."""
    import timm
    from safetensors.torch import save_file

    name = "vit_small_patch14_dinov2.lvd142m"     # the B/14 path, at a size a unit test can afford
    model = timm.create_model(name, pretrained=False, img_size=224, num_classes=0)
    path = tmp_path / "dinov2.safetensors"
    save_file(model.state_dict(), str(path))
    target = te.dinov2_b(str(path), resolution=256, name=name)
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        tokens = target(x)
        expected = model.eval().forward_features(
            torch.nn.functional.interpolate(((x + 1) / 2 - target.mean) / target.std, size=224, mode="bicubic"))[:, 1:]
    assert tokens.shape == (2, 256, 384)          # 16x16 patch tokens, CLS dropped
    assert torch.allclose(tokens, expected, atol=1e-5)


def test_dinov2_missing_weights_file_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match="target_encoder_weights"):
        te.dinov2_b(str(tmp_path / "missing.pth"))
