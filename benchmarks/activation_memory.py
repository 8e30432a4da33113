"""Where a repa-e step's activation memory goes, without a GPU: the bytes the VAE update keeps for its backward,
counted tensor by tensor on the CPU, under bf16 autocast with CUDA's policy for group_norm.

    python benchmarks/activation_memory.py                       # SD-VAE f8c4 at 256 px, scaled to batch 32
    python benchmarks/activation_memory.py --vae f16c32 --batch 32 --resolution 256

Why this works on a CPU: the tensors autograd saves for backward have the same shapes and dtypes on any device,
and `torch.autograd.graph.saved_tensors_hooks` sees each one. Two things differ on a CPU and are handled:
- CPU autocast runs group_norm in bf16, CUDA autocast in float32 (its fp32 cast list); the benchmark runs the
  VAE's GroupNorms in float32, as CUDA does, for the "as on CUDA" row;
- one and two images are measured at the full resolution: their difference is what each image adds, the rest
  (bf16 copies of the weights) is paid once; the figure is that fixed part + the batch x the per-image part.
Each tensor's storage is counted once (views share it); tensors of at most 4,096 elements (scalars, statistics)
are left out. Rows: the VAE's encode + decode as a CUDA bf16 step keeps them today, and with
`low_precision_group_norm=true` (models/norms.py). The LPIPS-VGG distance and the discriminator run in float32 in
L_REG (as in the official code) and are counted apart.
"""
from __future__ import annotations

import argparse
import collections
import sys
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn as nn
import torch.nn.functional as F

from repae_lab.models.norms import keep_autocast_dtype_in_group_norms
from repae_lab.models.vae import build_vae, decode, encode


def group_norm_in_float32(self, x):
    """nn.GroupNorm as CUDA autocast runs it: input and output in float32."""
    with torch.autocast(x.device.type, enabled=False):
        return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps)


@contextmanager
def cuda_policy_for_group_norm():
    """Plain nn.GroupNorm modules behave as under CUDA autocast (AutocastDtypeGroupNorm keeps its own forward)."""
    original = nn.GroupNorm.forward
    nn.GroupNorm.forward = group_norm_in_float32
    try:
        yield
    finally:
        nn.GroupNorm.forward = original


def saved_bytes(fn) -> dict[str, int]:
    """Bytes of the distinct storages autograd saves for backward while fn runs, by dtype."""
    sizes: collections.Counter = collections.Counter()
    seen: set[int] = set()

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen and t.numel() > 4096:
            seen.add(ptr)
            sizes[str(t.dtype).removeprefix("torch.")] += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return dict(sizes)


def vae_pass(vae, x):
    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, posterior = encode(vae, x, sample=False)
            z = posterior.mean + posterior.std * torch.randn_like(posterior.mean)
            decode(vae, z)
    return run


def measure(vae_name: str, resolution: int, batch: int) -> list[tuple[str, dict[str, float]]]:
    """[(row label, {dtype: GB saved for backward at `batch`})] for today's VAE passes and with the switch."""
    torch.manual_seed(0)
    vae = build_vae(vae_name)
    channels = int(vae.config.in_channels)
    one, two = (torch.rand(n, channels, resolution, resolution) * 2 - 1 for n in (1, 2))

    def at_batch() -> dict[str, float]:
        a, b = saved_bytes(vae_pass(vae, one)), saved_bytes(vae_pass(vae, two))
        return {k: (2 * a.get(k, 0) - b.get(k, 0) + batch * (b.get(k, 0) - a.get(k, 0))) / 1e9 for k in set(a) | set(b)}

    with cuda_policy_for_group_norm():
        today = at_batch()
        keep_autocast_dtype_in_group_norms(vae)
        return [("VAE encode + decode, bf16 as on CUDA today", today),
                ("... with low_precision_group_norm=true", at_batch())]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae", default="sd-f8c4", help="a VAE_CONFIGS architecture (random weights)")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch", type=int, default=32, help="the figures are for this batch per GPU")
    args = p.parse_args(argv)
    rows = measure(args.vae, args.resolution, args.batch)
    print(f"# saved for backward by the VAE update's VAE passes: {args.vae} at {args.resolution} px, batch {args.batch} (GB)")
    print(f"{'what':<46} {'float32':>8} {'bfloat16':>9} {'total':>7}")
    for label, gb in rows:
        print(f"{label:<46} {gb.get('float32', 0):>8.2f} {gb.get('bfloat16', 0):>9.2f} {sum(gb.values()):>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
