"""How long do all probes of one snapshot take? (Issue 3's budget: 1,000 probe images in 10 s or less on a
2-core CPU, UMAP included, after its one-time warm-up.)

    .venv/bin/python benchmarks/probe_speed.py                     # a synthetic snapshot in the workshop shapes
    .venv/bin/python benchmarks/probe_speed.py --run runs/X        # the last snapshot of a real run
    .venv/bin/python benchmarks/probe_speed.py --aligned-steps 5   # also time AlignedUMAP over 5 snapshots

Prints wall-clock and CPU seconds: on a shared machine the wall clock includes time other processes took
from us, the CPU time does not.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repae_lab import rundir  # noqa: E402
from repae_lab.probes import ProbeSettings, fit_pca_basis, probe_snapshot, snapshot_features  # noqa: E402
from repae_lab.probes.umap_probe import aligned_umap  # noqa: E402


def synthetic_snapshot(n: int, seed: int = 0) -> tuple[dict, dict]:
    """A snapshot shaped like the workshop preset's (4x8x8 latents, 16 SiT tokens of width 256, 16 target
    tokens of width 128, 10 classes), with class structure so the probes do real work."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    centres = torch.randn(10, 256, generator=g)
    latents = (centres[labels] + torch.randn(n, 256, generator=g)).reshape(n, 4, 8, 8)
    target = centres[labels][:, :128].unsqueeze(1) + torch.randn(n, 16, 128, generator=g)
    tensors = {"latents": latents, "latents_norm": latents / latents.std(), "labels": labels,
               "target_tokens": target.half(), "bn_mean": torch.zeros(4), "bn_var": torch.ones(4),
               "indices": torch.arange(n)}
    for t in (25, 50, 75):
        signal = centres[labels].unsqueeze(1) * (1 - t / 100)
        tensors[f"sit_tokens_t{t}"] = (signal + torch.randn(n, 16, 256, generator=g)).half()
    info = {"step": 0, "recipe": "synthetic", "pooled": {}}
    return tensors, info


def subset(tensors: dict, n: int) -> dict:
    return {k: (v[:n] if v.ndim and len(v) >= n and k not in ("bn_mean", "bn_var") else v) for k, v in tensors.items()}


def clock():
    return time.perf_counter(), time.process_time()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=None, help="probe the last snapshot of this run (default: synthetic)")
    parser.add_argument("--n", type=int, default=1000, help="probe images (default 1000)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--aligned-steps", type=int, default=0, help="also time AlignedUMAP over this many snapshots")
    args = parser.parse_args(argv)

    if args.run:
        snaps = rundir.list_snapshots(args.run)
        if not snaps:
            parser.error(f"'{args.run}' has no snapshots")
        tensors, info = rundir.load_snapshot(snaps[-1][1])
        source = f"{args.run} step {snaps[-1][0]}"
    else:
        tensors, info = synthetic_snapshot(args.n)
        source = "synthetic workshop-shaped snapshot"
    n = min(args.n, len(tensors["latents"]))
    tensors = subset(tensors, n)
    settings = ProbeSettings()
    print(f"{source}: {n} images, latents {tuple(tensors['latents'].shape[1:])}, "
          f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}")

    w0, c0 = clock()
    import umap  # noqa: F401  (imported here so the warm-up figure shows it separately)
    w1, c1 = clock()
    probe_snapshot(subset(tensors, 100), info, settings=settings, basis=fit_pca_basis(tensors["latents"][:100]))
    w2, c2 = clock()
    print(f"warm-up (once per process): import umap {w1 - w0:.1f}s, first probe incl. numba JIT {w2 - w1:.1f}s "
          f"wall / {c2 - c1:.1f}s cpu")

    basis = fit_pca_basis(tensors["latents"])
    totals = []
    for r in range(args.repeats):
        w0, c0 = clock()
        result = probe_snapshot(tensors, info, settings=settings, basis=basis)
        w1, c1 = clock()
        totals.append(w1 - w0)
        parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(result.timings.items(), key=lambda kv: -kv[1]))
        print(f"run {r + 1}: all probes of one snapshot {w1 - w0:.2f}s wall / {c1 - c0:.2f}s cpu  ({parts})")
    best = min(totals)
    print(f"RESULT: {best:.2f}s for all probes of one snapshot of {n} images "
          f"({'within' if best <= 10 else 'OVER'} the 10 s budget)")

    if args.aligned_steps >= 2:
        feats = snapshot_features(tensors, info)["latents"]
        rng = np.random.default_rng(0)
        steps = [feats + 0.1 * s * rng.normal(size=feats.shape).astype(np.float32) for s in range(args.aligned_steps)]
        for label in ("first (compiles)", "again"):
            w0, c0 = clock()
            aligned_umap(steps, n_epochs=settings.umap_epochs, seed=0)
            w1, c1 = clock()
            print(f"AlignedUMAP over {args.aligned_steps} snapshots of {n} images, {label}: "
                  f"{w1 - w0:.1f}s wall / {c1 - c0:.1f}s cpu (per run, not per snapshot)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
