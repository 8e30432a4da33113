"""Sampling speed (images per second) of the three samplers, end to end: noise -> SiT -> latent de-norm -> VAE decode.

    .venv/bin/python benchmarks/sampling_speed.py [--run RUN] [--n 256] [--batch-size 256] [--samplers sde,heun,euler]

Without --run it builds the workshop preset's models (SiT-W/2 on the 4x8x8 latent of the workshop-16 VAE,
10 classes) from random weights: the speed does not depend on what the weights have learned. Prints one line
per sampler and, with --json FILE, writes the figures with the machine's description.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from repae_lab.sampling import SamplingSpec, class_balanced_labels, generate_images


def workshop_models():
    from repae_lab.models.sit import SiT, sit_config
    from repae_lab.models.vae import build_vae

    torch.manual_seed(0)
    vae = build_vae("workshop-16", in_channels=1)
    sit = SiT(sit_config("W", input_size=8, patch_size=2, in_channels=4, num_classes=10, z_dims=(128,),
                         projector_dim=256, alignment_depth=2))
    return sit.eval(), vae.eval(), 10


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=None, help="a run directory (default: random workshop-sized models)")
    p.add_argument("--n", type=int, default=256, help="images per sampler")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--samplers", default="sde,heun,euler")
    p.add_argument("--cfg", type=float, default=1.0, help="guidance scale (>1 doubles the batch inside the interval)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="write the figures to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.run:
        from repae_lab.models.from_run import load_for_sampling

        loaded = load_for_sampling(args.run)
        sit, vae, classes, device = loaded.ema, loaded.vae, loaded.num_classes, loaded.device
    else:
        sit, vae, classes = workshop_models()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        sit, vae = sit.to(device), vae.to(device)
    labels = class_balanced_labels(args.n, classes, seed=0)
    # one small warm-up so that first-call allocation is not timed
    generate_images(sit, vae, labels[:2], SamplingSpec(sampler="euler", steps=2), device=device, progress=False)
    results = []
    for name in args.samplers.split(","):
        spec = SamplingSpec(sampler=name, cfg_scale=args.cfg)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        generate_images(sit, vae, labels, spec, batch_size=args.batch_size, device=device, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        nfe = {"sde": spec.steps, "euler": spec.steps, "heun": 2 * spec.steps - 1}[name]
        results.append({"sampler": name, "steps": spec.steps, "nfe": nfe, "n": args.n, "seconds": round(seconds, 3),
                        "images_per_second": round(args.n / seconds, 2)})
        print(f"{name:6s} {spec.steps:4d} steps ({nfe:3d} NFE)  {args.n} images in {seconds:7.2f} s  "
              f"= {args.n / seconds:8.2f} img/s")
    machine = {"device": str(device), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
               "platform": platform.platform(), "torch": torch.__version__,
               "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
               "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
               "models": args.run or "random workshop models (SiT-W/2, workshop-16 VAE)"}
    print(json.dumps(machine))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "results": results, "batch_size": args.batch_size, "cfg": args.cfg}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
