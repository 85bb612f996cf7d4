"""Decoders of the image and label files of GTA5, SYNTHIA and Cityscapes, and of the
photos udamobile-predict segments (`read_photo`).

Each returns the ids stored in the file (not yet train ids) and raises
DatasetError naming the file and the format it expected, so a converted or
mis-downloaded label fails loudly instead of training on garbage. Two traps
these readers avoid:
- GTA5 labels are palette PNGs: `tf.io.decode_png` and OpenCV expand them to
  colours; PIL in mode "P" returns the palette indices, which are the ids.
- SYNTHIA labels are 16-bit RGB PNGs: PIL (and `tf.io.decode_png` by default)
  silently reduce them to 8 bits; OpenCV's IMREAD_UNCHANGED keeps 16 bits.

Every file's size is read from its header first (`image_size`), before
anything is decoded: a side under MIN_SIDE or more than MAX_PIXELS pixels
is a DatasetError, so a placeholder never trains and a decompression bomb is
never decoded. Any exception a decoder raises on a file is a DatasetError
naming it too: the pipelines skip such a file as a bad one (`bad_files`),
where another exception would end the program.
"""
import contextlib
import os
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps

from udamobile.errors import DatasetError

# The segmenter's output stride is 16 by default: a side under 32 pixels gives it
# fewer than two predictions across. The datasets' images are 760 pixels high or more.
MIN_SIDE = 32
# GTA5's and Cityscapes' images are about 2 Mpx, SYNTHIA's 1 Mpx: a header
# claiming 30 times that is a corrupt file or a decompression bomb, whose
# decoding would exhaust the memory.
MAX_PIXELS = 64_000_000
# Above its own limit (89 Mpx) PIL warns when it opens a file; MAX_PIXELS is
# lower, so such a file is refused here anyway, in one line naming it.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _describe_array(array):
    channels = 1 if array.ndim == 2 else array.shape[2]
    return (f"{array.dtype.itemsize * 8}-bit, {channels} channel(s), largest value "
            f"{int(array.max()) if array.size else 0}")


def _too_many_pixels(path, size):
    return DatasetError(
        f"{path}: the header gives {size}, more than the {MAX_PIXELS / 1e6:.0f} Mpx an image "
        "may have (readers.MAX_PIXELS; the datasets' have about 2 Mpx): a corrupt header or "
        "a decompression bomb, not decoded")


def _undecodable(path, expected):
    return DatasetError(f"{path}: cannot decode the file (expected {expected}; is it "
                        "truncated or corrupt?)")


def image_size(path, *, expected="a readable PNG"):
    """(height, width) of an image file, from its header only; raises DatasetError for a
    missing file, an unreadable header (not `expected`) or a size outside MIN_SIDE and
    MAX_PIXELS."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file not found")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # PIL's refusal, at twice its limit, gives no size
        raise _too_many_pixels(path, f"over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} Mpx") from None
    except Exception as error:
        if isinstance(error, OSError) and error.errno is not None:  # permissions, I/O
            raise DatasetError(f"{path}: cannot read the file ({error.strerror})") from error
        raise _undecodable(path, expected) from None  # PIL's words would only repeat the path
    if height * width > MAX_PIXELS:
        raise _too_many_pixels(path, f"{width}x{height} ({height * width / 1e6:.0f} Mpx)")
    if min(height, width) < MIN_SIDE:
        raise DatasetError(f"{path}: {width}x{height} pixels (width x height) is under the "
                           f"{MIN_SIDE} pixels a side must have (readers.MIN_SIDE): a "
                           "placeholder or thumbnail, not a dataset's image")
    return height, width


@contextlib.contextmanager
def _decoding(path, expected):
    """Checks the size in the header of `path`, then turns any exception of the decoder
    run inside into a DatasetError naming the file and `expected`: broken files
    break decoders in more ways than a list of exception types foresees."""
    image_size(path, expected=expected)
    try:
        yield
    except DatasetError:
        raise
    except Exception as error:
        raise DatasetError(f"{path}: cannot decode the file (expected {expected}; "
                           f"{type(error).__name__}: {error})") from error


def _decode_with_opencv(path, flags):
    with _decoding(path, "a readable PNG or JPEG"):
        array = cv2.imread(os.fspath(path), flags)
    if array is None:
        raise _undecodable(path, "a readable PNG or JPEG")
    return array


def read_rgb_image(path):
    """A colour image file -> uint8 [H, W, 3] RGB.

    A 16-bit file is reduced to its high bytes, unless every value fits 8 bits:
    that file holds 8-bit values saved 16-bit, which would read as black.
    """
    bgr = _decode_with_opencv(path, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if bgr.dtype == np.uint16 and bgr.max() >= 256:
        bgr = (bgr >> 8).astype(np.uint8)
    if bgr.dtype != np.uint8:
        raise DatasetError(f"{path}: expected an 8-bit colour PNG (or a 16-bit one using its "
                           f"range), got {_describe_array(bgr)}: 8-bit values saved in a "
                           "16-bit file would read as black; save it as 8-bit")
    return np.ascontiguousarray(bgr[..., ::-1])


def read_photo(path):
    """A JPEG or PNG photo -> uint8 [H, W, 3] RGB, upright as viewers show it.

    A JPEG is decoded by PIL, which refuses a truncated file: OpenCV decodes
    its missing rows as grey and only warns on stderr, a silent wrong
    picture. Its EXIF orientation is applied, as OpenCV does for a PNG.
    """
    if os.path.splitext(path)[1].lower() not in (".jpg", ".jpeg"):
        return read_rgb_image(path)
    with _decoding(path, "a readable JPEG"), Image.open(path) as image:
        image.load()
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def read_palette_indices(path):
    """A GTA5 label: 8-bit palette PNG -> uint8 [H, W] palette indices (= label ids).

    A colour (RGB) or grey PNG is refused: its values are not the palette
    indices, and a grey one may already hold train ids.
    """
    with _decoding(path, "a readable palette PNG"), Image.open(path) as image:
        image.load()
        if image.mode != "P":
            raise DatasetError(
                f"{path}: expected an 8-bit palette PNG whose palette indices are "
                f"Cityscapes label ids (GTA5 labels/), got mode {image.mode!r}"
                + (" (a colour label)" if image.mode.startswith("RGB") else ""))
        return np.asarray(image, dtype=np.uint8)


def read_grey_ids(path, holding="Cityscapes label ids (*_gtFine_labelIds.png)"):
    """An 8-bit grey label PNG (Cityscapes' `*_gtFine_labelIds.png` by default) -> uint8
    [H, W] ids; `holding` says which ids the file should hold, for the error."""
    ids = _decode_with_opencv(path, cv2.IMREAD_UNCHANGED)
    if ids.ndim != 2 or ids.dtype != np.uint8:
        raise DatasetError(f"{path}: expected an 8-bit single-channel PNG of {holding}, "
                           f"got {_describe_array(ids)}")
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
