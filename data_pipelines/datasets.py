"""`open_dataset`: one entry point for every dataset and split."""
from data_pipelines import demo_domains, file_datasets, folder_dataset
from udamobile.errors import DatasetError

DATASET_NAMES = ("gta5", "synthia", "cityscapes", folder_dataset.NAME, *demo_domains.SPLIT_SIZES)

SPLITS = {
    "gta5": ("train", "heldout"),
    "synthia": ("train", "heldout"),
    "cityscapes": ("train", "val"),
    folder_dataset.NAME: folder_dataset.SPLITS,
    **{domain: tuple(sizes) for domain, sizes in demo_domains.SPLIT_SIZES.items()},
}
SYNTHIA_PROTOCOLS = (16, 13)


def is_built_in(name):
    """Whether dataset `name` is a built-in demo domain (generated, no folder)."""
    return name.startswith("demo_")


def open_dataset(name, root=None, split="train", *, synthia_classes=16, label_map=None):
    """Opens one split of a dataset.

    Args:
      name: one of DATASET_NAMES.
      root: the dataset's folder (see file_datasets for the layouts); must be
        None for the built-in demo domains, which have no files.
      split: one of SPLITS[name]. gta5 / synthia: "train" or "heldout" (see
        file_datasets for the held-out rule); cityscapes: "train" (labels
        readable for the oracle, unused by adaptation) or "val" (the test
        set); demo_source: "train" or "heldout"; demo_target, demo_city
        and the shift suite (demo_shifts.SHIFTS): "train" (used unlabelled)
        or "val" (the test set); folder: your own images, "train",
        "heldout" or "val" (data_pipelines/folder_dataset.py).
      synthia_classes: 16 or 13, the SYNTHIA protocol: with 13, SYNTHIA's
        wall, fence and pole read as 255 too. Other datasets keep their
        labels (an evaluation restricts them with PROTOCOL_CLASSES).
      label_map: for folder only, the JSON file mapping the ids of its label
        files to train ids (data_pipelines/label_maps.py); None: they hold
        train ids.

    Returns:
      A `Dataset`.

    Raises:
      DatasetError: bad name, split, protocol, folder or files.
    """
    if name not in DATASET_NAMES:
        raise DatasetError(f"dataset name must be one of {DATASET_NAMES}, got {name!r}")
    if split not in SPLITS[name]:
        raise DatasetError(f"split of {name} must be one of {SPLITS[name]}, got {split!r}")
    if synthia_classes not in SYNTHIA_PROTOCOLS:
        raise DatasetError(f"synthia_classes must be one of {SYNTHIA_PROTOCOLS}, "
                           f"got {synthia_classes!r}")
    if label_map is not None and name != folder_dataset.NAME:
        raise DatasetError(f"a label map applies to dataset {folder_dataset.NAME}, not {name} "
                           f"(got label map {label_map})")
    if is_built_in(name):
        if root is not None:
            raise DatasetError(f"{name} is generated in memory and takes no root, got {root!r}")
        return demo_domains.DemoDataset(name, split)
    if not root:
        raise DatasetError(f"{name} needs root, the folder of the dataset (got {root!r})")
    if name == folder_dataset.NAME:
        return folder_dataset.open_folder(root, split, label_map)
    if name == "gta5":
        return file_datasets.open_gta5(root, split)
    if name == "synthia":
        return file_datasets.open_synthia(root, split, synthia_classes)
    return file_datasets.open_cityscapes(root, split)
