"""The training loop end to end: CLI smoke run, run-directory contents, resume, E2E-VAE export, bad input."""
from __future__ import annotations

import json

import pytest
import torch

from repae_lab import rundir
from repae_lab.commands import main
from repae_lab.config import resolve_config
from repae_lab.data import load_dataset
from repae_lab.models.export import export_vae
from repae_lab.models.vae import encode, load_vae
from repae_lab.models.vae_files import latent_stats_from_config
from repae_lab.jobs.launch import train
from repae_lab.models.from_run import load_for_sampling
from repae_lab.rundir import RunError


def _sets(overrides: dict) -> list[str]:
    return [f"{k}={v}" for k, v in overrides.items()]


@pytest.fixture(scope="module")
def repae_run(tmp_path_factory, encoder_cache):
    """A 4-step repa-e run with checkpoints and snapshots, made through the CLI."""
    from conftest import TINY
    out = tmp_path_factory.mktemp("runs") / "repae"
    overrides = {**TINY, "cache_dir": encoder_cache, "steps": 4, "checkpoint_every": 2, "snapshot_every": 2}
    assert main(["train", "--preset", "workshop", "--recipe", "repa-e", "--out", str(out), "--quiet",
                 "--set", *_sets(overrides)]) == 0
    return out


def test_cli_run_writes_the_run_directory(repae_run, capsys):
    cfg = json.loads((repae_run / "config.json").read_text())
    assert cfg["recipe"] == "repa-e" and cfg["steps"] == 4
    records = rundir.read_jsonl(repae_run / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for key in ("loss/diffusion", "loss/repa", "loss/repa_vae", "loss/l1", "loss/kl", "loss/perceptual",
                "loss/gan_g", "loss/disc", "grad_norm/sit", "grad_norm/vae", "grad_norm/disc",
                "latent/spatial_var", "latent/total_variation"):
        assert key in records[-1], key
    ckpts = rundir.checkpoint_dirs(repae_run)
    assert [p.name for p in ckpts] == ["step-00000002", "step-00000004"]
    assert {p.name for p in ckpts[-1].iterdir()} >= {"sit.safetensors", "ema.safetensors", "vae.safetensors",
                                                      "discriminator.safetensors", "optimizers.safetensors",
                                                      "state.json", "manifest.json"}
    assert [s for s, _ in rundir.list_snapshots(repae_run)] == [0, 2, 4]
    tensors, info = rundir.load_snapshot(rundir.list_snapshots(repae_run)[-1][1])
    assert {"latents", "latents_norm", "sit_tokens_t25", "sit_tokens_t50", "sit_tokens_t75", "target_tokens",
            "recons", "labels", "bn_mean", "bn_var"} <= set(tensors)
    assert len(tensors["labels"]) == 20 and torch.bincount(tensors["labels"]).tolist() == [2] * 10
    assert info["step"] == 4
    summary = json.loads((repae_run / "summary.json").read_text())
    assert summary["steps"] == 4 and "loss/diffusion" in summary["final"]
    assert not list(repae_run.rglob(".*tmp*")), "temporary files left behind"


def test_export_then_reload_gives_identical_latents_and_stats(repae_run, tmp_path):
    out = export_vae(repae_run, tmp_path / "e2e-vae")
    reloaded = load_vae(str(out))
    state = load_for_sampling(repae_run)
    x, _ = load_dataset("digits", resolution=16).batch(torch.arange(8))
    with torch.no_grad():
        z_run, _ = encode(state.vae, x, sample=False)
        z_exp, _ = encode(reloaded, x, sample=False)
    assert torch.equal(z_run, z_exp)
    mean, std = latent_stats_from_config(reloaded)
    assert torch.allclose(mean, state.ema.bn.running_mean.float())
    assert torch.allclose(std, (state.ema.bn.running_var.float() + 1e-4).sqrt())


def test_on_frozen_e2e_vae_trains_a_fresh_sit_on_the_export(repae_run, tmp_path, tiny):
    vae_dir = export_vae(repae_run, tmp_path / "e2e-vae")
    cfg = resolve_config("workshop", recipe="on-frozen-e2e-vae", overrides=tiny(vae=str(vae_dir), steps=2))
    summary = train(cfg, tmp_path / "two-stage", progress=False)
    assert summary["steps"] == 2
    state = load_for_sampling(tmp_path / "two-stage")
    mean, std = latent_stats_from_config(load_vae(str(vae_dir)))
    # the BatchNorm starts (and, the VAE being frozen, stays) at the exported statistics
    assert torch.allclose(state.sit.bn.running_mean, mean, atol=1e-6)
    assert torch.allclose((state.sit.bn.running_var + 1e-4).sqrt(), std, atol=1e-6)
    exported = load_vae(str(vae_dir)).state_dict()
    assert all(torch.equal(exported[k], v) for k, v in state.vae.state_dict().items())


def test_resume_continues_exactly(tmp_path, tiny):
    cfg = resolve_config("workshop", recipe="repa-e", overrides=tiny(steps=6, checkpoint_every=3))
    train(cfg, tmp_path / "straight", progress=False)

    class Interrupt(Exception):
        pass

    def stop_after_4(step, _metrics):
        if step == 4:
            raise Interrupt
    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "interrupted", progress=False, on_metrics=stop_after_4)
    train(resume=tmp_path / "interrupted", progress=False)
    a = rundir.read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    b = rundir.read_jsonl(tmp_path / "interrupted" / "metrics.jsonl")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    strip = lambda r: {k: v for k, v in r.items() if k != "time"}
    assert [strip(r) for r in a] == [strip(r) for r in b]


def test_existing_run_dir_is_not_overwritten(repae_run, tiny):
    cfg = resolve_config("workshop", overrides=tiny())
    with pytest.raises(RunError, match="--resume"):
        train(cfg, repae_run, progress=False)


def test_resume_or_export_of_a_non_run_says_so(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert main(["export-vae", str(tmp_path), "--out", str(tmp_path / "vae")]) == 2
    assert "is not a run directory" in capsys.readouterr().err


@pytest.mark.parametrize("overrides,phrase", [
    ({"resolution": 15}, "not divisible by the VAE's downsampling factor 2"),
    ({"patch_size": 3}, "choose patch_size dividing 8"),
    ({"dataset": "imagefolder", "data_root": "/nonexistent/folder"}, "/nonexistent/folder"),
    ({"dataset": "digitz"}, "digits"),
])
def test_bad_setups_give_clear_errors(tmp_path, tiny, capsys, overrides, phrase):
    code = main(["train", "--preset", "workshop", "--out", str(tmp_path / "r"), "--quiet",
                 "--set", *_sets(tiny(**overrides))])
    err = capsys.readouterr().err
    assert code == 2 and phrase in err and "Traceback" not in err


def _image_folder(root, n_per_class=6):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cats", "dogs"]):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            arr = (rng.random((40, 52, 3)) * 80 + 120 * c).astype("uint8")
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


def test_imagefolder_trains_through_dataloader_workers(tmp_path, tiny):
    root = _image_folder(tmp_path / "images")
    cfg = resolve_config("workshop", recipe="repa-e", overrides=tiny(
        dataset="imagefolder", data_root=str(root), num_workers=1, probe_size=4, steps=2))
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["steps"] == 2
    tensors, _ = rundir.load_snapshot(rundir.list_snapshots(tmp_path / "run")[-1][1])
    assert tensors["recons"].shape[1:] == (3, 16, 16)


def test_data_order_is_the_same_with_and_without_workers(tmp_path):
    from repae_lab.data import load_dataset
    from repae_lab.training.batches import batch_stream
    root = _image_folder(tmp_path / "images")
    ds = load_dataset("imagefolder", root=str(root), resolution=16)
    a = resolve_config("workshop", overrides={"dataset": "imagefolder", "steps": 3, "batch_size": 4, "num_workers": 0})
    b = resolve_config("workshop", overrides={"dataset": "imagefolder", "steps": 3, "batch_size": 4, "num_workers": 2})
    for (xa, ya), (xb, yb) in zip(batch_stream(ds, a, 1), batch_stream(ds, b, 1)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_workshop_fashion_preset_runs(tmp_path, tiny):
    overrides = {k: v for k, v in tiny(steps=2).items()}
    cfg = resolve_config("workshop-fashion", recipe="repa-e", overrides=overrides)
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["steps"] == 2 and summary["final"]["loss/diffusion"] > 0
