"""The one image convention of the package: uint8 RGB pixels <-> float32 in [-1, 1].

Every network takes and gives images as float32 in [-1, 1] (x / 127.5 - 1,
as TF-DeepLab's MobileNetV2 and CycleGAN's tanh output). The data pipelines,
the exported graphs, evaluation, figures and summaries all convert here.
"""
import numpy as np

PIXEL_SCALE = 127.5


def normalize_image(pixels):
    """[..., 3] RGB pixel values in [0, 255] (any dtype or tensor) -> float32 in [-1, 1].

    Written with Keras ops, so it works on tf tensors (tf.data, tf.function)
    and on the symbolic tensors of a Keras functional model (the TFLite graph).
    """
    import keras  # imported here: the numpy half of this module needs no TF

    return keras.ops.cast(pixels, "float32") / PIXEL_SCALE - 1.0


def to_unit_range(image):
    """[..., 3] uint8 pixels or float in [-1, 1] -> float32 tensor in [-1, 1]."""
    import tensorflow as tf

    image = tf.convert_to_tensor(image)
    if image.dtype == tf.uint8:
        return normalize_image(image)
    return tf.cast(image, tf.float32)


def to_pixels(image):
    """[..., 3] float in [-1, 1] or uint8 -> uint8 pixels (numpy), rounded and clipped."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.clip(np.round((image.astype(np.float32) + 1.0) * PIXEL_SCALE), 0, 255).astype(np.uint8)
