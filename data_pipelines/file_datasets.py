"""GTA5, SYNTHIA-RAND-CITYSCAPES and Cityscapes read from their original folders.

Layouts (docs/datasets.md, "GTA5", "SYNTHIA-RAND-CITYSCAPES", "Cityscapes"):

    GTA5        <root>/images/NNNNN.png, <root>/labels/NNNNN.png (palette)
    SYNTHIA     <root>/RGB/NNNNNNN.png, <root>/GT/LABELS/NNNNNNN.png (16-bit)
    Cityscapes  <root>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png,
                <root>/gtFine/<split>/<city>/<name>_gtFine_labelIds.png

Folders are listed through symbolic links, each real folder once
(`data_pipelines.listing`). Every image must have its label and every label
its image, or opening fails listing the first unmatched files.

Held-out splits (GTA5, SYNTHIA): the paper holds out 1,000 of GTA5's 24,966
frames and 100 of SYNTHIA's 9,400 without saying which. Here the held-out
files are the k whose file-name stem has the smallest SHA-1 digest, with
k = round(n * 1000 / 24966) (GTA5) or round(n * 100 / 9400) (SYNTHIA), kept
within [1, n - 1], for the n pairs found. So the full datasets split into
23,966 / 1,000 and 9,300 / 100; a subset folder holds out the same fraction;
the choice depends on names only (not on file order, platform or library
versions).

A label whose size differs a little from its image's (GTA5 has a few such
pairs, off by some pixels) is resized to the image with nearest neighbour
when read; a warning logs each resized file once with the running count
(`Dataset.num_resized_labels`), so training never stops on them. A label of
another aspect or scale (more than `SIZE_TOLERANCE` or a pixel off on a
side: a 3x2 label, a transposed one) belongs to no image of this size and
is a DatasetError, and so is a label with more than `MAX_UNKNOWN_FRACTION`
of its pixels outside its format's ids (`LabelFormat`): such files would
otherwise train as "ignore" without a word.
"""
import dataclasses
import hashlib
import os
import threading
import typing

import numpy as np

from absl import logging

from data_pipelines import readers
from data_pipelines import classes
from data_pipelines.base import Dataset
from data_pipelines.listing import Listing
from udamobile.errors import DatasetError

# (frames in the full dataset, frames the paper holds out)
HELDOUT_PROPORTION = {"gta5": (24966, 1000), "synthia": (9400, 100), "folder": (25, 1)}

_UNMATCHED_SHOWN = 5
# A label side may differ from its image's by this fraction (or one pixel).
SIZE_TOLERANCE = 0.05
# Pixels outside the format's ids a label may hold: a few stray values (an
# edited file) pass; a wrong encoding puts far more there.
MAX_UNKNOWN_FRACTION = 0.01


@dataclasses.dataclass(frozen=True)
class LabelFormat:
    """How one dataset stores its labels (docs/datasets.md).

    Attributes:
      description: what the files hold, e.g. "Cityscapes label ids 0..33".
      read_ids: label path -> [H, W] integer ids as stored in the file.
      table: uint8 lookup table, stored id -> train id (255: ignore).
      num_ids: the format's ids are 0..num_ids - 1 (and `ignore_id`); any other is unknown.
      label_ids: whether the ids are Cityscapes label ids, where train ids
        saved by mistake are recognizable (`validation`).
      ignore_id: a stored id past num_ids that is known too (255 in train-id files).
    """
    description: str
    read_ids: typing.Callable
    table: np.ndarray
    num_ids: int
    label_ids: bool = False
    ignore_id: typing.Optional[int] = None


def label_size_problem(label_shape, image_shape):
    """Why a label of `label_shape` (H, W) cannot be its image's, or None.

    Each side may differ by SIZE_TOLERANCE of the image's, or by one pixel.
    """
    if all(abs(a - b) <= max(1, SIZE_TOLERANCE * b) for a, b in zip(label_shape, image_shape)):
        return None
    (lh, lw), (ih, iw) = label_shape, image_shape
    return (f"label is {lw}x{lh} (width x height) but its image is {iw}x{ih}: another aspect "
            f"or scale, not a small mismatch (up to {SIZE_TOLERANCE:.0%} or 1 pixel per side "
            "is resized); is it another image's label, or transposed?")


# "Most" of the pixels of a train-id file read as label ids map to ignore.
TRAIN_IDS_IGNORED_FRACTION = 0.5
TRAIN_IDS_HINT = ("looks like train ids (0-18) saved as label ids: such files need no mapping "
                  "and are read as ignore here")


def looks_like_train_ids(counts, table):
    """Whether `counts` (pixels per stored Cityscapes label id) look like train ids
    saved as label ids: every pixel, 255 aside, on ids 0-18, and most of them
    on ids that map to ignore (road, train id 0, is label id 0 "unlabeled")."""
    counts = np.array(counts, dtype=np.int64)
    counts[classes.IGNORE_LABEL:classes.IGNORE_LABEL + 1] = 0
    total = counts.sum()
    if total == 0 or counts[classes.NUM_CLASSES:].any():
        return False
    ignored = counts[:classes.NUM_CLASSES][table[:classes.NUM_CLASSES] == classes.IGNORE_LABEL]
    return ignored.sum() > TRAIN_IDS_IGNORED_FRACTION * total


def unknown_id_fraction(ids, label_format):
    """The fraction of `ids` that are not ids of `label_format` (a LabelFormat)."""
    unknown = (ids >= label_format.num_ids) & (ids != label_format.ignore_id)
    return float(np.count_nonzero(unknown)) / max(ids.size, 1)


class FileDataset(Dataset):
    """Image and label files of one split, read and mapped to train ids on demand.

    Args:
      name, split: as in `Dataset`.
      image_paths: sequence of image paths.
      label_paths: sequence of label paths (same order), or None if unlabelled.
      label_format: a LabelFormat.
      skipped: what listing the folders left out (`Listing.skipped`).
    """

    def __init__(self, name, split, image_paths, label_paths, label_format, skipped=()):
        super().__init__(name, split, has_labels=label_paths is not None)
        self.image_paths = tuple(image_paths)
        self.label_paths = None if label_paths is None else tuple(label_paths)
        self.label_format = label_format
        self.skipped = tuple(skipped)
        self._resized_labels = set()
        self._lock = threading.Lock()  # tf.data reads from several threads.

    def __len__(self):
        return len(self.image_paths)

    def read_image(self, index):
        self.check_index(index)
        return readers.read_rgb_image(self.image_paths[index])

    def read_label(self, index):
        ids, image_shape = self._read_checked_ids(index)
        label = self.label_format.table[ids]
        if label.shape != image_shape:
            self._log_resized(self.label_paths[index], label.shape, image_shape)
            label = readers.fit_label_to_size(label, *image_shape)
        return label

    def read_label_ids(self, index):
        return self._read_checked_ids(index)[0]

    def _read_checked_ids(self, index):
        """(the stored ids of label `index`, its image's (H, W)); raises DatasetError
        for a label of another size or encoding (module docstring)."""
        self.check_index(index)
        if not self.has_labels:
            raise DatasetError(f"{self.name}/{self.split} has no labels "
                               f"(cannot read the label of {self.describe(index)})")
        label_path = self.label_paths[index]
        ids = self.label_format.read_ids(label_path)
        image_shape = readers.image_size(self.image_paths[index])
        problem = label_size_problem(ids.shape, image_shape)
        if problem:
            raise DatasetError(f"{label_path}: {problem}")
        label_format = self.label_format
        unknown = unknown_id_fraction(ids, label_format)
        if unknown > MAX_UNKNOWN_FRACTION:
            hint = (f"; {TRAIN_IDS_HINT}" if label_format.label_ids and looks_like_train_ids(
                np.bincount(ids.ravel(), minlength=256), label_format.table) else "")
            raise DatasetError(
                f"{label_path}: {unknown:.1%} of the pixels hold values outside "
                f"{label_format.description} (largest {int(ids.max())}); at most "
                f"{MAX_UNKNOWN_FRACTION:.0%} may, or they would all train as ignore{hint}")
        return ids, image_shape

    def describe(self, index):
        self.check_index(index)
        return os.fspath(self.image_paths[index])

    @property
    def num_resized_labels(self):
        return len(self._resized_labels)

    def _log_resized(self, label_path, label_shape, image_shape):
        with self._lock:
            if label_path in self._resized_labels:
                return
            self._resized_labels.add(label_path)
            count = len(self._resized_labels)
        logging.warning("%s: label is %dx%d but its image is %dx%d; resized it with nearest "
                        "neighbour (%d label(s) of %s/%s resized so far)", label_path,
                        *label_shape, *image_shape, count, self.name, self.split)


def _require_folder(path, layout):
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: folder not found (expected {layout})")


def _files_by_key(listing, folder, suffix, layout, recursive=False):
    """{key: path} of the files named <key><suffix> in `folder` (and its sub-folders),
    listed by `listing` (a `Listing`).

    With `recursive`, keys are "<sub-folder>/<stem>", as Cityscapes' city folders.
    """
    _require_folder(folder, layout)
    found, ignored = {}, 0
    for subfolder, name, path in listing.files(folder, recursive):
        if name.endswith(suffix):
            key = name[:-len(suffix)]
            found[key if subfolder == "." else f"{subfolder}/{key}"] = path
        else:
            ignored += 1
    if ignored:
        logging.info("%s: ignored %d file(s) not named *%s", folder, ignored, suffix)
    return found


def _unmatched_message(kind, other, paths):
    shown = ", ".join(sorted(paths)[:_UNMATCHED_SHOWN])
    more = f" and {len(paths) - _UNMATCHED_SHOWN} more" if len(paths) > _UNMATCHED_SHOWN else ""
    return f"{len(paths)} {kind} without their {other}: {shown}{more}"


def pair_files(images, labels, root):
    """Sorted keys and matching (image paths, label paths) of two {key: path} dicts.

    Raises:
      DatasetError: if a key is in one dict only, or if there are no images.
    """
    problems = []
    missing_labels = [images[key] for key in images.keys() - labels.keys()]
    missing_images = [labels[key] for key in labels.keys() - images.keys()]
    if missing_labels:
        problems.append(_unmatched_message("images", "label", missing_labels))
    if missing_images:
        problems.append(_unmatched_message("labels", "image", missing_images))
    if problems:
        raise DatasetError(f"{root}: " + "; ".join(problems))
    keys = sorted(images)
    return keys, [images[key] for key in keys], [labels[key] for key in keys]


def heldout_count(num_pairs, full_size, full_heldout):
    """How many of `num_pairs` to hold out: the paper's fraction, within [1, n - 1]."""
    return min(num_pairs - 1, max(1, round(num_pairs * full_heldout / full_size)))


def heldout_keys(keys, full_size, full_heldout):
    """The held-out subset of `keys`: those with the smallest SHA-1 digests."""
    by_digest = sorted(keys, key=lambda key: hashlib.sha1(key.encode("utf-8")).hexdigest())
    return set(by_digest[:heldout_count(len(keys), full_size, full_heldout)])


def split_heldout(name, root, split, keys, images, labels):
    """The (images, labels) of `split` ("train" or "heldout") of sorted pairs."""
    heldout = heldout_keys(keys, *HELDOUT_PROPORTION[name])
    chosen = [i for i, key in enumerate(keys) if (key in heldout) == (split == "heldout")]
    if not chosen:
        raise DatasetError(f"{root}: the {split} split of {name} is empty ({len(keys)} "
                           "pairs found; a held-out split needs at least 2)")
    return [images[i] for i in chosen], [labels[i] for i in chosen]


def no_images(folder, pattern):
    return DatasetError(f"{folder}: no images found (expected files named {pattern})")


def open_gta5(root, split):
    """GTA5 `split` ("train" or "heldout") as a FileDataset."""
    layout = f"{root}/images/NNNNN.png and {root}/labels/NNNNN.png"
    _require_folder(root, layout)
    listing = Listing()
    images = _files_by_key(listing, os.path.join(root, "images"), ".png", layout)
    if not images:
        raise no_images(os.path.join(root, "images"), "NNNNN.png")
    labels = _files_by_key(listing, os.path.join(root, "labels"), ".png", layout)
    keys, image_paths, label_paths = pair_files(images, labels, root)
    image_paths, label_paths = split_heldout("gta5", root, split, keys, image_paths, label_paths)
    return FileDataset("gta5", split, image_paths, label_paths, GTA5_LABELS, listing.skipped)


# Cityscapes label ids are 0..33 (docs/datasets.md, "Label space").
_LABEL_ID_TABLE = classes.lookup_table(classes.CITYSCAPES_LABEL_ID_TO_TRAIN_ID)
GTA5_LABELS = LabelFormat("Cityscapes label ids 0..33 (GTA5 palette indices)",
                          readers.read_palette_indices, _LABEL_ID_TABLE, 34, label_ids=True)
CITYSCAPES_LABELS = LabelFormat("Cityscapes label ids 0..33 (*_gtFine_labelIds.png)",
                                readers.read_grey_ids, _LABEL_ID_TABLE, 34, label_ids=True)


def synthia_id_table(num_classes):
    """uint8 [65536] table: SYNTHIA class id -> train id, in the 16- or 13-class protocol."""
    kept = classes.PROTOCOL_CLASSES[num_classes]
    mapping = {synthia_id: train_id for synthia_id, train_id in
               classes.SYNTHIA_ID_TO_TRAIN_ID.items() if train_id in kept}
    # 16-bit labels: the table covers every uint16 value.
    return classes.lookup_table(mapping, size=2 ** 16)


def synthia_labels(num_classes):
    """The LabelFormat of SYNTHIA's class ids 0..22, mapped in the `num_classes` protocol."""
    return LabelFormat("SYNTHIA class ids 0..22", readers.read_synthia_class_ids,
                       synthia_id_table(num_classes), 23)


def open_synthia(root, split, num_classes):
    """SYNTHIA-RAND-CITYSCAPES `split` ("train" or "heldout"), labels in the
    `num_classes` (16 or 13) protocol: classes outside it read as 255."""
    layout = f"{root}/RGB/NNNNNNN.png and {root}/GT/LABELS/NNNNNNN.png"
    _require_folder(root, layout)
    listing = Listing()
    images = _files_by_key(listing, os.path.join(root, "RGB"), ".png", layout)
    if not images:
        raise no_images(os.path.join(root, "RGB"), "NNNNNNN.png")
    labels = _files_by_key(listing, os.path.join(root, "GT", "LABELS"), ".png", layout)
    keys, image_paths, label_paths = pair_files(images, labels, root)
    image_paths, label_paths = split_heldout("synthia", root, split, keys, image_paths,
                                             label_paths)
    return FileDataset("synthia", split, image_paths, label_paths, synthia_labels(num_classes),
                       listing.skipped)


def open_cityscapes(root, split, *, name="cityscapes", label_format=CITYSCAPES_LABELS):
    """Cityscapes `split` ("train" or "val"), as dataset `name` with `label_format`
    (dataset folder reads this layout too, with its own label map if given).

    Without its `gtFine/train` folder the train split opens unlabelled (enough
    for an adaptation target); val, the test set, always needs its labels.
    """
    layout = (f"{root}/leftImg8bit/{split}/<city>/<name>_leftImg8bit.png and "
              f"{root}/gtFine/{split}/<city>/<name>_gtFine_labelIds.png")
    _require_folder(root, layout)
    listing = Listing()
    image_folder = os.path.join(root, "leftImg8bit", split)
    images = _files_by_key(listing, image_folder, "_leftImg8bit.png", layout, recursive=True)
    if not images:
        raise no_images(image_folder, "<city>/<name>_leftImg8bit.png")
    label_folder = os.path.join(root, "gtFine", split)
    if split == "train" and not os.path.isdir(label_folder):
        logging.info("%s not found: Cityscapes train opens without labels", label_folder)
        return FileDataset(name, split, [images[key] for key in sorted(images)], None,
                           label_format, listing.skipped)
    labels = _files_by_key(listing, label_folder, "_gtFine_labelIds.png", layout, recursive=True)
    _, image_paths, label_paths = pair_files(images, labels, root)
    return FileDataset(name, split, image_paths, label_paths, label_format, listing.skipped)
