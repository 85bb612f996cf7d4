"""Bad input fails with a DatasetError naming the path or argument and what was expected."""
import errno
import os
import re

import cv2
import numpy as np
import pytest
from PIL import Image

import data_pipelines
from data_pipelines import demo_domains
import dataset_files
from udamobile.errors import DatasetError


def _labels(count):
    return [np.full((32, 40), 7 + n % 20, np.uint8) for n in range(count)]


def _truncate(path):
    data = open(path, "rb").read()
    with open(path, "wb") as file:
        file.write(data[:len(data) // 2])


def test_missing_root_names_the_folder_and_the_layout(tmp_path):
    missing = tmp_path / "GTA5"
    with pytest.raises(DatasetError, match=re.escape(str(missing)) + ".*expected.*images"):
        data_pipelines.open_dataset("gta5", missing)
    with pytest.raises(DatasetError, match="needs root"):
        data_pipelines.open_dataset("cityscapes", None, "val")


@pytest.mark.parametrize("name, write, removed", [
    ("gta5", dataset_files.write_gta5, "labels"),
    ("synthia", dataset_files.write_synthia, os.path.join("GT", "LABELS")),
])
def test_missing_subfolder_is_named(tmp_path, name, write, removed):
    write(tmp_path, _labels(3))
    folder = tmp_path / removed
    for file_name in os.listdir(folder):
        os.remove(folder / file_name)
    os.rmdir(folder)
    with pytest.raises(DatasetError, match=re.escape(str(folder)) + ": folder not found"):
        data_pipelines.open_dataset(name, tmp_path)


def test_images_without_labels_are_listed(tmp_path):
    pairs = dataset_files.write_gta5(tmp_path, _labels(9))
    for _, label_path in pairs[:7]:
        os.remove(label_path)
    with pytest.raises(DatasetError) as error:
        data_pipelines.open_dataset("gta5", tmp_path)
    message = str(error.value)
    assert "7 images without their label" in message and "and 2 more" in message
    for image_path, _ in pairs[:5]:
        assert image_path in message


def test_labels_without_images_are_listed(tmp_path):
    pairs = dataset_files.write_cityscapes(tmp_path, "val", _labels(3))
    os.remove(pairs[1][0])
    with pytest.raises(DatasetError,
                       match="1 labels without their image: " + re.escape(pairs[1][1])):
        data_pipelines.open_dataset("cityscapes", tmp_path, "val")


@pytest.mark.parametrize("which", [0, 1])  # image, label
@pytest.mark.parametrize("name, write", [
    ("gta5", dataset_files.write_gta5),
    ("synthia", dataset_files.write_synthia),
    ("cityscapes", lambda root, labels: dataset_files.write_cityscapes(root, "train", labels)),
])
def test_truncated_png_is_an_error_naming_it(tmp_path, name, write, which):
    pairs = write(tmp_path, _labels(2))
    dataset = data_pipelines.open_dataset(name, tmp_path, "train")
    path = dataset.describe(0) if which == 0 else dict(pairs)[dataset.describe(0)]
    _truncate(path)
    read = dataset.read_image if which == 0 else dataset.read_label
    with pytest.raises(DatasetError, match=re.escape(path) + ": cannot decode.*expected"):
        read(0)


def test_unreadable_file_is_an_error_naming_it(tmp_path):
    pairs = dataset_files.write_gta5(tmp_path, _labels(2))
    for image_path, _ in pairs:
        with open(image_path, "wb") as file:
            file.write(b"these bytes are no PNG")
    dataset = data_pipelines.open_dataset("gta5", tmp_path, "train")
    with pytest.raises(DatasetError, match=re.escape(dataset.describe(0)) + ": cannot decode"):
        dataset.read_image(0)


@pytest.mark.parametrize("library, function", [("cv2", "imread"), ("PIL", "load")])
def test_any_exception_of_a_decoder_is_an_error_naming_the_file(tmp_path, monkeypatch,
                                                                library, function):
    # The pipelines skip a DatasetError as a bad file; any other exception on
    # tf.data's threads would end the program (a decompression bomb aborted it).
    def broken(*args, **kwargs):
        raise MemoryError("a decoder's own failure")

    pairs = dataset_files.write_gta5(tmp_path, _labels(2))
    dataset = data_pipelines.open_dataset("gta5", tmp_path, "train")
    monkeypatch.setattr(cv2 if library == "cv2" else Image.Image, function, broken)
    path = dataset.describe(0) if library == "cv2" else dict(pairs)[dataset.describe(0)]
    with pytest.raises(DatasetError, match=re.escape(path) + r": cannot decode the file "
                       r"\(expected .*; MemoryError: a decoder's own failure\)"):
        dataset.read_pair(0)


def test_a_file_the_disk_cannot_give_is_named_with_the_cause(tmp_path, monkeypatch):
    # Not "truncated or corrupt": the file may be fine, its permissions or disk not.
    dataset_files.write_gta5(tmp_path, _labels(2))
    dataset = data_pipelines.open_dataset("gta5", tmp_path, "train")

    def denied(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(DatasetError, match=f"^{re.escape(dataset.describe(0))}: cannot read "
                       "the file \\(Permission denied\\)$"):
        dataset.read_image(0)


def test_colour_label_where_gta5_palette_ids_are_expected(tmp_path):
    labels = _labels(2)
    pairs = dataset_files.write_gta5(tmp_path, labels)
    for (_, label_path), ids in zip(pairs, labels):
        dataset_files.write_rgb_png(label_path, dataset_files.CITYSCAPES_ID_COLOURS[ids])
    dataset = data_pipelines.open_dataset("gta5", tmp_path, "train")
    label_path = dict(pairs)[dataset.describe(0)]
    with pytest.raises(DatasetError, match=re.escape(label_path) +
                       ": expected an 8-bit palette PNG.*got mode 'RGB' \\(a colour label\\)"):
        dataset.read_label(0)


def test_grey_label_where_gta5_palette_ids_are_expected(tmp_path):
    # A grey PNG may hold train ids already; reading it as label ids would be wrong.
    pairs = dataset_files.write_gta5(tmp_path, _labels(2))
    for _, label_path in pairs:
        dataset_files.write_grey_png(label_path, np.zeros((32, 40), np.uint8))
    dataset = data_pipelines.open_dataset("gta5", tmp_path, "train")
    with pytest.raises(DatasetError, match="got mode 'L'"):
        dataset.read_label(0)


def test_colour_label_where_cityscapes_grey_ids_are_expected(tmp_path):
    pairs = dataset_files.write_cityscapes(tmp_path, "val", _labels(1))
    dataset_files.write_rgb_png(pairs[0][1], np.zeros((32, 40, 3), np.uint8))
    dataset = data_pipelines.open_dataset("cityscapes", tmp_path, "val")
    with pytest.raises(DatasetError, match=re.escape(pairs[0][1]) +
                       ": expected an 8-bit single-channel PNG.*got 8-bit, 3 channel"):
        dataset.read_label(0)


def test_synthia_label_stored_as_8_bit_is_an_error(tmp_path):
    labels = _labels(2)
    pairs = dataset_files.write_synthia(tmp_path, labels)
    for (_, label_path), ids in zip(pairs, labels):
        # The class ids survive in R, but at 8 bits: a conversion, not the original.
        dataset_files.write_rgb_png(label_path, np.stack([ids, ids * 0, ids * 0], -1))
    dataset = data_pipelines.open_dataset("synthia", tmp_path, "train")
    label_path = dict(pairs)[dataset.describe(0)]
    with pytest.raises(DatasetError, match=re.escape(label_path) +
                       ": expected a 16-bit multi-channel PNG.*got 8-bit, 3 channel"):
        dataset.read_label(0)


def test_empty_split_is_an_error(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "images")) +
                       ": no images found"):
        data_pipelines.open_dataset("gta5", tmp_path)
    dataset_files.write_gta5(tmp_path, _labels(1))  # a single pair cannot be split
    with pytest.raises(DatasetError, match="heldout split of gta5 is empty"):
        data_pipelines.open_dataset("gta5", tmp_path, "heldout")
    (tmp_path / "leftImg8bit" / "val").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images found"):
        data_pipelines.open_dataset("cityscapes", tmp_path, "val")


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="gta6"), "dataset name must be one of"),
    (dict(name="gta5", split="val"), r"split of gta5 must be one of \('train', 'heldout'\)"),
    (dict(name="cityscapes", split="heldout"), "split of cityscapes must be one of"),
    (dict(name="synthia", synthia_classes=19), "synthia_classes must be one of"),
    (dict(name="demo_source", root="/data/GTA5"), "takes no root"),
])
def test_bad_arguments_of_open_dataset(kwargs, message):
    with pytest.raises(DatasetError, match=message):
        data_pipelines.open_dataset(**kwargs)


@pytest.mark.parametrize("size", [(8, 64), 64])
def test_bad_demo_size(size):
    with pytest.raises(DatasetError, match="demo_size must be"):
        demo_domains.DemoDataset("demo_target", "train", size)


def test_index_out_of_range():
    dataset = data_pipelines.open_dataset("demo_source", split="heldout")
    with pytest.raises(DatasetError, match="index 200 is out of range for demo_source/heldout"):
        dataset.read_image(200)


@pytest.mark.parametrize("kwargs, message", [
    (dict(patch_size=0), "patch_size must be"),
    (dict(patch_size=(4, 4, 4)), "patch_size must be"),
    (dict(patch_size=4, batch_size=0), "batch_size must be"),
    (dict(patch_size=4, resize_width=-1), "resize_width must be"),
])
def test_bad_arguments_of_the_pipelines(kwargs, message):
    dataset = demo_domains.DemoDataset("demo_source", "train", (16, 16))
    with pytest.raises(DatasetError, match=message):
        data_pipelines.supervised_patches(dataset, **kwargs)


def test_pipelines_that_need_labels_refuse_an_unlabelled_dataset(tmp_path):
    dataset_files.write_cityscapes(tmp_path, "train", _labels(2))
    os.rename(tmp_path / "gtFine", tmp_path / "gtFine_elsewhere")
    unlabelled = data_pipelines.open_dataset("cityscapes", tmp_path, "train")
    with pytest.raises(DatasetError, match="cityscapes/train has no labels"):
        data_pipelines.supervised_patches(unlabelled, patch_size=4)
    with pytest.raises(DatasetError, match="cityscapes/train has no labels"):
        data_pipelines.evaluation_images(unlabelled)
