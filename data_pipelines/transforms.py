"""The per-example ops of the training and evaluation pipelines: resize, crop, flip.

Small functions of tensors, usable eagerly and inside tf.data. A label is
resized with nearest neighbours and moves with its image; randomness is
stateless, a function of the `seed` given (`data_pipelines.pipelines`).
"""
import tensorflow as tf

from data_pipelines.classes import IGNORE_LABEL

IMAGE_PAD_VALUE = 0.0  # mid-grey in [-1, 1]


def resize_to(image, label=None, *, size):
    """Resizes image [H, W, C] (bilinear) and label [H, W] (nearest) to size
    (height, width); returns (image, label or None)."""
    image = tf.image.resize(image, size, method="bilinear")
    if label is not None:
        label = tf.image.resize(label[..., None], size, method="nearest")[..., 0]
    return image, label


def _height_at_width(image_size, width):
    """round(H * width / W) for image_size (H, W): the height keeping the aspect."""
    height, old_width = (tf.cast(image_size[i], tf.float64) for i in (0, 1))
    return tf.cast(tf.round(height * tf.cast(width, tf.float64) / old_width), tf.int32)


def resize_to_width(image, label=None, *, width):
    """Scales image [H, W, C] (bilinear) and label [H, W] (nearest) to `width`
    columns and round(H * width / W) rows; returns (image, label or None)."""
    size = tf.stack([_height_at_width(tf.shape(image)[:2], width), tf.constant(width, tf.int32)])
    return resize_to(image, label, size=size)


def crop_fitting_size(image_size, resize_width, patch_size):
    """The (height, width) int32 [2] an image of image_size (H, W) is resized to
    before a random crop of patch_size (height, width).

    The width is `resize_width` (None: W), widened to max(patch width,
    ceil(patch height * W / H)) where the patch would not fit, and the height
    keeps the aspect: the authors' reader widens its resize the same way (an
    800-pixel crop of Cityscapes at width 1536, 768 rows, takes width 1600).
    """
    height, width = (tf.cast(image_size[i], tf.float64) for i in (0, 1))
    target = width if resize_width is None else tf.constant(resize_width, tf.float64)
    fitting = tf.reduce_max([target, float(patch_size[1]),
                             tf.math.ceil(patch_size[0] * width / height)])
    fitting = tf.cast(fitting, tf.int32)
    return tf.stack([_height_at_width(image_size, fitting), fitting])


def pad_to_size(image, label=None, *, size):
    """Pads image [H, W, C] (with IMAGE_PAD_VALUE) and label [H, W] (with 255)
    at the bottom and right to at least size = (height, width)."""
    shape = tf.shape(image)
    pad_rows = tf.maximum(size[0] - shape[0], 0)
    pad_cols = tf.maximum(size[1] - shape[1], 0)
    image = tf.pad(image, [[0, pad_rows], [0, pad_cols], [0, 0]],
                   constant_values=IMAGE_PAD_VALUE)
    if label is not None:
        label = tf.pad(label, [[0, pad_rows], [0, pad_cols]],
                       constant_values=tf.cast(IGNORE_LABEL, label.dtype))
    return image, label


def random_crop(image, label=None, *, size, seed):
    """The same random size = (height, width) window of image [H, W, C] and
    label [H, W], padded first where smaller; `seed` is a stateless seed [2]."""
    image, label = pad_to_size(image, label, size=size)
    shape = tf.shape(image)
    room = tf.stack([shape[0] - size[0] + 1, shape[1] - size[1] + 1])
    uniform = tf.random.stateless_uniform([2], seed=seed)
    # min() guards against float rounding up to `room` itself.
    offset = tf.minimum(tf.cast(uniform * tf.cast(room, tf.float32), tf.int32), room - 1)
    image = tf.slice(image, [offset[0], offset[1], 0], [size[0], size[1], -1])
    if label is not None:
        label = tf.slice(label, offset, size)
    return image, label


def random_flip(image, label=None, *, seed):
    """Mirrors image [H, W, C] and label [H, W] left-right together, with
    probability 1/2; `seed` is a stateless seed [2]."""
    flip = tf.random.stateless_uniform([], seed=seed) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    if label is not None:
        label = tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label)
    return image, label
