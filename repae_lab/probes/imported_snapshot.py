"""A probe snapshot for a run that was not trained here (an imported released model): the same class-balanced
probe images through its SiT and VAE, written as the run's one snapshot, so `repae-lab probe`, the latent
explorer and the notebooks work on it as on any trained run."""
from __future__ import annotations

import json
from pathlib import Path

from .. import rundir
from ..config import config_from_dict
from ..data import DATASETS, DatasetError, class_balanced_indices, load_dataset
from ..models.from_run import load_for_sampling
from ..models.released.errors import ReleasedModelError
from ..rundir import layout
from ..training.snapshots import snapshot_tensors


def probe_dataset(spec: str, resolution: int):
    """A dataset name (digits, fashion-mnist, cifar10) or a folder of class folders, at `resolution`."""
    path = Path(spec).expanduser()
    name, root = (spec, None) if spec in DATASETS and not path.exists() else ("imagefolder", str(path))
    try:
        return load_dataset(name, resolution=resolution, root=root), name, root
    except DatasetError as err:
        raise ReleasedModelError(f"--probe-data '{spec}': {err}") from None


def add_probe_snapshot(run, data: str, *, probe_size: int = 200, seed: int = 0) -> Path:
    """Write RUN/probe_set.json and a snapshot of `data`'s probe images at the run's checkpoint step; config.json
    then names that dataset, so `repae-lab eval` and `probe` rebuild it. Returns the snapshot's path."""
    loaded = load_for_sampling(run, device="cpu")
    cfg = loaded.cfg
    dataset, name, root = probe_dataset(data, cfg.resolution)
    if dataset.channels != loaded.vae.config.in_channels:
        raise ReleasedModelError(f"--probe-data '{data}' has {dataset.channels}-channel images but the VAE takes "
                                 f"{loaded.vae.config.in_channels}; pass images the VAE can encode.")
    indices = class_balanced_indices(dataset.labels, min(probe_size, len(dataset)), seed)
    tensors, info = snapshot_tensors(loaded.ema, loaded.vae, dataset, indices, snapshot_t=cfg.snapshot_t,
                                     recons=cfg.snapshot_recons, seed=seed, step=loaded.step, recipe=cfg.recipe,
                                     sit_model="imported EMA SiT, null-class label")
    run = Path(run)
    updated = config_from_dict({**cfg.to_dict(), "dataset": name, "data_root": root, "probe_size": len(indices),
                                "seed": seed})
    rundir.atomic_write_text(run / layout.CONFIG, updated.to_json())
    rundir.atomic_write_text(run / layout.PROBE_SET, json.dumps(
        {"dataset": name, "indices": indices.tolist(), "labels": dataset.labels[indices].tolist()}))
    return rundir.save_snapshot(run, loaded.step, tensors, info)
