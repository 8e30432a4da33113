"""The two key layouts of an AutoencoderKL: LDM (the official REPA-E code, taming / CompVis) and diffusers.

Both hold the same tensors under other names, except that LDM attention q / k / v / proj_out are 1x1 convs
(C, C, 1, 1) where diffusers has linears (C, C), and that LDM numbers the decoder's levels from the highest
resolution (up.0 is the last one run) while diffusers numbers them in the order they run (up_blocks.0 first).
One table of name templates serves both directions:

    {i} {j}   level / block indices, kept        {u}   decoder level, flipped: diffusers = levels - 1 - LDM
    {res}     resnet leaf (nin_shortcut <-> conv_shortcut)      {att}  attention leaf (q <-> to_q, norm <-> group_norm, ...)

`infer_vae_config` reads the architecture (channels per level, blocks per level, latent channels, where the
attention blocks are, quant convs) back from diffusers-layout keys; GroupNorm group counts are not in the
weights and default to 32, as in every released VAE.
"""
from __future__ import annotations

import re

import torch

from .errors import ReleasedModelError

RESNET_LEAF = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "nin_shortcut": "conv_shortcut"}
ATTN_LEAF = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
ATTN_LINEARS = {"to_q", "to_k", "to_v", "to_out.0"}
# diffusers' pre-0.14 attention names, still found in some saved folders
_OLD_ATTN = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}

TEMPLATES = [  # (LDM, diffusers)
    ("{s}.conv_in.{t}", "{s}.conv_in.{t}"),
    ("{s}.conv_out.{t}", "{s}.conv_out.{t}"),
    ("{s}.norm_out.{t}", "{s}.conv_norm_out.{t}"),
    ("{s}.mid.block_1.{res}.{t}", "{s}.mid_block.resnets.0.{res}.{t}"),
    ("{s}.mid.block_2.{res}.{t}", "{s}.mid_block.resnets.1.{res}.{t}"),
    ("{s}.mid.attn_1.{att}.{t}", "{s}.mid_block.attentions.0.{att}.{t}"),
    ("encoder.down.{i}.block.{j}.{res}.{t}", "encoder.down_blocks.{i}.resnets.{j}.{res}.{t}"),
    ("encoder.down.{i}.attn.{j}.{att}.{t}", "encoder.down_blocks.{i}.attentions.{j}.{att}.{t}"),
    ("encoder.down.{i}.downsample.conv.{t}", "encoder.down_blocks.{i}.downsamplers.0.conv.{t}"),
    ("decoder.up.{u}.block.{j}.{res}.{t}", "decoder.up_blocks.{u}.resnets.{j}.{res}.{t}"),
    ("decoder.up.{u}.attn.{j}.{att}.{t}", "decoder.up_blocks.{u}.attentions.{j}.{att}.{t}"),
    ("decoder.up.{u}.upsample.conv.{t}", "decoder.up_blocks.{u}.upsamplers.0.conv.{t}"),
    ("quant_conv.{t}", "quant_conv.{t}"),
    ("post_quant_conv.{t}", "post_quant_conv.{t}"),
]


def _alternatives(names) -> str:
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


def _compile(template: str, side: int) -> re.Pattern:
    groups = {"s": "encoder|decoder", "t": "weight|bias", "i": r"\d+", "j": r"\d+", "u": r"\d+",
              "res": _alternatives(RESNET_LEAF.keys() if side == 0 else RESNET_LEAF.values()),
              "att": _alternatives(ATTN_LEAF.keys() if side == 0 else ATTN_LEAF.values())}
    pattern = re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
    for name, alt in groups.items():
        pattern = pattern.replace("{" + name + "}", f"(?P<{name}>{alt})")
    return re.compile(f"^{pattern}$")


_RULES = [(_compile(ldm, 0), _compile(dif, 1), ldm, dif) for ldm, dif in TEMPLATES]


def _levels(keys, pattern: str) -> int:
    found = [int(m.group(1)) for k in keys if (m := re.match(pattern, k))]
    return max(found) + 1 if found else 0


def _convert(state: dict[str, torch.Tensor], to_diffusers: bool) -> dict[str, torch.Tensor]:
    keys = list(state)
    levels = _levels(keys, r"^decoder\.up\.(\d+)\." if to_diffusers else r"^decoder\.up_blocks\.(\d+)\.")
    out, unknown = {}, []
    for key, value in state.items():
        for ldm_re, dif_re, ldm_t, dif_t in _RULES:
            m = (ldm_re if to_diffusers else dif_re).match(key)
            if m is None:
                continue
            g = m.groupdict()
            if "res" in g:
                g["res"] = RESNET_LEAF[g["res"]] if to_diffusers else {v: k for k, v in RESNET_LEAF.items()}[g["res"]]
            if "att" in g:
                leaf = ATTN_LEAF[g["att"]] if to_diffusers else {v: k for k, v in ATTN_LEAF.items()}[g["att"]]
                if g["t"] == "weight" and (leaf if to_diffusers else g["att"]) in ATTN_LINEARS:
                    value = value[:, :, 0, 0] if (to_diffusers and value.ndim == 4) else \
                        value[:, :, None, None] if (not to_diffusers and value.ndim == 2) else value
                g["att"] = leaf
            if "u" in g:
                g["u"] = str(levels - 1 - int(g["u"]))
            out[(dif_t if to_diffusers else ldm_t).format(**g)] = value
            break
        else:
            unknown.append(key)
    if unknown:
        layout = "LDM" if to_diffusers else "diffusers"
        shown = ", ".join(unknown[:6]) + (f" and {len(unknown) - 6} more" if len(unknown) > 6 else "")
        raise ReleasedModelError(f"the {layout}-layout VAE state dict has keys this converter does not know: {shown}; "
                                 f"pass an AutoencoderKL (encoder / decoder / quant convs) state dict only.")
    return out


def ldm_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LDM keys (encoder.down.0.block.0.conv1.weight, encoder.mid.attn_1.q.weight, ...) -> diffusers keys."""
    return _convert(state, to_diffusers=True)


def diffusers_to_ldm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of ldm_to_diffusers (what the official code's AutoencoderKL loads)."""
    return _convert(modernise_diffusers_keys(state), to_diffusers=False)


def modernise_diffusers_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename diffusers' old attention keys (query / key / value / proj_attn) to the current ones."""
    out = {}
    for key, value in state.items():
        for old, new in _OLD_ATTN.items():
            if ".attentions." in key and old in key:
                key = key.replace(old, new)
                if value.ndim == 4:
                    value = value[:, :, 0, 0]
        out[key] = value
    return out


def layout_of(state: dict[str, torch.Tensor]) -> str | None:
    """'ldm', 'diffusers' or None (neither: not a VAE state dict)."""
    keys = list(state)
    if any(k.startswith(("encoder.down_blocks.", "decoder.up_blocks.", "encoder.mid_block.")) for k in keys):
        return "diffusers"
    if any(k.startswith(("encoder.down.", "decoder.up.", "encoder.mid.")) for k in keys):
        return "ldm"
    return None


def _shape(state, key: str, what: str):
    if key not in state:
        raise ReleasedModelError(f"the VAE state dict has no {key} ({what}); pass a complete AutoencoderKL state dict.")
    return tuple(state[key].shape)


def infer_vae_config(state: dict[str, torch.Tensor], *, norm_num_groups: int = 32, sample_size: int = 256) -> dict:
    """AutoencoderKL constructor kwargs that fit a diffusers-layout state dict."""
    keys = list(state)
    levels = _levels(keys, r"^encoder\.down_blocks\.(\d+)\.")
    if levels == 0:
        raise ReleasedModelError("the VAE state dict has no encoder.down_blocks.* keys; pass an AutoencoderKL state dict.")
    widths = tuple(_shape(state, f"encoder.down_blocks.{i}.resnets.0.conv2.weight", f"width of level {i}")[0]
                   for i in range(levels))
    layers = _levels(keys, r"^encoder\.down_blocks\.0\.resnets\.(\d+)\.")
    up_levels = _levels(keys, r"^decoder\.up_blocks\.(\d+)\.")
    up_layers = _levels(keys, r"^decoder\.up_blocks\.0\.resnets\.(\d+)\.")
    if up_levels != levels or up_layers != layers + 1:
        raise ReleasedModelError(f"the decoder ({up_levels} levels of {up_layers} blocks) does not mirror the encoder "
                                 f"({levels} levels of {layers} blocks, the decoder needs one more per level) as "
                                 f"AutoencoderKL requires; this VAE architecture is not supported.")
    latent = _shape(state, "decoder.conv_in.weight", "latent channels")[1]
    moments = _shape(state, "encoder.conv_out.weight", "posterior moments")[0]
    if moments != 2 * latent:
        raise ReleasedModelError(f"the encoder outputs {moments} channels for a {latent}-channel latent (a Gaussian VAE "
                                 f"gives 2 x {latent}); only variational AutoencoderKLs are supported.")
    mid_enc = "encoder.mid_block.attentions.0.to_q.weight" in state
    if mid_enc != ("decoder.mid_block.attentions.0.to_q.weight" in state):
        raise ReleasedModelError("the encoder and decoder disagree on mid-block attention; AutoencoderKL needs both "
                                 "or neither.")
    bad = [w for w in widths if w % norm_num_groups]
    if bad:
        raise ReleasedModelError(f"level widths {bad} are not divisible by norm_num_groups={norm_num_groups}; pass "
                                 f"the GroupNorm group count the VAE was trained with (norm_num_groups=).")
    attn_down = [any(k.startswith(f"encoder.down_blocks.{i}.attentions.") for k in keys) for i in range(levels)]
    attn_up = [any(k.startswith(f"decoder.up_blocks.{i}.attentions.") for k in keys) for i in range(levels)]
    return dict(
        in_channels=_shape(state, "encoder.conv_in.weight", "input channels")[1],
        out_channels=_shape(state, "decoder.conv_out.weight", "output channels")[0],
        down_block_types=tuple("AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attn_down),
        up_block_types=tuple("AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in attn_up),
        block_out_channels=widths, layers_per_block=layers, latent_channels=latent,
        norm_num_groups=norm_num_groups, sample_size=sample_size,
        use_quant_conv="quant_conv.weight" in state, use_post_quant_conv="post_quant_conv.weight" in state,
        mid_block_add_attention=mid_enc,
    )
