"""The GPU speed paths, checked where a CPU can run them: fp16's skipped updates reported as skipped, regional
compilation (each repeated block compiled once, same step as eager), and the CUDA-graph step's bookkeeping with a
stand-in for the graph (tests/test_cuda.py runs the real capture on a GPU)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from repae_lab.config import ConfigError, config_from_dict, resolve_config
from repae_lab.rundir import RunError
from repae_lab.training.alarms import AlarmMonitor
from repae_lab.training.batches import batch_indices, step_generator
from repae_lab.training.cuda_graphs import GraphedStep
from repae_lab.training.loop import train
from repae_lab.training.networks import compile_repeated_blocks
from repae_lab.training.optim import adamw, with_runtime_flags
from repae_lab.training.state import build_state
from repae_lab.training.step import train_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def _batch(state, step=0):
    cfg = state.cfg
    return state.dataset.batch(batch_indices(len(state.dataset), cfg.batch_size, cfg.seed, step))


def _steps(state, n, start=0):
    out = []
    for step in range(start, start + n):
        x, y = _batch(state, step)
        out.append(train_step(state, x, y, step_generator(state.cfg.seed, step)))
        state.step += 1
    return out


# ---------------------------------------------------------------------------------------------------------
# fp16: a step the GradScaler skips is reported as skipped, not as an inf gradient norm

def test_a_skipped_fp16_update_is_reported_as_skipped_not_as_an_inf_norm(tiny_config):
    """fp16 autocast and its GradScaler run on the CPU too. At the scaler's starting scale (65536) the VAE's first
    gradients overflow: the scaler skips that update and halves its scale, as it should."""
    state = build_state(tiny_config("repa-e", mixed_precision="fp16"), progress=False)
    first = _steps(state, 1)[0]
    assert first["skipped/vae"] == 1.0 and "grad_norm/vae" not in first, first
    assert first["skipped/sit"] == 0.0 and math.isfinite(first["grad_norm/sit"])
    assert state.optimizers.scaler.get_scale() == 32768.0
    assert all(math.isfinite(v) for v in first.values()), first
    assert not AlarmMonitor(state.cfg).check(1, first), "a skipped fp16 update must not raise the non-finite alarm"


def test_skipped_updates_are_counted_in_the_log_and_the_summary(tiny_config, tmp_path):
    summary = train(tiny_config("repa-e", mixed_precision="fp16", steps=4, log_every=2), tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert not [r for r in records if "event" in r], "no alarm for a few skips at the start"
    logged = sum(r.get("skipped/vae", 0) for r in records if "event" not in r)
    assert summary["skipped_updates"]["vae"] == logged >= 1
    assert all(math.isfinite(v) for r in records for k, v in r.items() if k.startswith("grad_norm/"))
    from repae_lab.training.summary import format_summary
    assert "skipped" in format_summary(summary)


def test_fp16_updates_skipped_step_after_step_raise_an_alarm(tiny_config):
    monitor = AlarmMonitor(tiny_config("repa-e", mixed_precision="fp16", alarm_patience=3))
    fired = [monitor.check(s, {"skipped/vae": 1.0, "loss/l1": 0.1}) for s in range(3)]
    assert [a.kind for a in fired[-1]] == ["fp16_overflow"] and not fired[0]


# ---------------------------------------------------------------------------------------------------------
# compile: none | regional | full, with the old true / false still read

def test_compile_takes_a_mode_and_reads_the_old_booleans(tiny_config):
    assert tiny_config(compile="regional").compile == "regional"
    assert tiny_config(compile=True).compile == "full" and tiny_config(compile="false").compile == "none"
    old = json.loads(tiny_config().to_json())
    old["compile"] = True                                   # a config.json written before compile had modes
    assert config_from_dict(old).compile == "full"
    with pytest.raises(ConfigError, match="compile must be one of none, regional, full.*regional"):
        tiny_config(compile="regionl")


def test_regional_compilation_compiles_each_repeated_block_and_keeps_the_step(tiny_config, monkeypatch):
    """aot_eager traces forward and backward as inductor does but runs them eagerly: the mechanics without code
    generation. The SiT's blocks and the VAE's ResNet blocks are compiled in place (checkpoint keys unchanged),
    the identical SiT blocks share their compiled code, and the step computes what the eager step computes."""
    monkeypatch.setenv("REPAE_LAB_COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    eager = build_state(tiny_config("repa-e"), progress=False)
    compiled = build_state(tiny_config("repa-e", compile="regional"), progress=False)
    sit_blocks = compiled.nets.sit.blocks
    assert all(b._compiled_call_impl is not None for b in sit_blocks) and len(sit_blocks) == 4
    resnets = [m for m in compiled.nets.vae.modules() if type(m).__name__ == "ResnetBlock2D"]
    assert resnets and all(m._compiled_call_impl is not None for m in resnets)
    assert set(compiled.nets.sit.state_dict()) == set(eager.nets.sit.state_dict())
    from torch._dynamo.utils import counters
    counters.clear()
    for a, b in zip(_steps(eager, 2), _steps(compiled, 2)):
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    # the identical blocks share their graphs: a SiT of 6 blocks compiles exactly as many graphs as one of 4
    graphs_of_4 = counters["stats"]["unique_graphs"]
    torch._dynamo.reset()
    counters.clear()
    _steps(build_state(tiny_config("repa-e", compile="regional", sit_size="W"), progress=False), 2)
    assert counters["stats"]["unique_graphs"] == graphs_of_4, (graphs_of_4, dict(counters["stats"]))
    torch._dynamo.reset()


def test_compile_repeated_blocks_skips_what_it_does_not_know():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    assert compile_repeated_blocks(net, None) == 0


# ---------------------------------------------------------------------------------------------------------
# cuda_graphs: refused where it cannot run; its bookkeeping checked with a stand-in for the CUDA graph

def test_cuda_graphs_is_refused_with_fp16_and_on_a_cpu(tiny_config):
    with pytest.raises(ConfigError, match="cuda_graphs=true works with mixed_precision no or bf16"):
        tiny_config(cuda_graphs=True, mixed_precision="fp16")
    with pytest.raises(RunError, match="cuda_graphs=true needs a CUDA GPU, and this run is on cpu"):
        build_state(tiny_config(cuda_graphs=True, device="cpu"), progress=False)


class ReplayOnCall:
    """Stands in for a CUDA graph: recording runs nothing; each replay runs the recorded step on the recorded
    input tensors and refreshes the same outputs object, as a graph's replay refills its output tensors."""

    def __init__(self, step):
        self.step = step
        self.outputs: dict[str, torch.Tensor] = {}

    def replay(self):
        self.outputs.clear()
        self.outputs.update(self.step())


class StandInGraphs(GraphedStep):
    def __init__(self):
        super().__init__()
        self.recorded = []

    def record(self, step, device):
        graph = ReplayOnCall(step)
        self.recorded.append(graph)
        return graph, graph.outputs


def test_a_graphed_step_trains_exactly_as_the_eager_step(tiny_config):
    """Warm-up steps eager, then one graph per key (here the GAN switching on at step 4), each replayed with the
    step's inputs copied into its fixed tensors; restoring a checkpoint drops the graphs. The same metrics and
    the same weights as eager steps, bitwise."""
    overrides = dict(disc_start=4, steps=9)
    eager = build_state(tiny_config("repa-e", **overrides), progress=False)
    graphed = build_state(tiny_config("repa-e", **overrides), progress=False)
    graphed.graphed_step = StandInGraphs()
    a, b = _steps(eager, 9), _steps(graphed, 9)
    assert len(graphed.graphed_step.recorded) == 2, "one graph before disc_start, one after"
    assert sum(graphed.graphed_step.eager_steps.values()) == 4, "two warm-up steps per graph"
    for i, (ma, mb) in enumerate(zip(a, b)):
        assert ma.keys() == mb.keys() and all(ma[k] == mb[k] for k in ma), (i, ma, mb)
    for net in ("vae", "sit", "ema", "discriminator"):
        for pa, pb in zip(getattr(eager.nets, net).state_dict().values(), getattr(graphed.nets, net).state_dict().values()):
            assert torch.equal(pa, pb), net
    from repae_lab.training.checkpointing import checkpoint_files, restore_checkpoint
    from repae_lab import rundir
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        files, meta = checkpoint_files(graphed)
        path = rundir.save_checkpoint(tmp, graphed.step, files, meta, keep=1)
        restore_checkpoint(graphed, path)
    assert not graphed.graphed_step.graphs and not graphed.graphed_step.eager_steps


def test_a_checkpoint_keeps_the_runtime_optimizer_flags(tiny_config):
    """A checkpoint saved with capturable (CUDA graphs) or fused optimizers loads into a run without them, and the
    other way round: those flags belong to the process, not to the checkpoint."""
    cfg = tiny_config("repa-e")
    param = torch.nn.Parameter(torch.zeros(3))
    live = adamw(cfg, [param], 1e-4, "cpu")
    saved = [{**live.param_groups[0], "capturable": True, "fused": False, "lr": 5e-5}]
    merged = with_runtime_flags(saved, live)[0]
    assert merged["capturable"] is False and merged["fused"] is True and merged["lr"] == 5e-5


# ---------------------------------------------------------------------------------------------------------
# low_precision_group_norm: the VAE's GroupNorms keep the autocast dtype (CUDA autocast would run them in fp32)

def test_group_norm_in_the_autocast_dtype_is_group_norm_without_autocast():
    from repae_lab.models.norms import AutocastDtypeGroupNorm, keep_autocast_dtype_in_group_norms

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.GroupNorm(4, 8), torch.nn.SiLU())
    x = torch.randn(2, 3, 12, 12)
    plain = net(x)
    keys = set(net.state_dict())
    assert keep_autocast_dtype_in_group_norms(net) == 1 and isinstance(net[1], AutocastDtypeGroupNorm)
    assert set(net.state_dict()) == keys
    assert torch.equal(net(x), plain), "fp32, no autocast: exactly nn.GroupNorm"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), plain, rtol=3e-2, atol=3e-2)


def test_low_precision_group_norm_halves_what_the_vae_keeps_in_float32():
    """benchmarks/activation_memory.py counts the tensors saved for backward under CUDA's autocast policy; with the
    switch, nothing of the VAE's passes is kept in float32 (the SD-VAE at 256 px: 61 -> 38 GB at batch 32)."""
    import activation_memory

    (_, today), (_, switched) = activation_memory.measure("workshop-16", 16, 32)
    assert today["float32"] > 0 and switched.get("float32", 0) == 0
    assert sum(switched.values()) < sum(today.values())


def test_the_switch_changes_no_fp32_step(tiny_config):
    plain = build_state(tiny_config("repa-e"), progress=False)
    switched = build_state(tiny_config("repa-e", low_precision_group_norm=True), progress=False)
    assert any(type(m).__name__ == "AutocastDtypeGroupNorm" for m in switched.nets.vae.modules())
    assert _steps(plain, 2) == _steps(switched, 2)
