"""The dataset loaders: scikit-learn's digits (zero setup), Fashion-MNIST (Debian's package, an IDX folder or a
torchvision download), CIFAR-10 (a torchvision folder) and any class-per-folder image tree.

Small datasets are decoded and resized once at load time and kept in memory; ``imagefolder`` decodes lazily
with PIL so ImageNet-sized folders cost only a file list.
"""

from __future__ import annotations

import difflib
import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets as tv_datasets

from .datasets import (IMAGE_EXTENSIONS, DatasetError, ImageDataset, ImageFolderDataset, TensorImageDataset,
                       check_resolution, existing_dir, hwc_uint8_to_nchw, resize_float, resize_uint8)

# Installed by `apt-get install dataset-fashion-mnist`; module-level so tests can redirect it.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path("~/.cache/repae_lab")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_FASHION_FIX = ("fix: run `apt-get install dataset-fashion-mnist`, pass root=FOLDER holding "
                "the IDX files, or pass download=True on a machine with internet")

# ---------------------------------------------------------------- loaders

def _load_digits(*, resolution: int, root=None, split: str = "train", download: bool = False):
    """sklearn's 8x8 digits. There is no official split, so "test" returns the same 1,797 images."""
    # scikit-learn is imported here, not at the top: it would add ~0.8 s to every start of the repae-lab command
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().div_(8.0).sub_(1.0).unsqueeze(1)  # 0..16 -> [-1, 1]
    return TensorImageDataset(
        name="digits", num_classes=10, channels=1, resolution=resolution,
        class_names=[str(d) for d in range(10)],
        images=resize_float(images, resolution).contiguous(),
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


def find_fashion_mnist(root=None) -> Path | None:
    """The folder the Fashion-MNIST loader would read its training IDX files from (root, or Debian's package
    when root is None), or None when they are not there: lets a caller skip Fashion-MNIST work with one line
    before it loads anything."""
    root = Path(root).expanduser() if root else None
    folders = [root, root / "FashionMNIST" / "raw"] if root else [DEBIAN_FASHION_MNIST]
    return next((f for f in folders if _find_idx_pair(f, "train") is not None), None)


def _load_fashion_mnist(*, resolution: int, root=None, split: str = "train", download: bool = False):
    prefix = "train" if split == "train" else "t10k"
    if root is not None:
        root = Path(root).expanduser()
        # torchvision's download puts the files under FashionMNIST/raw, so a root used
        # once with download=True is found again without downloading.
        folders = [root, root / "FashionMNIST" / "raw"]
        if not download:
            existing_dir(root, "fashion-mnist", _FASHION_FIX)
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
        images=resize_uint8(images.unsqueeze(1), resolution), targets=targets)


def _load_cifar10(*, resolution: int, root=None, split: str = "train", download: bool = False):
    root = Path(root).expanduser() if root is not None else CACHE_DIR.expanduser()
    fix = ("fix: pass root=FOLDER containing cifar-10-batches-py/ (the extracted "
           "cifar-10-python.tar.gz), or download=True on a machine with internet")
    if not download:
        existing_dir(root, "cifar10", fix)
    try:
        ds = tv_datasets.CIFAR10(str(root), train=split == "train", download=download)
    except Exception as err:  # torchvision raises RuntimeError for missing/corrupt, URLError offline
        raise DatasetError(f"cifar10: could not load CIFAR-10 from {root}: {err}; {fix}") from None
    return TensorImageDataset(
        name="cifar10", num_classes=10, channels=3, resolution=resolution,
        class_names=list(ds.classes),
        images=resize_uint8(hwc_uint8_to_nchw(ds.data), resolution),
        targets=torch.as_tensor(ds.targets, dtype=torch.long))


def _load_imagefolder(*, resolution: int, root=None, split: str = "train", download: bool = False):
    """ImageNet-style root/<class>/<images>; ``split`` is ignored (point root at the split folder)."""
    layout = "expected root/<class_name>/<image files>"
    if root is None:
        raise DatasetError(f"imagefolder needs a folder; fix: pass root=FOLDER ({layout})")
    root = existing_dir(root, "imagefolder", f"fix: pass root=FOLDER ({layout})")
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
    resolution = check_resolution(resolution)
    if split not in ("train", "test"):
        raise DatasetError(f"unknown split {split!r}; fix: use split='train' or split='test'")
    return DATASETS[name](resolution=resolution, root=root, split=split, download=download)
