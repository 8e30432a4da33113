"""Image datasets for REPA-E training.

Every dataset yields ``(image, label)`` with ``image`` a float32 tensor of shape
(C, H, W) in [-1, 1] and ``label`` an int. Small datasets are decoded and resized
once at load time and kept in memory; ``imagefolder`` decodes lazily with PIL so
ImageNet-sized folders cost only a file list.

Every bad-input error is a :class:`DatasetError` whose message names the problem
and the fix, so notebooks and the CLI can show it as-is instead of a traceback.
"""

from __future__ import annotations

import difflib
import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

MAX_RESOLUTION = 4096
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Installed by `apt-get install dataset-fashion-mnist`; module-level so tests can redirect it.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path("~/.cache/repae_lab")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_FASHION_FIX = ("fix: run `apt-get install dataset-fashion-mnist`, pass root=FOLDER holding "
                "the IDX files, or pass download=True on a machine with internet")


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

def _check_resolution(resolution) -> int:
    # bool is an int subclass, but resolution=True is always a mistake.
    if isinstance(resolution, bool) or not isinstance(resolution, int):
        raise DatasetError(f"resolution must be an int, got {resolution!r} "
                           f"({type(resolution).__name__}); fix: pass e.g. resolution=32")
    if not 1 <= resolution <= MAX_RESOLUTION:
        raise DatasetError(f"resolution {resolution} is out of range; "
                           f"fix: use an int from 1 to {MAX_RESOLUTION}")
    return resolution


def _existing_dir(root, what: str, fix: str) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"{what}: path {path} does not exist; {fix}")
    if not path.is_dir():
        raise DatasetError(f"{what}: {path} is not a folder; {fix}")
    return path


# ---------------------------------------------------------------- tensor helpers

def _resize_float(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-2:] == (resolution, resolution):
        return images
    out = F.interpolate(images, size=(resolution, resolution), mode="bilinear",
                        antialias=True, align_corners=False)
    return out.clamp_(-1.0, 1.0)


def _resize_uint8(images: torch.Tensor, resolution: int, chunk: int = 2048) -> torch.Tensor:
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


# ---------------------------------------------------------------- loaders

def _load_digits(*, resolution: int, root=None, split: str = "train", download: bool = False):
    """sklearn's 8x8 digits. There is no official split, so "test" returns the same 1,797 images."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().div_(8.0).sub_(1.0).unsqueeze(1)  # 0..16 -> [-1, 1]
    return TensorImageDataset(
        name="digits", num_classes=10, channels=1, resolution=resolution,
        class_names=[str(d) for d in range(10)],
        images=_resize_float(images, resolution).contiguous(),
        targets=torch.from_numpy(bunch.target).long())


def _read_idx(path: Path, magic: int, ndim: int) -> torch.Tensor:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        header = 4 * (1 + ndim)
        found, *shape = struct.unpack(f">{1 + ndim}I", data[:header])
    except (OSError, EOFError, struct.error, zlib.error) as err:
        raise DatasetError(f"cannot read IDX file {path}: {err}; fix: re-download or replace it") from None
    if found != magic or len(data) != header + int(np.prod(shape)):
        raise DatasetError(f"{path} is not a valid IDX file (magic {found}, expected {magic}, "
                           "or wrong size); fix: re-download or replace it")
    return torch.from_numpy(np.frombuffer(data, np.uint8, offset=header).reshape(shape).copy())


def _find_idx_pair(folder: Path, prefix: str):
    """Return (images, labels) paths in ``folder`` for ``prefix`` ("train"/"t10k"), or None."""
    hits = [next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)
            for stem in (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")]
    return None if None in hits else tuple(hits)


def _load_fashion_mnist(*, resolution: int, root=None, split: str = "train", download: bool = False):
    prefix = "train" if split == "train" else "t10k"
    if root is not None:
        root = Path(root).expanduser()
        # torchvision's download puts the files under FashionMNIST/raw, so a root used
        # once with download=True is found again without downloading.
        folders = [root, root / "FashionMNIST" / "raw"]
        if not download:
            _existing_dir(root, "fashion-mnist", _FASHION_FIX)
    else:
        folders = [DEBIAN_FASHION_MNIST]

    images = targets = None
    for folder in folders:
        pair = _find_idx_pair(folder, prefix)
        if pair is not None:
            images = _read_idx(pair[0], 2051, 3)
            targets = _read_idx(pair[1], 2049, 1).long()
            if len(images) != len(targets):
                raise DatasetError(f"{pair[0]} has {len(images)} images but {pair[1]} has "
                                   f"{len(targets)} labels; fix: re-download both files")
            break

    if images is None and download:
        from torchvision import datasets as tv_datasets

        target = root if root is not None else CACHE_DIR.expanduser()
        try:
            ds = tv_datasets.FashionMNIST(str(target), train=split == "train", download=True)
        except Exception as err:  # network errors come in many types; all mean the same fix
            raise DatasetError(f"downloading Fashion-MNIST into {target} failed: {err}; "
                               f"{_FASHION_FIX}") from None
        images, targets = ds.data, ds.targets.long()

    if images is None:
        looked = ", ".join(str(f) for f in folders)
        raise DatasetError(f"no Fashion-MNIST IDX files ({prefix}-images-idx3-ubyte[.gz] and "
                           f"{prefix}-labels-idx1-ubyte[.gz]) found in: {looked}; {_FASHION_FIX}")

    return TensorImageDataset(
        name="fashion-mnist", num_classes=10, channels=1, resolution=resolution,
        class_names=list(FASHION_MNIST_CLASSES),
        images=_resize_uint8(images.unsqueeze(1), resolution), targets=targets)


def _load_cifar10(*, resolution: int, root=None, split: str = "train", download: bool = False):
    from torchvision import datasets as tv_datasets

    root = Path(root).expanduser() if root is not None else CACHE_DIR.expanduser()
    fix = ("fix: pass root=FOLDER containing cifar-10-batches-py/ (the extracted "
           "cifar-10-python.tar.gz), or download=True on a machine with internet")
    if not download:
        _existing_dir(root, "cifar10", fix)
    try:
        ds = tv_datasets.CIFAR10(str(root), train=split == "train", download=download)
    except Exception as err:  # torchvision raises RuntimeError for missing/corrupt, URLError offline
        raise DatasetError(f"cifar10: could not load CIFAR-10 from {root}: {err}; {fix}") from None
    return TensorImageDataset(
        name="cifar10", num_classes=10, channels=3, resolution=resolution,
        class_names=list(ds.classes),
        images=_resize_uint8(hwc_uint8_to_nchw(ds.data), resolution),
        targets=torch.as_tensor(ds.targets, dtype=torch.long))


def _load_imagefolder(*, resolution: int, root=None, split: str = "train", download: bool = False):
    """ImageNet-style root/<class>/<images>; ``split`` is ignored (point root at the split folder)."""
    layout = "expected root/<class_name>/<image files>"
    if root is None:
        raise DatasetError(f"imagefolder needs a folder; fix: pass root=FOLDER ({layout})")
    root = _existing_dir(root, "imagefolder", f"fix: pass root=FOLDER ({layout})")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DatasetError(f"imagefolder: no class folders in {root}; fix: {layout}")

    files, targets, empty = [], [], []
    for label, class_dir in enumerate(class_dirs):
        found = sorted(p for p in class_dir.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            empty.append(class_dir.name)
        files += found
        targets += [label] * len(found)
    if empty:
        # An empty class would silently shift num_classes away from the labels actually present.
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise DatasetError(f"imagefolder: no image files ({', '.join(IMAGE_EXTENSIONS)}) in class "
                           f"folder(s) {shown} under {root}; fix: add images or remove those folders")

    return ImageFolderDataset(
        name="imagefolder", num_classes=len(class_dirs), channels=3, resolution=resolution,
        class_names=[d.name for d in class_dirs], files=files,
        targets=torch.tensor(targets, dtype=torch.long))


DATASETS = {
    "digits": _load_digits,
    "fashion-mnist": _load_fashion_mnist,
    "cifar10": _load_cifar10,
    "imagefolder": _load_imagefolder,
}


def load_dataset(name: str, *, resolution: int, root: str | None = None,
                 split: str = "train", download: bool = False) -> ImageDataset:
    """Load dataset ``name`` (a key of :data:`DATASETS`) at ``resolution`` x ``resolution``."""
    if name not in DATASETS:
        valid = ", ".join(DATASETS)
        close = difflib.get_close_matches(str(name), list(DATASETS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DatasetError(f"unknown dataset {name!r}; {hint}fix: use one of: {valid}")
    resolution = _check_resolution(resolution)
    if split not in ("train", "test"):
        raise DatasetError(f"unknown split {split!r}; fix: use split='train' or split='test'")
    return DATASETS[name](resolution=resolution, root=root, split=split, download=download)


def center_crop_adm(pil_image: Image.Image, resolution: int) -> Image.Image:
    """Guided-diffusion (ADM) center crop to ``resolution`` x ``resolution``.

    Repeated BOX halving before the final BICUBIC resize avoids aliasing on large
    downscales; matching ADM exactly keeps FID numbers comparable with the papers.
    """
    resolution = _check_resolution(resolution)
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
