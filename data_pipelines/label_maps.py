"""The labels of your own data (dataset `folder`): train ids, or your ids through a map.

A label map is a JSON file holding one object, from the ids your label files
store to the train ids they mean (docs/datasets.md, "Your own data"):

    {"7": 0, "8": 1, "26": 13, "0": 255}

Its keys are the integers 0-255 written in decimal (the values of 8-bit label
PNGs), its values train ids 0-18 or 255 (ignore). An id the map does not name
reads as 255: a simulator's classes outside the 19 are ignored, as
Cityscapes' own are. Without a map the label files must hold train ids, and
one with more than `file_datasets.MAX_UNKNOWN_FRACTION` of its pixels on
other values is refused (`FileDataset`), since they would all train as
ignore.
"""
import functools
import json

from data_pipelines import classes, readers
from data_pipelines.file_datasets import LabelFormat
from udamobile.errors import DatasetError

_TRAIN_IDS = "train ids 0-18 (255: ignore)"
TRAIN_ID_LABELS = LabelFormat(
    _TRAIN_IDS, functools.partial(readers.read_grey_ids, holding=_TRAIN_IDS),
    classes.lookup_table({i: i for i in range(classes.NUM_CLASSES)}), classes.NUM_CLASSES,
    ignore_id=classes.IGNORE_LABEL)
TRAIN_ID_VALUES = (*range(classes.NUM_CLASSES), classes.IGNORE_LABEL)
MAX_STORED_ID = 255  # label PNGs are 8-bit


def _stored_id(key):
    """The id a map key names, or None unless it is a decimal integer 0-255 (no
    sign, space or leading zero: "7" and "07" would name one id twice)."""
    if key.isascii() and key.isdigit() and str(int(key)) == key and int(key) <= MAX_STORED_ID:
        return int(key)
    return None


def _read_json_object(path):
    try:
        with open(path, encoding="utf-8") as f:
            mapping = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: label map not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read the label map ({error})") from None
    if not isinstance(mapping, dict) or not mapping:
        raise DatasetError(f"{path}: expected a non-empty JSON object "
                           '{"<your id>": <train id>, ...}, got ' + type(mapping).__name__)
    return mapping


def read_label_map(path):
    """The {stored id: train id} of the label map file `path` (module docstring);
    raises DatasetError naming the file and its first bad entry."""
    table = {}
    for key, value in _read_json_object(path).items():
        stored = _stored_id(key)
        if stored is None:
            raise DatasetError(f"{path}: entry {key!r}: {value!r}: a key must be an id "
                               f"0-{MAX_STORED_ID} of your label files, in decimal")
        if type(value) is not int or value not in TRAIN_ID_VALUES:  # not 1.0, not true
            raise DatasetError(f"{path}: entry {key!r}: {value!r}: a value must be a train id "
                               f"0-{classes.NUM_CLASSES - 1} or {classes.IGNORE_LABEL} (ignore)")
        table[stored] = value
    return table


def folder_labels(label_map=None):
    """The LabelFormat of a folder dataset's label files: train ids, or the ids of
    the label map file `label_map`, each read as the train id it maps to."""
    if label_map is None:
        return TRAIN_ID_LABELS
    holding = f"the ids of label map {label_map}"
    return LabelFormat(holding, functools.partial(readers.read_grey_ids, holding=holding),
                       classes.lookup_table(read_label_map(label_map)), MAX_STORED_ID + 1)
