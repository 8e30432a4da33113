"""Image datasets: what every dataset of the project is (images in [-1, 1] with integer labels), the checks
on their inputs, the ADM center crop and class-balanced index sets.

Every bad-input error is a DatasetError whose message names the problem and the fix, so notebooks and the CLI
can show it as-is instead of a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

MAX_RESOLUTION = 4096
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DatasetError(ValueError):
    """Bad dataset input; the message says what is wrong and how to fix it."""


@dataclass(eq=False, repr=False)  # eq=False keeps identity hashing; tensors do not compare to bool
class ImageDataset(Dataset):
    name: str
    num_classes: int
    channels: int
    resolution: int
    class_names: list[str]

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes:
            raise DatasetError(f"{self.name}: {len(self.class_names)} class names for "
                               f"{self.num_classes} classes; fix: give one name per class")

    @property
    def labels(self) -> torch.Tensor:
        raise NotImplementedError

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, C, H, W) float32 in [-1, 1] and labels (B,) for the given indices."""
        items = [self[int(i)] for i in indices]
        return torch.stack([im for im, _ in items]), torch.as_tensor([lb for _, lb in items], dtype=torch.long)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, size={len(self)}, "
                f"num_classes={self.num_classes}, channels={self.channels}, "
                f"resolution={self.resolution})")


@dataclass(eq=False, repr=False)
class TensorImageDataset(ImageDataset):
    """In-memory dataset: ``images`` is (N, C, H, W), uint8 in [0, 255] or float in [-1, 1]."""

    images: torch.Tensor
    targets: torch.Tensor

    @property
    def labels(self) -> torch.Tensor:
        return self.targets

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, C, H, W) float32 in [-1, 1] and labels (B,), indexed in one go (no per-item loop)."""
        images = self.images[indices]
        images = images.float().div_(127.5).sub_(1.0) if images.dtype == torch.uint8 else images.float().clone()
        return images, self.targets[indices].long()

    def __getitem__(self, index):
        image = self.images[index]
        if image.dtype == torch.uint8:
            image = image.float().div_(127.5).sub_(1.0)
        else:
            # Clone so in-place augmentation by a caller cannot corrupt the stored copy.
            image = image.float().clone()
        return image, int(self.targets[index])


@dataclass(eq=False, repr=False)
class ImageFolderDataset(ImageDataset):
    """Lazy dataset over image files; ``targets[i]`` is the class of ``files[i]``."""

    files: list[Path]
    targets: torch.Tensor

    @property
    def labels(self) -> torch.Tensor:
        return self.targets

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index):
        path = self.files[index]
        try:
            with Image.open(path) as image:
                # convert() forces the full decode, so truncated files fail here and not later.
                image = image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise DatasetError(f"cannot read image file {path}: {err}; "
                               "fix: delete or replace that file") from None
        image = center_crop_adm(image, self.resolution)
        array = np.array(image, dtype=np.uint8)  # (H, W, 3), writable copy
        tensor = torch.from_numpy(array).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
        return tensor, int(self.targets[index])


# ---------------------------------------------------------------- validation helpers

def check_resolution(resolution) -> int:
    # bool is an int subclass, but resolution=True is always a mistake.
    if isinstance(resolution, bool) or not isinstance(resolution, int):
        raise DatasetError(f"resolution must be an int, got {resolution!r} "
                           f"({type(resolution).__name__}); fix: pass e.g. resolution=32")
    if not 1 <= resolution <= MAX_RESOLUTION:
        raise DatasetError(f"resolution {resolution} is out of range; "
                           f"fix: use an int from 1 to {MAX_RESOLUTION}")
    return resolution


def existing_dir(root, what: str, fix: str) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"{what}: path {path} does not exist; {fix}")
    if not path.is_dir():
        raise DatasetError(f"{what}: {path} is not a folder; {fix}")
    return path


# ---------------------------------------------------------------- tensor helpers

def resize_float(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-2:] == (resolution, resolution):
        return images
    out = F.interpolate(images, size=(resolution, resolution), mode="bilinear",
                        antialias=True, align_corners=False)
    return out.clamp_(-1.0, 1.0)


def resize_uint8(images: torch.Tensor, resolution: int, chunk: int = 2048) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) in chunks and keep uint8, bounding peak memory at 4x a chunk."""
    if images.shape[-2:] == (resolution, resolution):
        return images
    out = torch.empty(images.shape[0], images.shape[1], resolution, resolution, dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk].float()
        block = F.interpolate(block, size=(resolution, resolution), mode="bilinear",
                              antialias=True, align_corners=False)
        out[start:start + chunk] = block.round_().clamp_(0, 255).to(torch.uint8)
    return out


def hwc_uint8_to_nchw(array) -> torch.Tensor:
    """(N, H, W, C) uint8 array (torchvision's CIFAR layout) -> contiguous (N, C, H, W) uint8."""
    array = np.asarray(array)
    if array.ndim != 4 or array.dtype != np.uint8:
        raise DatasetError(f"expected a uint8 (N, H, W, C) array, got {array.dtype} {array.shape}; "
                           "fix: check the dataset files are not corrupted")
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))



def center_crop_adm(pil_image: Image.Image, resolution: int) -> Image.Image:
    """Guided-diffusion (ADM) center crop to ``resolution`` x ``resolution``.

    Repeated BOX halving before the final BICUBIC resize avoids aliasing on large
    downscales; matching ADM exactly keeps FID numbers comparable with the papers.
    """
    resolution = check_resolution(resolution)
    while min(pil_image.size) >= 2 * resolution:
        pil_image = pil_image.resize(tuple(s // 2 for s in pil_image.size), resample=Image.BOX)
    scale = resolution / min(pil_image.size)
    pil_image = pil_image.resize(tuple(round(s * scale) for s in pil_image.size),
                                 resample=Image.BICUBIC)
    left = (pil_image.size[0] - resolution) // 2
    top = (pil_image.size[1] - resolution) // 2
    return pil_image.crop((left, top, left + resolution, top + resolution))


def class_balanced_indices(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` dataset indices, as evenly spread over classes as possible, for a fixed probe set.

    Each class present in ``labels`` gets ``n // C`` indices and the first ``n % C``
    classes (by label value) one more. The choice depends only on ``labels``, ``n``
    and ``seed``; the result is sorted by class, then by index.
    """
    labels = torch.as_tensor(labels).long().flatten()
    if labels.numel() == 0:
        raise DatasetError("class_balanced_indices got no labels; fix: pass dataset.labels")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DatasetError(f"n must be a positive int, got {n!r}; fix: pass e.g. n=100")
    classes, counts = torch.unique(labels, return_counts=True)  # sorted by class
    per_class, remainder = divmod(n, len(classes))
    generator = torch.Generator().manual_seed(int(seed))
    chosen = []
    for i, c in enumerate(classes.tolist()):
        want = per_class + (1 if i < remainder else 0)
        pool = (labels == c).nonzero().flatten()
        if len(pool) < want:
            safe = len(classes) * int(counts.min())
            raise DatasetError(f"class {c} has only {len(pool)} images but n={n} needs {want} "
                               f"from it; fix: lower n (n <= {safe} always works here)")
        pick = pool[torch.randperm(len(pool), generator=generator)[:want]]
        chosen.append(pick.sort().values)
    return torch.cat(chosen)
