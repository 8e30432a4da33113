"""PatchGAN discriminator for the VAE's adversarial loss (REPA-E / taming ``NLayerDiscriminator``).

The layer layout, the ``main`` Sequential and the init match taming-transformers'
``NLayerDiscriminator`` (with BatchNorm, no ActNorm), so state dicts released
with REPA-E / LDM-style VAE losses load with ``load_state_dict`` unchanged
(keys ``main.0.weight``, ``main.2.weight``, ``main.3.running_mean``, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PatchDiscriminator",
    "discriminator_hinge_loss",
    "generator_hinge_loss",
    "output_size",
    "min_input_size",
    "check_input_size",
]

_KERNEL = 4
_PAD = 1


def _conv_out(size: int, stride: int) -> int:
    return (size + 2 * _PAD - _KERNEL) // stride + 1


def output_size(size: int, n_layers: int) -> int:
    """Side of the patch-logit map for a ``size`` x ``size`` input (<= 0: no output)."""
    # n_layers stride-2 convs (the first conv + n_layers-1 BN blocks), then two
    # stride-1 convs, each of which shrinks the map by one pixel (k4, p1).
    for _ in range(n_layers):
        if size < _KERNEL - 2 * _PAD:
            return 0
        size = _conv_out(size, 2)
    for _ in range(2):
        if size < _KERNEL - 2 * _PAD:
            return 0
        size = _conv_out(size, 1)
    return size


def min_input_size(n_layers: int) -> int:
    """Smallest square input that still yields a >= 1x1 logit map (n_layers=2: 12, n_layers=3: 24)."""
    size = 1
    while output_size(size, n_layers) < 1:
        size += 1
    return size


def check_input_size(size: int, n_layers: int) -> None:
    """Raise a ValueError naming the fix when ``size`` is too small for ``n_layers``."""
    size = int(size)
    if output_size(size, n_layers) >= 1:
        return
    fitting = [n for n in range(n_layers - 1, 0, -1) if output_size(size, n) >= 1]
    hint = f"use n_layers={fitting[0]} (or fewer)" if fitting else "no n_layers >= 1 fits; upsample the input"
    raise ValueError(
        f"PatchDiscriminator with n_layers={n_layers} needs inputs of at least "
        f"{min_input_size(n_layers)}x{min_input_size(n_layers)} pixels, got {size}; {hint} "
        "(e.g. the 16x16 workshop images need n_layers=2)"
    )


class PatchDiscriminator(nn.Module):
    """PatchGAN: a map of real/fake logits, one per overlapping image patch.

    For ``n_layers=3, ndf=64`` the channels go 64 -> 128 -> 256 -> 512 -> 1 with
    strides 2, 2, 2, 1, 1 (70x70 receptive field). Pass ``input_size`` to check
    at construction time that the image size yields a non-empty output.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, *, input_size: int | None = None):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        if input_size is not None:
            check_input_size(input_size, n_layers)
        self.n_layers = n_layers

        layers: list[nn.Module] = [
            # No norm on the first layer (pix2pix/taming): normalising raw-pixel
            # statistics would discard information the critic needs.
            nn.Conv2d(in_channels, ndf, _KERNEL, stride=2, padding=_PAD),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                # bias=False: BatchNorm's shift makes a conv bias redundant.
                nn.Conv2d(ndf * prev, ndf * mult, _KERNEL, stride=2, padding=_PAD, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, _KERNEL, stride=1, padding=_PAD, bias=False),
            nn.BatchNorm2d(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, _KERNEL, stride=1, padding=_PAD),  # patch logits
        ]
        # One Sequential called `main`, as in taming, so released checkpoints load.
        self.main = nn.Sequential(*layers)
        self.apply(_weights_init)

    def forward(self, x: Tensor) -> Tensor:
        # Cheap Python-int check; turns conv's cryptic "kernel size can't be
        # greater than actual input size" into an error naming the fix.
        for side in x.shape[-2:]:
            check_input_size(side, self.n_layers)
        return self.main(x)


def _weights_init(m: nn.Module) -> None:
    """taming's ``weights_init``: DCGAN-style N(0, 0.02) convs, N(1, 0.02) BN scale, zero BN shift.

    Conv biases (first and last conv only) keep PyTorch's default init, as in taming.
    """
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def discriminator_hinge_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """0.5 * (E[relu(1 - D(real))] + E[relu(1 + D(fake))])."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_hinge_loss(logits_fake: Tensor) -> Tensor:
    """-E[D(fake)]: the generator (VAE decoder) pushes its reconstructions' logits up."""
    return -torch.mean(logits_fake)


def pretrained_discriminator_state(obj) -> dict[str, Tensor]:
    """The PatchGAN state dict inside a released file: the bare state dict (REPA-E's *-discriminator-ckpt.pt),
    the `discriminator` entry of a training checkpoint, or the VAE-loss module's `discriminator.*` keys; DDP and
    torch.compile prefixes are stripped. The key names are taming's NLayerDiscriminator, which this class keeps."""
    if isinstance(obj, dict) and isinstance(obj.get("discriminator"), dict):
        obj = obj["discriminator"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError("the file holds no discriminator state dict (a dict of tensors, or one under "
                         "'discriminator'); pass the *-discriminator-ckpt.pt file or a training checkpoint.")
    for prefix in ("module.", "_orig_mod.", "discriminator."):
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj
