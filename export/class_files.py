"""The classes of an export as plain text files: what a board reads without udamobile.

    labels.txt    one class name a line; line i (from 0) names train id i, the
                  convention of TFLite label files
    palette.txt   "R G B" a line, line i the colour of train id i:
                  numpy.loadtxt("palette.txt", dtype=numpy.uint8) reads it as [C, 3]

The same two files sit beside the TFLite files of an export folder, in the
SavedModel's assets/ (export/saved_model.py) and inside every .tflite file as
named metadata buffers (export/tflite_metadata.py), byte for byte.
"""
import os

from data_pipelines.classes import CLASS_NAMES, PALETTE
from udamobile import files

LABELS_FILE, PALETTE_FILE = "labels.txt", "palette.txt"


def labels_text(names=CLASS_NAMES):
    return "".join(f"{name}\n" for name in names)


def palette_text(palette=PALETTE):
    return "".join(f"{r} {g} {b}\n" for r, g, b in palette.tolist())


def class_files():
    """{file name: its bytes} of the two files."""
    return {LABELS_FILE: labels_text().encode("utf-8"),
            PALETTE_FILE: palette_text().encode("utf-8")}


def write_class_files(folder):
    """Writes labels.txt and palette.txt in `folder`; returns {file name: path}."""
    return {name: files.write_bytes(os.path.join(folder, name), data)
            for name, data in class_files().items()}
