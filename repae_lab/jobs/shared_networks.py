"""The networks every run of a comparison shares, trained into the cache once, before the runs start: the
pretrained workshop VAE, the REPA target encoder and the evaluator. Parallel runs would otherwise each train
them at once.

Training them in two processes instead of one was measured and is slower on a 2-core CPU (61 s against 52 s
for the workshop preset from an empty cache): the VAE's convolutions use the second thread well (27 s with two
threads, 38.5 s with one).
"""
from __future__ import annotations

from ..config import Config
from ..evaluation.spaces import build_spaces, training_eval_spaces
from ..training.state import build_state


def prepare_shared_networks(cfg: Config, progress: bool = False) -> None:
    """Everything `cfg`'s runs load from the cache, made now."""
    state = build_state(cfg, progress=progress)        # the pretrained VAE and the REPA target encoder
    names, weights = training_eval_spaces(cfg)
    build_spaces(names, dataset=state.dataset, weights=weights, cache_dir=cfg.cache_dir, progress=progress)
