"""Perceptual distances for the VAE regulariser: LPIPS-VGG where its weights exist, else a feature distance
in the workshop encoder's feature maps (the same idea without LPIPS's learned heads)."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..rundir.errors import CheckpointError
from ..rundir.safe_load import load_torch_file


VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16 weights, which lpips builds on
# torchvision's vgg16().features indices -> the lpips trunk's five slices (the module names keep the indices)
_VGG_SLICES = ((1, range(0, 4)), (2, range(4, 9)), (3, range(9, 16)), (4, range(16, 23)), (5, range(23, 30)))


def vgg16_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE


def lpips_available() -> bool:
    """LPIPS-VGG needs torchvision's VGG16 weights in the torch hub cache (they cannot be downloaded offline)."""
    return vgg16_weights_path().is_file()


def _safe_state(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A weights file read without running code from it (torch.load(weights_only=True)); refused otherwise."""
    try:
        state = load_torch_file(path)
    except CheckpointError as err:
        raise RuntimeError(f"{what} '{path}' was refused: {err} Delete it and put the real file there, or set "
                           f"perceptual=workshop.") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise RuntimeError(f"{what} '{path}' holds no state dict of tensors; replace it, or set perceptual=workshop.")
    return state


class LPIPSDistance(nn.Module):
    """LPIPS-VGG (the lpips package's calibrated linear heads on VGG16), per sample.

    Both weight files are read here with the safe loader: torchvision and lpips would unpickle them
    (torchvision's hub loader passes weights_only=False), so arbitrary code in a planted file would run.
    `double_rescale` reproduces the official REPA-E code, which applies x * 2 - 1 to inputs already in [-1, 1]
    (the network then sees [-3, 1]); off by default (docs/official_code.md)."""

    def __init__(self, double_rescale: bool = False):
        super().__init__()
        import lpips          # heavy, and needed only where LPIPS-VGG is the perceptual distance

        with warnings.catch_warnings():        # torchvision's notice about lpips's old `pretrained=` argument
            warnings.simplefilter("ignore", UserWarning)
            net = lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False)
        vgg = _safe_state(vgg16_weights_path(), "the VGG16 weights file")
        trunk = {f"slice{k}.{i}.{p}": vgg[f"features.{i}.{p}"] for k, idx in _VGG_SLICES for i in idx
                 for p in ("weight", "bias") if f"features.{i}.{p}" in vgg}
        net.net.load_state_dict(trunk, strict=True)
        heads_file = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
        heads = _safe_state(heads_file, "the LPIPS heads file")
        if set(heads) != {f"lin{i}.model.1.weight" for i in range(5)}:
            raise RuntimeError(f"the LPIPS heads file '{heads_file}' is not lpips v0.1's VGG heads; reinstall lpips.")
        net.load_state_dict(heads, strict=False)          # lin0..4; `lins` is the same five modules
        self.net = net.eval().requires_grad_(False)
        self.double_rescale = double_rescale

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        return self.net(x, y, normalize=self.double_rescale).flatten(1).mean(1)


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


def build_perceptual(kind: str, workshop_encoder: nn.Module | None, *, double_rescale: bool = False) -> nn.Module | None:
    """'auto' picks LPIPS-VGG where its weights exist and the workshop encoder's features otherwise. A weights
    file that is there but unsafe or broken is an error for 'auto' too: a silent fallback would hide it."""
    if kind == "none":
        return None
    if kind == "lpips" or (kind == "auto" and lpips_available()):
        if not lpips_available():
            raise RuntimeError(f"perceptual=lpips needs torchvision's VGG16 weights at {vgg16_weights_path()} (they "
                               f"cannot be downloaded here); put the file there or set perceptual=workshop.")
        return LPIPSDistance(double_rescale)
    if workshop_encoder is None or not hasattr(workshop_encoder, "feature_maps"):
        raise RuntimeError("no LPIPS weights here and no workshop encoder to measure perceptual distance with; "
                           "set perceptual=none or target_encoder=workshop.")
    return FeatureDistance(workshop_encoder)
