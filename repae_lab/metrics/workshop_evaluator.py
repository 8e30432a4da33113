"""The workshop evaluator: a residual CNN classifier the project trains itself on a run's dataset, trained once
per dataset and cached, and the `workshop` feature space it gives.

It is deliberately NOT the workshop REPA target (repae_lab.models.target_encoders): other architecture
(residual blocks, BatchNorm, ReLU, max-pool, global-average-pooled features like Inception's pool3) and another,
fixed seed. A distance measured in the target's own feature space would flatter exactly the recipes that align
the SiT to that target (repa, repa-e).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import trange

from ..data.images import images_to_uint8
from ..models.trained_cache import cached_trained_model, classifier_accuracy
from .space import FeatureSpace, uint8_to_unit

EVALUATOR_SEED = 20_250_414        # fixed and unlike any run seed: every run is judged by the same network
EVALUATOR_STEPS = 300              # classifier training steps (a few seconds on a 2-core CPU at 16 px)



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
    # the held-out share whole (the docs quote it), the training share subsampled (classifier_accuracy)
    stats = {"train_accuracy": classifier_accuracy(model, x_all[train], labels[train]),
             "heldout_accuracy": classifier_accuracy(model, x_all[val], labels[val], limit=None), "heldout": n_val,
             "seconds": round(time.time() - t0, 1), "steps": steps, "seed": seed}
    return model, stats


def dataset_uint8(dataset, indices: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Dataset images as uint8 (quantised exactly like generated samples) and their labels."""
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
