"""Dataset readers (GTA5, SYNTHIA, Cityscapes, built-in demo domains) and tf.data pipelines.

    dataset = open_dataset("gta5", "/data/GTA5", "train")
    image, label = dataset.read_pair(0)       # uint8 [H, W, 3], uint8 [H, W] train ids
    batches = supervised_patches(dataset, patch_size=600, resize_width=1024)

Modules: `base` (Dataset, DatasetError), `readers` (file decoders),
`file_datasets` (folder layouts, held-out splits), `demo` (generated demo
domains), `datasets` (open_dataset), `pipelines` (tf.data), `validation`
(check_dataset), `check` (its CLI), `images` (the [-1, 1] convention), `testing` (tiny datasets in the real
formats, for tests).
"""
from data_pipelines.base import Dataset, DatasetError, UserError
from data_pipelines.datasets import DATASET_NAMES, SPLITS, open_dataset
from data_pipelines.images import normalize_image, to_pixels, to_unit_range
from data_pipelines.pipelines import (
    crop_fitting_size, evaluation_images, pad_to_size, random_crop, random_flip, resize_to,
    resize_to_width, supervised_patches, unpaired_patches)
from data_pipelines.validation import DatasetReport, check_dataset

__all__ = [
    "DATASET_NAMES", "SPLITS", "Dataset", "DatasetError", "DatasetReport", "check_dataset",
    "crop_fitting_size", "evaluation_images", "normalize_image", "open_dataset", "pad_to_size",
    "random_crop", "random_flip", "resize_to", "resize_to_width", "supervised_patches",
    "to_pixels", "to_unit_range", "unpaired_patches", "UserError",
]
