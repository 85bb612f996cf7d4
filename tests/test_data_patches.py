"""Patch and evaluation pipelines: sizes, alignment, flips, no padded patches, determinism."""
import numpy as np
import pytest
import tensorflow as tf

import data_pipelines
from data_pipelines import classes, demo, demo_domains, transforms
import dataset_files
from udamobile import config as config_lib, errors
from udamobile.training.inputs import patch_shape

TRAIN_ID = classes.lookup_table(classes.CITYSCAPES_LABEL_ID_TO_TRAIN_ID)
VALID_LABELS = set(range(classes.NUM_CLASSES)) | {classes.IGNORE_LABEL}
LABEL_IDS = (7, 8, 11, 17, 21, 23, 26, 33, 0, 4)  # mapped and unmapped ids


def _mosaic(shape, seed):
    """uint8 label ids [H, W] in blocks of 2 x 2 pixels, drawn from LABEL_IDS."""
    rng = np.random.default_rng(seed)
    blocks = rng.choice(LABEL_IDS, size=(shape[0] // 2 + 1, shape[1] // 2 + 1))
    return np.kron(blocks, np.ones((2, 2), int))[:shape[0], :shape[1]].astype(np.uint8)


@pytest.fixture
def gta5(tmp_path):
    """GTA5 files of 36 x 48 whose grey image value is the pixel's label id."""
    dataset_files.write_gta5(tmp_path, [_mosaic((36, 48), seed) for seed in range(6)])
    return data_pipelines.open_dataset("gta5", tmp_path, "train")


def _decoded_ids(images):
    """Label ids encoded in grey images in [-1, 1] (inverse of x / 127.5 - 1)."""
    return np.round((np.asarray(images)[..., 0] + 1.0) * 127.5).astype(int)


def _assert_aligned(images, labels):
    """Every pixel is padding (image 0, label 255) or its label is its image's id mapped."""
    images, labels = np.asarray(images), np.asarray(labels)
    padding = images[..., 0] == transforms.IMAGE_PAD_VALUE
    assert np.all(labels[padding] == classes.IGNORE_LABEL)
    np.testing.assert_array_equal(labels[~padding], TRAIN_ID[_decoded_ids(images)][~padding])
    return padding


def _batches(stream, count):
    return [{key: value.numpy() for key, value in batch.items()} for batch in stream.take(count)]


# The per-example ops, eagerly and inside tf.data -----------------------------

def _pair(height=6, width=10):
    label = tf.constant(_mosaic((height, width), 0).astype(np.int32))
    image = tf.repeat(tf.cast(label, tf.float32)[..., None], 3, axis=-1)
    return image, label


def _in_tf_data(op, image, label):
    outputs = tf.data.Dataset.from_tensors((image, label)).map(lambda i, l: op(i, l))
    return next(iter(outputs))


def test_normalize_image_maps_0_255_to_minus_1_plus_1():
    pixels = tf.constant([[[0, 255, 51]]], tf.uint8)
    np.testing.assert_allclose(data_pipelines.normalize_image(pixels), [[[-1.0, 1.0, -0.6]]],
                               atol=1e-6)


def test_resize_to_width_keeps_the_aspect_and_the_label_values():
    image, label = _pair(10, 20)
    for resized_image, resized_label in (
            data_pipelines.resize_to_width(image, label, width=8),
            _in_tf_data(lambda i, l: data_pipelines.resize_to_width(i, l, width=8), image, label)):
        assert resized_image.shape == (4, 8, 3) and resized_label.shape == (4, 8)
        assert resized_label.dtype == tf.int32
        # Nearest neighbour: no label value is invented.
        assert set(np.unique(resized_label)) <= set(np.unique(label))
    upscaled, _ = data_pipelines.resize_to_width(image, width=30)
    assert upscaled.shape == (15, 30, 3)


def test_pad_to_size_pads_images_with_0_and_labels_with_255():
    image, label = _pair(3, 4)
    for padded_image, padded_label in (
            data_pipelines.pad_to_size(image, label, size=(5, 6)),
            _in_tf_data(lambda i, l: data_pipelines.pad_to_size(i, l, size=(5, 6)), image, label)):
        assert padded_image.shape == (5, 6, 3) and padded_label.shape == (5, 6)
        np.testing.assert_array_equal(padded_image[:3, :4], image)
        np.testing.assert_array_equal(padded_label[:3, :4], label)
        assert np.all(padded_image[3:] == 0.0) and np.all(padded_image[:, 4:] == 0.0)
        assert np.all(padded_label[3:] == 255) and np.all(padded_label[:, 4:] == 255)
    unchanged, _ = data_pipelines.pad_to_size(image, size=(2, 2))
    assert unchanged.shape == (3, 4, 3)


def test_random_crop_cuts_the_same_window_from_image_and_label():
    image, label = _pair(6, 10)
    offsets = set()
    for seed in range(8):
        crop = lambda i, l, s=seed: data_pipelines.random_crop(i, l, size=(3, 4), seed=[s, 0])
        eager = crop(image, label)
        inside = _in_tf_data(crop, image, label)
        for cropped_image, cropped_label in (eager, inside):
            assert cropped_image.shape == (3, 4, 3) and cropped_label.shape == (3, 4)
            np.testing.assert_array_equal(cropped_image[..., 0], cropped_label)
        np.testing.assert_array_equal(eager[0], inside[0])
        # Locate the window in the full label.
        matches = [(r, c) for r in range(4) for c in range(7)
                   if np.array_equal(label[r:r + 3, c:c + 4], eager[1])]
        offsets.add(matches[0])
    assert len(offsets) >= 4


def test_random_crop_pads_an_image_smaller_than_the_patch():
    image, label = _pair(3, 4)
    cropped_image, cropped_label = data_pipelines.random_crop(image, label, size=(5, 5),
                                                              seed=[1, 2])
    np.testing.assert_array_equal(cropped_label[:3, :4], label)
    assert np.all(cropped_label[3:] == 255) and np.all(cropped_label[:, 4:] == 255)
    assert np.all(cropped_image[3:] == 0.0)


def test_random_flip_mirrors_image_and_label_together():
    image, label = _pair(4, 6)
    outcomes = set()
    for seed in range(10):
        flip = lambda i, l, s=seed: data_pipelines.random_flip(i, l, seed=[s, 0])
        for flipped_image, flipped_label in (flip(image, label), _in_tf_data(flip, image, label)):
            mirrored = np.array_equal(flipped_label, label[:, ::-1])
            assert mirrored or np.array_equal(flipped_label, label)
            np.testing.assert_array_equal(flipped_image[..., 0], flipped_label)
            outcomes.add(mirrored)
    assert outcomes == {True, False}


# The pipelines -------------------------------------------------------------

def test_supervised_patches_are_aligned_sized_and_in_range(gta5):
    batches = _batches(data_pipelines.supervised_patches(gta5, patch_size=8, batch_size=3), 4)
    for batch in batches:
        assert batch["image"].shape == (3, 8, 8, 3) and batch["image"].dtype == np.float32
        assert batch["label"].shape == (3, 8, 8) and batch["label"].dtype == np.int32
        assert batch["image"].min() >= -1.0 and batch["image"].max() <= 1.0
        assert set(np.unique(batch["label"])) <= VALID_LABELS
        padding = _assert_aligned(batch["image"], batch["label"])
        assert not padding.any()


def test_supervised_patches_flip_some_patches(gta5):
    def labels(flip):
        stream = data_pipelines.supervised_patches(gta5, patch_size=(36, 48), batch_size=5,
                                                   flip=flip, seed=3)
        return _batches(stream, 2)
    unflipped, flipped = labels(False), labels(True)
    mirrored = [np.array_equal(a, b[:, ::-1]) and not np.array_equal(a, b)
                for u, f in zip(unflipped, flipped) for a, b in zip(u["label"], f["label"])]
    assert 0 < sum(mirrored) < len(mirrored)
    for batch in flipped:
        _assert_aligned(batch["image"], batch["label"])


def test_supervised_patches_widen_the_resize_where_the_patch_would_not_fit(gta5):
    # 36 x 48 images and a 42 x 60 patch: resized to 45 x 60 (the authors'
    # rule), never padded with a grey bar that a discriminator could spot.
    assert data_pipelines.crop_fitting_size((36, 48), None, (42, 60)).numpy().tolist() == [45, 60]
    batch, = _batches(data_pipelines.supervised_patches(gta5, patch_size=(42, 60), batch_size=4),
                      1)
    assert batch["image"].shape == (4, 42, 60, 3)
    assert not np.any(batch["image"][..., 0] == transforms.IMAGE_PAD_VALUE)


def test_the_authors_800_pixel_crop_of_cityscapes_takes_width_1600():
    assert data_pipelines.crop_fitting_size((1024, 2048), 1536, (800, 800)).numpy().tolist() == [
        800, 1600]
    assert data_pipelines.crop_fitting_size((1024, 2048), 1536, (600, 600)).numpy().tolist() == [
        768, 1536]


# Native image sizes (height, width) of the real datasets and the demo domains.
NATIVE_SIZES = {"gta5": (1052, 1914), "synthia": (760, 1280), "cityscapes": (1024, 2048),
                "demo_source": demo.DEMO_SIZE, "demo_target": demo.DEMO_SIZE}


@pytest.mark.parametrize("preset", config_lib.PRESETS)
def test_no_preset_crops_a_padded_row_of_any_dataset(preset):
    for stage in config_lib.STAGES:
        cfg = config_lib.get_config(preset, stage)
        patch = patch_shape(cfg)
        for name in (cfg.data.source, cfg.data.target):
            if cfg.data.whole_images:
                continue  # resized to the patch itself
            fitted = data_pipelines.crop_fitting_size(NATIVE_SIZES[name], cfg.data.resize_width,
                                                      patch).numpy()
            assert fitted[0] >= patch[0] and fitted[1] >= patch[1], (stage, name, fitted)


def test_whole_images_are_resized_to_the_patch_size(gta5):
    batch, = _batches(data_pipelines.supervised_patches(
        gta5, patch_size=(6, 8), whole_images=True, batch_size=6), 1)
    assert batch["image"].shape == (6, 6, 8, 3)
    # The whole image, not a crop: each label is one image's label resized.
    whole = [tf.image.resize(gta5.read_label(i)[..., None], (6, 8), method="nearest")[..., 0]
             for i in range(len(gta5))]
    assert all(any(np.array_equal(label, w) for w in whole) for label in batch["label"])


def test_supervised_patches_resize_first(gta5):
    batch, = _batches(data_pipelines.supervised_patches(
        gta5, patch_size=(6, 8), resize_width=8, batch_size=2, flip=False), 1)
    # 36 x 48 images resized to 6 x 8: the patch is the whole image.
    assert batch["label"].shape == (2, 6, 8)
    assert set(np.unique(batch["label"])) <= set(TRAIN_ID[list(LABEL_IDS)])


def test_supervised_patches_are_deterministic_for_a_seed(gta5):
    def run(seed):
        return _batches(data_pipelines.supervised_patches(gta5, patch_size=6, batch_size=2,
                                                          seed=seed), 5)
    first, second, other = run(0), run(0), run(1)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    assert any(not np.array_equal(a["image"], c["image"]) for a, c in zip(first, other))


def test_supervised_patches_are_endless_and_reshuffled_every_epoch(tmp_path):
    # Five uniform images (one id each): train holds four of them.
    dataset_files.write_gta5(tmp_path, [np.full((32, 32), i, np.uint8) for i in (7, 8, 11, 21, 26)])
    dataset = data_pipelines.open_dataset("gta5", tmp_path, "train")
    stream = data_pipelines.supervised_patches(dataset, patch_size=4, batch_size=1, flip=False)
    order = [int(_decoded_ids(batch["image"])[0, 0, 0]) for batch in _batches(stream, 32)]
    epochs = [tuple(order[i:i + 4]) for i in range(0, 32, 4)]
    assert all(sorted(epoch) == sorted(epochs[0]) for epoch in epochs)
    assert len(set(epochs)) > 1


def test_unpaired_patches_pair_labelled_source_with_unlabelled_target(gta5, tmp_path):
    # The target has no gtFine folder: its labels are never read.
    target_ids = [np.full((40, 60), 200 + n, np.uint8) for n in range(3)]
    dataset_files.write_cityscapes(tmp_path / "cs", "train", target_ids)
    (tmp_path / "cs" / "gtFine").rename(tmp_path / "cs" / "no_labels_here")
    target = data_pipelines.open_dataset("cityscapes", tmp_path / "cs", "train")
    assert not target.has_labels

    stream = data_pipelines.unpaired_patches(gta5, target, patch_size=6, resize_width_target=15,
                                             batch_size=2)
    for batch in _batches(stream, 3):
        assert set(batch) == {"source_image", "source_label", "target_image"}
        assert batch["source_image"].shape == batch["target_image"].shape == (2, 6, 6, 3)
        assert batch["source_label"].shape == (2, 6, 6)
        assert batch["source_label"].dtype == np.int32
        _assert_aligned(batch["source_image"], batch["source_label"])
        assert set(np.unique(_decoded_ids(batch["target_image"]))) <= {200, 201, 202}


def test_unpaired_streams_are_shuffled_independently(tmp_path):
    dataset_files.write_gta5(tmp_path, [np.full((32, 32), i, np.uint8) for i in range(7, 16)])
    dataset = data_pipelines.open_dataset("gta5", tmp_path, "train")
    batches = _batches(data_pipelines.unpaired_patches(dataset, dataset, patch_size=4,
                                                       flip=False), 16)
    source = [int(_decoded_ids(b["source_image"])[0, 0, 0]) for b in batches]
    target = [int(_decoded_ids(b["target_image"])[0, 0, 0]) for b in batches]
    assert sorted(source[:8]) == sorted(target[:8])  # both read every image per epoch ...
    assert source != target                          # ... in their own orders


def test_evaluation_images_in_order_at_full_label_resolution(gta5):
    examples = list(data_pipelines.evaluation_images(gta5, input_width=8))
    assert [int(e["index"]) for e in examples] == list(range(len(gta5)))
    for example in examples:
        assert example["image"].shape == (1, 6, 8, 3) and example["image"].dtype == tf.float32
        assert example["label"].shape == (1, 36, 48) and example["label"].dtype == tf.int32
        np.testing.assert_array_equal(example["label"][0], gta5.read_label(int(example["index"])))
    full = next(iter(data_pipelines.evaluation_images(gta5)))
    assert full["image"].shape == (1, 36, 48, 3)
    _assert_aligned(full["image"], full["label"])


def test_demo_domains_feed_the_pipelines():
    source = demo_domains.DemoDataset("demo_source", "train", (32, 48))
    target = demo_domains.DemoDataset("demo_target", "train", (32, 48))
    batch, = _batches(data_pipelines.unpaired_patches(source, target, patch_size=16,
                                                      batch_size=2), 1)
    assert batch["source_image"].shape == (2, 16, 16, 3)
    assert set(np.unique(batch["source_label"])) <= VALID_LABELS


# --- bad files: skipped and recorded, never raised on tf.data's threads --------

UNIFORM_IDS = (7, 8, 11, 12, 13, 17, 19)  # train ids 0..6: a patch's label names its file


@pytest.fixture
def gta5_with_a_bad_file(tmp_path):
    """(intact dataset, the same with its image 3 truncated, that file's path)."""
    labels = [np.full((32, 32), i, np.uint8) for i in UNIFORM_IDS]
    dataset_files.write_gta5(tmp_path / "intact", labels)
    dataset_files.write_gta5(tmp_path / "broken", labels)
    intact = data_pipelines.open_dataset("gta5", tmp_path / "intact", "train")
    broken = data_pipelines.open_dataset("gta5", tmp_path / "broken", "train")
    dataset_files.truncate(broken.image_paths[3])
    return intact, broken, broken.image_paths[3]


def _patches(stream, count):
    return [(b["image"], int(b["label"][0, 0, 0])) for b in _batches(stream, count)]


def test_a_bad_file_is_skipped_recorded_once_and_the_others_keep_their_patches(
        gta5_with_a_bad_file):
    intact, broken, bad_path = gta5_with_a_bad_file
    bad_files = data_pipelines.BadFiles(limit=1)
    options = dict(patch_size=4, batch_size=1, flip=True, seed=3)
    # Three epochs of six files, the bad one met three times.
    kept = _patches(data_pipelines.supervised_patches(broken, bad_files=bad_files, **options), 15)
    bad_id = int(intact.read_label(3)[0, 0])  # each file holds one train id
    expected = [p for p in _patches(data_pipelines.supervised_patches(intact, **options), 18)
                if p[1] != bad_id]
    assert [p[1] for p in kept] == [p[1] for p in expected[:15]]
    for (image, _), (other, _) in zip(kept, expected):
        np.testing.assert_array_equal(image, other)
    assert bad_files.messages() == [f"{bad_path}: cannot decode the file (expected a readable "
                                    "PNG or JPEG; is it truncated or corrupt?)"]
    bad_files.check()  # one bad file is within the limit


def test_past_the_limit_the_stream_ends_and_check_names_the_last_bad_file(gta5_with_a_bad_file):
    _, broken, bad_path = gta5_with_a_bad_file
    bad_files = data_pipelines.BadFiles(limit=0)
    stream = data_pipelines.supervised_patches(broken, patch_size=4, batch_size=1,
                                               bad_files=bad_files)
    assert len(list(stream.take(100))) < 6  # ended within the first epoch
    with pytest.raises(errors.BadFilesError,
                       match=rf"^1 bad file\(s\), more than --max_bad_files=0; the last: "
                             rf"{bad_path}: cannot decode"):
        bad_files.check()


def test_evaluation_images_skip_a_bad_file(gta5_with_a_bad_file):
    _, broken, bad_path = gta5_with_a_bad_file
    bad_files = data_pipelines.BadFiles(limit=10)
    indices = [int(e["index"]) for e in data_pipelines.evaluation_images(broken,
                                                                         bad_files=bad_files)]
    assert indices == [0, 1, 2, 4, 5]
    assert len(bad_files) == 1 and bad_path in bad_files.messages()[0]
