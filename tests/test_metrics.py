"""mIoU as the field computes it: hand-made cases and an independent numpy check."""
import numpy as np
import pytest
import tensorflow as tf

from data_pipelines.classes import CLASS_NAMES, IGNORE_LABEL, PROTOCOL_CLASSES
from udamobile.evaluation import metrics


def _matrix(entries, num_classes=3):
    cm = np.zeros((num_classes, num_classes), np.int64)
    for (label, prediction), count in entries.items():
        cm[label, prediction] = count
    return cm


def test_iou_by_hand():
    # class 0: TP 6, FN 2 (as 1), FP 1 (from 1) -> 6 / 9
    # class 1: TP 3, FN 2 (as 0 and 2), FP 2 -> 3 / 7; class 2: TP 0, FP 1 -> 0
    cm = _matrix({(0, 0): 6, (0, 1): 2, (1, 1): 3, (1, 0): 1, (1, 2): 1})
    np.testing.assert_allclose(metrics.iou_per_class(cm), [6 / 9, 3 / 7, 0.0])
    assert metrics.mean_iou(cm) == pytest.approx((6 / 9 + 3 / 7 + 0.0) / 3)
    assert metrics.pixel_accuracy(cm) == pytest.approx(9 / 13)


def test_class_absent_from_labels_and_predictions_is_excluded():
    cm = _matrix({(0, 0): 4, (1, 1): 2, (1, 0): 2})
    iou = metrics.iou_per_class(cm)
    assert np.isnan(iou[2])
    assert metrics.mean_iou(cm) == pytest.approx((4 / 6 + 2 / 4) / 2)
    assert metrics.undefined_classes(cm, range(3)) == (2,)


def test_class_predicted_but_never_labelled_counts_as_zero():
    cm = _matrix({(0, 0): 4, (0, 2): 4})
    assert metrics.iou_per_class(cm)[2] == 0.0
    assert metrics.mean_iou(cm) == pytest.approx(0.5 / 2)
    assert metrics.undefined_classes(cm, range(3)) == (1,)


def test_empty_matrix_has_no_scores():
    cm = np.zeros((3, 3), np.int64)
    assert np.isnan(metrics.mean_iou(cm))
    assert np.isnan(metrics.pixel_accuracy(cm))


def test_ignore_pixels_are_not_counted():
    labels = tf.constant([[0, 1, IGNORE_LABEL], [IGNORE_LABEL, 2, 2]])
    predictions = tf.constant([[0, 2, 1], [0, 2, 1]])
    cm = metrics.confusion_counts(labels, predictions, 3).numpy()
    np.testing.assert_array_equal(cm, _matrix({(0, 0): 1, (1, 2): 1, (2, 2): 1, (2, 1): 1}))


@pytest.mark.parametrize("labels, predictions", [([0, 3], [0, 0]), ([0, 1], [0, 3]),
                                                 ([0, -1], [0, 0])])
def test_out_of_range_values_raise(labels, predictions):
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be"):
        metrics.confusion_counts(tf.constant(labels), tf.constant(predictions), 3)


def test_subset_protocols_average_only_their_classes_and_ignore_the_others_labels():
    # Perfect on every class except the three SYNTHIA lacks (terrain, truck,
    # train: all predicted road) and the three more the 13-class protocol
    # drops (wall, fence, pole: half predicted sidewalk).
    cm = np.diag(np.full(19, 10, np.int64))
    for name in ("terrain", "truck", "train"):
        c = CLASS_NAMES.index(name)
        cm[c, c], cm[c, 0] = 0, 10
    for name in ("wall", "fence", "pole"):
        c = CLASS_NAMES.index(name)
        cm[c, c], cm[c, 1] = 5, 5
    by_protocol = {p: metrics.protocol_scores(cm, p) for p in (19, 16, 13)}

    assert len(by_protocol[16]["iou"]) == 16 and "terrain" not in by_protocol[16]["iou"]
    assert len(by_protocol[13]["iou"]) == 13 and "wall" not in by_protocol[13]["iou"]
    # 19 classes: terrain/truck/train pixels predicted as road hurt road.
    assert by_protocol[19]["miou"] == pytest.approx((10 / 40 + 10 / 25 + 3 * 0.5 + 11) / 19)
    assert by_protocol[19]["pixel_accuracy"] == pytest.approx((190 - 30 - 15) / 190)
    # 16 classes: those labels are ignored, as SYNTHIA's 16-class mapping does,
    # so road is perfect; wall/fence/pole pixels predicted sidewalk still count.
    assert by_protocol[16]["iou"]["road"] == 1.0
    assert by_protocol[16]["miou"] == pytest.approx((1 + 10 / 25 + 3 * 0.5 + 11) / 16)
    assert by_protocol[16]["pixel_accuracy"] == pytest.approx(145 / 160)
    # 13 classes: wall/fence/pole labels are ignored too.
    assert by_protocol[13]["miou"] == 1.0


def test_protocol_scores_name_undefined_classes():
    cm = np.zeros((19, 19), np.int64)
    cm[0, 0] = cm[13, 13] = 7
    scores = metrics.protocol_scores(cm, 16)
    assert scores["miou"] == 1.0
    assert scores["iou"]["sidewalk"] is None
    assert scores["undefined_classes"] == [CLASS_NAMES[c] for c in PROTOCOL_CLASSES[16]
                                           if c not in (0, 13)]
    with pytest.raises(ValueError, match="protocol"):
        metrics.protocol_scores(cm, 18)


def _numpy_miou(labels, predictions, num_classes):
    """Independent reference: per-class IoU from pixel sets, nan-mean."""
    counted = labels != IGNORE_LABEL
    ious = []
    for c in range(num_classes):
        in_label = (labels == c) & counted
        in_prediction = (predictions == c) & counted
        union = np.logical_or(in_label, in_prediction).sum()
        if union:
            ious.append(np.logical_and(in_label, in_prediction).sum() / union)
    return np.mean(ious)


def test_streaming_matrix_matches_numpy_on_random_data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 19, size=(4, 33, 47))
    labels[rng.random(labels.shape) < 0.2] = IGNORE_LABEL
    labels[labels == 7] = IGNORE_LABEL  # one class absent from the labels...
    noise = rng.integers(0, 19, labels.shape)
    predictions = np.where(rng.random(labels.shape) < 0.6, labels, noise)
    predictions[predictions == IGNORE_LABEL] = 0
    predictions[predictions == 7] = 8  # ...and from the predictions

    matrix = metrics.ConfusionMatrix(19)
    update = tf.function(matrix.update)
    for batch in range(4):
        update(tf.constant(labels[batch]), tf.constant(predictions[batch]))
    cm = matrix.result().numpy()

    assert cm.sum() == np.sum(labels != IGNORE_LABEL)
    assert metrics.mean_iou(cm) == pytest.approx(_numpy_miou(labels, predictions, 19), abs=1e-12)
    assert metrics.undefined_classes(cm, range(19)) == (7,)
    matrix.reset()
    assert matrix.result().numpy().sum() == 0
