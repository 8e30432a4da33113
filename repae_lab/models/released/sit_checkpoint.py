"""Official REPA-E / REPA training checkpoints (or a bare SiT state dict) -> the EMA SiT, the VAE, the statistics.

A training checkpoint of the official code is one torch.save dict: model, ema, vae, discriminator, opt, opt_vae,
opt_disc, args (an argparse.Namespace) and steps (REPA and REPA-E's train_ldm_only.py write model, ema, opt,
args, steps). The SiT's architecture is read from the weights, with `args` for what weights cannot show:

    x_embedder.proj.weight (D, C, p, p)     width D, latent channels C, patch p
    pos_embed (1, T, D)                     token grid sqrt(T), so latent size sqrt(T) * p
    blocks.<i>.*                            depth; adaLN_modulation.1.weight (6D, D) confirms D
    blocks.0.mlp.fc1.weight (rD, D)         MLP ratio r;   blocks.0.attn.q_norm.* -> qk_norm
    projectors.<j>.0 / .4 weight            projector width, and z_dim of target encoder j
    y_embedder.embedding_table (K, D)       K = num_classes + 1 with a null (CFG) row; K = num_classes when
                                            trained with label dropout 0 (the official table has no null row)
    bn.*                                    REPA-E latent BatchNorm; absent in REPA checkpoints
    heads, alignment depth, label dropout, BN momentum: args.model ("SiT-XL/2"), args.encoder_depth,
                                            args.cfg_prob, args.bn_momentum (or keyword arguments)

Two documented changes make such weights fit repae_lab's SiT strictly, everything else must match exactly:
- no null row: a zero row is appended as class `num_classes`. It was never trained, so sample without guidance.
- no bn.* (REPA): a fixed-scale normalisation, running_mean 0 and running_var = (1/0.18215)^2 - eps, so the
  BatchNorm computes x * 0.18215 as REPA did.
`module.` / `_orig_mod.` prefixes (DDP, torch.compile) are stripped.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...rundir.safe_load import state_dict_mismatch
from ..sit import SIT_SIZES, SiT, SiTConfig
from .discriminator import load_released_discriminator
from .errors import ReleasedModelError, mismatch_message
from .latents_stats import BN_EPS, SD_VAE_SCALE, fixed_scale_buffers, stats_from_bn
from .sources import find_weights_file, is_state_dict, locate, read_weights, strip_prefixes
from .vae_loading import vae_from_state, with_latent_stats

DEFAULT_ALIGNMENT_DEPTH = 8
_MODEL_NAME = re.compile(r"SiT-(S|B|L|XL)/(\d+)$")


@dataclass
class ReleasedCheckpoint:
    """What one released SiT checkpoint holds, as repae_lab objects (models in eval mode, on the CPU)."""
    ema: SiT                              # the EMA SiT (what the paper samples with)
    model: SiT                            # the raw SiT (a copy of the EMA when the file holds one state dict)
    config: SiTConfig
    vae: object | None                    # diffusers AutoencoderKL (the tuned VAE of a REPA-E checkpoint) or None
    discriminator: object | None          # PatchDiscriminator or None
    latents_mean: torch.Tensor            # (C,) what the SiT's latent BatchNorm subtracts ...
    latents_std: torch.Tensor             # (C,) ... and divides by (sqrt(running_var + eps))
    kind: str                             # repa-e | ldm-only | repa | state-dict
    step: int | None
    args: dict
    source: str
    fixed_scale: bool = False             # True for REPA checkpoints (no bn.*): x * 0.18215 normalisation
    notes: list[str] = field(default_factory=list)


def _args_dict(args) -> dict:
    if args is None:
        return {}
    if isinstance(args, dict):
        return dict(args)
    return dict(vars(args)) if hasattr(args, "__dict__") else {}


def split_checkpoint(obj, what: str) -> dict:
    """{ema, model, vae, discriminator, args, step} of a training dict, or of a bare state dict (ema only)."""
    if is_state_dict(obj):
        return dict(ema=obj, model=None, vae=None, discriminator=None, args={}, step=None, training=False)
    if isinstance(obj, dict) and ("ema" in obj or "model" in obj):
        ema = obj.get("ema") if is_state_dict(obj.get("ema")) else None
        model = obj.get("model") if is_state_dict(obj.get("model")) else None
        if ema is None and model is None:
            raise ReleasedModelError(f"{what}: its 'ema' / 'model' entries are not state dicts; pass an unmodified "
                                     f"checkpoint of train_repae.py / train_ldm_only.py / REPA's train.py.")
        step = obj.get("steps", obj.get("step"))
        return dict(ema=ema if ema is not None else model, model=model, vae=obj.get("vae"),
                    discriminator=obj.get("discriminator"), args=_args_dict(obj.get("args")),
                    step=int(step) if isinstance(step, (int, float)) or torch.is_tensor(step) else None, training=True)
    keys = sorted(obj)[:6] if isinstance(obj, dict) else type(obj).__name__
    raise ReleasedModelError(f"{what} is neither an official training checkpoint (a dict with model / ema / args / "
                             f"steps) nor a bare SiT state dict (found {keys}); pass the .pt written by the "
                             f"official training script or a SiT state dict.")


def _need(state, key: str, what: str) -> tuple[int, ...]:
    if key not in state:
        raise ReleasedModelError(f"{what} has no key {key}, so it is not a SiT / REPA-E state dict; pass the SiT "
                                 f"checkpoint (a vanilla DiT or another model does not fit).")
    return tuple(state[key].shape)


def _indices(state, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.match(pattern, k))})


def infer_sit_config(state: dict[str, torch.Tensor], args: dict | None = None, *, num_heads: int | None = None,
                     num_classes: int | None = None, alignment_depth: int | None = None,
                     what: str = "the SiT state dict") -> tuple[SiTConfig, bool, list[str]]:
    """(SiTConfig, has_null_row, notes) for a SiT state dict with official key names."""
    args, notes = dict(args or {}), []
    width, channels, patch, patch2 = _need(state, "x_embedder.proj.weight", what)
    tokens = _need(state, "pos_embed", what)[1]
    grid = math.isqrt(tokens)
    if grid * grid != tokens or patch != patch2:
        raise ReleasedModelError(f"{what}: pos_embed holds {tokens} tokens and the patch is {patch}x{patch2}; only "
                                 f"square latents and patches are supported.")
    depth = len(_indices(state, r"^blocks\.(\d+)\."))
    if depth == 0 or _need(state, "blocks.0.adaLN_modulation.1.weight", what) != (6 * width, width):
        raise ReleasedModelError(f"{what}: no blocks.<i>.adaLN_modulation.1.weight of shape ({6 * width}, {width}); "
                                 f"this is not a SiT (adaLN-Zero) checkpoint.")
    out = _need(state, "final_layer.linear.weight", what)[0] // (patch * patch)
    if out != channels:
        hint = " (a vanilla SiT with learn_sigma doubles them; such checkpoints put data at t = 1 and are not supported)"
        raise ReleasedModelError(f"{what}: the head outputs {out} channels for {channels}-channel latents"
                                 f"{hint if out == 2 * channels else ''}; pass a REPA / REPA-E SiT checkpoint.")
    mlp_ratio = _need(state, "blocks.0.mlp.fc1.weight", what)[0] / width
    projectors = _indices(state, r"^projectors\.(\d+)\.")
    z_dims = tuple(_need(state, f"projectors.{j}.4.weight", what)[0] for j in projectors)
    projector_dim = _need(state, "projectors.0.0.weight", what)[0] if projectors else 2048

    name = _MODEL_NAME.search(str(args.get("model", "")))
    if num_heads is None and name and SIT_SIZES[name.group(1)]["hidden_size"] == width:
        num_heads = SIT_SIZES[name.group(1)]["num_heads"]
    if num_heads is None:
        sizes = [s for s in SIT_SIZES.values() if s["hidden_size"] == width and s["depth"] == depth]
        num_heads = sizes[0]["num_heads"] if sizes else None
    if num_heads is None:
        raise ReleasedModelError(f"{what}: the number of attention heads of a width-{width}, depth-{depth} SiT is not in "
                                 f"its weights and args.model does not name a known size; pass num_heads= "
                                 f"(--num-heads on the command line).")
    if name and int(name.group(2)) != patch:
        notes.append(f"args.model says {name.group(0)} but the weights have patch {patch}: the weights win")

    rows = _need(state, "y_embedder.embedding_table.weight", what)[0]
    cfg_prob = args.get("cfg_prob", args.get("class_dropout_prob"))
    num_classes = num_classes if num_classes is not None else args.get("num_classes")
    if num_classes is None:
        num_classes = rows if cfg_prob is not None and float(cfg_prob) == 0 else rows - 1
    if rows not in (num_classes, num_classes + 1):
        raise ReleasedModelError(f"{what}: y_embedder.embedding_table has {rows} rows, which fits neither "
                                 f"{num_classes} classes nor {num_classes} + 1 null row; pass the right num_classes=.")
    null_row = rows == num_classes + 1
    dropout = float(cfg_prob) if cfg_prob is not None else (0.1 if null_row else 0.0)
    if not null_row:
        notes.append(f"no null-class row (trained with label dropout 0): a zero row was added as class {num_classes}; "
                     f"sample without guidance (cfg_scale 1)")
        dropout = 0.0
    elif dropout == 0.0:
        dropout = 0.1
        notes.append("args say label dropout 0 but the table has a null row: class_dropout_prob set to 0.1")

    if alignment_depth is None:
        alignment_depth = args.get("encoder_depth")
    if alignment_depth is None:
        alignment_depth = min(DEFAULT_ALIGNMENT_DEPTH, depth)
        notes.append(f"alignment depth not recorded: assumed {alignment_depth} (it only affects REPA features)")
    if not 1 <= int(alignment_depth) <= depth:
        raise ReleasedModelError(f"{what}: alignment depth {alignment_depth} is outside the {depth} blocks; pass "
                                 f"alignment_depth= between 1 and {depth}.")
    cfg = SiTConfig(
        alignment_depth=int(alignment_depth), input_size=grid * patch, patch_size=patch, in_channels=channels,
        hidden_size=width, depth=depth, num_heads=int(num_heads), mlp_ratio=mlp_ratio, num_classes=int(num_classes),
        class_dropout_prob=dropout, projector_dim=projector_dim, z_dims=tuple(int(z) for z in z_dims),
        bn_momentum=float(args.get("bn_momentum", 0.1)), qk_norm="blocks.0.attn.q_norm.weight" in state)
    return cfg, null_row, notes


def adapt_state(state: dict[str, torch.Tensor], cfg: SiTConfig, null_row: bool,
                latent_scale: float = SD_VAE_SCALE) -> dict[str, torch.Tensor]:
    """The two documented additions (null row, fixed-scale BatchNorm); nothing else is changed."""
    state = dict(state)
    if not null_row:
        table = state["y_embedder.embedding_table.weight"]
        state["y_embedder.embedding_table.weight"] = torch.cat([table, table.new_zeros(1, table.shape[1])])
    if not any(k.startswith("bn.") for k in state):
        state.update(fixed_scale_buffers(cfg.in_channels, latent_scale, BN_EPS))
    return state


def build_sit(cfg: SiTConfig, state: dict[str, torch.Tensor], what: str) -> SiT:
    """SiT(cfg) with `state` loaded strictly, in eval mode; a mismatch names the keys and shapes."""
    try:
        sit = SiT(cfg)
    except ValueError as err:
        raise ReleasedModelError(f"{what}: {err}; pass matching alignment_depth= / num_heads=.") from None
    problems = state_dict_mismatch(sit, state)
    if problems:
        raise ReleasedModelError(mismatch_message(
            what, problems, f"Inferred SiT: depth {cfg.depth}, width {cfg.hidden_size}, patch {cfg.patch_size}, "
            f"{cfg.in_channels}x{cfg.input_size}x{cfg.input_size} latent, {cfg.num_classes} classes, projectors "
            f"{list(cfg.z_dims)}; pass an unmodified checkpoint (or the right num_heads= / num_classes=)."))
    sit.load_state_dict(state, strict=True)
    return sit.eval().requires_grad_(False)


def load_sit_checkpoint(src, *, num_heads: int | None = None, num_classes: int | None = None,
                        alignment_depth: int | None = None, latent_scale: float = SD_VAE_SCALE,
                        cache_dir=None) -> ReleasedCheckpoint:
    """One call: an official training checkpoint or a SiT state dict (file, folder, hub spec, or loaded dict)
    -> EMA SiT, raw SiT, the bundled VAE (LDM layout converted to diffusers) and discriminator, latent stats."""
    if isinstance(src, dict):
        obj, source = src, "<in-memory checkpoint>"
    else:
        path = locate(src, cache_dir=cache_dir, allow_patterns=["*.json", "checkpoints/*.pt", "*.pt"])
        path = find_weights_file(path, what="SiT checkpoint") if path.is_dir() else path
        obj, source = read_weights(path), str(path)
    what = f"the SiT checkpoint {source}"
    parts = split_checkpoint(obj, what)
    ema_state = strip_prefixes(parts["ema"])
    cfg, null_row, notes = infer_sit_config(ema_state, parts["args"], num_heads=num_heads, num_classes=num_classes,
                                            alignment_depth=alignment_depth, what=what)
    has_bn = "bn.running_mean" in ema_state
    if not has_bn:
        notes.append(f"no latent BatchNorm (a REPA checkpoint): fixed-scale normalisation x * {latent_scale}, zero bias")
    ema = build_sit(cfg, adapt_state(ema_state, cfg, null_row, latent_scale), f"{what} (ema)")
    if parts["model"] is not None and parts["model"] is not parts["ema"]:
        model = build_sit(cfg, adapt_state(strip_prefixes(parts["model"]), cfg, null_row, latent_scale),
                          f"{what} (model)")
    else:
        model = build_sit(cfg, dict(ema.state_dict()), what)
        if parts["training"]:
            notes.append("the checkpoint holds one SiT state dict: the raw model is a copy of it")
    mean, std = stats_from_bn(ema.bn.running_mean, ema.bn.running_var, ema.bn.eps)

    vae = disc = None
    if parts["vae"] is not None:
        size = int(parts["args"].get("resolution", 256))
        vae, layout = vae_from_state(parts["vae"], what=f"the vae entry of {source}", sample_size=size)
        vae = with_latent_stats(vae, mean, std)
        notes.append(f"VAE read from the checkpoint ({layout} layout)")
    if parts["discriminator"] is not None:
        disc = load_released_discriminator(parts["discriminator"])
    kind = ("repa-e" if vae is not None else "ldm-only" if has_bn else "repa") if parts["training"] else "state-dict"
    return ReleasedCheckpoint(ema=ema, model=model, config=cfg, vae=vae, discriminator=disc, latents_mean=mean,
                              latents_std=std, kind=kind, step=parts["step"], args=parts["args"], source=source,
                              fixed_scale=not has_bn, notes=notes)


def describe(ck: ReleasedCheckpoint) -> str:
    c = ck.config
    return (f"{ck.kind} checkpoint, step {ck.step}: SiT depth {c.depth} width {c.hidden_size} heads {c.num_heads} "
            f"patch {c.patch_size} on {c.in_channels}x{c.input_size}x{c.input_size} latents, {c.num_classes} classes, "
            f"alignment depth {c.alignment_depth}, projectors {list(c.z_dims)}"
            + (f", VAE {ck.vae.config.latent_channels} channels" if ck.vae is not None else ", no VAE")
            + (f" ({Path(ck.source).name})" if ck.source else ""))
