"""The repae_lab Config that describes an imported checkpoint, as well as the Config can.

The official args map onto Config keys where both mean the same thing; the architecture comes from the
inferred SiTConfig (sit_config.json stays the authority for rebuilding the SiT). Every value is checked by
`config_from_dict`; one the Config rejects is left at its default and named in the notes.
"""
from __future__ import annotations

from ...config import Config, ConfigError, config_from_dict
from ..sit import SIT_SIZES
from ..vae import VAE_CONFIGS

# official train_repae.py argument -> Config key
ARG_TO_CONFIG = {
    "batch_size": "batch_size", "learning_rate": "lr", "vae_learning_rate": "vae_lr", "disc_learning_rate": "disc_lr",
    "adam_beta1": "adam_beta1", "adam_beta2": "adam_beta2", "adam_weight_decay": "weight_decay",
    "adam_epsilon": "adam_eps", "max_grad_norm": "grad_clip", "mixed_precision": "mixed_precision", "seed": "seed",
    "proj_coeff": "proj_coeff", "vae_align_proj_coeff": "vae_align_proj_coeff", "allow_tf32": "tf32",
    "compile": "compile", "num_workers": "num_workers",
}
RECIPE_OF_KIND = {"repa-e": "repa-e", "ldm-only": "on-frozen-e2e-vae", "repa": "repa"}
_ARCH_KEYS = ("in_channels", "out_channels", "block_out_channels", "layers_per_block", "latent_channels",
              "down_block_types", "up_block_types")


def _norm(v):
    return tuple(v) if isinstance(v, (list, tuple)) else v


def matching_vae_config(vae) -> str | None:
    """The VAE_CONFIGS name with this VAE's architecture, if any."""
    for name, kwargs in VAE_CONFIGS.items():
        if all(_norm(kwargs.get(k)) == _norm(vae.config.get(k)) for k in _ARCH_KEYS):
            return name
    return None


def matching_sit_size(cfg) -> str | None:
    for name, size in SIT_SIZES.items():
        if (size["depth"], size["hidden_size"], size["num_heads"]) == (cfg.depth, cfg.hidden_size, cfg.num_heads):
            return name
    return None


def target_encoder_name(args: dict, z_dims) -> str:
    """repae_lab's name for the official --enc-type (one encoder); other encoders keep the official name."""
    enc = args.get("enc_type")
    if enc == "dinov2-vit-b" or (enc is None and tuple(z_dims) == (768,)):
        return "dinov2-b"
    return str(enc or "unknown")


def describe_as_config(ck, vae, *, vae_spec: str | None = None) -> tuple[Config, list[str]]:
    """(Config, notes) for a ReleasedCheckpoint and the VAE it is imported with."""
    sit, args, notes = ck.config, ck.args, []
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    recipe = RECIPE_OF_KIND.get(ck.kind, "repa" if ck.fixed_scale else "repa-e")
    wanted = {key: args[arg] for arg, key in ARG_TO_CONFIG.items() if arg in args}
    wanted.update(
        recipe=recipe, preset="imported", dataset="imagefolder", resolution=sit.input_size * factor,
        vae=vae_spec or matching_vae_config(vae) or "imported", vae_pretrain_steps=0,
        sit_size=matching_sit_size(sit) or "custom", patch_size=sit.patch_size,
        alignment_depth=sit.alignment_depth, projector_dim=sit.projector_dim,
        class_dropout_prob=sit.class_dropout_prob, bn_momentum=sit.bn_momentum,
        target_encoder=target_encoder_name(args, sit.z_dims), steps=max(1, int(ck.step or 0)),
        latent_norm=not ck.fixed_scale)
    if recipe == "repa-e":
        wanted["perceptual"] = "lpips"
    if ck.discriminator is not None:
        wanted.update(disc_layers=ck.discriminator.n_layers, disc_ndf=ck.discriminator.main[0].out_channels)
    if wanted["sit_size"] == "custom":
        notes.append("config.json: sit_size 'custom' (no SIT_SIZES entry has this depth / width / heads); "
                     "sit_config.json holds the architecture")
    notes.append("config.json: dataset 'imagefolder' with no data_root: set data_root before training from this run")
    accepted: dict = {}
    for key, value in wanted.items():
        try:
            config_from_dict({**accepted, key: value})
        except (ConfigError, TypeError, ValueError) as err:
            notes.append(f"config.json: {key}={value!r} not representable ({err}); left at the default")
            continue
        accepted[key] = value
    return config_from_dict(accepted), notes
