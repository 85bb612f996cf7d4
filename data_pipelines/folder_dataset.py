"""Your own data, dataset `folder`: a folder of images, labelled or not.

The layout is recognised by what the root folder R holds (docs/datasets.md,
"Your own data"):

    Cityscapes  R/leftImg8bit/ (and R/gtFine/): read as dataset cityscapes
    labelled    R/images/ and R/labels/: images/a/b/x.jpg is paired with the
                label labels/a/b/x.png (same relative path and stem)
    unlabelled  anything else: every image in R and below it

Images are .jpg, .jpeg or .png files, in any case; folders are listed through
symbolic links (`data_pipelines.listing`). Labels are 8-bit single-channel
PNGs of train ids, or of the user's ids through a label map (`label_maps`).

Splits:

    train    labelled: every pair but the held-out ones; Cityscapes: its
             train split; unlabelled: every image, by sorted relative path
    heldout  labelled: 1 pair in 25 (`file_datasets.HELDOUT_PROPORTION`), at
             least 1 and at most n - 1, chosen by the SHA-1 rule of GTA5's
             held-out split; Cityscapes: its val split
    val      labelled: every pair; Cityscapes: its val split
"""
import os

from absl import logging

from data_pipelines import file_datasets, label_maps
from data_pipelines.listing import Listing
from udamobile.errors import DatasetError

NAME = "folder"
SPLITS = ("train", "heldout", "val")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
LABEL_EXTENSIONS = (".png",)
_EXPECTED_IMAGES = ".jpg, .jpeg or .png files (any case) in it or its sub-folders"
# What a labelled folder's splits read of the Cityscapes layout.
_CITYSCAPES_SPLIT = {"train": "train", "heldout": "val", "val": "val"}


def layout_of(root):
    """"cityscapes", "labelled" or "unlabelled": what folder `root` holds."""
    if os.path.isdir(os.path.join(root, "leftImg8bit")):
        return "cityscapes"
    if all(os.path.isdir(os.path.join(root, part)) for part in ("images", "labels")):
        return "labelled"
    return "unlabelled"


def files_below(listing, folder, extensions):
    """[(path relative to `folder`, path)] of the files in `folder` and below it whose
    extension, in any case, is one of `extensions`; sorted by relative path."""
    found, ignored = [], 0
    for subfolder, name, path in listing.files(folder, recursive=True):
        if os.path.splitext(name)[1].lower() in extensions:
            found.append((os.path.normpath(os.path.join(subfolder, name)), path))
        else:
            ignored += 1
    if ignored:
        logging.info("%s: ignored %d file(s) not named *%s", folder, ignored,
                     ", *".join(extensions))
    return sorted(found)


def by_stem(files):
    """{relative path less its extension: path} of `files_below`'s list; raises
    DatasetError for two files that differ only by their extension."""
    keyed = {}
    for relative, path in files:
        key = os.path.splitext(relative)[0]
        if key in keyed:
            raise DatasetError(f"{keyed[key]} and {path}: two files of one name; a label is "
                               "paired with the image of its name, so keep one of them")
        keyed[key] = path
    return keyed


def _no_images(folder):
    return DatasetError(f"{folder}: no images found (expected {_EXPECTED_IMAGES})")


def _open_unlabelled(root, split, label_map):
    if label_map is not None:
        raise DatasetError(f"{root}: a label map is given but the folder holds no labels "
                           "(expected images/ and labels/, or leftImg8bit/ and gtFine/)")
    if split != "train":
        raise DatasetError(f"{root}: the {split} split needs labels, and the folder holds none "
                           "(expected images/ and labels/, or leftImg8bit/ and gtFine/); an "
                           "unlabelled folder has a train split only")
    listing = Listing()
    images = files_below(listing, root, IMAGE_EXTENSIONS)
    if not images:
        raise _no_images(root)
    return file_datasets.FileDataset(NAME, split, [path for _, path in images], None,
                                     label_maps.TRAIN_ID_LABELS, listing.skipped)


def _open_labelled(root, split, label_format):
    listing = Listing()
    image_folder, label_folder = (os.path.join(root, part) for part in ("images", "labels"))
    images = by_stem(files_below(listing, image_folder, IMAGE_EXTENSIONS))
    if not images:
        raise _no_images(image_folder)
    labels = by_stem(files_below(listing, label_folder, LABEL_EXTENSIONS))
    keys, image_paths, label_paths = file_datasets.pair_files(images, labels, root)
    if split != "val":
        image_paths, label_paths = file_datasets.split_heldout(NAME, root, split, keys,
                                                               image_paths, label_paths)
    return file_datasets.FileDataset(NAME, split, image_paths, label_paths, label_format,
                                     listing.skipped)


def open_folder(root, split, label_map=None):
    """`split` (one of SPLITS) of the folder `root` (module docstring) as a FileDataset;
    the labels through the label map file `label_map` if given (`label_maps`)."""
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: folder not found (expected a folder of images: "
                           f"{_EXPECTED_IMAGES})")
    layout = layout_of(root)
    if layout == "unlabelled":
        return _open_unlabelled(root, split, label_map)
    label_format = label_maps.folder_labels(label_map)
    if layout == "labelled":
        return _open_labelled(root, split, label_format)
    return file_datasets.open_cityscapes(
        root, _CITYSCAPES_SPLIT[split], name=NAME,
        label_format=file_datasets.CITYSCAPES_LABELS if label_map is None else label_format)
