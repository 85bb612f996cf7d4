"""Decoders of the image and label files of GTA5, SYNTHIA and Cityscapes.

Each returns the ids stored in the file (not yet train ids) and raises
DatasetError naming the file and the format it expected, so a converted or
mis-downloaded label fails loudly instead of training on garbage. Two traps
these readers avoid:
- GTA5 labels are palette PNGs: `tf.io.decode_png` and OpenCV expand them to
  colours; PIL in mode "P" returns the palette indices, which are the ids.
- SYNTHIA labels are 16-bit RGB PNGs: PIL (and `tf.io.decode_png` by default)
  silently reduce them to 8 bits; OpenCV's IMREAD_UNCHANGED keeps 16 bits.
"""
import os

import cv2
import numpy as np
from PIL import Image

from data_pipelines.base import DatasetError


def _describe_array(array):
    channels = 1 if array.ndim == 2 else array.shape[2]
    return f"{array.dtype.itemsize * 8}-bit, {channels} channel(s)"


def _decode_with_opencv(path, flags):
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file not found")
    array = cv2.imread(os.fspath(path), flags)
    if array is None:
        raise DatasetError(f"{path}: cannot decode the file (expected a readable PNG; "
                           "is it truncated or corrupt?)")
    return array


def read_rgb_image(path):
    """An 8-bit colour image file -> uint8 [H, W, 3] RGB."""
    bgr = _decode_with_opencv(path, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[..., ::-1])


def read_palette_indices(path):
    """A GTA5 label: 8-bit palette PNG -> uint8 [H, W] palette indices (= label ids).

    A colour (RGB) or grey PNG is refused: its values are not the palette
    indices, and a grey one may already hold train ids.
    """
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file not found")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode != "P":
                raise DatasetError(
                    f"{path}: expected an 8-bit palette PNG whose palette indices are "
                    f"Cityscapes label ids (GTA5 labels/), got mode {image.mode!r}"
                    + (" (a colour label)" if image.mode.startswith("RGB") else ""))
            return np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError) as error:  # PIL reports some broken chunks as SyntaxError.
        raise DatasetError(f"{path}: cannot decode the file (expected a readable palette PNG; "
                           f"{error})") from error


def read_grey_ids(path):
    """A Cityscapes `*_gtFine_labelIds.png`: 8-bit grey -> uint8 [H, W] label ids."""
    ids = _decode_with_opencv(path, cv2.IMREAD_UNCHANGED)
    if ids.ndim != 2 or ids.dtype != np.uint8:
        raise DatasetError(f"{path}: expected an 8-bit single-channel PNG of Cityscapes label "
                           f"ids (*_gtFine_labelIds.png), got {_describe_array(ids)}")
    return ids


def read_synthia_class_ids(path):
    """A SYNTHIA `GT/LABELS` PNG: 16-bit, class id in R -> uint16 [H, W] class ids."""
    array = _decode_with_opencv(path, cv2.IMREAD_UNCHANGED)
    if array.dtype != np.uint16 or array.ndim != 3 or array.shape[2] < 3:
        raise DatasetError(
            f"{path}: expected a 16-bit multi-channel PNG with the SYNTHIA class id in the "
            f"R channel (GT/LABELS), got {_describe_array(array)}; an 8-bit file was "
            "converted or read as 8-bit and lost its ids")
    return array[..., 2]  # OpenCV orders channels B, G, R.


def fit_label_to_size(label, height, width):
    """Nearest-neighbour resize of uint8 [h, w] `label` to [height, width]."""
    return cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


def image_size(path):
    """(height, width) of an image file, from its header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the image header ({error})") from error
    return height, width
