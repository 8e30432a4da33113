"""Presets against REPAE_FACTS, and every way a configuration can be wrong."""
from __future__ import annotations

import pytest

from repae_lab.commands import main
from repae_lab.config import PRESETS, ConfigError, resolve_config

# REPAE_FACTS sections 1-4: the published hyperparameters, one row per value.
PAPER_VALUES = {
    "lr": 1e-4, "vae_lr": 1e-4, "disc_lr": 1e-4, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_eps": 1e-8,
    "weight_decay": 0.0, "batch_size": 256, "grad_clip": 1.0, "ema_decay": 0.9999, "proj_coeff": 0.5,
    "vae_align_proj_coeff": 1.5, "bn_momentum": 0.1, "class_dropout_prob": 0.1, "alignment_depth": 8,
    "projector_dim": 2048, "kl_weight": 1e-6, "gan_weight": 0.1, "l1_weight": 1.0, "perceptual_weight": 1.0,
    "perceptual": "lpips", "disc_layers": 3, "disc_ndf": 64, "disc_start": 0, "steps": 400_000,
    "mixed_precision": "fp16", "target_encoder": "dinov2-b", "resolution": 256, "dataset": "imagefolder",
    "sit_size": "XL", "stop_grad": True, "latent_norm": True, "vae_reg": True,
}
PER_PRESET = {
    "imagenet256-sit-xl2-sdvae": {"patch_size": 2, "vae": "stabilityai/sd-vae-ft-mse"},
    "imagenet256-sit-xl1-f16": {"patch_size": 1, "vae": "f16c32"},
}
ROWS = [(preset, key, value) for preset, extra in PER_PRESET.items() for key, value in {**PAPER_VALUES, **extra}.items()]


@pytest.mark.parametrize("preset,key,value", ROWS)
def test_paper_presets_match_repae_facts(preset, key, value):
    cfg = resolve_config(preset, recipe="repa-e")
    assert getattr(cfg, key) == value, f"{preset}.{key}"


def test_paper_presets_give_256_tokens():
    # SD-VAE f8 at 256 px -> 32x32 latent, patch 2 -> 16x16; f16 VAE -> 16x16 latent, patch 1 -> 16x16
    for preset, factor in (("imagenet256-sit-xl2-sdvae", 8), ("imagenet256-sit-xl1-f16", 16)):
        cfg = resolve_config(preset)
        assert (cfg.resolution // factor // cfg.patch_size) ** 2 == 256


def test_workshop_presets_exist_with_their_data():
    assert resolve_config("workshop").dataset == "digits"
    fashion = resolve_config("workshop-fashion")
    assert (fashion.dataset, fashion.resolution) == ("fashion-mnist", 32)


def test_layers_later_wins(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 77\nlr: 2.0e-4\n")
    cfg = resolve_config("workshop", recipe="repa", yaml_file=f, overrides={"steps": "5"})
    assert (cfg.steps, cfg.lr, cfg.recipe) == (5, 2e-4, "repa")


@pytest.mark.parametrize("overrides,phrase", [
    ({"stpes": 3}, "Did you mean 'steps'"),
    ({"steps": "ten"}, "'steps' expects int"),
    ({"steps": 2.5}, "'steps' expects int"),
    ({"lr": "fast"}, "'lr' expects float"),
    ({"lr": 3.0}, "lr must be between 0 and 1"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"stop_grad": "maybe"}, "'stop_grad' expects bool"),
    ({"recipe": "repa_e"}, "Did you mean 'repa-e'"),
    ({"mixed_precision": "fp8"}, "mixed_precision must be no, bf16 or fp16"),
    ({"snapshot_t": "0.5,1.5"}, "snapshot_t values must lie in [0, 1]"),
    ({"ema_decay": 1.0}, "ema_decay must be in [0, 1)"),
    ({"checkpoint_every": 25, "log_every": 10}, "must be a multiple of log_every"),
    ({"alarm_policy": "panic"}, "alarm_policy must be warn, stop or rollback"),
])
def test_bad_values_name_the_key_and_fix(overrides, phrase):
    with pytest.raises(ConfigError) as err:
        resolve_config("workshop", overrides=overrides)
    assert phrase in str(err.value)


def test_unknown_preset_suggests_nearest():
    with pytest.raises(ConfigError, match="Did you mean 'workshop'"):
        resolve_config("workshp")


@pytest.mark.parametrize("text,phrase", [("steps: [1\n", "not valid YAML"), ("- 1\n- 2\n", "must hold a mapping"),
                                         ("bogus_key: 1\n", "unknown config key 'bogus_key' (from YAML file)")])
def test_bad_yaml_files(tmp_path, text, phrase):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        resolve_config("workshop", yaml_file=f)
    assert phrase in str(err.value)


def test_missing_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config("workshop", yaml_file=tmp_path / "nope.yaml")


def test_cli_reports_config_errors_without_traceback(capsys):
    assert main(["train", "--preset", "workshop", "--set", "steps=abc", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "repae-lab: error: config key 'steps' expects int" in err and "Traceback" not in err
    assert main(["train", "--set", "steps"]) == 2
    assert "must look like key=value" in capsys.readouterr().err


def test_cli_dry_run_prints_resolved_config(capsys):
    assert main(["train", "--preset", "imagenet256-sit-xl2-sdvae", "--recipe", "repa-e", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert '"batch_size": 256' in out and '"recipe": "repa-e"' in out


def test_every_preset_resolves_for_every_recipe():
    from repae_lab.config import RECIPES
    for preset in PRESETS:
        for recipe in RECIPES:
            assert resolve_config(preset, recipe=recipe).recipe == recipe
