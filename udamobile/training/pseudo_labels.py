"""Class-balanced pseudo-labels of the target's train images (CBST), one folder per round.

The recipe is CBST's (Zou, Yu, Kumar and Wang, "Unsupervised domain
adaptation for semantic segmentation via class-balanced self-training",
ECCV 2018; docs/self_training.md): the segmenter labels every target
train image, and per class c only the most confident pixels predicted as
c are kept, up to a fraction p of them; every other pixel is ignored
(255). A threshold per class, rather than one confidence for all, keeps
the rare classes (poles, signs, riders), whose confidences are lower, from
vanishing from the labels.

A round's labels are computed in two passes over the split, both with the
same segmenter: the first counts, per class, how many pixels reach each
confidence level, which gives the thresholds k_c; the second writes one
8-bit grey PNG of train ids per image. How a pixel gets its label from the
thresholds is `pseudo_label_assignment`:

    normalised  CBST's (`issegm/solve_ST.py`): argmax_c p_c / k_c, kept where
                that ratio is at least 1, so a pixel whose top class is common
                but whose second, rare class is confident enough for that
                class goes to the rare class
    argmax      the top class, kept where its p reaches its k (this package's
                first recipe, kept for comparison: docs/self_training.md)

The levels (`CONFIDENCE_LEVELS` of them, so the counts of a 25,000-image
split stay a few MB) are steps of the confidence's log-odds
log(p / (1 - p)), computed from the logits: a trained segmenter gives most
pixels a confidence that rounds to 1.0 in float32, where steps of the
confidence itself would tie them all, but their log-odds still differ.
The folder is written
whole or not at all (`files.atomic_output`), with `round.json`, so a
stopped run finds either a complete round or none.

Images are labelled at the scale patches are cut at (resized as the
training pipeline resizes them), and the labels are stored at the image's
own size, as a dataset's labels are.
"""
import os

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from data_pipelines import readers
from data_pipelines.bad_files import readable
from data_pipelines.base import Dataset
from data_pipelines.classes import IGNORE_LABEL
from data_pipelines.images import normalize_image
from data_pipelines.transforms import crop_fitting_size, resize_to
from udamobile import errors, files
from udamobile.progress import Progress

CONFIDENCE_LEVELS = 2 ** 16
# The log-odds the levels span: from a confidence of 1/20 (below any argmax of
# 19 classes) to 1 - 2e-35; 0.0013 log-odds per level.
LOG_ODDS_RANGE = (-3.0, 80.0)
ROUND_FILE = "round.json"
IMAGES_PER_BATCH = 8  # images of one size labelled together


def round_fraction(round_index, *, initial, step, maximum):
    """The fraction p of round `round_index` (0-based): CBST's schedule, p0 + r dp, capped."""
    return min(initial + round_index * step, maximum)


def _gaps_to_top(logits):
    """logits [..., C] -> (z - z_top [..., C], sum over the other classes of exp(z_j - z_top)
    [...]) in float64: what keeps the top class's probability exact where it rounds to 1."""
    logits = np.asarray(logits, np.float64)
    top = logits.argmax(-1)[..., None]
    gaps = logits - np.take_along_axis(logits, top, -1)
    others = np.exp(gaps)
    np.put_along_axis(others, top, 0.0, -1)  # the sum runs over the other classes
    return gaps, others.sum(-1)


def log_odds(logits):
    """logits [..., C] -> the log-odds log(p / (1 - p)) of the top softmax probability p.

    p / (1 - p) = 1 / sum_{j != top} exp(z_j - z_top): no rounding of p to 1.
    """
    _, others = _gaps_to_top(logits)
    with np.errstate(divide="ignore"):  # all others underflow: +inf, the top level
        return -np.log(others)


def log_probabilities(logits):
    """logits [..., C] -> float64 log softmax [..., C], exact for the top class:
    log p_c = (z_c - z_top) - log(1 + sum_{j != top} exp(z_j - z_top))."""
    gaps, others = _gaps_to_top(logits)
    return gaps - np.log1p(others)[..., None]


def level_of(log_odds_values):
    """int32 levels in [0, L): equal steps of the log-odds over LOG_ODDS_RANGE, clipped."""
    low, high = LOG_ODDS_RANGE
    scaled = (np.asarray(log_odds_values) - low) / (high - low) * CONFIDENCE_LEVELS
    return np.clip(scaled, 0, CONFIDENCE_LEVELS - 1).astype(np.int32)


def confidence_of_level(level):
    """The confidence at the lower edge of `level`."""
    low, high = LOG_ODDS_RANGE
    return float(1.0 / (1.0 + np.exp(-(low + level / CONFIDENCE_LEVELS * (high - low)))))


def confidence_levels(logits):
    """logits [..., C] -> (predicted class int32 [...], confidence level int32 [...])."""
    logits = np.asarray(logits)
    return logits.argmax(-1).astype(np.int32), level_of(log_odds(logits))


def level_counts(predicted, levels, num_classes):
    """int64 [C, L]: how many pixels predicted as each class have each confidence level."""
    flat = predicted.astype(np.int64).ravel() * CONFIDENCE_LEVELS + levels.ravel()
    return np.bincount(flat, minlength=num_classes * CONFIDENCE_LEVELS).reshape(
        num_classes, CONFIDENCE_LEVELS)


def class_balanced_thresholds(counts, fraction):
    """int64 [C]: per class, the lowest level that keeps at most `fraction` of its pixels.

    A pixel predicted as c is kept when its level is >= threshold[c]: the
    most confident pixels of c, as many as floor(fraction * N_c) when their
    levels differ (pixels tied at the boundary level are all dropped, so
    never more). A class with no pixel kept gets threshold L (keeps none).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"the pseudo-label fraction must be in (0, 1], got {fraction}")
    # at_least[c, q]: pixels of class c at level q or above.
    at_least = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]
    allowed = np.floor(fraction * counts.sum(axis=1)).astype(np.int64)
    fits = (at_least <= allowed[:, None]) & (at_least > 0)
    # The first level from which every level fits (at_least only falls with q).
    thresholds = np.where(fits.any(axis=1), np.argmax(fits, axis=1), CONFIDENCE_LEVELS)
    return thresholds.astype(np.int64)


def log_threshold_confidences(thresholds):
    """float64 [C]: log k_c, the log of the confidence at each class's threshold level;
    +inf for a class that keeps no pixel."""
    low, high = LOG_ODDS_RANGE
    levels = np.asarray(thresholds, np.float64)
    edge = low + levels / CONFIDENCE_LEVELS * (high - low)  # the level's lower log-odds
    return np.where(levels >= CONFIDENCE_LEVELS, np.inf, -np.log1p(np.exp(-edge)))


def argmax_label(predicted, levels, thresholds):
    """uint8 [...] train ids: the predicted class where its level reaches the class's
    threshold, IGNORE_LABEL elsewhere (`pseudo_label_assignment=argmax`)."""
    kept = levels >= thresholds[predicted]
    return np.where(kept, predicted, IGNORE_LABEL).astype(np.uint8)


def class_normalised_label(log_probs, log_thresholds):
    """uint8 [...] train ids by CBST's assignment: argmax_c p_c / k_c where that ratio
    is at least 1, IGNORE_LABEL elsewhere (`pseudo_label_assignment=normalised`).

    log_probs: [..., C] log p_c; log_thresholds: [C] log k_c (+inf: never chosen).
    """
    ratios = np.asarray(log_probs) - np.asarray(log_thresholds)  # log(p_c / k_c)
    label = ratios.argmax(-1)
    kept = np.take_along_axis(ratios, label[..., None], -1)[..., 0] >= 0
    return np.where(kept, label, IGNORE_LABEL).astype(np.uint8)


def pseudo_label(logits, thresholds, assignment):
    """uint8 [...] train ids of one image's logits [..., C] under the class thresholds
    (levels, `class_balanced_thresholds`) by `assignment` (module docstring)."""
    if assignment == "normalised":
        return class_normalised_label(log_probabilities(logits),
                                      log_threshold_confidences(thresholds))
    predicted, levels = confidence_levels(logits)
    return argmax_label(predicted, levels, thresholds)


def label_path(folder, index):
    return os.path.join(folder, f"{index:06d}.png")


class Labeller:
    """Labels images with a Keras segmenter at the training pipeline's scale."""

    def __init__(self, segmenter, *, resize_width, patch_size, whole_images):
        self.resize_width, self.patch_size, self.whole_images = (
            resize_width, patch_size, whole_images)
        self._logits = tf.function(lambda images: segmenter(images, training=False)["logits"],
                                   reduce_retracing=True)

    def _input(self, pixels):
        image = normalize_image(pixels)
        size = (self.patch_size if self.whole_images else
                crop_fitting_size(tf.shape(image)[:2], self.resize_width, self.patch_size))
        return resize_to(image, size=size)[0]

    def logits(self, images):
        """[uint8 [H, W, 3]] of one size -> float32 logits [N, h, w, C] at the scale
        patches are cut at, one forward pass for all."""
        return self._logits(tf.stack([self._input(pixels) for pixels in images])).numpy()


def _batches(dataset, bad_files):
    """Lists of (index, pixels) of consecutive readable images of one size."""
    batch = []
    for index, pixels in readable(dataset, range(len(dataset)), dataset.read_image, bad_files):
        if batch and (len(batch) == IMAGES_PER_BATCH or pixels.shape != batch[0][1].shape):
            yield batch
            batch = []
        batch.append((index, pixels))
    if batch:
        yield batch


def _logits_of_batches(labeller, dataset, bad_files, progress, check_stop):
    """Yields (index, pixels, logits) of every readable image; `check_stop()` per batch."""
    for batch in _batches(dataset, bad_files):
        check_stop()
        for (index, pixels), logits in zip(
                batch, labeller.logits([pixels for _, pixels in batch])):
            yield index, pixels, logits
        progress.update(len(batch))


def label_round(labeller, dataset, folder, *, fraction, num_classes, assignment="normalised",
                bad_files=None, about=None, check_stop=lambda: None):
    """Writes the pseudo-labels of every image of `dataset` to `folder` (see the module
    docstring); returns the round's record, also written to <folder>/round.json.

    An image that cannot be read is skipped (recorded in `bad_files`) and has
    no label file. `about`: more fields for the record (the step, the round).
    `check_stop` is called before each batch of images: what it raises (the
    trainer's stop on SIGINT/SIGTERM) ends the labelling, and no folder is left.
    """
    logging.info("Pseudo-labelling the %d images of %s/%s into %s (two passes)", len(dataset),
                 dataset.name, dataset.split, folder)
    counts = np.zeros((num_classes, CONFIDENCE_LEVELS), np.int64)
    with Progress(len(dataset), "pseudo-label thresholds", unit="img") as progress:
        for _, _, logits in _logits_of_batches(labeller, dataset, bad_files, progress,
                                               check_stop):
            counts += level_counts(*confidence_levels(logits), num_classes)
    thresholds = class_balanced_thresholds(counts, fraction)
    kept = np.zeros(num_classes, np.int64)
    labelled = []
    with files.atomic_output(folder) as staging:
        os.makedirs(staging)
        with Progress(len(dataset), "pseudo-labels", unit="img") as progress:
            for index, pixels, logits in _logits_of_batches(labeller, dataset, bad_files,
                                                            progress, check_stop):
                label = pseudo_label(logits, thresholds, assignment)
                kept += np.bincount(label[label != IGNORE_LABEL], minlength=num_classes)[
                    :num_classes]
                label = readers.fit_label_to_size(label, *pixels.shape[:2])
                Image.fromarray(label).save(label_path(staging, index))  # 8-bit grey
                labelled.append(index)
        predicted_pixels = counts.sum(axis=1)
        record = {
            **(about or {}), "fraction": fraction, "assignment": assignment,
            "images": len(labelled), "dataset": f"{dataset.name}/{dataset.split}",
            "thresholds": [None if t >= CONFIDENCE_LEVELS else confidence_of_level(t)
                           for t in thresholds.tolist()],
            "predicted_pixels": predicted_pixels.tolist(),
            # Pixels labelled c over pixels predicted as c: with the normalised
            # assignment, a rare class can keep more than the fraction p.
            "kept_fraction": [float(k / n) if n else None
                              for k, n in zip(kept.tolist(), predicted_pixels.tolist())],
            "labelled": labelled}
        files.write_json(os.path.join(staging, ROUND_FILE), record)
    return record


def damaged_round_remedy(folder):
    """What makes a damaged round folder whole again (a round is labelled at its first step)."""
    return (f"remove {folder} to label the round again if the run stopped at the round's "
            "first step; otherwise restore the folder, or remove the stage's work directory "
            "to run the stage again")


def read_round(folder):
    """The record of a complete round folder, or None when there is none."""
    path = os.path.join(folder, ROUND_FILE)
    if not os.path.isfile(path):
        return None
    return files.read_json(path, keys=("labelled",), remedy=damaged_round_remedy(folder))


def pseudo_label_problem(label, image_shape, num_classes):
    """Why uint8 `label` [h, w] cannot be the pseudo-label of an image of `image_shape`
    (H, W) with `num_classes` classes, or None: label_round writes train ids or 255
    at the image's own size."""
    if label.shape != tuple(image_shape):
        (height, width), (image_height, image_width) = label.shape, image_shape
        return (f"a pseudo-label of {width}x{height} pixels (width x height) for an image "
                f"of {image_width}x{image_height}; it must have its image's size")
    outside = (label >= num_classes) & (label != IGNORE_LABEL)
    if outside.any():
        return (f"a pseudo-label holding {int(label[outside].max())}; it must hold train ids "
                f"0..{num_classes - 1} or {IGNORE_LABEL} (ignore)")
    return None


class PseudoLabelled(Dataset):
    """`images` (a target train split) with the pseudo-labels of a round folder.

    Its images without a label (unreadable when the round was labelled) are
    left out, so the split is the labelled ones, in their order. A label that
    is not a pseudo-label of its image (`pseudo_label_problem`, or no readable
    PNG) is a DatasetError naming the file and `damaged_round_remedy`: the
    pipelines skip it as a bad file, where the loss would fail on it.
    """

    def __init__(self, images, folder, num_classes):
        record = read_round(folder)
        if record is None:
            raise errors.DatasetError(
                f"{folder}: no complete round of pseudo-labels ({ROUND_FILE} is missing)")
        indices = record["labelled"]
        if not (isinstance(indices, list) and all(
                type(i) is int and 0 <= i < len(images) for i in indices)):
            raise errors.StateFileError(
                f"{os.path.join(folder, ROUND_FILE)} is damaged: its 'labelled' is not a list "
                f"of image indices 0..{len(images) - 1}; {damaged_round_remedy(folder)}")
        super().__init__(images.name, f"{images.split} (pseudo-labelled)", has_labels=True)
        self.images, self.folder, self.num_classes = images, folder, num_classes
        self.indices = indices

    def __len__(self):
        return len(self.indices)

    def read_image(self, index):
        return self.images.read_image(self.indices[index])

    def read_pair(self, index):
        image = self.read_image(index)
        path = label_path(self.folder, self.indices[index])
        try:
            label = readers.read_grey_ids(path)
        except errors.DatasetError as error:
            raise errors.DatasetError(f"{error}; {damaged_round_remedy(self.folder)}") from None
        problem = pseudo_label_problem(label, image.shape[:2], self.num_classes)
        if problem:
            raise errors.DatasetError(f"{path}: {problem}; {damaged_round_remedy(self.folder)}")
        return image, label

    def read_label(self, index):
        return self.read_pair(index)[1]

    def describe(self, index):
        return (f"{self.images.describe(self.indices[index])} with "
                f"{label_path(self.folder, self.indices[index])}")
