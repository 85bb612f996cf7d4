"""Colour-statistics transfer (Reinhard et al. 2001, in CIELAB): the simplest translation.

Each image's per-channel Lab mean and standard deviation are moved to given
ones, the average of the other domain's images:

    lab' = (lab - mean_image) / std_image * std_domain + mean_domain

Reinhard et al. (2001, "Color transfer between images", IEEE CG&A) match the
statistics in Ruderman's l-alpha-beta space; we use CIELAB (D65), the space
practitioners reach for (OpenCV, scikit-image) and as decorrelated for this.
The conversions are TensorFlow ops, so the transfer runs inside tf.data.
Images are float32 in [-1, 1] (`data_pipelines.images`) in and out.
"""
import numpy as np
import tensorflow as tf

from data_pipelines.bad_files import readable
from data_pipelines.images import normalize_image
from data_pipelines.validation import sample_indices

# sRGB (linear) -> XYZ under D65, and the D65 white point (IEC 61966-2-1).
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]], dtype=np.float32)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ).astype(np.float32)
_WHITE = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
_EPSILON = (6 / 29) ** 3  # where the Lab companding turns linear
_MIN_STD = 1e-3  # a flat channel (one colour) is only shifted, never scaled by 1/0


def srgb_to_lab(rgb):
    """[..., 3] sRGB in [0, 1] -> CIELAB (L in [0, 100], a and b about [-128, 128])."""
    rgb = tf.convert_to_tensor(rgb, tf.float32)
    linear = tf.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = tf.tensordot(linear, _RGB_TO_XYZ.T, 1) / _WHITE
    f = tf.where(xyz > _EPSILON, tf.math.pow(tf.maximum(xyz, _EPSILON), 1 / 3),
                 xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return tf.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_srgb(lab):
    """The inverse of `srgb_to_lab`, clipped to [0, 1] (out-of-gamut colours)."""
    lab = tf.convert_to_tensor(lab, tf.float32)
    fy = (lab[..., 0] + 16) / 116
    f = tf.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = tf.where(f > 6 / 29, f ** 3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * _WHITE
    linear = tf.clip_by_value(tf.tensordot(xyz, _XYZ_TO_RGB.T, 1), 0.0, 1.0)
    rgb = tf.where(linear <= 0.0031308, linear * 12.92,
                   1.055 * tf.math.pow(tf.maximum(linear, 0.0031308), 1 / 2.4) - 0.055)
    return tf.clip_by_value(rgb, 0.0, 1.0)


def lab_statistics(image):
    """(mean [3], std [3]) of the Lab channels of `image` [H, W, 3] in [-1, 1]."""
    lab = tf.reshape(srgb_to_lab((tf.convert_to_tensor(image, tf.float32) + 1) / 2), [-1, 3])
    mean, variance = tf.nn.moments(lab, axes=[0])
    return mean, tf.sqrt(variance)


def match_colour_statistics(image, mean, std):
    """`image` [H, W, 3] in [-1, 1] with its Lab statistics moved to (mean, std) [3]."""
    lab = srgb_to_lab((tf.convert_to_tensor(image, tf.float32) + 1) / 2)
    own_mean, own_std = lab_statistics(image)
    matched = (lab - own_mean) / tf.maximum(own_std, _MIN_STD) * std + mean
    return lab_to_srgb(matched) * 2 - 1


def average_lab_statistics(dataset, count, bad_files=None):
    """{"mean": [3], "std": [3], "images": n}: the average per-image Lab statistics of
    `count` images spread over `dataset` (all if fewer), as Python floats. A file
    that cannot be read is left out (`bad_files.readable`)."""
    means, stds = [], []
    for _, pixels in readable(dataset, sample_indices(len(dataset), count), dataset.read_image,
                              bad_files):
        mean, std = lab_statistics(normalize_image(pixels))
        means.append(mean.numpy())
        stds.append(std.numpy())
    return {"mean": np.mean(means, 0).tolist(), "std": np.mean(stds, 0).tolist(),
            "images": len(means)}
