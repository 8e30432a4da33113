"""Shared fixtures: a tiny workshop configuration that trains in seconds, and one encoder cache per session."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # fail fast on any hub access: tests are offline
# networks trained and cached where a test passes no cache_dir (kit runs, evaluators of compare-vaes, the
# quickstart) go to a folder of this session's, never the user's ~/.cache/repae_lab: a warm user cache would
# make the tests faster than CI's and test less, and the tests would fill it (set here, so subprocesses inherit it)
os.environ["REPAE_LAB_CACHE"] = tempfile.mkdtemp(prefix="repae_lab-test-cache-")
torch.set_num_threads(min(2, torch.get_num_threads()))

# Small enough that every recipe runs a few steps in about a second on a 2-core CPU.
TINY = dict(steps=3, batch_size=8, vae_pretrain_steps=20, sit_size="W-tiny", projector_dim=64, alignment_depth=2,
            encoder_steps=30, probe_size=20, snapshot_recons=4, latent_stats_batches=1,
            log_every=1, snapshot_every=0, checkpoint_every=0, ema_decay=0.9, eval_every=0)


def logged_losses(run: Path) -> list[dict]:
    """A run's logged training and evaluation records without their wall-clock time: what two runs that trained
    bitwise alike share (events are left out)."""
    from repae_lab import rundir

    return [{k: v for k, v in r.items() if k != "time"} for r in rundir.read_jsonl(run / "metrics.jsonl")
            if "event" not in r]


@pytest.fixture(scope="session")
def encoder_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("encoder-cache"))


@pytest.fixture
def tiny(encoder_cache):
    """Overrides for the workshop preset (call with extra overrides)."""
    def make(**extra):
        return {**TINY, "cache_dir": encoder_cache, **extra}
    return make


@pytest.fixture
def tiny_config(tiny):
    from repae_lab.config import resolve_config

    def make(recipe="repa-e", **extra):
        return resolve_config("workshop", recipe=recipe, overrides=tiny(**extra))
    return make
