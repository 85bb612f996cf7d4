"""Tiny datasets in the exact file formats of GTA5, SYNTHIA, Cityscapes and dataset folder.

For the tests and the benchmarks (not part of the library): each writer takes label
arrays in the dataset's own ids and writes image and label files under
`root` in the dataset's layout. By default each image is grey with value =
the label id of its pixel, so a test can check that a pipeline keeps images
and labels aligned.
"""
import os
import struct
import zlib

import cv2
import numpy as np
from PIL import Image

# Official colours of the Cityscapes label ids 0..33 (cityscapesScripts):
# the palette of GTA5's label PNGs.
CITYSCAPES_ID_COLOURS = np.array([
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (111, 74, 0), (81, 0, 81),
    (128, 64, 128), (244, 35, 232), (250, 170, 160), (230, 150, 140), (70, 70, 70),
    (102, 102, 156), (190, 153, 153), (180, 165, 180), (150, 100, 100), (150, 120, 90),
    (153, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35),
    (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100), (0, 0, 230), (119, 11, 32),
], dtype=np.uint8)


def _parent(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def grey_image_of(ids):
    """uint8 [H, W, 3] image whose three channels equal `ids` [H, W]."""
    return np.repeat(np.asarray(ids, dtype=np.uint8)[..., None], 3, axis=2)


def write_rgb_png(path, image):
    """uint8 [H, W, 3] RGB -> 8-bit colour PNG."""
    cv2.imwrite(_parent(os.fspath(path)), np.ascontiguousarray(np.asarray(image)[..., ::-1]))


def write_palette_png(path, ids):
    """uint8 [H, W] Cityscapes label ids -> 8-bit palette PNG with the official colours."""
    image = Image.fromarray(np.asarray(ids, dtype=np.uint8))  # mode "L"; "P" once it has a palette
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:len(CITYSCAPES_ID_COLOURS)] = CITYSCAPES_ID_COLOURS
    image.putpalette(palette.ravel().tolist())
    image.save(_parent(os.fspath(path)))


def write_grey_png(path, ids):
    """uint8 [H, W] -> 8-bit single-channel PNG."""
    cv2.imwrite(_parent(os.fspath(path)), np.asarray(ids, dtype=np.uint8))


def write_synthia_label_png(path, class_ids, instance_ids=None):
    """SYNTHIA GT/LABELS: 16-bit 3-channel PNG, R = class id, G = instance id, B = 0."""
    class_ids = np.asarray(class_ids, dtype=np.uint16)
    instance_ids = np.zeros_like(class_ids) if instance_ids is None else instance_ids
    rgb = np.stack([class_ids, np.asarray(instance_ids, dtype=np.uint16),
                    np.zeros_like(class_ids)], axis=-1)
    cv2.imwrite(_parent(os.fspath(path)), np.ascontiguousarray(rgb[..., ::-1]))


def _images_for(labels, images):
    return [grey_image_of(ids) for ids in labels] if images is None else images


def write_gta5(root, labels, images=None):
    """GTA5 layout: images/NNNNN.png and palette labels/NNNNN.png (from 00001).

    Args:
      labels: sequence of uint8 [H, W] Cityscapes label ids.
      images: sequence of uint8 [H, W, 3], default `grey_image_of(labels[i])`.
    Returns: the list of (image path, label path).
    """
    pairs = []
    for number, (ids, image) in enumerate(zip(labels, _images_for(labels, images)), start=1):
        pair = (os.path.join(root, "images", f"{number:05d}.png"),
                os.path.join(root, "labels", f"{number:05d}.png"))
        write_rgb_png(pair[0], image)
        write_palette_png(pair[1], ids)
        pairs.append(pair)
    return pairs


def write_synthia(root, labels, images=None, instances=None):
    """SYNTHIA-RAND-CITYSCAPES layout: RGB/NNNNNNN.png and GT/LABELS/NNNNNNN.png.

    Args:
      labels: sequence of [H, W] SYNTHIA class ids (0..22).
      images: as in `write_gta5`.
      instances: sequence of [H, W] instance ids for the G channel, default 0.
    Returns: the list of (image path, label path).
    """
    instances = [None] * len(labels) if instances is None else instances
    pairs = []
    for number, (ids, image, instance) in enumerate(
            zip(labels, _images_for(labels, images), instances)):
        pair = (os.path.join(root, "RGB", f"{number:07d}.png"),
                os.path.join(root, "GT", "LABELS", f"{number:07d}.png"))
        write_rgb_png(pair[0], image)
        write_synthia_label_png(pair[1], ids, instance)
        pairs.append(pair)
    return pairs


def write_cityscapes(root, split, labels, images=None, city="aachen"):
    """Cityscapes layout for one city of `split`:
    leftImg8bit/<split>/<city>/<city>_NNNNNN_000019_leftImg8bit.png and
    gtFine/<split>/<city>/<city>_NNNNNN_000019_gtFine_labelIds.png.

    Args:
      labels: sequence of uint8 [H, W] Cityscapes label ids.
      images: as in `write_gta5`.
    Returns: the list of (image path, label path).
    """
    pairs = []
    for number, (ids, image) in enumerate(zip(labels, _images_for(labels, images))):
        name = f"{city}_{number:06d}_000019"
        pair = (os.path.join(root, "leftImg8bit", split, city, f"{name}_leftImg8bit.png"),
                os.path.join(root, "gtFine", split, city, f"{name}_gtFine_labelIds.png"))
        write_rgb_png(pair[0], image)
        write_grey_png(pair[1], ids)
        pairs.append(pair)
    return pairs


def write_folder(root, names, images, labels=None):
    """Dataset folder (data_pipelines/folder_dataset.py): with `labels`, the labelled
    layout, root/images/<name> and root/labels/<name less extension>.png; without,
    each image at root/<name>.

    Args:
      names: relative paths with an extension (.png, .jpg, .JPG, ...), which picks the
        format (JPEG changes the pixels a little).
      images: sequence of uint8 [H, W, 3] RGB.
      labels: sequence of uint8 [H, W] ids, or None.
    Returns: the list of image paths, or of (image path, label path).
    """
    written = []
    for index, (name, image) in enumerate(zip(names, images)):
        if labels is None:
            written.append(os.path.join(root, name))
            write_rgb_png(written[-1], image)  # cv2 encodes by the extension
            continue
        pair = (os.path.join(root, "images", name),
                os.path.join(root, "labels", os.path.splitext(name)[0] + ".png"))
        write_rgb_png(pair[0], image)
        write_grey_png(pair[1], labels[index])
        written.append(pair)
    return written


def write_png_header(path, width, height):
    """An 8-bit RGB PNG whose header claims `width` x `height` pixels, its data cut short:
    what a reader sees of a decompression bomb before decoding it (a real one, a few
    MB of zeros, takes gigabytes to decode)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, RGB
    with open(_parent(os.fspath(path)), "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                   + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b""))


def truncate(path, keep=40):
    """Cuts the file at `path` to its first `keep` bytes, as an interrupted copy leaves it."""
    with open(path, "rb") as file:
        data = file.read(keep)
    with open(path, "wb") as file:
        file.write(data)
