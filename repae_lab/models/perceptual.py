"""Perceptual distances for the VAE regulariser: LPIPS-VGG where its weights exist, else a feature distance
in the workshop encoder's feature maps (the same idea without LPIPS's learned heads)."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16 weights, which lpips builds on


def lpips_available() -> bool:
    """LPIPS-VGG needs torchvision's VGG16 weights in the torch hub cache (they cannot be downloaded offline)."""
    return (Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE).is_file()


class LPIPSDistance(nn.Module):
    """LPIPS-VGG (the lpips package's calibrated linear heads on VGG16), per sample."""

    def __init__(self):
        super().__init__()
        import lpips

        self.net = lpips.LPIPS(net="vgg", verbose=False).eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        return self.net(x, y, normalize=False).flatten(1).mean(1)


class FeatureDistance(nn.Module):
    """LPIPS without learned heads, in a frozen encoder's feature maps: channel-normalised squared
    differences, averaged over space, summed over stages. Used where no LPIPS weights exist."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for fx, fy in zip(self.encoder.feature_maps(x), self.encoder.feature_maps(y)):
            fx, fy = F.normalize(fx, dim=1), F.normalize(fy, dim=1)
            total = total + (fx - fy).pow(2).sum(1).mean((1, 2))
        return total


def build_perceptual(kind: str, workshop_encoder: nn.Module | None) -> nn.Module | None:
    """'auto' picks LPIPS-VGG where its weights exist and the workshop encoder's features otherwise."""
    if kind == "none":
        return None
    if kind == "lpips" or (kind == "auto" and lpips_available()):
        try:
            return LPIPSDistance()
        except Exception as err:
            if kind == "lpips":
                raise RuntimeError(f"LPIPS-VGG could not be built ({err}); put {VGG16_FILE} in "
                                   f"{Path(torch.hub.get_dir()) / 'checkpoints'} or set perceptual=workshop.") from err
    if workshop_encoder is None or not hasattr(workshop_encoder, "feature_maps"):
        raise RuntimeError("no LPIPS weights here and no workshop encoder to measure perceptual distance with; "
                           "set perceptual=none or target_encoder=workshop.")
    return FeatureDistance(workshop_encoder)
