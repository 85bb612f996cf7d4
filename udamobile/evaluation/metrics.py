"""Semantic-segmentation scores: a streaming confusion matrix and IoU from it.

The protocol of the field (docs/evaluation.md, "One confusion matrix per split" and
"Per-class IoU and mIoU"): ONE confusion matrix is
accumulated over the whole split (not a mean of per-image scores), pixels
labelled 255 are ignored, and the mIoU averages the per-class IoU over the
19, 16 or 13 classes of `data_pipelines.classes.PROTOCOL_CLASSES`.

Confusion matrices are `[C, C]` integer arrays, rows = label (ground truth),
columns = prediction: `cm[i, j]` counts pixels of class i predicted as j.

A class absent from both the labels and the predictions has no IoU (0 / 0):
`iou_per_class` returns NaN for it and `mean_iou` leaves it out of the mean,
as cityscapesScripts does; `undefined_classes` lists such classes so reports
can say which ones were excluded. A class predicted but absent from the labels
has IoU 0 and counts.
"""
import numpy as np
import tensorflow as tf

from data_pipelines.classes import CLASS_NAMES, IGNORE_LABEL, PROTOCOL_CLASSES


def confusion_counts(labels, predictions, num_classes, ignore_label=IGNORE_LABEL):
    """Confusion matrix of one batch; works eagerly and inside `tf.function`.

    Args:
      labels: integer tensor [...] of train ids in [0, num_classes) or
        `ignore_label`.
      predictions: integer tensor of the same shape, values in [0, num_classes).
      num_classes: C.
      ignore_label: label value whose pixels are not counted.

    Returns:
      int64 tensor [C, C], rows = label, columns = prediction.

    Raises:
      tf.errors.InvalidArgumentError: a label (other than `ignore_label`) or a
        prediction outside [0, C); counting it would silently corrupt another
        cell of the flattened matrix.
    """
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
    predictions = tf.cast(tf.reshape(predictions, [-1]), tf.int64)
    counted = tf.not_equal(labels, ignore_label)
    labels = tf.boolean_mask(labels, counted)
    predictions = tf.boolean_mask(predictions, counted)
    checks = [
        tf.debugging.assert_non_negative(labels, message="labels must be >= 0"),
        tf.debugging.assert_less(
            labels, tf.cast(num_classes, tf.int64),
            message=f"labels must be < {num_classes} or equal {ignore_label} (ignore)"),
        tf.debugging.assert_non_negative(predictions, message="predictions must be >= 0"),
        tf.debugging.assert_less(
            predictions, tf.cast(num_classes, tf.int64),
            message=f"predictions must be < {num_classes}"),
    ]
    with tf.control_dependencies(checks):
        cells = labels * num_classes + predictions
    counts = tf.math.bincount(cells, minlength=num_classes * num_classes,
                              maxlength=num_classes * num_classes, dtype=tf.int64)
    return tf.reshape(counts, [num_classes, num_classes])


class ConfusionMatrix(tf.Module):
    """A confusion matrix held in a variable, updated batch by batch.

    `update` may be called inside a `tf.function` (the trainer's evaluation
    loop); `result` returns the accumulated int64 [C, C] matrix.
    """

    def __init__(self, num_classes, *, ignore_label=IGNORE_LABEL, name="confusion_matrix"):
        super().__init__(name=name)
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.matrix = tf.Variable(tf.zeros([num_classes, num_classes], tf.int64),
                                  trainable=False, name="matrix")

    def update(self, labels, predictions):
        """Adds the pixels of `labels`/`predictions` (same shape, integer)."""
        self.matrix.assign_add(confusion_counts(
            labels, predictions, self.num_classes, self.ignore_label))

    def result(self):
        """The accumulated int64 tensor [C, C] (rows = label)."""
        return tf.identity(self.matrix)

    def reset(self):
        self.matrix.assign(tf.zeros_like(self.matrix))


def iou_per_class(cm):
    """Intersection over union of each class: float64 [C], NaN where undefined.

    IoU_c = TP / (TP + FP + FN) = cm[c, c] / (row_c + column_c - cm[c, c]);
    NaN for a class absent from both labels and predictions (0 / 0).
    """
    cm = np.asarray(cm, dtype=np.float64)
    intersection = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


def undefined_classes(cm, classes):
    """The ids in `classes` absent from both labels and predictions, sorted."""
    iou = iou_per_class(cm)
    return tuple(c for c in sorted(classes) if np.isnan(iou[c]))


def mean_iou(cm, classes=None):
    """Mean of the defined per-class IoUs over `classes` (all C if None).

    Returns NaN when no class of `classes` is defined (an empty matrix).
    """
    iou = iou_per_class(cm)
    selected = iou if classes is None else iou[list(classes)]
    defined = selected[~np.isnan(selected)]
    return float(defined.mean()) if defined.size else float("nan")


def pixel_accuracy(cm):
    """Fraction of counted (non-ignored) pixels predicted right; NaN if none."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def protocol_matrix(cm, protocol):
    """`cm` with the label rows of classes outside the protocol set to zero.

    The 16- and 13-class SYNTHIA protocols map the other classes' labels to
    ignore (255): a Cityscapes terrain pixel predicted as vegetation must not
    count against vegetation. Predictions are left as they are.
    """
    cm = np.array(cm, dtype=np.int64)
    excluded = [c for c in range(cm.shape[0]) if c not in PROTOCOL_CLASSES[protocol]]
    cm[excluded, :] = 0
    return cm


def protocol_scores(cm, protocol):
    """The scores a report shows, for one evaluation protocol (19, 16 or 13).

    Args:
      cm: confusion matrix [C, C] over the 19 train ids; label pixels of
        classes outside the protocol are ignored (`protocol_matrix`).
      protocol: a key of `PROTOCOL_CLASSES`.

    Returns:
      dict with "protocol", "miou", "pixel_accuracy" (over every counted
      pixel), "iou" {class name: IoU or None if undefined} for the protocol's
      classes, "undefined_classes" (names excluded from the mean) and
      "num_pixels" (counted pixels). Fractions are in [0, 1].
    """
    if protocol not in PROTOCOL_CLASSES:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOL_CLASSES)}, got {protocol!r}")
    classes = PROTOCOL_CLASSES[protocol]
    cm = protocol_matrix(cm, protocol)
    iou = iou_per_class(cm)
    return {
        "protocol": protocol,
        "miou": mean_iou(cm, classes),
        "pixel_accuracy": pixel_accuracy(cm),
        "iou": {CLASS_NAMES[c]: None if np.isnan(iou[c]) else float(iou[c]) for c in classes},
        "undefined_classes": [CLASS_NAMES[c] for c in undefined_classes(cm, classes)],
        "num_pixels": int(np.asarray(cm).sum()),
    }
