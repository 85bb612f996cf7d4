"""`check_dataset`: does a dataset folder hold what the pipelines expect?

It opens the split (layout, pairing), decodes a sample of images and labels
(or all of them) in the expected formats, and reports counts, sizes, the
classes seen, notes (e.g. a subset of the dataset, resized labels, what
listing its folders skipped) and problems. The training CLI runs it at
start-up; `python -m data_pipelines.check` prints it.

Each label is checked against its format (`file_datasets.LabelFormat`):
its size against its image's, the fraction of pixels outside the format's
ids, and, over all the files checked, the histogram of the stored ids:
train ids saved where Cityscapes label ids are expected put every pixel on
ids 0-18, most of them ids that map to ignore.

Files are decoded on a pool of threads, one per core: OpenCV and PIL
release the interpreter lock while they decode, and threads share the
opened dataset (processes would have to pickle it and return the arrays).
"""
import collections
import concurrent.futures
import dataclasses
import os
import shlex
import time

import numpy as np
from absl import logging

from data_pipelines import classes
from data_pipelines.datasets import open_dataset
from data_pipelines.file_datasets import TRAIN_IDS_HINT, looks_like_train_ids
from udamobile.errors import DatasetError

# Image counts of the complete datasets (the paper's splits for GTA5 / SYNTHIA).
FULL_SIZES = {
    ("gta5", "train"): 23966, ("gta5", "heldout"): 1000,
    ("synthia", "train"): 9300, ("synthia", "heldout"): 100,
    ("cityscapes", "train"): 2975, ("cityscapes", "val"): 500,
}
_PROBLEMS_SHOWN = 20


@dataclasses.dataclass
class DatasetReport:
    """What `check_dataset` found. `ok` is True when there are no problems."""
    name: str
    root: object
    split: str
    opened: bool = False
    num_images: int = 0
    has_labels: bool = False
    num_checked: int = 0
    image_sizes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    train_ids_seen: set = dataclasses.field(default_factory=set)
    notes: list = dataclasses.field(default_factory=list)
    problems: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    resized_labels: int = 0

    @property
    def ok(self):
        return not self.problems

    @property
    def files_checked(self):
        return self.num_checked * (2 if self.has_labels else 1)

    @property
    def files_per_second(self):
        return self.files_checked / max(self.seconds, 1e-9)

    def summary(self):
        """One line: the dataset, how many problems, and the first of them."""
        where = f" at {self.root}" if self.root else ""
        if self.ok:
            return f"{self.name}/{self.split}{where}: OK"
        return (f"{self.name}/{self.split}{where}: {len(self.problems)} problem(s), the first: "
                f"{self.problems[0]}")

    def __str__(self):
        where = f" at {self.root}" if self.root else ""
        labelled = "with labels" if self.has_labels else "WITHOUT labels"
        lines = [f"{self.name}/{self.split}{where}: " + (
            f"{self.num_images} images {labelled}; checked {self.num_checked}" if self.opened
            else "cannot be opened")]
        if self.num_checked:
            lines.append(f"  decoded {self.files_checked} files in {self.seconds:.1f} s "
                         f"({self.files_per_second:.0f} files/s)")
        if self.image_sizes:
            sizes = ", ".join(f"{w}x{h} ({n})" for (h, w), n in self.image_sizes.most_common())
            lines.append(f"  image sizes (width x height): {sizes}")
        if self.train_ids_seen:
            names = ", ".join(classes.CLASS_NAMES[i] for i in sorted(self.train_ids_seen))
            lines.append(f"  classes seen: {names}")
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  PROBLEM: {problem}" for problem in self.problems[:_PROBLEMS_SHOWN]]
        if len(self.problems) > _PROBLEMS_SHOWN:
            lines.append(f"  ... and {len(self.problems) - _PROBLEMS_SHOWN} more problems")
        lines.append("OK" if self.ok else f"{len(self.problems)} problem(s)")
        return "\n".join(lines)


def full_check_command(name, root=None, split="train", *, synthia_classes=16, label_map=None):
    """The command that decodes every file of `name`/`split` at `root`."""
    words = ["python -m data_pipelines.check", f"--dataset={name}"]
    words += [shlex.quote(f"--root={root}")] if root else []
    words += [f"--split={split}"]
    words += [f"--synthia_classes={synthia_classes}"] if name == "synthia" else []
    words += [shlex.quote(f"--label_map={label_map}")] if label_map else []
    return " ".join(words + ["--all"])


def sample_indices(length, count):
    """`count` indices spread evenly over range(length), first and last included."""
    return sorted(set(np.linspace(0, length - 1, num=min(count, length)).round().astype(int)))


@dataclasses.dataclass
class _Example:
    """What decoding one example found."""
    image_size: tuple = None
    id_counts: np.ndarray = None  # pixels per stored label id
    label_size: tuple = None
    problem: str = None


def _check_example(dataset, index):
    example = _Example()
    try:
        example.image_size = dataset.read_image(index).shape[:2]
        if dataset.has_labels:
            ids = dataset.read_label_ids(index)
            example.id_counts = np.bincount(ids.ravel(), minlength=256)
            example.label_size = ids.shape
    except DatasetError as error:
        example.problem = str(error)
    return example


def _train_ids(counts, label_format):
    """The train ids (ignore included) of the stored ids with a non-zero count."""
    present = np.flatnonzero(counts)
    return set((present if label_format is None else label_format.table[present]).tolist())


def _add_example(report, dataset, index, example):
    if example.problem:
        report.problems.append(example.problem)
        return
    report.image_sizes[example.image_size] += 1
    if example.id_counts is None:
        return
    report.resized_labels += example.label_size != example.image_size
    present = _train_ids(example.id_counts, dataset.label_format)
    if present == {classes.IGNORE_LABEL}:
        report.problems.append(
            f"{dataset.describe(index)}: every label pixel reads as 255 (ignore); "
            "are the labels in the expected encoding?")
    report.train_ids_seen |= present - {classes.IGNORE_LABEL}


def _check_histogram(report, dataset, id_counts):
    """Flags train ids saved as label ids, from the stored ids of every file checked."""
    label_format = dataset.label_format
    if label_format is None or not label_format.label_ids or id_counts is None:
        return
    if looks_like_train_ids(id_counts, label_format.table):
        report.problems.append(
            f"{dataset.name}/{dataset.split}: every label pixel of the {report.num_checked} files "
            f"checked holds an id in 0-18, most of them ids that map to ignore; this "
            f"{TRAIN_IDS_HINT} (expected {label_format.description})")


def _decoded(dataset, indices):
    """_check_example of each index, in order, decoded on one thread per core."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        yield from pool.map(lambda index: _check_example(dataset, index), indices)


def check_dataset(name, root=None, split="train", *, check_all=False, sample_size=8,
                  synthia_classes=16, label_map=None):
    """Opens `name`/`split` at `root` and decodes a sample (or all) of its files.

    Args:
      name, root, split, synthia_classes, label_map: as in `open_dataset`.
      check_all: decode every image and label instead of a sample.
      sample_size: how many evenly spread examples to decode otherwise.

    Returns:
      A DatasetReport; its `problems` list what would break training.
    """
    report = DatasetReport(name=name, root=root, split=split)
    try:
        dataset = open_dataset(name, root, split, synthia_classes=synthia_classes,
                               label_map=label_map)
    except DatasetError as error:
        report.problems.append(str(error))
        return report
    report.opened, report.num_images, report.has_labels = True, len(dataset), dataset.has_labels
    full_size = FULL_SIZES.get((name, split))
    if full_size is not None and full_size != len(dataset):
        report.notes.append(f"{len(dataset)} images where the full dataset has {full_size} "
                            "(a subset, or a different release)")
    if not dataset.has_labels:
        report.notes.append("no labels: usable as an unlabelled adaptation target only")
    report.notes += dataset.skipped
    indices = range(len(dataset)) if check_all else sample_indices(len(dataset), sample_size)
    started = time.perf_counter()
    id_counts = None
    for count, (index, example) in enumerate(zip(indices, _decoded(dataset, indices)), start=1):
        _add_example(report, dataset, index, example)
        if example.id_counts is not None:
            id_counts = example.id_counts if id_counts is None else id_counts + example.id_counts
        if count % 1000 == 0:
            logging.info("checked %d of %d", count, len(indices))
    report.num_checked = len(indices)
    report.seconds = time.perf_counter() - started
    _check_histogram(report, dataset, id_counts)
    if report.resized_labels:
        report.notes.append(f"{report.resized_labels} label(s) differ in size from their "
                            "image; they are resized with nearest neighbour when read")
    return report
