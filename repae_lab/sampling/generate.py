"""From a trained SiT and VAE to images: the sampling protocol (SamplingSpec), class-balanced labels, the
generation pipeline, and `repae-lab sample` on a run directory."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..data.images import images_to_uint8
from ..models.from_run import LoadedRun, load_for_sampling
from ..models.modes import frozen_eval
from ..models.vae import decode
from .files import write_samples
from .guidance import check_interval, sit_velocity
from .samplers import DEFAULT_STEPS, SAMPLERS, SamplingError, check_steps, check_sampler, per_sample_generators, randn, time_grid



def class_balanced_labels(n: int, num_classes: int, seed: int = 0) -> Tensor:
    """n labels with every class n // C or n // C + 1 times, shuffled by seed (REPA-E's newer generate.py).

    When C does not divide n, which classes get the extra sample is drawn by the seed too, not taken from the
    low class ids."""
    n = check_n(n)
    if num_classes < 1:
        raise SamplingError(f"num_classes must be at least 1, got {num_classes}.")
    gen = torch.Generator().manual_seed(int(seed))
    per_class, extra = divmod(n, num_classes)
    counts = torch.full((num_classes,), per_class, dtype=torch.long)
    counts[torch.randperm(num_classes, generator=gen)[:extra]] += 1
    labels = torch.repeat_interleave(torch.arange(num_classes), counts)
    return labels[torch.randperm(n, generator=gen)]


def check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SamplingError(f"the number of images n must be a positive integer, got {n!r}.")
    return int(n)



@dataclass(frozen=True)
class SamplingSpec:
    """Everything that decides which images come out, recorded beside every sample set and evaluation."""
    sampler: str = "sde"
    steps: int | None = None              # None: 250 for sde, 50 for euler / heun
    cfg_scale: float = 1.0                # 1 = no guidance
    interval: tuple[float, float] = (0.0, 1.0)  # guidance only where low <= t <= high
    t_start: float = 1.0
    t_end: float | None = None            # None: 0.04 (then a mean step to 0) for sde, 0 for the ODEs
    seed: int = 0
    labels: str = "class-balanced"        # class-balanced | given
    ema: bool = True                      # sample with the EMA SiT (the paper's protocol)

    def __post_init__(self):
        check_sampler(self.sampler)
        object.__setattr__(self, "interval", check_interval(self.interval))
        object.__setattr__(self, "steps", DEFAULT_STEPS[self.sampler] if self.steps is None else check_steps(self.steps))
        time_grid(self.sampler, self.steps, self.t_start, self.t_end)   # validates the range now, not mid-run

    def grid(self) -> Tensor:
        return time_grid(self.sampler, self.steps, self.t_start, self.t_end)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["interval"] = list(self.interval)
        return d


@torch.no_grad()
def generate_images(sit, vae, labels: Tensor, spec: SamplingSpec = SamplingSpec(), *, batch_size: int = 64,
                    device=None, first_index: int = 0, progress: bool = True, callback=None) -> Tensor:
    """Sample one image per label with `sit` and decode with `vae`: uint8 (N, C, H, W), on the CPU.

    Latents come out normalised (the SiT's input space); the SiT's latent BatchNorm running statistics map them
    back to VAE latents (z = x * sqrt(var + eps) + mean) before decoding. Image i uses per-sample generators
    seeded from (spec.seed, first_index + i), so a sample set can be made in pieces or on several GPUs and agree."""
    if batch_size < 1:
        raise SamplingError(f"batch_size must be at least 1, got {batch_size}.")
    device = torch.device(device) if device is not None else next(sit.parameters()).device
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    if labels.numel() == 0:
        raise SamplingError("no labels given: pass one label per image to generate.")
    num_classes = sit.cfg.num_classes
    if labels.min() < 0 or labels.max() > num_classes:
        raise SamplingError(f"labels must lie in [0, {num_classes}] ({num_classes} is the null class), "
                            f"got {labels.min().item()}..{labels.max().item()}.")
    c, size = sit.cfg.in_channels, sit.cfg.input_size
    ts = spec.grid()
    sample_fn = SAMPLERS[spec.sampler]
    out = []
    with frozen_eval(sit), frozen_eval(vae):
        model = sit_velocity(sit, cfg_scale=spec.cfg_scale, interval=spec.interval)
        bar = tqdm(total=len(labels), desc=f"sampling ({spec.sampler}, {spec.steps} steps)", disable=not progress,
                   unit="img", leave=False)
        for start in range(0, len(labels), batch_size):
            y = labels[start:start + batch_size].to(device)
            gens = per_sample_generators(spec.seed, range(first_index + start, first_index + start + len(y)))
            noise = randn((len(y), c, size, size), gens, device=device)
            x = sample_fn(model, noise, y, ts, callback=callback, disable=True, generator=gens)
            z = sit.denormalize_latent(x)
            out.append(images_to_uint8(decode(vae, z)).cpu())
            bar.update(len(y))
        bar.close()
    return torch.cat(out)


def sample_loaded(loaded: LoadedRun, n: int, spec: SamplingSpec = SamplingSpec(), *, labels: Tensor | None = None,
                  batch_size: int = 64, progress: bool = True) -> tuple[Tensor, Tensor]:
    """n images from a loaded run (models.from_run.load_for_sampling): EMA SiT by default, class-balanced labels
    by default."""
    n = check_n(n)
    if labels is None:
        labels = class_balanced_labels(n, loaded.num_classes, spec.seed)
    elif len(labels) != n:
        raise SamplingError(f"{len(labels)} labels given for n={n} images; pass one label per image.")
    sit = loaded.ema if spec.ema else loaded.sit
    images = generate_images(sit, loaded.vae, labels, spec, batch_size=batch_size, device=loaded.device,
                             progress=progress)
    return images, torch.as_tensor(labels).long()


def sample_to_files(run: str | Path, n: int, out: str | Path, spec: SamplingSpec = SamplingSpec(), *,
                    checkpoint: str | Path | None = None, batch_size: int = 64, progress: bool = True) -> dict:
    """`repae-lab sample`: n images from a run's newest good checkpoint into OUT.npz / OUT.png / OUT.json."""
    n = check_n(n)
    loaded = load_for_sampling(run, checkpoint=checkpoint)
    t0 = time.time()
    images, labels = sample_loaded(loaded, n, spec, batch_size=batch_size, progress=progress)
    seconds = time.time() - t0
    protocol = {"run": str(Path(run).resolve()), "step": loaded.step, "recipe": loaded.cfg.recipe, "n": n,
                "dataset": loaded.cfg.dataset, "sampling": spec.to_dict(),
                "labels": f"{spec.labels}, shuffled by seed {spec.seed}", "model": "ema" if spec.ema else "sit",
                "seconds": round(seconds, 2), "images_per_second": round(n / max(seconds, 1e-9), 2),
                "device": str(loaded.device)}
    files = write_samples(out, images, labels, protocol)
    return {"files": files, "protocol": protocol}
