"""GPU checks: skipped where torch sees no CUDA device; `benchmarks/gpu_session.sh` runs them on a lent GPU.

They cover what the CPU tests cannot: the CUDA paths of every recipe under bf16, that a step makes the CPU
wait for the GPU only once (when its metrics are read), that CUDA and CPU compute the same step, and
torch.compile on the GPU.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch

from repae_lab.training.step import train_step
from repae_lab.training.batches import batch_indices, step_generator
from repae_lab.training.state import build_state

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _batch(state, step=0):
    cfg = state.cfg
    x, y = state.dataset.batch(batch_indices(len(state.dataset), cfg.batch_size, cfg.seed, step))
    return x.to(state.device), y.to(state.device)


@pytest.mark.parametrize("recipe", ["vanilla", "repa", "e2e-diffusion", "repa-e"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_every_recipe_runs_on_the_gpu(tiny_config, recipe, precision):
    state = build_state(tiny_config(recipe, device="cuda", mixed_precision=precision), progress=False)
    assert all(p.is_cuda for p in state.nets.sit.parameters()) and all(p.is_cuda for p in state.nets.vae.parameters())
    for step in range(3):
        x, y = _batch(state, step)
        metrics = train_step(state, x, y, step_generator(0, step))
        state.step += 1
        assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert all(opt.defaults.get("fused") for opt in state.optimizers.named().values())


@pytest.mark.parametrize("recipe", ["repa", "repa-e"])
def test_a_gpu_step_synchronises_once(tiny_config, recipe):
    """torch's sync debug mode warns on every operation that makes the CPU wait for the GPU; a step may
    have exactly one: reading back its metrics at the end."""
    state = build_state(tiny_config(recipe, device="cuda", mixed_precision="bf16"), progress=False)
    x, y = _batch(state)
    train_step(state, x, y, step_generator(0, 0))           # warm-up: allocator, cuDNN, lazy init
    state.step += 1
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_step(state, x, y, step_generator(0, 1))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
    assert len(syncs) <= 1, syncs


def test_cuda_and_cpu_compute_the_same_step(tiny_config):
    """fp32 without TF32: the first step's losses agree to float tolerance (same draws, same weights)."""
    results = {}
    for device in ("cpu", "cuda"):
        state = build_state(tiny_config("repa-e", device=device, tf32=False), progress=False)
        x, y = _batch(state)
        results[device] = train_step(state, x, y, step_generator(0, 0))
    for key, value in results["cpu"].items():
        if key.startswith("loss/"):
            assert results["cuda"][key] == pytest.approx(value, rel=1e-3, abs=1e-4), key


def test_torch_compile_on_the_gpu(tiny_config):
    state = build_state(tiny_config("repa", device="cuda", mixed_precision="bf16", compile=True), progress=False)
    for step in range(2):
        x, y = _batch(state, step)
        metrics = train_step(state, x, y, step_generator(0, step))
        state.step += 1
        assert math.isfinite(metrics["loss/diffusion"])


def test_throughput_benchmark_runs_on_the_gpu(tmp_path):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import throughput

    out = tmp_path / "perf.json"
    throughput.main(["--device", "cuda", "--sizes", "workshop", "--recipes", "repa-cached,repa-e",
                     "--steps", "2", "--warmup", "1", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert rows and all("error" not in r for r in rows), rows
    assert all(r["images_per_s"] > 0 and r["mfu"] is not None and 0 < r["mfu"] < 1 for r in rows), rows
