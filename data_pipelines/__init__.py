"""Dataset readers (GTA5, SYNTHIA, Cityscapes, your own folders, demo domains), tf.data pipelines.

    dataset = open_dataset("gta5", "/data/GTA5", "train")
    image, label = dataset.read_pair(0)       # uint8 [H, W, 3], uint8 [H, W] train ids
    batches = supervised_patches(dataset, patch_size=600, resize_width=1024)

Modules: `base` (what a Dataset is), `bad_files` (files skipped while a
pipeline runs), `classes` (the label space), `readers` (file decoders),
`listing` (folders through symbolic links), `file_datasets` (folder layouts,
held-out splits), `folder_dataset` and `label_maps` (your own images and
their labels), `demo` (generated demo domains), `datasets`
(open_dataset), `pipelines` (tf.data), `transforms` (their per-example ops),
`validation` (check_dataset), `check` (its program), `images` (the [-1, 1]
convention), `colour` (colour-statistics transfer), `cli` (how every program
starts and ends).

The names below are loaded on first use, so that reading a dataset, or
parsing a program's flags, does not import TensorFlow (which takes seconds
and prints its start-up lines).
"""
import importlib

_HOMES = {
    "bad_files": ("BadFiles",),
    "base": ("Dataset",),
    "datasets": ("DATASET_NAMES", "SPLITS", "open_dataset"),
    "images": ("normalize_image", "to_pixels", "to_unit_range"),
    "pipelines": ("evaluation_images", "supervised_patches", "unlabelled_patches",
                  "unpaired_patches"),
    "transforms": ("crop_fitting_size", "pad_to_size", "random_crop", "random_flip",
                   "resize_to", "resize_to_width"),
    "validation": ("DatasetReport", "check_dataset"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'data_pipelines' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"data_pipelines.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
