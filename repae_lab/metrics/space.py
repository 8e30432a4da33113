"""What a feature space is: uint8 images (N, C, H, W) -> features (N, D), and class logits where the network has
a classifier head; and extracting them in batches."""
from __future__ import annotations

import hashlib

import torch
import torch.nn as nn


class FeatureSpaceError(ValueError):
    """A feature space cannot be built as asked; the message says why and what to pass instead."""


def uint8_to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range every network in the project takes."""
    if images.dtype != torch.uint8:
        raise FeatureSpaceError(f"feature spaces take uint8 images (quantised like the PNG files a sampler writes), "
                                f"got {images.dtype}; convert with repae_lab.data.images.images_to_uint8.")
    return images.float() / 127.5 - 1.0


def state_fingerprint(module: nn.Module) -> str:
    """A short hash of a network's weights: reference statistics are cached per weights, not per name."""
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class FeatureSpace:
    """Base: `features(uint8 batch) -> (N, D)`, `logits(uint8 batch) -> (N, K)` or None, `describe()` for docs."""
    name: str = "base"
    has_logits: bool = False
    net: nn.Module

    def __init__(self):
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = f"{self.name}-{state_fingerprint(self.net)}"
        return self._fingerprint

    def to(self, device) -> "FeatureSpace":
        self.net.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "fingerprint": self.fingerprint}


@torch.no_grad()
def extract_features(space: FeatureSpace, images: torch.Tensor, *, batch_size: int = 256,
                     device=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (N, D) float64 and logits (N, K) or None of uint8 images, in batches, returned on the CPU."""
    device = torch.device(device) if device is not None else space.device
    feats, logits = [], []
    for chunk in images.split(batch_size):
        f, lg = space.features_and_logits(chunk.to(device))
        feats.append(f.double().cpu())
        if lg is not None:
            logits.append(lg.double().cpu())
    return torch.cat(feats), (torch.cat(logits) if logits else None)
