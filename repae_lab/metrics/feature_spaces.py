"""Feature spaces in which Frechet distances, precision / recall and Inception Scores are computed.

Three spaces share one interface: uint8 images (N, C, H, W) -> features (N, D), and class logits where the
network has a classifier head.

- `workshop`: a small residual CNN the project trains itself, by classification on the run's dataset, and
  caches on disk. It is deliberately NOT the workshop REPA target (repae_lab.models.target_encoders): other
  architecture (residual blocks, BatchNorm, ReLU, max-pool, global-average-pooled features like Inception's
  pool3) and another, fixed seed. A distance measured in the target's own feature space would flatter exactly
  the recipes that align the SiT to that target (repa, repa-e).
- `dinov2`: DINOv2 ViT-B/14 through timm: ImageNet normalisation, bicubic resize to 224, CLS token after the
  final norm (FD_DINOv2, Stein et al. 2023 use the same recipe with ViT-L/14).
- `inception`: torch-fidelity's port of the TF Inception-V3 (2015-12-05) the ADM evaluator uses: pool3
  features (2048) for FID / precision / recall, the unbiased logits for the Inception Score.

Pretrained weights cannot be downloaded on offline machines: `dinov2` and `inception` take a local weights
file (or, for DINOv2, a hub id), and the tests build the same architectures from random weights.
"""
from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

FEATURE_SPACES = ("workshop", "dinov2", "inception")
EVALUATOR_SEED = 20_250_414        # fixed and unlike any run seed: every run is judged by the same network
EVALUATOR_STEPS = 300              # classifier training steps (a few seconds on a 2-core CPU at 16 px)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureSpaceError(ValueError):
    """A feature space cannot be built as asked; the message says why and what to pass instead."""


def uint8_to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range every network in the project takes."""
    if images.dtype != torch.uint8:
        raise FeatureSpaceError(f"feature spaces take uint8 images (quantised like the PNG files a sampler writes), "
                                f"got {images.dtype}; convert with repae_lab.sampling.images_to_uint8.")
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


# ---------------------------------------------------------------------------------------------------------
# The workshop evaluator: a residual CNN classifier, trained once per dataset and cached.

@dataclass(frozen=True)
class EvaluatorConfig:
    in_channels: int = 1
    num_classes: int = 10
    widths: tuple[int, ...] = (16, 32, 64)   # one residual stage per width; each after the first halves the size


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.skip(x))


class EvaluatorNet(nn.Module):
    """Residual CNN: stem, residual stages with max-pool between them, global average pool -> features, linear head."""

    def __init__(self, cfg: EvaluatorConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, cfg.widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(cfg.widths[0]), nn.ReLU())
        blocks, c = [], cfg.widths[0]
        for i, width in enumerate(cfg.widths):
            if i > 0:
                blocks.append(nn.MaxPool2d(2))
            blocks.append(ResidualBlock(c, width))
            c = width
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(c, cfg.num_classes)
        self.feature_dim = c

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(2, 3))            # (N, widths[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _augment(x: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    """Random translation by up to max_shift pixels, padding with the background (-1), one offset per batch."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=gen).tolist()
    return padded[:, :, dy:dy + h, dx:dx + w]


def train_evaluator(images: torch.Tensor, labels: torch.Tensor, cfg: EvaluatorConfig, *, seed: int = EVALUATOR_SEED,
                    steps: int = EVALUATOR_STEPS, batch_size: int = 64, lr: float = 3e-3, holdout: float = 0.1,
                    progress: bool = True) -> tuple[EvaluatorNet, dict]:
    """Train the evaluator as a classifier (AdamW, cosine lr, label smoothing, shifts) on uint8 images.

    A held-out share measures the accuracy the docs quote; the net is trained on the rest. Runs under its own
    RNG (torch.random.fork_rng), so building it mid-training does not move the training run's random stream."""
    from tqdm.auto import trange

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        x_all = uint8_to_unit(images)
        perm = torch.randperm(len(x_all), generator=gen)
        n_val = int(len(x_all) * holdout)
        val, train = perm[:n_val], perm[n_val:]
        model = EvaluatorNet(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
        max_shift = max(1, images.shape[-1] // 8)
        t0 = time.time()
        model.train()
        for _ in trange(steps, desc="training the workshop evaluator", disable=not progress, leave=False):
            idx = train[torch.randint(0, len(train), (batch_size,), generator=gen)]
            loss = F.cross_entropy(model(_augment(x_all[idx], gen, max_shift)), labels[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval().requires_grad_(False)
    with torch.no_grad():
        def accuracy(idx):
            if len(idx) == 0:
                return float("nan")
            return sum((model(x_all[c]).argmax(1) == labels[c]).sum().item() for c in idx.split(512)) / len(idx)
        stats = {"train_accuracy": accuracy(train), "heldout_accuracy": accuracy(val), "heldout": n_val,
                 "seconds": round(time.time() - t0, 1), "steps": steps, "seed": seed}
    return model, stats


def dataset_uint8(dataset, indices: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Dataset images as uint8 (quantised exactly like generated samples) and their labels."""
    from ..sampling import images_to_uint8

    xs, ys = [], []
    for chunk in torch.as_tensor(indices).split(batch_size):
        x, y = dataset.batch(chunk)
        xs.append(images_to_uint8(x))
        ys.append(torch.as_tensor(y).long())
    return torch.cat(xs), torch.cat(ys)


def workshop_evaluator_for(dataset, *, cache_dir: str | Path | None = None, seed: int = EVALUATOR_SEED,
                           widths: tuple[int, ...] = (16, 32, 64), steps: int | None = None,
                           max_images: int = 20_000, progress: bool = True) -> tuple[EvaluatorNet, dict]:
    """The evaluator for a dataset: trained once, then loaded from `cache_dir/evaluators/` (safetensors)."""
    from ..models.trained_cache import cached_trained_model

    steps = EVALUATOR_STEPS if steps is None else steps
    cfg = EvaluatorConfig(in_channels=dataset.channels, num_classes=dataset.num_classes, widths=tuple(widths))
    return cached_trained_model(
        "evaluators", "evaluator", dataset, cfg, seed=seed, steps=steps, max_images=max_images, cache_dir=cache_dir,
        build=EvaluatorNet, load_data=dataset_uint8,
        fit=lambda images, labels: train_evaluator(images, labels, cfg, seed=seed, steps=steps, progress=progress))


class WorkshopSpace(FeatureSpace):
    name = "workshop"
    has_logits = True

    def __init__(self, net: EvaluatorNet, stats: dict | None = None):
        super().__init__()
        self.net, self.stats = net.eval().requires_grad_(False), dict(stats or {})

    def features_and_logits(self, images):
        f = self.net.features(uint8_to_unit(images))
        return f, self.net.classifier(f)

    def describe(self) -> dict:
        return {**super().describe(), "network": "workshop evaluator (residual CNN classifier, not the REPA target)",
                "widths": list(self.net.cfg.widths), "feature_dim": self.net.feature_dim, **self.stats}


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
    from ..models.target_encoders import dinov2_b

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
    try:
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


# ---------------------------------------------------------------------------------------------------------

def build_feature_space(name: str, *, dataset=None, weights: str | None = None, cache_dir=None, device=None,
                        progress: bool = True) -> FeatureSpace:
    """A feature space by name; `dataset` is needed for `workshop`, `weights` for `inception` (and `dinov2` offline)."""
    if name == "workshop":
        if dataset is None:
            raise FeatureSpaceError("the workshop feature space is trained on a dataset; pass dataset=.")
        net, stats = workshop_evaluator_for(dataset, cache_dir=cache_dir, progress=progress)
        space: FeatureSpace = WorkshopSpace(net, stats)
    elif name == "dinov2":
        space = dinov2_space(weights)
    elif name == "inception":
        space = inception_space(weights)
    else:
        raise FeatureSpaceError(f"unknown feature space '{name}'; choose from {', '.join(FEATURE_SPACES)}.")
    return space.to(device) if device is not None else space
