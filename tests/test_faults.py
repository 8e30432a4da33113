"""The defects found under faults and bad input (issue 11): each test here failed before its fix.

Nothing lost (resume before the first checkpoint, full disk, stale temporaries), nothing executed (a planted
VGG16 pickle), every --set applied, resume overrides applied or refused by name, and every bad input a
one-line error with exit status 2 and no traceback."""
from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

import pytest
import torch

from conftest import logged_losses
from repae_lab import rundir
from repae_lab.commands import main
from repae_lab.jobs.launch import train
from repae_lab.config import resolve_config
from repae_lab.rundir import RunError
from repae_lab.training import loop as train_mod


def _cli(capsys, args) -> tuple[int, str]:
    """Run the CLI; (exit status, stderr). Any traceback would escape main() and fail the test."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _one_line_error(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.startswith("repae-lab: error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _set(tiny, **extra) -> list[str]:
    return ["--set", *[f"{k}={v}" for k, v in tiny(**extra).items()]]


# ---------------------------------------------------------------------------------------------------------
# 1. Resume without a usable checkpoint.

class Interrupt(Exception):
    pass


def _stop_at(step):
    def on_metrics(s, _m):
        if s == step:
            raise Interrupt
    return on_metrics


def test_a_run_killed_before_its_first_checkpoint_resumes_as_an_uninterrupted_run(tmp_path, tiny, capsys):
    cfg = resolve_config("workshop", recipe="repa-e", overrides=tiny(steps=5, checkpoint_every=0))
    train(cfg, tmp_path / "straight", progress=False)
    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "killed", progress=False, on_metrics=_stop_at(3))
    assert not rundir.checkpoint_dirs(tmp_path / "killed")
    capsys.readouterr()
    train(resume=tmp_path / "killed", progress=False)
    assert "no usable checkpoint" in capsys.readouterr().err
    # the pretrained VAE, not a random one: the same losses (VAE L1 included) as the uninterrupted run
    assert logged_losses(tmp_path / "killed") == logged_losses(tmp_path / "straight")


def test_every_checkpoint_damaged_restarts_an_unfinished_run_and_refuses_a_finished_one(tmp_path, tiny):
    cfg = resolve_config("workshop", recipe="vanilla", overrides=tiny(steps=4, checkpoint_every=2))
    train(cfg, tmp_path / "run", progress=False)
    for ckpt in rundir.checkpoint_dirs(tmp_path / "run"):
        (ckpt / "manifest.json").unlink()
    history = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(RunError, match="finished but none of its checkpoints"):
        train(resume=tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == history       # its history is untouched
    (tmp_path / "run" / "summary.json").unlink()                               # an unfinished run restarts
    assert train(resume=tmp_path / "run", progress=False)["steps"] == 4


# ---------------------------------------------------------------------------------------------------------
# 2. No code runs from the LPIPS VGG16 weights.

class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_vgg16_pickle_runs_no_code_and_stops_the_run(tmp_path, tiny, monkeypatch, capsys):
    from repae_lab.models.perceptual import VGG16_FILE

    Exploit.marker = tmp_path / "pwned"
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(1), "payload": Exploit()}, hub / VGG16_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code, err = _cli(capsys, ["train", "--out", tmp_path / "run", "--quiet", *_set(tiny, perceptual="auto")])
    _one_line_error(code, err, VGG16_FILE, "refused", "perceptual=workshop")
    assert not Exploit.marker.exists()


# ---------------------------------------------------------------------------------------------------------
# 3. Full disk.

def test_a_safetensors_write_error_gives_the_disk_full_message(tmp_path, tiny, monkeypatch, capsys):
    from safetensors import SafetensorError

    from repae_lab.rundir import checkpoints

    real = checkpoints.save_file

    def full(tensors, path, metadata=None):
        if "step-00000004" in str(path):
            raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")
        return real(tensors, path, metadata=metadata)
    monkeypatch.setattr(checkpoints, "save_file", full)
    code, err = _cli(capsys, ["train", "--out", tmp_path / "run", "--quiet", *_set(tiny, steps=4, checkpoint_every=2)])
    _one_line_error(code, err, "could not write the checkpoint of step 4", "No space left", "step-00000002 is intact")


def test_resuming_on_a_full_disk_is_a_one_line_error(tmp_path, tiny, monkeypatch, capsys):
    train(resolve_config("workshop", recipe="vanilla", overrides=tiny(steps=4, checkpoint_every=2)), tmp_path / "run",
          progress=False)
    (tmp_path / "run" / "summary.json").unlink()
    real = rundir.atomic_write_text

    def full(path, text):
        if Path(path).name == "metrics.jsonl":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, text)
    monkeypatch.setattr(train_mod.rundir, "atomic_write_text", full)
    code, err = _cli(capsys, ["train", "--resume", tmp_path / "run", "--quiet"])
    _one_line_error(code, err, "could not write the metrics log", "No space left on device")


# ---------------------------------------------------------------------------------------------------------
# 4. Every --set applies.

@pytest.mark.parametrize("form", [["--set", "steps=40", "--set", "seed=7"], ["--set", "steps=40", "seed=7"]])
def test_every_set_flag_applies(capsys, form):
    assert main(["train", "--dry-run", *form]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["steps"], cfg["seed"]) == (40, 7)


def test_a_key_set_twice_is_an_error(capsys):
    _one_line_error(*_cli(capsys, ["train", "--dry-run", "--set", "steps=40", "--set", "steps=50"]), "steps", "twice")


# ---------------------------------------------------------------------------------------------------------
# 5. Resume with overrides.

def test_resume_overrides_apply_and_are_recorded(tmp_path, tiny, capsys):
    train(resolve_config("workshop", recipe="repa-e", overrides=tiny(steps=4, checkpoint_every=2)), tmp_path / "run",
          progress=False)
    assert main(["train", "--resume", str(tmp_path / "run"), "--quiet", "--set", "steps=6", "lr=5e-5"]) == 0
    run = tmp_path / "run"
    assert json.loads((run / "summary.json").read_text())["steps"] == 6
    assert json.loads((run / "config.json").read_text())["lr"] == 5e-5
    [record] = rundir.read_jsonl(run / "config_history.jsonl")
    assert record["changes"] == {"steps": [4, 6], "lr": [3e-3, 5e-5]} and record["at_checkpoint"] == 4
    _, meta = rundir.load_checkpoint(rundir.latest_good_checkpoint(run))
    assert meta["optimizers"]["sit"]["param_groups"][0]["lr"] == 5e-5          # the new lr trained steps 5-6
    assert meta["optimizers"]["vae"]["param_groups"][0]["lr"] == 1e-4          # the others are kept


def test_resume_refuses_keys_that_would_change_the_run_by_name(tmp_path, tiny, capsys):
    train(resolve_config("workshop", recipe="vanilla", overrides=tiny(steps=2)), tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "config.json").read_text()
    code, err = _cli(capsys, ["train", "--resume", tmp_path / "run", "--set", "recipe=repa", "seed=3"])
    _one_line_error(code, err, "recipe, seed cannot change when a run is resumed", "steps")
    assert (tmp_path / "run" / "config.json").read_text() == before


def test_following_the_stop_alarms_advice_gets_past_it(tmp_path, tiny, monkeypatch):
    real = train_mod.train_step

    def nan_at_step_3(state, *args):
        metrics = real(state, *args)
        if state.step + 1 == 3:
            metrics["loss/diffusion"] = math.nan
        return metrics
    monkeypatch.setattr(train_mod, "train_step", nan_at_step_3)
    cfg = resolve_config("workshop", recipe="vanilla", overrides=tiny(steps=5, checkpoint_every=2, alarm_policy="stop"))
    with pytest.raises(train_mod.TrainingStopped, match="resume"):
        train(cfg, tmp_path / "run", progress=False)
    with pytest.raises(train_mod.TrainingStopped):           # resumed unchanged, it stops at the same step
        train(resume=tmp_path / "run", progress=False)
    summary = train(resume=tmp_path / "run", overrides={"alarm_policy": "warn"}, progress=False)
    assert summary["steps"] == 5


# ---------------------------------------------------------------------------------------------------------
# 6. Stale temporaries.

def test_resume_removes_what_a_killed_writer_left_under_temporary_names(tmp_path, tiny, capsys):
    train(resolve_config("workshop", recipe="vanilla", overrides=tiny(steps=2)), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    stale = run / "checkpoints" / ".tmp-step-00000009-4242"
    stale.mkdir()
    (stale / "sit.safetensors").write_bytes(b"x" * 1000)
    (run / ".config.json.tmp4242").write_text("{")
    (run / "summary.json").unlink()
    train(resume=run, progress=False)
    assert not stale.exists() and not (run / ".config.json.tmp4242").exists()
    assert "removed checkpoints/.tmp-step-00000009-4242" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# 7. Bad input: one line, exit 2, no traceback.

@pytest.mark.parametrize("setting,fragment", [
    ("adam_beta2=1.0", "adam_beta2 must be in [0, 1)"), ("adam_eps=-1", "adam_eps must be positive"),
    ("device=foo", "device must be auto, cpu, cuda"), ("sit_size=XXL", "unknown sit_size 'XXL'"),
    ("alignment_depth=9", "alignment_depth must be between 1 and 4"),
    ("resolution=4", "resolution 4 is too small for the PatchGAN"),
])
def test_bad_values_are_one_line_errors(capsys, tmp_path, setting, fragment):
    _one_line_error(*_cli(capsys, ["train", "--out", tmp_path / "run", "--set", setting]), fragment)
    assert not (tmp_path / "run").exists()                 # nothing blocks the same --out afterwards


def test_the_patchgan_size_rule_of_the_config_matches_the_network():
    from repae_lab.models.discriminator import min_input_size

    assert [min_input_size(n) for n in range(1, 5)] == [3 * 2 ** n for n in range(1, 5)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_asking_for_a_gpu_that_is_not_there(capsys, tmp_path, tiny):
    _one_line_error(*_cli(capsys, ["train", "--out", tmp_path / "run", *_set(tiny, device="cuda")]),
                    "asks for a GPU", "device=cpu")


def test_bad_config_files(capsys, tmp_path):
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)))
    (tmp_path / "dup.yaml").write_text("steps: 10\nseed: 1\nsteps: 20\n")
    _one_line_error(*_cli(capsys, ["train", "--dry-run", "--config", tmp_path / "binary.yaml"]), "not a text file")
    _one_line_error(*_cli(capsys, ["train", "--dry-run", "--config", tmp_path]), "is a folder")
    _one_line_error(*_cli(capsys, ["train", "--dry-run", "--config", tmp_path / "dup.yaml"]), "'steps' appears twice")


def test_models_that_cannot_be_built_are_one_line_errors(capsys, tmp_path, tiny):
    _one_line_error(*_cli(capsys, ["train", "--out", tmp_path / "a", *_set(tiny, vae=str(tmp_path / "no-vae"))]),
                    "config key vae", "does not exist")
    _one_line_error(*_cli(capsys, ["train", "--out", tmp_path / "b", *_set(
        tiny, target_encoder="dinov2-b", target_encoder_weights=str(tmp_path / "none.pth"))]),
        "DINOv2", "target_encoder_weights")


@pytest.fixture
def finished(tmp_path, tiny):
    run = tmp_path / "run"
    train(resolve_config("workshop", recipe="vanilla", overrides=tiny(steps=4, checkpoint_every=2)), run,
          progress=False)
    (run / "summary.json").unlink()
    return run


def test_damaged_run_files_on_resume_are_one_line_errors(finished, capsys):
    run = finished
    config = (run / "config.json").read_text()
    (run / "config.json").write_text("{ not json")
    _one_line_error(*_cli(capsys, ["train", "--resume", run]), "config.json", "not a readable config")
    edited = json.loads(config)
    edited["sit_size"] = "W"
    edited["alignment_depth"] = 2
    (run / "config.json").write_text(json.dumps(edited))
    _one_line_error(*_cli(capsys, ["train", "--resume", run]), "does not fit the run's config.json",
                    "was config.json edited")
    (run / "config.json").write_text(config)
    vae_config = (run / "vae_config.json").read_text()
    (run / "vae_config.json").unlink()
    _one_line_error(*_cli(capsys, ["train", "--resume", run]), "vae_config.json")
    (run / "vae_config.json").write_text(vae_config)


def test_a_broken_newest_checkpoint_falls_back_to_the_previous(finished, capsys):
    run = finished
    newest, previous = rundir.checkpoint_dirs(run)[-1], rundir.checkpoint_dirs(run)[-2]
    (newest / "manifest.json").write_text("not json")
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "manifest.json is unreadable" in capsys.readouterr().err
    # a file replaced together with its checksum: the manifest agrees, the file cannot be read
    (run / "summary.json").unlink()
    newest = rundir.checkpoint_dirs(run)[-1]
    (newest / "sit.safetensors").write_bytes(b"garbage, not safetensors")
    manifest = json.loads((newest / "manifest.json").read_text())
    manifest["sit.safetensors"] = rundir.sha256_file(newest / "sit.safetensors")
    (newest / "manifest.json").write_text(json.dumps(manifest))
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "cannot be read" in capsys.readouterr().err and previous.name == "step-00000002"


def test_a_failing_first_step_leaves_no_run_folder_behind(tmp_path, tiny, monkeypatch, capsys):
    def broken(*a, **k):
        raise RuntimeError("Calculated padded input size per channel: (1 x 1). Kernel size: (4 x 4).")
    monkeypatch.setattr(train_mod, "train_step", broken)
    code, err = _cli(capsys, ["train", "--out", tmp_path / "run", "--quiet", *_set(tiny)])
    _one_line_error(code, err, "the first training step failed", "--dry-run", "run folder was removed")
    assert not (tmp_path / "run").exists()


def test_sampling_a_run_without_checkpoint_says_what_to_do(tmp_path, tiny, capsys):
    cfg = resolve_config("workshop", recipe="vanilla", overrides=tiny(steps=4, checkpoint_every=0))
    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "run", progress=False, on_metrics=_stop_at(2))
    code, err = _cli(capsys, ["sample", tmp_path / "run", "--n", "4", "--out", tmp_path / "s.npz"])
    _one_line_error(code, err, "no complete checkpoint", "--resume")
    assert "wait" not in err


def test_a_diverged_pretrained_network_is_not_cached(tmp_path):
    from repae_lab.data import load_dataset
    from repae_lab.models import trained_cache
    from repae_lab.models.workshop_vae import VAEPretraining
    from repae_lab.models.vae import build_vae

    dataset = load_dataset("digits", resolution=16)
    setup = VAEPretraining(spec="workshop-16", in_channels=1)

    def diverged(images, labels):
        vae = build_vae("workshop-16", in_channels=1)
        with torch.no_grad():
            next(vae.parameters()).fill_(float("nan"))
        return vae, {}
    with pytest.raises(ValueError, match="non-finite weights.*not cached"):
        trained_cache.cached_trained_model("vaes", "workshop-16", dataset, setup, seed=0, steps=1, max_images=64,
                                           cache_dir=tmp_path, build=lambda s: build_vae("workshop-16", in_channels=1),
                                           load_data=lambda ds, idx: ds.batch(idx), fit=diverged)
    assert not list(tmp_path.rglob("*.safetensors"))


# ---------------------------------------------------------------------------------------------------------
# 8. Thread count.

def test_the_thread_count_is_recorded_and_a_different_one_warns_on_resume(finished, capsys):
    env = json.loads((finished / "environment.json").read_text())
    assert env["torch_threads"] == torch.get_num_threads()
    env["torch_threads"] = torch.get_num_threads() + 7
    (finished / "environment.json").write_text(json.dumps(env))
    train(resume=finished, progress=False)
    assert "not bitwise" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# Matching the official recipe.

def test_the_projector_is_initialised_as_the_official_code(tiny_config):
    from repae_lab.models.sit import SiT, sit_config

    sit = SiT(sit_config("W-tiny", input_size=8, in_channels=4, num_classes=10, alignment_depth=2, projector_dim=64,
                         z_dims=(32,)))
    for layer in (m for m in sit.projectors.modules() if isinstance(m, torch.nn.Linear)):
        bound = math.sqrt(6 / (layer.in_features + layer.out_features))          # xavier-uniform
        assert torch.count_nonzero(layer.bias) == 0 and layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound


def test_a_pretrained_discriminator_is_loaded(tmp_path, tiny_config, capsys, tiny):
    from repae_lab.models.discriminator import PatchDiscriminator
    from repae_lab.training.state import build_state

    torch.manual_seed(5)
    pretrained = PatchDiscriminator(1, ndf=32, n_layers=2)
    torch.save({"discriminator": {f"module.{k}": v for k, v in pretrained.state_dict().items()}},
               tmp_path / "disc.pt")
    state = build_state(tiny_config("repa-e", disc_weights=str(tmp_path / "disc.pt")), progress=False)
    for k, v in pretrained.state_dict().items():
        assert torch.equal(state.nets.discriminator.state_dict()[k], v), k
    _one_line_error(*_cli(capsys, ["train", "--out", tmp_path / "run", *_set(tiny, disc_weights=str(tmp_path / "disc.pt"),
                                                                               disc_layers=1)]),
                    "pretrained discriminator", "disc_layers")


def test_the_f16c32_vae_has_attention_at_its_lowest_resolution():
    from repae_lab.models.vae import VAE_CONFIGS

    cfg = VAE_CONFIGS["f16c32"]
    assert cfg["down_block_types"][-1] == "AttnDownEncoderBlock2D" and cfg["up_block_types"][0] == "AttnUpDecoderBlock2D"
    assert all(t == "DownEncoderBlock2D" for t in cfg["down_block_types"][:-1])


def test_train_pos_embed_switch(tiny_config):
    from repae_lab.training.batches import batch_indices, step_generator
    from repae_lab.training.state import build_state
    from repae_lab.training.step import train_step

    for switch in (False, True):
        state = build_state(tiny_config("repa", train_pos_embed=switch), progress=False)
        before = state.nets.sit.pos_embed.detach().clone()
        x, y = state.dataset.batch(batch_indices(len(state.dataset), 8, 0, 0))
        train_step(state, x, y, step_generator(0, 0))
        assert torch.equal(before, state.nets.sit.pos_embed) != switch


def test_an_exported_e2e_vae_is_readable_by_others(tmp_path, tiny_config):
    from repae_lab.models.export import export_vae
    from repae_lab.training.loop import train as train_loop

    train_loop(tiny_config("repa-e", steps=1), tmp_path / "run", progress=False)
    out = export_vae(tmp_path / "run", tmp_path / "e2e")
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
