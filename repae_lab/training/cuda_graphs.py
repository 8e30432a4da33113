"""A training step replayed as a CUDA graph (`cuda_graphs=true`): the step's thousands of kernels launched by one
call instead of one Python call each.

A small model's step is launch-bound on a GPU: a workshop repa-e step issues a few thousand kernels of
microseconds each, and the CPU needs longer to issue them than the GPU to run them (75 ms per step on an H200,
docs/performance.md). A CUDA graph records the kernels of one step once and replays them with a single launch.
The step is written for it (training/step.py `step_on_device`): its random draws are made on the host before it
starts, nothing inside reads the device back, and no branch depends on a tensor's value. So a replay computes
exactly what an eager step would, from the same inputs.

How a run uses it:
- the first WARMUP_STEPS steps run eagerly (cuDNN picks its algorithms, the optimizers create their state: a
  state created inside a capture would be re-created, zeroed, at every replay);
- the next step is captured (recording executes nothing), then replayed, and so is every later step: each
  replay first copies the step's images, labels, draws and cached latents into the graph's fixed input tensors;
- a change the graph cannot see (the GAN switching on at disc_start, the REPA term switching off at
  repa_stop_step, a learning rate changed by a rollback)
  needs a new graph, warmed up and captured the same way; restoring a checkpoint (which replaces the
  optimizers' state tensors) drops them all.
The optimizers are capturable (training/optim.py) and autocast runs without its weight-cast cache inside the
capture. fp16 is refused: its GradScaler keeps per-step bookkeeping on the host.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from typing import Callable

import torch
from torch import Tensor

from .step import StepDraws, gan_is_on, repa_is_on, step_on_device

WARMUP_STEPS = 2       # eager steps before the first capture (PyTorch's CUDA-graph notes warm up a few iterations)


@dataclass
class _Graph:
    graph: "torch.cuda.CUDAGraph"       # anything with replay(): tests on the CPU stand in for CUDA's
    inputs: dict[str, Tensor]           # the fixed tensors a replay reads its inputs from
    outputs: dict[str, Tensor]          # the metrics a replay leaves, on the device


def _flat_inputs(x: Tensor, y: Tensor, draws: StepDraws, latents) -> dict[str, Tensor]:
    flat = {"x": x, "y": y, **{f"draws.{f.name}": getattr(draws, f.name) for f in fields(StepDraws)}}
    if latents is not None:
        flat.update({"latents.mean": latents[0], "latents.std": latents[1]})
    return flat


def _unflatten(flat: dict[str, Tensor]):
    draws = StepDraws(**{f.name: flat[f"draws.{f.name}"] for f in fields(StepDraws)})
    latents = (flat["latents.mean"], flat["latents.std"]) if "latents.mean" in flat else None
    return flat["x"], flat["y"], draws, latents


class GraphedStep:
    """`step_on_device` with CUDA graphs: call it as the step's device work (TrainState.graphed_step)."""

    def __init__(self, body: Callable = step_on_device, warmup_steps: int = WARMUP_STEPS):
        self.body = body
        self.warmup_steps = warmup_steps
        self.eager_steps: dict[tuple, int] = {}     # warm-up steps run so far, per graph key
        self.graphs: dict[tuple, _Graph] = {}
        self.pool = None                 # one memory pool for all graphs: only one of them ever runs at a time
        self.failed: str | None = None   # why capturing failed; the run then goes on eagerly

    def reset(self) -> None:
        """Forget every graph (a checkpoint was restored: the optimizers' state tensors are new ones)."""
        self.graphs.clear()
        self.eager_steps.clear()

    def key(self, state) -> tuple:
        """What a graph bakes in besides its input tensors: which updates and losses run, and the learning rates."""
        lrs = tuple(g["lr"] for opt in state.optimizers.named().values() for g in opt.param_groups)
        return gan_is_on(state), repa_is_on(state), lrs

    def __call__(self, state, x: Tensor, y: Tensor, draws: StepDraws, latents=None) -> dict[str, Tensor]:
        key = self.key(state)
        if self.failed is not None or self.eager_steps.get(key, 0) < self.warmup_steps:
            self.eager_steps[key] = self.eager_steps.get(key, 0) + 1
            return self._eager(state, x, y, draws, latents)
        if key not in self.graphs:
            try:
                self.graphs[key] = self._capture(state, x, y, draws, latents)
            except RuntimeError as err:      # an operation that cannot be captured: say so once, go on eagerly
                self.failed = str(err).splitlines()[0]
                print(f"repae-lab: warning: this step could not be captured as a CUDA graph ({self.failed}); "
                      f"the run goes on without cuda_graphs.", file=sys.stderr)
                return self._eager(state, x, y, draws, latents)
        graphed = self.graphs[key]
        for name, value in _flat_inputs(x, y, draws, latents).items():
            graphed.inputs[name].copy_(value, non_blocking=True)
        graphed.graph.replay()
        return graphed.outputs

    def _eager(self, state, x, y, draws, latents) -> dict[str, Tensor]:
        """An ordinary step on a side stream, as PyTorch's notes on CUDA graphs ask of the warm-up steps."""
        if x.device.type != "cuda":
            return self.body(state, x, y, draws, latents)
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            metrics = self.body(state, x, y, draws, latents)
        torch.cuda.current_stream(x.device).wait_stream(side)
        return metrics

    def _capture(self, state, x, y, draws, latents) -> _Graph:
        """Record one step's kernels on fixed copies of its inputs (recording executes nothing)."""
        inputs = {name: value.clone() for name, value in _flat_inputs(x, y, draws, latents).items()}
        graph, outputs = self.record(lambda: self.body(state, *_unflatten(inputs)), x.device)
        return _Graph(graph, inputs, outputs)

    def record(self, step: Callable[[], dict[str, Tensor]], device: torch.device):
        """(a CUDA graph of `step`, the tensors it leaves its metrics in)."""
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(device)
        with torch.cuda.graph(graph, pool=self.pool):
            outputs = step()
        return graph, outputs
