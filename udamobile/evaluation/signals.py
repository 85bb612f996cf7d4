"""Signals of adaptation that need no target label, from the segmenter's own predictions.

On a sample of the target's unlabelled train images:

    mean_entropy          mean over pixels of -sum_c p_c log p_c (nats; at most
                          log C, 2.94 for 19 classes): how unsure M is
    confident_pixels      share of pixels whose top probability is >= CONFIDENCE
    confident_fraction    per predicted class, the share of its pixels that are
                          confident (classes M never predicts are left out)
    predicted_share       per class, the share of pixels predicted as it
    source_share          per class, its share of the source's labelled pixels
    distribution_distance total variation 1/2 sum_c |predicted - source|: how far
                          the predicted class mix is from the source's

They are written beside each evaluation (`eval/<name>.json`, "label_free")
and to TensorBoard (`label_free/...`). They are indications, not scores: a
segmenter can be confidently wrong, and the target's class mix need not be
the source's.
"""
import numpy as np
import tensorflow as tf

from data_pipelines.bad_files import readable
from data_pipelines.classes import CLASS_NAMES, IGNORE_LABEL
from data_pipelines.images import normalize_image
from data_pipelines.transforms import resize_to_width
from data_pipelines.validation import sample_indices
from udamobile.training import inputs

CONFIDENCE = 0.9
SOURCE_LABEL_IMAGES = 100  # source labels sampled for the source's class shares


def label_shares(dataset, count, bad_files=None):
    """float64 [C]: each class's share of the labelled pixels of `count` labels
    spread over `dataset` (ignored pixels left out)."""
    counts = np.zeros(len(CLASS_NAMES), np.int64)
    for _, label in readable(dataset, sample_indices(len(dataset), count), dataset.read_label,
                             bad_files):
        values = label[label != IGNORE_LABEL].astype(np.int64)
        counts += np.bincount(values, minlength=len(CLASS_NAMES))[:len(CLASS_NAMES)]
    return counts / max(int(counts.sum()), 1)


def prediction_sums(probabilities, confidence=CONFIDENCE):
    """Sums over the pixels of probabilities [..., C]: (entropy, pixels, predicted
    per class [C], confident per class [C]), as numpy."""
    p = tf.reshape(tf.convert_to_tensor(probabilities, tf.float32),
                   [-1, probabilities.shape[-1]])
    entropy = -tf.reduce_sum(p * tf.math.log(tf.maximum(p, 1e-12)), axis=-1)
    predicted = tf.argmax(p, axis=-1, output_type=tf.int32)
    confident = tf.reduce_max(p, axis=-1) >= confidence
    classes = int(p.shape[-1])
    per_class = tf.math.bincount(predicted, minlength=classes, maxlength=classes)
    confident_per_class = tf.math.bincount(tf.boolean_mask(predicted, confident),
                                           minlength=classes, maxlength=classes)
    return (float(tf.reduce_sum(entropy)), int(p.shape[0]), per_class.numpy(),
            confident_per_class.numpy())


def summarize(entropy, pixels, predicted, confident, source_share):
    """The signals (module docstring) of accumulated `prediction_sums`."""
    predicted_share = predicted / max(pixels, 1)
    names = CLASS_NAMES[:len(predicted)]
    return {
        "mean_entropy": entropy / max(pixels, 1),
        "confident_pixels": float(confident.sum() / max(pixels, 1)),
        "confident_fraction": {names[c]: float(confident[c] / predicted[c])
                               for c in range(len(predicted)) if predicted[c]},
        "predicted_share": {name: float(v) for name, v in zip(names, predicted_share)},
        "source_share": {name: float(v) for name, v in zip(names, source_share)},
        "distribution_distance": float(0.5 * np.abs(predicted_share - source_share).sum()),
    }


def label_free_signals(model, dataset, *, count, source_share, input_width=None,
                       bad_files=None):
    """The signals of the Keras segmenter `model` on `count` images spread over the
    unlabelled `dataset`, each downscaled to `input_width` as evaluation does;
    "images" says how many were read."""
    classes = len(source_share)
    # Arrays from the start: with every sampled image a bad file, nothing is added.
    sums = [0.0, 0, np.zeros(classes, np.int64), np.zeros(classes, np.int64)]
    images = 0
    for _, pixels in readable(dataset, sample_indices(len(dataset), count), dataset.read_image,
                              bad_files):
        image = normalize_image(pixels)
        if input_width is not None:
            image, _ = resize_to_width(image, width=input_width)
        probabilities = tf.nn.softmax(model(image[None], training=False)["logits"])
        sums = [a + b for a, b in zip(sums, prediction_sums(probabilities))]
        images += 1
    return {**summarize(*sums, np.asarray(source_share)), "images": images,
            "dataset": f"{dataset.name}/{dataset.split}"}


def scalars(signals):
    """{TensorBoard tag: value} of `signals` (None: no tags)."""
    if signals is None:
        return {}
    tags = {f"label_free/{name}": signals[name]
            for name in ("mean_entropy", "confident_pixels", "distribution_distance")}
    tags.update({f"label_free/confident_fraction/{name}": value
                 for name, value in signals["confident_fraction"].items()})
    tags.update({f"label_free/predicted_share/{name}": value
                 for name, value in signals["predicted_share"].items()})
    return tags


class LabelFree:
    """The label-free signals of a stage's evaluations, on `splits` (the target's
    train images, the source's train labels: `inputs.signal_splits`), on `count`
    target images (default --label_free_images)."""

    def __init__(self, cfg, splits, bad_files, count=None):
        self.cfg, self.bad_files = cfg, bad_files
        self.count = cfg.run.label_free_images if count is None else count
        self.target, self.source = (inputs.open_split(cfg, split) for split in splits)
        self.source_share = None  # read at the first evaluation, then kept

    def __call__(self, segmenter):
        if self.source_share is None:
            self.source_share = label_shares(self.source, SOURCE_LABEL_IMAGES, self.bad_files)
        return label_free_signals(
            segmenter, self.target, count=self.count,
            source_share=self.source_share, input_width=self.cfg.run.eval_input_width,
            bad_files=self.bad_files)
