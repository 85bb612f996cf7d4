"""GTA5, SYNTHIA and Cityscapes files in their real formats read as the right train ids."""
import os
import re
import random

import cv2
import numpy as np
import pytest
import tensorflow as tf

import data_pipelines
from data_pipelines import demo_domains, file_datasets
import dataset_files
from udamobile import errors

# docs/datasets.md, "Cityscapes label ids to train ids", written out: label id 0..33 -> train id.
TRAIN_ID_OF_LABEL_ID = [
    255, 255, 255, 255, 255, 255, 255,  # 0-6: unlabeled .. ground
    0, 1, 255, 255,                     # 7-10: road, sidewalk, parking, rail track
    2, 3, 4, 255, 255, 255,             # 11-16: building, wall, fence, guard rail, bridge, tunnel
    5, 255, 6, 7, 8, 9, 10,             # 17-23: pole, polegroup, light, sign, veg., terrain, sky
    11, 12, 13, 14, 15, 255, 255,       # 24-30: person, rider, car, truck, bus, caravan, trailer
    16, 17, 18,                         # 31-33: train, motorcycle, bicycle
]
# SYNTHIA class id 0..22 -> train id (16 classes), and the 13-class protocol,
# which also ignores wall (21), fence (5) and pole (7).
SYNTHIA_16 = [255, 10, 2, 0, 1, 4, 8, 5, 13, 7, 11, 18, 17, 255, 255, 6, 255, 12, 255, 15, 255,
              3, 255]
SYNTHIA_13 = [255 if synthia_id in (5, 7, 21) else train_id
              for synthia_id, train_id in enumerate(SYNTHIA_16)]


def _pipeline_labels(dataset):
    """The int32 labels `evaluation_images` yields, in index order, as numpy."""
    return [example["label"][0].numpy() for example in data_pipelines.evaluation_images(dataset)]


def _id_grid(num_ids, shape=(32, 40), shift=0):
    """uint8 [32, 40] holding every id of range(num_ids) at least once, rolled by `shift`."""
    ids = np.arange(shape[0] * shape[1]) % num_ids
    return np.roll(ids, shift).reshape(shape).astype(np.uint8)


def test_gta5_palette_labels_read_as_train_ids(tmp_path):
    labels = [_id_grid(34, shift=s) for s in range(3)]
    pairs = dataset_files.write_gta5(tmp_path, labels)
    # The files are real palette PNGs: decoders that expand the palette see colours.
    colours = tf.io.decode_png(tf.io.read_file(pairs[0][1]), channels=3).numpy()
    np.testing.assert_array_equal(colours, dataset_files.CITYSCAPES_ID_COLOURS[labels[0]])

    train, heldout = (data_pipelines.open_dataset("gta5", tmp_path, split)
                      for split in ("train", "heldout"))
    assert (len(train), len(heldout)) == (2, 1)
    for dataset in (train, heldout):
        from_pipeline = _pipeline_labels(dataset)
        for index in range(len(dataset)):
            number = int(os.path.basename(dataset.describe(index))[:5])
            expected = np.take(TRAIN_ID_OF_LABEL_ID, labels[number - 1])
            image, label = dataset.read_pair(index)
            assert label.dtype == np.uint8 and image.dtype == np.uint8
            np.testing.assert_array_equal(label, expected)
            np.testing.assert_array_equal(dataset.read_label(index), expected)
            np.testing.assert_array_equal(from_pipeline[index], expected)
            np.testing.assert_array_equal(image, dataset_files.grey_image_of(labels[number - 1]))


def test_gta5_label_a_pixel_off_its_image_is_resized_to_it_and_counted(tmp_path):
    labels = np.full((32, 40), 7, np.uint8)
    labels[16:] = 26  # road above, car below
    dataset_files.write_gta5(tmp_path, [labels, labels])
    dataset_files.write_rgb_png(tmp_path / "images" / "00001.png", np.zeros((33, 41, 3), np.uint8))
    dataset = data_pipelines.open_dataset("gta5", tmp_path, "train")

    label = dataset.read_label(0)
    assert label.shape == (33, 41)
    assert set(np.unique(label[:16])) == {0} and set(np.unique(label[17:])) == {13}
    dataset.read_label(0)
    assert dataset.num_resized_labels == 1  # each file is counted once


@pytest.mark.parametrize("label_shape", [(64, 96), (80, 64), (32, 40)],
                         ids=["3x2", "transposed", "half-size"])
def test_a_label_of_another_aspect_or_scale_is_an_error_naming_it(tmp_path, label_shape):
    # A 64x80 (height x width) image: only labels a pixel or 5% off are resized.
    dataset_files.write_gta5(tmp_path, [np.full(label_shape, 7, np.uint8)] * 2,
                             images=[np.zeros((64, 80, 3), np.uint8)] * 2)
    dataset = data_pipelines.open_dataset("gta5", tmp_path, "train")
    label_path = dataset.label_paths[0]
    height, width = label_shape
    with pytest.raises(errors.DatasetError,
                       match=rf"^{re.escape(label_path)}: label is {width}x{height} .* its image "
                             r"is 80x64: another aspect or scale"):
        dataset.read_label(0)


def test_synthia_16_bit_labels_read_as_train_ids_in_both_protocols(tmp_path):
    labels = [_id_grid(23, shift=s) for s in range(4)]
    instances = [np.full((32, 40), 300 + s, np.uint16) for s in range(4)]
    pairs = dataset_files.write_synthia(tmp_path, labels, instances=instances)
    stored = tf.io.decode_png(tf.io.read_file(pairs[0][1]), dtype=tf.uint16).numpy()
    assert stored.dtype == np.uint16 and stored.shape == (32, 40, 3)
    np.testing.assert_array_equal(stored[..., 0], labels[0])   # R: class id
    np.testing.assert_array_equal(stored[..., 1], instances[0])  # G: instance id

    for num_classes, table in ((16, SYNTHIA_16), (13, SYNTHIA_13)):
        seen = 0
        for split in ("train", "heldout"):
            dataset = data_pipelines.open_dataset("synthia", tmp_path, split,
                                                  synthia_classes=num_classes)
            from_pipeline = _pipeline_labels(dataset)
            for index in range(len(dataset)):
                number = int(os.path.basename(dataset.describe(index))[:7])
                expected = np.take(table, labels[number])
                np.testing.assert_array_equal(dataset.read_label(index), expected)
                np.testing.assert_array_equal(from_pipeline[index], expected)
                seen += 1
        assert seen == 4


def test_a_16_bit_image_using_its_range_reads_as_its_high_bytes(tmp_path):
    # A 16-bit image holding 8-bit values is an error instead (test_data_check.py).
    pairs = dataset_files.write_cityscapes(tmp_path, "val", [_id_grid(34)])
    values = np.arange(32 * 40 * 3).reshape(32, 40, 3) % 256
    dataset_files.write_rgb_png(pairs[0][0], (values * 257).astype(np.uint16))
    image = data_pipelines.open_dataset("cityscapes", tmp_path, "val").read_image(0)
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, values)


def test_synthia_13_class_protocol_ignores_wall_fence_pole(tmp_path):
    dataset_files.write_synthia(tmp_path, [np.tile([[21, 5, 7, 3]], (32, 8))] * 2)
    for num_classes, expected in ((16, [3, 4, 5, 0]), (13, [255, 255, 255, 0])):
        dataset = data_pipelines.open_dataset("synthia", tmp_path, synthia_classes=num_classes)
        np.testing.assert_array_equal(dataset.read_label(0), np.tile([expected], (32, 8)))


def test_cityscapes_tree_reads_in_sorted_order_as_train_ids(tmp_path):
    labels = {city: [_id_grid(34, shift=s + 7 * c) for s in range(2)]
              for c, city in enumerate(("zurich", "aachen"))}
    for city, city_labels in labels.items():
        pairs = dataset_files.write_cityscapes(tmp_path, "val", city_labels, city=city)
        # Other gtFine files sit beside the label ids and must be ignored.
        stem = pairs[0][1].replace("_labelIds.png", "")
        dataset_files.write_rgb_png(stem + "_color.png", np.zeros((6, 8, 3), np.uint8))
        cv2.imwrite(stem + "_instanceIds.png", np.zeros((6, 8), np.uint16))

    dataset = data_pipelines.open_dataset("cityscapes", tmp_path, "val")
    assert len(dataset) == 4 and dataset.has_labels
    expected_order = [("aachen", 0), ("aachen", 1), ("zurich", 0), ("zurich", 1)]
    from_pipeline = _pipeline_labels(dataset)
    for index, (city, number) in enumerate(expected_order):
        assert dataset.describe(index) == os.path.join(
            tmp_path, "leftImg8bit", "val", city, f"{city}_{number:06d}_000019_leftImg8bit.png")
        expected = np.take(TRAIN_ID_OF_LABEL_ID, labels[city][number])
        np.testing.assert_array_equal(dataset.read_label(index), expected)
        np.testing.assert_array_equal(from_pipeline[index], expected)


def test_cityscapes_train_without_gtfine_is_unlabelled(tmp_path):
    dataset_files.write_cityscapes(tmp_path, "train", [_id_grid(34)] * 2)
    labelled = data_pipelines.open_dataset("cityscapes", tmp_path, "train")
    assert labelled.has_labels  # train labels stay readable, for the oracle
    for name in os.listdir(tmp_path / "gtFine" / "train" / "aachen"):
        os.remove(tmp_path / "gtFine" / "train" / "aachen" / name)
    os.rmdir(tmp_path / "gtFine" / "train" / "aachen")
    os.rmdir(tmp_path / "gtFine" / "train")

    unlabelled = data_pipelines.open_dataset("cityscapes", tmp_path, "train")
    assert not unlabelled.has_labels and len(unlabelled) == 2
    assert unlabelled.read_image(1).shape == (32, 40, 3)
    with pytest.raises(errors.DatasetError, match="has no labels"):
        unlabelled.read_label(0)


def test_heldout_split_matches_the_paper_on_the_full_datasets():
    assert file_datasets.heldout_count(24966, *file_datasets.HELDOUT_PROPORTION["gta5"]) == 1000
    assert file_datasets.heldout_count(9400, *file_datasets.HELDOUT_PROPORTION["synthia"]) == 100
    assert file_datasets.heldout_count(2500, 24966, 1000) == 100  # a subset: same fraction
    assert file_datasets.heldout_count(3, 24966, 1000) == 1       # never empty ...
    assert file_datasets.heldout_count(2, 9400, 100) == 1         # ... nor the whole set


def test_heldout_split_depends_on_names_only():
    keys = [f"{n:05d}" for n in range(1, 24967)]
    heldout = file_datasets.heldout_keys(keys, 24966, 1000)
    shuffled = keys[:]
    random.Random(0).shuffle(shuffled)
    assert file_datasets.heldout_keys(shuffled, 24966, 1000) == heldout
    assert len(heldout) == 1000
    # A subset folder holds out mostly the same files as the full dataset.
    subset = keys[:5000]
    assert len(file_datasets.heldout_keys(subset, 24966, 1000) & heldout) >= 150


def test_train_and_heldout_partition_the_pairs(tmp_path):
    dataset_files.write_gta5(tmp_path, [_id_grid(34, shift=s) for s in range(60)])
    train, heldout = (data_pipelines.open_dataset("gta5", tmp_path, split)
                      for split in ("train", "heldout"))
    train_paths = {train.describe(i) for i in range(len(train))}
    heldout_paths = {heldout.describe(i) for i in range(len(heldout))}
    assert (len(train_paths), len(heldout_paths)) == (58, 2)
    assert not train_paths & heldout_paths
    again = data_pipelines.open_dataset("gta5", tmp_path, "heldout")
    assert [again.describe(i) for i in range(len(again))] == sorted(heldout_paths)


def test_demo_domains_have_the_documented_splits():
    sizes = {(name, split): len(data_pipelines.open_dataset(name, split=split))
             for name in ("demo_source", "demo_target")
             for split in data_pipelines.SPLITS[name]}
    assert sizes == {("demo_source", "train"): 2000, ("demo_source", "heldout"): 200,
                     ("demo_target", "train"): 2000, ("demo_target", "val"): 200}
    dataset = demo_domains.DemoDataset("demo_target", "val", (32, 48))
    image, label = dataset.read_pair(17)
    assert image.shape == (32, 48, 3) and label.shape == (32, 48)
    assert dataset.describe(17) == "demo_target/val/17"
