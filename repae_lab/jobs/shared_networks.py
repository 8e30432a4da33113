"""The networks every run of a comparison shares, trained into the cache once, before the runs start: the
pretrained workshop VAE, the REPA target encoder and the evaluator. Parallel runs would otherwise each train
them at once.

Training them in two processes instead of one was measured and is slower on a 2-core CPU (61 s against 52 s
for the workshop preset from an empty cache): the VAE's convolutions use the second thread well (27 s with two
threads, 38.5 s with one).
"""
from __future__ import annotations

import time

from ..config import Config
from ..evaluation.spaces import build_spaces, training_eval_spaces
from ..training.state import build_state


def prepare_shared_networks(cfg: Config, progress: bool = False) -> dict[str, float]:
    """Everything `cfg`'s runs load from the cache, made now. Returns the seconds each part took (a part read
    from the cache takes about a second)."""
    t0 = time.perf_counter()
    state = build_state(cfg, progress=progress)        # the pretrained VAE and the REPA target encoder
    t1 = time.perf_counter()
    names, weights = training_eval_spaces(cfg)
    build_spaces(names, dataset=state.dataset, weights=weights, cache_dir=cfg.cache_dir, progress=progress)
    return {"VAE and target encoder": t1 - t0, "evaluator": time.perf_counter() - t1}
