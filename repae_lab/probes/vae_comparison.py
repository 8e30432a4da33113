"""compare-vaes: encode the same images with several VAEs and put every latent probe side by side.

Each VAE gets the images centre-cropped and resized to the resolution it needs (its config's sample_size, or
one `resolution` for all, rounded to its downsampling factor) and converted to its channel count, so 4-, 16- and
32-channel VAEs of any factor are compared on the same pictures. Per VAE, on posterior means:
  latent statistics     spatial variance (raw, and after per-channel normalisation), total variation,
                        effective ranks, high-frequency share (repae_lab.probes.latent_stats)
  PCA-RGB               one basis and colour range fitted on all the VAE's latents (repae_lab.probes.pca)
  linear probe          cross-validated logistic regression on flat latents, where images have labels
  reconstruction        PSNR, SSIM; rFD in the workshop evaluator space for the workshop datasets (or a
                        DINOv2 / Inception space given weights), skipped with a note otherwise
It sits with the probes (it imports probes and metrics); the loaders it uses are repae_lab.models.released's.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data import DATASETS, center_crop_adm, class_balanced_indices, load_dataset
from ..data.datasets import IMAGE_EXTENSIONS
from ..metrics.feature_spaces import build_feature_space, extract_features
from ..metrics.frechet import frechet_distance_features
from ..metrics.reconstruction import psnr, ssim
from ..models.released.errors import ReleasedModelError
from ..models.released.vae_loading import load_released_vae
from ..models.vae import VAE_CONFIGS, build_vae, decode, downsample_factor, encode
from ..models.vae_files import latent_stats_from_config
from ..rundir import atomic_save_tensors
from .features import flat_latents
from .latent_stats import latent_statistics
from .linear import cross_validated, linear_probe_accuracy, stratified_folds
from .pca import fit_pca_basis, pca_rgb
from .vae_comparison_figures import pca_figure, reconstruction_figure

WORKSHOP_DATASETS = ("digits", "fashion-mnist", "cifar10")
# what write_comparison writes; the latent explorer reads a folder holding COMPARISON_JSON and ARRAYS
COMPARISON_JSON = "vae_comparison.json"
ARRAYS = "vae_arrays.safetensors"   # per VAE i: latents.i, rgb.i (PCA-RGB), images.i, recons.i; and labels
TABLE_COLUMNS = ("vae", "latent", "resolution", "factor", "params_m", "spatial_var", "spatial_var_norm",
                 "total_variation", "effective_rank_pixels", "effective_rank_images", "high_freq_share",
                 "pca_top3_share", "linear_probe", "rpsnr", "rssim")


@dataclass
class ImageSet:
    pils: list                      # PIL images, any size
    labels: torch.Tensor | None
    source: str
    dataset: object | None = None   # a workshop dataset (for the rFD feature space)
    uint8: torch.Tensor | None = None  # the dataset's own images at its resolution
    class_names: list[str] | None = None


@dataclass
class VAEComparison:
    rows: list[dict]
    notes: list[str]
    latents: dict[str, torch.Tensor]          # name -> (N, C, h, w) posterior means
    originals: dict[str, torch.Tensor]        # name -> uint8 inputs at that VAE's resolution
    recons: dict[str, torch.Tensor]           # name -> uint8 reconstructions
    pca_maps: dict[str, np.ndarray]           # name -> (N, h, w, 3) in [0, 1]
    labels: torch.Tensor | None
    class_names: list[str] | None = None
    figures: dict = field(default_factory=dict)   # name -> PIL.Image
    files: dict = field(default_factory=dict)     # written paths


def load_image_set(images, *, n: int = 64, seed: int = 0, dataset_resolution: int = 32) -> ImageSet:
    """A folder of images (labels from class subfolders, where there are two or more) or a dataset name."""
    path = Path(str(images)).expanduser()
    if not path.exists() and str(images) in DATASETS and str(images) != "imagefolder":
        ds = load_dataset(str(images), resolution=dataset_resolution)
        idx = class_balanced_indices(ds.labels, min(n, len(ds)), seed)
        x, y = ds.batch(idx)
        u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        pils = [Image.fromarray(im[0].numpy() if im.shape[0] == 1 else im.permute(1, 2, 0).numpy()) for im in u8]
        return ImageSet(pils, y, f"dataset {images}", ds if ds.name in WORKSHOP_DATASETS else None, u8,
                        list(ds.class_names))
    if not path.is_dir():
        raise ReleasedModelError(f"--images '{images}' is neither a folder nor a dataset name; pass a folder of "
                                 f"images or one of {', '.join(d for d in DATASETS if d != 'imagefolder')}.")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ReleasedModelError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under '{path}'; pass a folder of images.")
    classes = sorted({f.relative_to(path).parts[0] for f in files if len(f.relative_to(path).parts) > 1})
    labels = None
    if len(classes) >= 2 and all(len(f.relative_to(path).parts) > 1 for f in files):
        labels = torch.tensor([classes.index(f.relative_to(path).parts[0]) for f in files])
        idx = class_balanced_indices(labels, min(n, len(files)), seed) if n < len(files) else torch.arange(len(files))
    else:
        idx = torch.arange(min(n, len(files)))
    pils = []
    for i in idx.tolist():
        with Image.open(files[i]) as im:
            pils.append(im.convert("RGB"))
    return ImageSet(pils, labels[idx] if labels is not None else None, f"folder {path}",
                    class_names=classes if labels is not None else None)


def images_for(pils, resolution: int, channels: int) -> torch.Tensor:
    """PIL images -> uint8 (N, channels, R, R): ADM centre crop and resize, grey <-> RGB as the VAE needs."""
    out = []
    for im in pils:
        im = center_crop_adm(im.convert("RGB"), resolution)
        arr = np.asarray(im.convert("L"))[None] if channels == 1 else np.asarray(im).transpose(2, 0, 1)
        if channels not in (1, 3):
            raise ReleasedModelError(f"a VAE with {channels} input channels cannot take images; pass an RGB or grey VAE.")
        out.append(torch.from_numpy(np.array(arr, dtype=np.uint8)))
    return torch.stack(out)


def resolution_for(vae, requested: int | None) -> int:
    factor = downsample_factor(vae)
    r = int(requested or vae.config.get("sample_size") or 256)
    return max(factor, r // factor * factor)


def vae_from_spec_any(spec, *, seed: int = 0):
    """(name, AutoencoderKL, note): a VAE_CONFIGS name (random weights, seeded), or any load_released_vae source."""
    if isinstance(spec, tuple):
        return spec[0], spec[1], ""
    if str(spec) in VAE_CONFIGS:
        torch.manual_seed(seed)
        return str(spec), build_vae(str(spec)).eval(), f"{spec}: random weights (a VAE_CONFIGS architecture)"
    name = Path(str(spec)).name or str(spec)
    return name, load_released_vae(spec), ""


@torch.no_grad()
def encode_images(vae, images: torch.Tensor, *, batch_size: int = 16, device="cpu"):
    """(posterior means float32 (N, C, h, w), uint8 reconstructions) of uint8 images, on the CPU."""
    was_training = vae.training
    vae.eval().to(device)
    zs, recs = [], []
    try:
        for chunk in images.split(batch_size):
            z, _ = encode(vae, chunk.to(device).float() / 127.5 - 1, sample=False)
            zs.append(z.float().cpu())
            recs.append(((decode(vae, z).float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
    finally:
        vae.train(was_training)
    return torch.cat(zs), torch.cat(recs)


def _normalised(vae, z: torch.Tensor) -> torch.Tensor:
    stats = latent_stats_from_config(vae)
    if stats is not None:
        mean, std = stats
    else:
        mean, std = z.mean(dim=(0, 2, 3)), z.std(dim=(0, 2, 3)).clamp_min(1e-8)
    return (z - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def linear_probe(z: torch.Tensor, labels) -> float | None:
    if labels is None:
        return None
    counts = torch.bincount(torch.as_tensor(labels))
    counts = counts[counts > 0]
    if len(counts) < 2 or int(counts.min()) < 2:
        return None
    folds = stratified_folds(np.asarray(labels), min(4, int(counts.min())))
    return cross_validated(linear_probe_accuracy, flat_latents(z), np.asarray(labels), folds)


def _rfd_space(rfd: str, image_set: ImageSet, weights, cache_dir, notes: list[str]):
    if rfd == "none":
        return None
    if rfd == "auto":
        if image_set.dataset is None:
            notes.append("rFD skipped: no feature space for these images (use a workshop dataset, or rfd='dinov2' / "
                         "'inception' with rfd_weights=)")
            return None
        return build_feature_space("workshop", dataset=image_set.dataset, cache_dir=cache_dir, progress=False)
    return build_feature_space(rfd, dataset=image_set.dataset, weights=weights, cache_dir=cache_dir, progress=False)


def _to_space(images: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """uint8 images resized and channel-converted to match `ref` (N, C, H, W) uint8, for a feature space."""
    x = images.float()
    if x.shape[1] != ref.shape[1]:
        x = x.mean(dim=1, keepdim=True) if ref.shape[1] == 1 else x.expand(-1, ref.shape[1], -1, -1)
    if x.shape[-1] != ref.shape[-1]:
        x = F.interpolate(x, size=ref.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def compare_vaes(vaes, images, out=None, *, n: int = 64, resolution: int | None = None, batch_size: int = 16,
                 device="cpu", rfd: str = "auto", rfd_weights=None, cache_dir=None, seed: int = 0,
                 dataset_resolution: int = 32) -> VAEComparison:
    """Every probe of every VAE on the same images; writes the table and figures to `out` when given."""
    specs = list(vaes)
    if len(specs) < 1:
        raise ReleasedModelError("compare-vaes needs at least one --vae (two or more to compare).")
    image_set = images if isinstance(images, ImageSet) else load_image_set(images, n=n, seed=seed,
                                                                           dataset_resolution=dataset_resolution)
    notes = [f"{len(image_set.pils)} images from {image_set.source}; latents are posterior means"]
    space = _rfd_space(rfd, image_set, rfd_weights, cache_dir, notes)
    result = VAEComparison([], notes, {}, {}, {}, {}, image_set.labels, image_set.class_names)
    for spec in specs:
        name, vae, note = vae_from_spec_any(spec, seed=seed)
        while name in result.latents:
            name += "'"
        if note:
            notes.append(note)
        res = resolution_for(vae, resolution)
        x = images_for(image_set.pils, res, int(vae.config.in_channels))
        z, rec = encode_images(vae, x, batch_size=batch_size, device=device)
        stats = latent_statistics(z, latents_norm=_normalised(vae, z))
        basis = fit_pca_basis([z], fitted_on=[name])
        row = {"vae": name, "source": str(spec[0] if isinstance(spec, tuple) else spec),
               "latent": f"{z.shape[1]}x{z.shape[2]}x{z.shape[3]}", "resolution": res,
               "factor": downsample_factor(vae), "params_m": round(sum(p.numel() for p in vae.parameters()) / 1e6, 3),
               **{k: stats[k] for k in ("spatial_var", "spatial_var_norm", "total_variation", "effective_rank_pixels",
                                        "effective_rank_images", "high_freq_share")},
               "pca_top3_share": float(basis.explained_variance_ratio.sum()),
               "linear_probe": linear_probe(z, image_set.labels),
               "rpsnr": float(psnr(x, rec).mean()), "rssim": float(ssim(x, rec).mean()),
               "latents_stats": "config" if latent_stats_from_config(vae) is not None else "none"}
        if space is not None:
            # workshop data: judged against the dataset's own images, at the resolution the evaluator knows
            ref = image_set.uint8 if image_set.uint8 is not None else x
            f_ref, _ = extract_features(space, ref)
            f_rec, _ = extract_features(space, _to_space(rec, ref))
            row[f"rfd_{space.name}"] = frechet_distance_features(f_ref, f_rec)
        result.rows.append(row)
        result.latents[name], result.originals[name], result.recons[name] = z, x, rec
        result.pca_maps[name] = pca_rgb(z, basis)
    if space is not None:
        notes.append(f"rFD in the {space.name} feature space on {len(image_set.pils)} images: compare VAEs with each "
                     f"other, not with published rFID")
    first = next(iter(result.originals.values()))
    result.figures = {"pca_rgb": pca_figure(first, result.pca_maps),
                      "reconstructions": reconstruction_figure(first, result.recons)}
    if out is not None:
        write_comparison(result, out)
    return result


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_comparison(result: VAEComparison, out) -> dict[str, Path]:
    """vae_comparison.{csv,json,md} and pca_rgb.png / reconstructions.png in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    columns = list(TABLE_COLUMNS) + sorted({k for r in result.rows for k in r if k.startswith("rfd_")})
    extra = [k for k in result.rows[0] if k not in columns] if result.rows else []
    with open(out / "vae_comparison.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns + extra, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result.rows)
    (out / COMPARISON_JSON).write_text(json.dumps(
        {"rows": result.rows, "notes": result.notes, "vaes": list(result.latents), "class_names": result.class_names},
        indent=1, default=str))
    save_arrays(result, out / ARRAYS)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in result.rows]
    lines += [""] + [f"- {note}" for note in result.notes]
    (out / "vae_comparison.md").write_text("\n".join(lines) + "\n")
    files = {"csv": out / "vae_comparison.csv", "json": out / COMPARISON_JSON, "md": out / "vae_comparison.md",
             "arrays": out / ARRAYS}
    for name, image in result.figures.items():
        image.save(out / f"{name}.png")
        files[name] = out / f"{name}.png"
    result.files = files
    return files


def _hwc_rgb(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, H, W, 3): grey images repeated, extra channels dropped, for display."""
    x = images[:, :3] if images.shape[1] >= 3 else images[:, :1].expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous()


def save_arrays(result: VAEComparison, path: Path) -> None:
    """The arrays behind the table, for the latent explorer: per VAE (in row order) its latents, PCA-RGB maps,
    inputs and reconstructions, and the images' labels."""
    tensors = {}
    for i, name in enumerate(result.latents):
        tensors[f"latents.{i}"] = result.latents[name].float()
        tensors[f"rgb.{i}"] = torch.from_numpy((result.pca_maps[name] * 255).round().astype(np.uint8))
        tensors[f"images.{i}"] = _hwc_rgb(result.originals[name])
        tensors[f"recons.{i}"] = _hwc_rgb(result.recons[name])
    if result.labels is not None:
        tensors["labels"] = torch.as_tensor(result.labels).long()
    atomic_save_tensors(path, tensors)
