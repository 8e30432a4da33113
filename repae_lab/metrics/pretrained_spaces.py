"""Feature spaces of pretrained networks: DINOv2 ViT-B/14 (FD_DINOv2) and the Inception-V3 of the ADM
evaluator (FID, IS). Their weights cannot be downloaded offline: both take a local file (DINOv2 also a hub id),
and the tests build the same architectures from random weights."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from ..models.target_encoders import dinov2_b
from .space import FeatureSpace, FeatureSpaceError, uint8_to_unit

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------------------
# DINOv2-B/14 (timm).

class DinoV2Space(FeatureSpace):
    name = "dinov2"

    def __init__(self, model: nn.Module, source: str):
        super().__init__()
        self.net, self.source = model.eval().requires_grad_(False), source
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def features_and_logits(self, images):
        x = (uint8_to_unit(images) + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        x = F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False)
        tokens = self.net.forward_features(x)                     # (N, 1 + T, D), final norm applied
        return tokens[:, 0], None                                  # the CLS token

    def describe(self) -> dict:
        return {**super().describe(), "network": "DINOv2 ViT-B/14 (timm), CLS token at 224 px", "weights": self.source}


def dinov2_space(weights: str | None = None, *, pretrained: bool = True) -> DinoV2Space:
    """`weights`: a local .safetensors / .pth file, a timm hub id ('hf-hub:timm/vit_base_patch14_dinov2.lvd142m'),
    or None for timm's default hub weights. `pretrained=False` builds the architecture with random weights (tests)."""
    if weights and not weights.startswith("hf-hub:") and not Path(weights).is_file():
        raise FeatureSpaceError(f"DINOv2 weights file '{weights}' does not exist; pass the path of a local "
                                f"vit_base_patch14_dinov2 .safetensors/.pth file (--dinov2-weights PATH).")
    try:
        target = dinov2_b(weights, resolution=256, pretrained=pretrained)
    except Exception as err:
        raise FeatureSpaceError(
            f"could not load DINOv2-B/14 for FD_DINOv2 ({err}). Offline machines cannot download it: pass "
            f"--dinov2-weights PATH to a local weights file, or evaluate in the workshop space (--space workshop).") from err
    return DinoV2Space(target.model, weights or ("timm default" if pretrained else "random init"))


# ---------------------------------------------------------------------------------------------------------
# Inception-V3 (torch-fidelity's port of the TF graph the ADM evaluator and FID use).

class InceptionSpace(FeatureSpace):
    name = "inception"
    has_logits = True

    def __init__(self, extractor: nn.Module, source: str):
        super().__init__()
        self.net, self.source = extractor, source

    def features_and_logits(self, images):
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        pool, logits = self.net(images.contiguous())               # resized to 299 inside, TF1-style bilinear
        return pool, logits

    def describe(self) -> dict:
        return {**super().describe(), "network": "Inception-V3 2015-12-05 (torch-fidelity), pool3 2048-d",
                "weights": self.source}


def _load_state_dict_safely(path: Path) -> dict[str, torch.Tensor]:
    """A weights file as a plain dict of tensors, never by unpickling arbitrary objects."""
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise FeatureSpaceError(f"'{path}' is not a plain state dict of tensors ({err}); convert it to .safetensors.") from err
    if not isinstance(state, dict):
        raise FeatureSpaceError(f"'{path}' holds a {type(state).__name__}, not a state dict of tensors.")
    return state


def inception_space(weights: str | Path | None) -> InceptionSpace:
    """Inception-V3 with pool3 and unbiased logits from a LOCAL weights file (torch-fidelity's
    weights-inception-2015-12-05-6726825d.pth, or the same tensors as .safetensors)."""
    try:   # torch-fidelity is heavy and only the Inception space needs it
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as err:
        raise FeatureSpaceError("FID needs torch-fidelity: `pip install torch-fidelity`.") from err
    if weights is None:
        raise FeatureSpaceError("FID needs a local Inception-V3 weights file (this project never downloads it at run "
                                "time): pass --inception-weights PATH to torch-fidelity's "
                                "weights-inception-2015-12-05-6726825d.pth.")
    path = Path(weights)
    if not path.is_file():
        raise FeatureSpaceError(f"Inception weights file '{path}' does not exist; pass the path of "
                                f"weights-inception-2015-12-05-6726825d.pth (--inception-weights PATH).")
    state = _load_state_dict_safely(path)
    # torch-fidelity unpickles its weights file with weights_only=False; hand it a copy we wrote ourselves from
    # plain tensors, so no file from elsewhere is ever unpickled.
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "inception.pth"
        torch.save({k: v.contiguous() for k, v in state.items()}, clean)
        try:
            extractor = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                                    feature_extractor_weights_path=str(clean))
        except RuntimeError as err:
            raise FeatureSpaceError(f"'{path}' does not fit torch-fidelity's Inception-V3: {err}") from err
    return InceptionSpace(extractor, str(path))
