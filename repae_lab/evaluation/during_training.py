"""Evaluation inside the training loop: a small, fixed-protocol evaluation of the live run (EMA SiT, current
VAE) every eval_every steps, so every run gets an FD-versus-steps curve.

The loop does not import this: whoever starts a run hands it a TrainingEvaluator (jobs/launch.py does).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..sampling import SamplingSpec
from .measure import evaluate_sampling
from .records import eval_record, protocol_tag, save_evaluation
from .spaces import build_spaces, training_eval_spaces


class TrainingEvaluator:
    """`evaluator(state, run)` -> the metrics-log record of the run at state.step (it also writes the sample
    grid and the record to RUN/eval/).

    Nothing here touches the training run's state: the models are used in eval mode and restored, the
    sampler draws from its own seeded generators, the global RNG is forked, and the evaluator networks and the
    reference statistics are built once and kept here."""

    def __init__(self):
        self._spaces = None

    def __call__(self, state, run: Path | None) -> dict[str, Any]:
        devices = [state.device] if state.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):          # building networks draws from the global RNG
            return self._evaluate(state, run)

    def _evaluate(self, state, run: Path | None) -> dict[str, Any]:
        cfg = state.cfg
        spec = SamplingSpec(sampler=cfg.eval_sampler, steps=cfg.eval_steps, cfg_scale=cfg.eval_cfg_scale,
                            interval=tuple(cfg.eval_interval), seed=cfg.seed)
        if self._spaces is None:
            names, weights = training_eval_spaces(cfg)
            self._spaces = build_spaces(names, dataset=state.dataset, weights=weights, cache_dir=cfg.cache_dir,
                                        device=state.device, progress=False)
        metrics, protocol, images, labels = evaluate_sampling(
            state.nets.ema, state.nets.vae, state.dataset, n=cfg.eval_n, spec=spec, spaces=self._spaces,
            device=state.device, step=state.step, recipe=cfg.recipe, recon_n=cfg.eval_n, cache_dir=cfg.cache_dir,
            progress=False)
        protocol["during_training"] = True
        record = eval_record(state.step, metrics, protocol)
        if run is not None:
            save_evaluation(run, record, tag=protocol_tag(spec, cfg.eval_n), images=images, labels=labels, npz=False)
        return record
