import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from repae_lab.data import loaders as data
from repae_lab.data import (DATASETS, DatasetError, ImageDataset, center_crop_adm,
                            class_balanced_indices, load_dataset)


# ---------------------------------------------------------------- helpers

def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool):
    """Write an IDX image/label pair the way the Fashion-MNIST distribution does."""
    folder.mkdir(parents=True, exist_ok=True)
    n, rows, cols = images.shape
    blobs = {
        f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 2051, n, rows, cols) + images.tobytes(),
        f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 2049, n) + labels.tobytes(),
    }
    for name, blob in blobs.items():
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as f:
                f.write(blob)
        else:
            (folder / name).write_bytes(blob)


def tiny_fashion(n=6, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-here")


@pytest.fixture
def image_root(tmp_path):
    root = tmp_path / "imgs"
    sizes = {"cat": [(50, 37), (19, 64)], "dog": [(100, 100), (33, 21), (7, 5)]}
    for cls, dims in sizes.items():
        (root / cls).mkdir(parents=True)
        for i, (w, h) in enumerate(dims):
            color = (255, 0, 0) if cls == "cat" else (0, 0, 255)
            ext = ".png" if i % 2 == 0 else ".PNG"  # extensions match case-insensitively
            Image.new("RGB", (w, h), color).save(root / cls / f"{i}{ext}")
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


# ---------------------------------------------------------------- digits

def test_registry_keys():
    assert set(DATASETS) == {"digits", "fashion-mnist", "cifar10", "imagefolder"}


def test_digits_loads():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits", resolution=16)
    assert isinstance(ds, ImageDataset)
    assert (len(ds), ds.num_classes, ds.channels, ds.resolution) == (1797, 10, 1, 16)
    assert ds.class_names == [str(i) for i in range(10)]
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    assert images.shape == (1797, 1, 16, 16) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    assert images.min() < -0.99 and images.max() > 0.9
    assert torch.equal(ds.labels, torch.from_numpy(load_digits().target).long())
    assert ds.labels.dtype == torch.int64
    assert ds[5][1] == int(load_digits().target[5])


def test_digits_native_resolution_is_exact_scaling():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits", resolution=8, split="test")
    expected = torch.from_numpy(load_digits().images[3]).float() / 8 - 1
    assert torch.allclose(ds[3][0][0], expected)


# ---------------------------------------------------------------- fashion-mnist

@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_idx_folder(tmp_path, gz):
    images, labels = tiny_fashion()
    write_idx(tmp_path, "train", images, labels, gz=gz)
    write_idx(tmp_path, "t10k", images[:3], labels[:3], gz=not gz)

    ds = load_dataset("fashion-mnist", resolution=32, root=str(tmp_path))
    assert (len(ds), ds.channels, ds.num_classes) == (6, 1, 10)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    x, y = ds[1]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and y == 1
    assert torch.equal(ds.labels, torch.from_numpy(labels).long())

    test = load_dataset("fashion-mnist", resolution=28, root=tmp_path, split="test")
    assert len(test) == 3
    # At native size the pixels must map exactly 0 -> -1 and 255 -> 1.
    assert torch.allclose(test[0][0][0], torch.from_numpy(images[0]).float() / 127.5 - 1)


def test_fashion_mnist_finds_torchvision_layout(tmp_path):
    images, labels = tiny_fashion()
    write_idx(tmp_path / "FashionMNIST" / "raw", "train", images, labels, gz=False)
    assert len(load_dataset("fashion-mnist", resolution=28, root=tmp_path)) == 6


def test_fashion_mnist_debian_folder():
    if not data.DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    ds = load_dataset("fashion-mnist", resolution=32, split="test")
    assert len(ds) == 10_000
    assert ds[0][0].shape == (1, 32, 32)
    assert torch.equal(torch.bincount(ds.labels), torch.full((10,), 1000))


def test_fashion_mnist_missing_mentions_apt_get(no_debian):
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", resolution=32)


def test_fashion_mnist_root_without_files(tmp_path):
    with pytest.raises(DatasetError, match="no Fashion-MNIST IDX files.*apt-get"):
        load_dataset("fashion-mnist", resolution=32, root=tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("fashion-mnist", resolution=32, root=tmp_path / "missing")


def test_fashion_mnist_corrupt_idx(tmp_path):
    images, labels = tiny_fashion()
    write_idx(tmp_path, "train", images, labels, gz=False)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01garbage")
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte"):
        load_dataset("fashion-mnist", resolution=28, root=tmp_path)


def test_fashion_mnist_download_uses_torchvision(monkeypatch, no_debian, tmp_path):
    calls = []

    class FakeFashion:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            self.data = torch.zeros(4, 28, 28, dtype=torch.uint8)
            self.targets = torch.tensor([3, 1, 4, 1])

    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashion)
    ds = load_dataset("fashion-mnist", resolution=16, download=True, split="test")
    assert calls == [(str(tmp_path / "cache"), False, True)]
    assert ds[0][0].shape == (1, 16, 16) and ds.labels.tolist() == [3, 1, 4, 1]


# ---------------------------------------------------------------- cifar10

def test_cifar10_missing(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*download=True"):
        load_dataset("cifar10", resolution=32, root=tmp_path / "nope")
    with pytest.raises(DatasetError, match="cifar-10-batches-py"):
        load_dataset("cifar10", resolution=32, root=tmp_path)


def test_cifar10_loading_path(monkeypatch, tmp_path):
    # torchvision md5-checks the real batch files, so stand in for its class instead.
    class FakeCifar:
        classes = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]

        def __init__(self, root, train, download):
            self.data = np.zeros((3, 32, 32, 3), dtype=np.uint8)
            self.data[:, :, :, 0] = 255  # pure red
            self.targets = [0, 5, 9]

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCifar)
    ds = load_dataset("cifar10", resolution=32, root=tmp_path)
    x, y = ds[1]
    assert x.shape == (3, 32, 32) and y == 5 and ds.channels == 3
    assert torch.allclose(x[0], torch.ones(32, 32)) and torch.allclose(x[1], -torch.ones(32, 32))
    assert load_dataset("cifar10", resolution=16, root=tmp_path)[0][0].shape == (3, 16, 16)


def test_hwc_to_nchw():
    array = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    out = data.hwc_uint8_to_nchw(array)
    assert out.shape == (2, 3, 4, 5) and out.dtype == torch.uint8 and out.is_contiguous()
    assert out[1, 2, 3, 4] == array[1, 3, 4, 2]
    with pytest.raises(DatasetError):
        data.hwc_uint8_to_nchw(np.zeros((2, 4, 5), dtype=np.uint8))


# ---------------------------------------------------------------- imagefolder

def test_imagefolder_loads(image_root):
    ds = load_dataset("imagefolder", resolution=24, root=str(image_root))
    assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2 and ds.channels == 3
    assert len(ds) == 5 and ds.labels.tolist() == [0, 0, 1, 1, 1]
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, 24, 24) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1
    red, blue = ds[0][0], ds[2][0]
    assert red[0].mean() > 0.95 and red[2].mean() < -0.95
    assert blue[2].mean() > 0.95 and blue[0].mean() < -0.95
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))
    assert batch[0].shape == (5, 3, 24, 24) and batch[1].dtype == torch.int64


def test_imagefolder_is_deterministic(image_root):
    a = load_dataset("imagefolder", resolution=8, root=image_root)
    b = load_dataset("imagefolder", resolution=8, root=image_root)
    assert a.files == b.files == sorted(a.files)


def test_imagefolder_corrupt_image_names_file(image_root):
    bad = image_root / "cat" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    ds = load_dataset("imagefolder", resolution=16, root=image_root)
    index = ds.files.index(bad)
    with pytest.raises(DatasetError, match="broken.jpg"):
        ds[index]


def test_imagefolder_truncated_image_names_file(image_root):
    good = image_root / "dog" / "0.png"
    big = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    big.save(good)
    good.write_bytes(good.read_bytes()[:200])
    ds = load_dataset("imagefolder", resolution=16, root=image_root)
    with pytest.raises(DatasetError, match="0.png"):
        ds[ds.files.index(good)]


def test_imagefolder_bad_roots(tmp_path):
    with pytest.raises(DatasetError, match="pass root=FOLDER"):
        load_dataset("imagefolder", resolution=16)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("imagefolder", resolution=16, root=tmp_path / "missing")
    with pytest.raises(DatasetError, match="no class folders"):
        load_dataset("imagefolder", resolution=16, root=tmp_path)
    (tmp_path / "empty_class").mkdir()
    (tmp_path / "empty_class" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="no image files.*empty_class"):
        load_dataset("imagefolder", resolution=16, root=tmp_path)


@pytest.mark.parametrize("size", [(300, 97), (45, 200), (5, 7), (1000, 800), (64, 64), (33, 32)])
@pytest.mark.parametrize("resolution", [1, 16, 32])
def test_center_crop_adm_exact_size(size, resolution):
    out = center_crop_adm(Image.new("RGB", size, (10, 200, 30)), resolution)
    assert out.size == (resolution, resolution)
    assert np.abs(np.asarray(out).astype(int) - [10, 200, 30]).max() <= 1


def test_center_crop_adm_keeps_the_center():
    image = np.zeros((40, 120, 3), dtype=np.uint8)
    image[:, 40:80] = 255  # white middle third of a landscape image
    out = np.asarray(center_crop_adm(Image.fromarray(image), 20))
    assert out[:, 3:17].min() > 200


# ---------------------------------------------------------------- bad input

def test_unknown_name_suggests_nearest():
    with pytest.raises(DatasetError, match="did you mean 'fashion-mnist'"):
        load_dataset("fashion_mnist", resolution=32)
    with pytest.raises(DatasetError, match="digits, fashion-mnist, cifar10, imagefolder"):
        load_dataset("zzz", resolution=32)


@pytest.mark.parametrize("resolution,phrase", [
    ("32", "must be an int"), (32.0, "must be an int"), (True, "must be an int"),
    (0, "from 1 to 4096"), (-8, "from 1 to 4096"), (5000, "from 1 to 4096")])
def test_bad_resolution(resolution, phrase):
    with pytest.raises(DatasetError, match=phrase):
        load_dataset("digits", resolution=resolution)
    with pytest.raises(DatasetError, match=phrase):
        center_crop_adm(Image.new("RGB", (8, 8)), resolution)


def test_bad_split():
    with pytest.raises(DatasetError, match="split='train' or split='test'"):
        load_dataset("digits", resolution=8, split="val")


def test_dataset_error_is_value_error():
    assert issubclass(DatasetError, ValueError)


# ---------------------------------------------------------------- class_balanced_indices

def test_class_balanced_indices_exact_and_deterministic():
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 0, 2, 1, 0, 1, 2, 0, 1, 2])
    idx = class_balanced_indices(labels, 10, seed=3)
    assert idx.dtype == torch.int64 and len(idx) == 10 and len(set(idx.tolist())) == 10
    assert torch.bincount(labels[idx]).tolist() == [4, 3, 3]  # remainder goes to class 0
    picked = labels[idx].tolist()
    assert picked == sorted(picked)
    for c in range(3):
        within = idx[labels[idx] == c].tolist()
        assert within == sorted(within)
    assert torch.equal(idx, class_balanced_indices(labels, 10, seed=3))
    seeds = {tuple(class_balanced_indices(labels, 6, seed=s).tolist()) for s in range(10)}
    assert len(seeds) > 1


def test_class_balanced_indices_on_dataset_labels():
    ds = load_dataset("digits", resolution=8)
    idx = class_balanced_indices(ds.labels, 100, seed=0)
    assert torch.bincount(ds.labels[idx]).tolist() == [10] * 10


def test_class_balanced_indices_errors():
    labels = torch.tensor([0, 0, 0, 1])
    with pytest.raises(DatasetError, match="class 1 has only 1 images"):
        class_balanced_indices(labels, 4, seed=0)
    with pytest.raises(DatasetError, match="positive int"):
        class_balanced_indices(labels, 0, seed=0)
    with pytest.raises(DatasetError, match="no labels"):
        class_balanced_indices(torch.tensor([], dtype=torch.long), 2, seed=0)
