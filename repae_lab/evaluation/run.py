"""`repae-lab eval RUN`: sample a run's newest good checkpoint with a recorded protocol, measure it in one or more
feature spaces, and log the figures beside the training curves.

    repae-lab eval RUN [--n N] [--space workshop,dinov2,inception] [--sampler sde --steps 250 --cfg 1 ...]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import load_dataset
from ..models.from_run import load_for_sampling
from ..sampling import SamplingSpec, check_n
from .measure import evaluate_sampling
from .records import protocol_tag, write_evaluation
from .spaces import build_spaces, default_n, default_spaces, parse_spaces


def evaluate_run(run: str | Path, *, n: int | None = None, spaces: str | tuple[str, ...] | None = None,
                 spec: SamplingSpec = SamplingSpec(), weights: dict[str, str | None] | None = None,
                 n_ref: int | None = None, recon: bool = True, checkpoint: str | Path | None = None,
                 save_samples: bool = True, batch_size: int = 64, progress: bool = True) -> dict[str, Any]:
    """Load the newest good (or the given) checkpoint, sample, measure, write, log. Returns the record."""
    if isinstance(spaces, (tuple, list)):
        spaces = ",".join(spaces)
    names = parse_spaces(spaces) if spaces else None          # bad names and n fail before the run loads
    n = check_n(n) if n is not None else None
    loaded = load_for_sampling(run, checkpoint=checkpoint)
    cfg = loaded.cfg
    dataset = load_dataset(cfg.dataset, resolution=cfg.resolution, root=cfg.data_root)
    names = names or default_spaces(cfg)
    n = n or default_n(cfg)
    built = build_spaces(names, dataset=dataset, weights=weights, cache_dir=cfg.cache_dir, device=loaded.device,
                         progress=progress)
    metrics, protocol, images, labels = evaluate_sampling(
        loaded.ema if spec.ema else loaded.sit, loaded.vae, dataset, n=n, spec=spec, spaces=built,
        device=loaded.device, step=loaded.step, recipe=cfg.recipe, n_ref=n_ref, recon_n=None if recon else 0,
        cache_dir=cfg.cache_dir, batch_size=batch_size, progress=progress)
    protocol["checkpoint"] = str(loaded.checkpoint)
    return write_evaluation(Path(run), loaded.step, metrics, protocol, tag=protocol_tag(spec, n), images=images,
                            labels=labels, save_npz_file=save_samples)
