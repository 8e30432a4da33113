"""GPU checks: skipped where torch sees no CUDA device; `benchmarks/gpu_session.sh` runs them on a lent GPU.

They cover what the CPU tests cannot: the CUDA paths of every recipe under bf16 and fp16 (whose skipped updates
are reported as skipped), that a step makes the CPU wait for the GPU only once (when its metrics are read), that
CUDA and CPU compute the same step, regional and full torch.compile, and a step replayed as a CUDA graph
computing what the eager step computes.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch

from repae_lab.training.step import train_step
from repae_lab.training.batches import batch_indices, step_generator
from repae_lab.training.state import build_state

# torch warns once that its sync debug mode is a prototype; that warning is not a synchronisation
PROTOTYPE_WARNING = "Synchronization debug mode is a prototype feature"

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
        # fp16's scaler may skip an overflowing update (and halve its scale): reported as skipped, with no norm
        assert all(math.isfinite(v) for v in metrics.values()), metrics
        for update in ("vae", "disc", "sit"):
            if metrics.get(f"skipped/{update}"):
                assert f"grad_norm/{update}" not in metrics, metrics
        assert ("skipped/sit" in metrics) == (precision == "fp16")
    assert all(opt.defaults.get("fused") for opt in state.optimizers.named().values())


def _synchronisations(fn) -> list[str]:
    """The warnings torch's sync debug mode gives while fn runs: one per operation that makes the CPU wait for
    the GPU (its one-off warning that the mode is a prototype is not one)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()
            and not str(w.message).startswith(PROTOTYPE_WARNING)]


@pytest.mark.parametrize("recipe", ["repa", "repa-e"])
def test_a_gpu_step_synchronises_once(tiny_config, recipe):
    """A step may make the CPU wait for the GPU exactly once: reading back its metrics at the end. The count
    still sees a second, real synchronisation."""
    state = build_state(tiny_config(recipe, device="cuda", mixed_precision="bf16"), progress=False)
    x, y = _batch(state)
    train_step(state, x, y, step_generator(0, 0))           # warm-up: allocator, cuDNN, lazy init
    state.step += 1
    syncs = _synchronisations(lambda: train_step(state, x, y, step_generator(0, 1)))
    assert len(syncs) <= 1, syncs
    extra = _synchronisations(lambda: (train_step(state, x, y, step_generator(0, 2)), x.sum().item()))
    assert len(extra) == len(syncs) + 1, extra


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


@pytest.mark.parametrize("mode", ["regional", "full"])
def test_torch_compile_on_the_gpu(tiny_config, mode):
    state = build_state(tiny_config("repa-e", device="cuda", mixed_precision="bf16", compile=mode), progress=False)
    for step in range(2):
        x, y = _batch(state, step)
        metrics = train_step(state, x, y, step_generator(0, step))
        state.step += 1
        assert math.isfinite(metrics["loss/diffusion"])


@pytest.mark.parametrize("recipe", ["repa", "repa-e"])
def test_a_cuda_graph_step_computes_the_eager_step(tiny_config, recipe):
    """Warm-up steps, then captured graphs replayed (the GAN switching on at step 3 needs a second graph): the
    same metrics and weights as eager steps from the same start, to float tolerance (cuDNN may pick another
    algorithm in a capture), and the capture never fell back to eager."""
    overrides = dict(device="cuda", mixed_precision="bf16", disc_start=3, cudnn_benchmark=False)
    eager = build_state(tiny_config(recipe, **overrides), progress=False)
    graphed = build_state(tiny_config(recipe, cuda_graphs=True, **overrides), progress=False)
    for step in range(7):
        x, y = _batch(eager, step)
        a = train_step(eager, x, y, step_generator(0, step))
        b = train_step(graphed, x, y, step_generator(0, step))
        eager.step += 1
        graphed.step += 1
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=2e-2, abs=1e-3), (step, key)
    assert graphed.graphed_step.failed is None and graphed.graphed_step.graphs
    for pa, pb in zip(eager.nets.sit.parameters(), graphed.nets.sit.parameters()):
        torch.testing.assert_close(pa, pb, rtol=2e-2, atol=2e-3)


def test_throughput_benchmark_runs_on_the_gpu(tmp_path):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import throughput

    out = tmp_path / "perf.json"
    throughput.main(["--device", "cuda", "--sizes", "workshop", "--recipes", "repa-cached,repa-e",
                     "--steps", "2", "--warmup", "1", "--cuda-graphs", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert rows and all("error" not in r for r in rows), rows
    assert all(r["images_per_s"] > 0 and r["mfu"] is not None and 0 < r["mfu"] < 1 for r in rows), rows
