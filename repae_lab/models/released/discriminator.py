"""The pretrained PatchGAN discriminator released with REPA-E's VAEs (for repa-e runs: `disc_weights=PATH`).

The official checkpoint is the state dict of taming's NLayerDiscriminator with BatchNorm (keys main.0.weight,
main.2.weight, main.3.running_mean, ...), either alone (`*-discriminator-ckpt.pt`), under `discriminator` in a
training checkpoint, or inside the VAE loss module (keys discriminator.main.*). Its depth, width and input
channels are read from the conv shapes, and it loads strictly into repae_lab's PatchDiscriminator.
"""
from __future__ import annotations

import re

import torch

from ..discriminator import PatchDiscriminator, pretrained_discriminator_state
from ...rundir.safe_load import state_dict_mismatch
from .errors import ReleasedModelError, mismatch_message
from .sources import find_weights_file, locate, read_weights


def discriminator_state(obj, what: str) -> dict[str, torch.Tensor]:
    """The discriminator's state dict inside whatever the file holds."""
    try:
        return pretrained_discriminator_state(obj)
    except ValueError as err:
        raise ReleasedModelError(f"{what}: {err}") from None


def discriminator_shape(state: dict[str, torch.Tensor], what: str) -> dict:
    """PatchDiscriminator kwargs (in_channels, ndf, n_layers) from the conv weights main.<k>.weight."""
    if any(k.endswith((".loc", ".scale")) for k in state):
        raise ReleasedModelError(f"{what} uses ActNorm layers (keys *.loc / *.scale); only the BatchNorm "
                                 f"discriminator of REPA-E is supported.")
    convs = sorted((int(m.group(1)), v) for k, v in state.items()
                   if (m := re.fullmatch(r"main\.(\d+)\.weight", k)) and v.ndim == 4)
    if len(convs) < 3:
        raise ReleasedModelError(f"{what} has {len(convs)} conv layers under main.*; a PatchGAN has at least 3 "
                                 f"(keys main.0.weight, ...). Pass the discriminator checkpoint.")
    first = convs[0][1]
    return dict(in_channels=int(first.shape[1]), ndf=int(first.shape[0]), n_layers=len(convs) - 2)


def load_released_discriminator(src, *, cache_dir=None) -> PatchDiscriminator:
    """The official discriminator checkpoint (file, folder, hub spec, or state dict) as a PatchDiscriminator."""
    if isinstance(src, dict):
        obj, what = src, "the discriminator state dict"
    else:
        path = locate(src, cache_dir=cache_dir)
        if path.is_dir():
            found = sorted(path.glob("*discriminator*.pt"))
            path = found[0] if len(found) == 1 else find_weights_file(path, what="discriminator", exclude=())
        obj, what = read_weights(path), f"'{path}'"
    state = discriminator_state(obj, what)
    disc = PatchDiscriminator(**discriminator_shape(state, what))
    problems = state_dict_mismatch(disc, state)
    if problems:
        raise ReleasedModelError(mismatch_message(f"the discriminator in {what}", problems,
                                                  "Pass a taming NLayerDiscriminator (BatchNorm) checkpoint."))
    disc.load_state_dict(state, strict=True)
    return disc.eval()
