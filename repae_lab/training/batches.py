"""Which images each step trains on, and the step's random stream: both are functions of (seed, step) alone,
so a resumed run needs no saved RNG or loader state to continue exactly where it stopped (edm2's habit)."""
from __future__ import annotations

import torch

from . import distributed as dist


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """The step-th batch of an endless stream of per-epoch permutations (no sample dropped or repeated in an epoch)."""
    start = step * batch_size
    out, pos = [], start
    while len(out) < batch_size:
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        take = perm[offset: offset + batch_size - len(out)]
        out.extend(take.tolist())
        pos += len(take)
    return torch.as_tensor(out)


def step_indices(n: int, cfg, step: int) -> torch.Tensor:
    """This process's rows of the step's global batch."""
    return dist.shard(batch_indices(n, cfg.batch_size, cfg.seed, step))


class StepBatches(torch.utils.data.Sampler):
    """Batch sampler over steps [start, stop): lets DataLoader workers read lazily-loaded datasets in the same order."""

    def __init__(self, n: int, cfg, start: int, stop: int):
        self.n, self.cfg, self.start, self.stop = n, cfg, start, stop

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield step_indices(self.n, self.cfg, step).tolist()

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def batch_stream(dataset, cfg, start: int):
    """(images, labels) for steps start, start+1, ...: in-process for in-memory data, DataLoader workers otherwise."""
    n = len(dataset)
    if cfg.num_workers == 0 or hasattr(dataset, "images"):
        for step in range(start, cfg.steps):
            yield dataset.batch(step_indices(n, cfg, step))
        return
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=StepBatches(n, cfg, start, cfg.steps),
                                         num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available())
    yield from loader


def step_generator(seed: int, step: int) -> torch.Generator:
    """Every random draw of a step comes from (seed, step): exact resume without saved RNG state."""
    s = (seed * 1_000_003 + step) % (2 ** 63)
    torch.manual_seed(s)                      # module-internal randomness (label dropout)
    return torch.Generator().manual_seed(s)
