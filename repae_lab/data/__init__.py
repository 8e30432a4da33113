"""The data layer: datasets (images in [-1, 1] with labels), their loaders, and image conversions."""
from .datasets import (DatasetError, ImageDataset, ImageFolderDataset, TensorImageDataset, center_crop_adm,
                       class_balanced_indices, hwc_uint8_to_nchw)
from .loaders import DATASETS, load_dataset

__all__ = ["DATASETS", "DatasetError", "ImageDataset", "ImageFolderDataset", "TensorImageDataset",
           "center_crop_adm", "class_balanced_indices", "hwc_uint8_to_nchw", "load_dataset"]
