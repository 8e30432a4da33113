"""Per-image feature vectors from a snapshot: what every probe below works on.

Probes compare images, so each image becomes one vector: VAE latents are flattened (C*h*w), SiT and
target tokens are mean-pooled over tokens (snapshots of paper-sized runs may already be pooled;
info['pooled'] says so). Runs whose recipe has no REPA target (vanilla, e2e-diffusion) store no target
tokens; `encoder_target_features` rebuilds the run's target encoder to embed the same probe images, so
alignment can still be measured for them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..config import config_from_dict
from ..data import load_dataset
from ..models.target_encoders import build_target_encoder

SIT_PREFIX = "sit_tokens_t"


class ProbeError(ValueError):
    """A run directory or snapshot cannot be probed; the message names the problem and the fix."""


def per_image(tokens, pooled: bool | None = None) -> np.ndarray:
    """(N, T, D) tokens -> (N, D) mean over tokens; (N, D) is taken as already pooled."""
    t = torch.as_tensor(tokens).detach().float()
    if t.ndim == 3 and not pooled:
        t = t.mean(dim=1)
    if t.ndim != 2:
        raise ProbeError(f"expected tokens shaped (N, T, D) or pooled (N, D); got {tuple(t.shape)}")
    return t.numpy()


def flat_latents(latents) -> np.ndarray:
    """(N, C, h, w) latents -> (N, C*h*w): the whole latent of an image as one vector."""
    z = torch.as_tensor(latents).detach().float()
    return z.flatten(1).numpy()


def sit_feature_names(tensors) -> dict[str, str]:
    """{'sit_t50': 'sit_tokens_t50', ...} for every noise level the snapshot holds, in increasing t."""
    keys = sorted(k for k in tensors if k.startswith(SIT_PREFIX))
    return {"sit_t" + k[len(SIT_PREFIX):]: k for k in keys}


def snapshot_features(tensors: dict, info: dict, target=None) -> dict[str, np.ndarray]:
    """Named (N, D) float32 features of one snapshot: 'latents', 'sit_tXX' per noise level, and 'target'.

    `target` ((N, T, D) or (N, D)) stands in for a snapshot without target tokens; the snapshot's own
    tokens win when both exist.
    """
    if "latents" not in tensors:
        raise ProbeError("the snapshot holds no 'latents'; it was not written by repae_lab's trainer "
                         "(repae_lab.snapshots.take_snapshot)")
    pooled = info.get("pooled", {}) if info else {}
    feats = {"latents": flat_latents(tensors["latents"])}
    for name, key in sit_feature_names(tensors).items():
        feats[name] = per_image(tensors[key], pooled.get(key))
    if "target_tokens" in tensors:
        feats["target"] = per_image(tensors["target_tokens"], pooled.get("target_tokens"))
    elif target is not None:
        feats["target"] = per_image(target)
    n = len(feats["latents"])
    for name, x in feats.items():
        if len(x) != n:
            raise ProbeError(f"snapshot feature '{name}' has {len(x)} rows but the latents have {n}")
    return feats


@torch.no_grad()
def encoder_target_features(run, latent_size: int, batch_size: int = 256) -> np.ndarray:
    """(N, D) mean-pooled target-encoder features of a run's probe images, from the encoder its config names.

    For recipes that store no target tokens. The workshop encoder is a cached, deterministic function of
    (dataset, seed, grid), so this gives exactly the targets a REPA run on the same data would have stored.
    Raises ProbeError when the encoder or the data cannot be loaded here (e.g. DINOv2 weights offline).
    """
    run = Path(run)
    try:
        cfg = config_from_dict(json.loads((run / "config.json").read_text()))
        probe_set = json.loads((run / "probe_set.json").read_text())
        dataset = load_dataset(cfg.dataset, resolution=cfg.resolution, root=cfg.data_root, download=False)
        encoder = build_target_encoder(cfg, dataset, grid=latent_size // cfg.patch_size, progress=False)
    except Exception as err:  # any failure here only costs the alignment columns, never the whole probe
        raise ProbeError(f"could not rebuild the target encoder of '{run}' to measure alignment: {err}") from err
    indices = torch.as_tensor(probe_set["indices"])
    out = []
    for chunk in indices.split(batch_size):
        x, _ = dataset.batch(chunk)
        out.append(per_image(encoder(x).float()))
    return np.concatenate(out)
