"""Run under torchrun: GlobalBatchNorm2d over 2 shards vs nn.BatchNorm2d over the whole batch (forward, running
statistics, input gradients); rank 0 writes the comparison as JSON to argv[1]."""
import json
import sys

import torch
import torch.distributed as dist

from repae_lab.training.distributed import GlobalBatchNorm2d, init_from_env, rank, shard, world_size

init_from_env("cpu")
torch.manual_seed(0)
x = torch.randn(8, 4, 5, 5) * 3 + 1                      # the global batch, identical on every rank
weights = torch.randn(8, 4, 5, 5)                         # a fixed upstream gradient

reference = torch.nn.BatchNorm2d(4, eps=1e-4, momentum=0.1, affine=False)
x_full = x.clone().requires_grad_(True)
(reference(x_full) * weights).sum().backward()

bn = GlobalBatchNorm2d(4, eps=1e-4, momentum=0.1, affine=False)
x_local = shard(x).clone().requires_grad_(True)
(bn(x_local) * shard(weights)).sum().backward()

gathered = [torch.zeros_like(x_local.grad) for _ in range(world_size())]
dist.all_gather(gathered, x_local.grad)
grad = torch.empty_like(x)
for r, g in enumerate(gathered):
    grad[r::world_size()] = g
if rank() == 0:
    json.dump({
        "world": world_size(),
        "running_mean": (bn.running_mean - reference.running_mean).abs().max().item(),
        "running_var": (bn.running_var - reference.running_var).abs().max().item(),
        "grad": (grad - x_full.grad).abs().max().item(),
        "grad_scale": x_full.grad.abs().max().item(),
    }, open(sys.argv[1], "w"))
# every rank is done with its collectives before any tears the group down: without this, a rank that is
# still inside gloo when the other one exits can abort ("terminate called without an active exception")
dist.barrier()
dist.destroy_process_group()
