"""The baselines beyond the paper: colour transfer (its Lab maths, its stage) and AdaBN
(which statistics it leaves), and the gap each row of a table closes."""
import json

import cv2
import numpy as np
import pytest
import tensorflow as tf

import data_pipelines
from data_pipelines import colour, validation
from data_pipelines.base import Dataset
from udamobile.errors import DatasetError
from udamobile.evaluation import report, signals
from udamobile.experiments import methods, tables
from udamobile.nets import segmenter as segmenter_lib
from udamobile.training import inputs, trainer
from udamobile.training.stages import baselines, get_stage
from udamobile.training.stages.base import RunContext
from udamobile.training.state import TrainingState


def _pixels(seed, shape=(16, 24, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def test_lab_conversion_matches_opencv_and_inverts():
    rgb = _pixels(0).astype(np.float32) / 255
    ours = colour.srgb_to_lab(rgb).numpy()
    np.testing.assert_allclose(ours, cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab), atol=0.3)
    np.testing.assert_allclose(colour.lab_to_srgb(ours).numpy(), rgb, atol=1e-4)


def test_matching_moves_an_images_lab_statistics_to_the_given_ones():
    image = data_pipelines.normalize_image(_pixels(1))
    # The statistics of another (in-gamut) image, so the clipping to sRGB stays small.
    mean, std = colour.lab_statistics(data_pipelines.normalize_image(_pixels(2) // 2 + 60))
    matched = colour.match_colour_statistics(image, mean, std)
    assert matched.shape == image.shape
    assert float(tf.reduce_min(matched)) >= -1 and float(tf.reduce_max(matched)) <= 1
    got_mean, got_std = colour.lab_statistics(matched)
    np.testing.assert_allclose(got_mean, mean, atol=1.0)
    np.testing.assert_allclose(got_std, std, rtol=0.05)


class _Images(Dataset):
    """Flat-colour images; index 1 cannot be read."""

    def __init__(self, count):
        super().__init__("images", "train", has_labels=False)
        self.count = count

    def __len__(self):
        return self.count

    def read_image(self, index):
        if index == 1:
            raise DatasetError("images/train/1.png: truncated")
        return np.full((4, 6, 3), 40 * index, np.uint8)

    def read_label(self, index):
        raise DatasetError("unlabelled")

    def describe(self, index):
        return f"images/train/{index}.png"


def test_the_average_statistics_leave_a_bad_file_out_or_raise_without_a_registry():
    bad = data_pipelines.BadFiles(limit=1)
    stats = colour.average_lab_statistics(_Images(4), 10, bad)
    assert stats["images"] == 3 and bad.messages() == ["images/train/1.png: truncated"]
    expected = np.mean([colour.lab_statistics(data_pipelines.normalize_image(
        np.full((4, 6, 3), 40 * i, np.uint8)))[0].numpy() for i in (0, 2, 3)], 0)
    np.testing.assert_allclose(stats["mean"], expected, atol=1e-4)
    with pytest.raises(DatasetError, match="truncated"):
        colour.average_lab_statistics(_Images(4), 10)


def test_the_colour_transfer_stage_trains_on_source_images_in_the_targets_colours(
        tiny_config, tmp_path):
    cfg = tiny_config("colour_transfer", steps=1, allow_random_start=True)
    stage = get_stage("colour_transfer")
    assert [d[0] for d in inputs.datasets_used(cfg, stage)] == ["demo_source", "demo_target",
                                                                "demo_source"]
    statistics = baselines.target_colour_statistics(cfg, str(tmp_path), chief=True)
    kept = json.loads((tmp_path / baselines.COLOUR_STATISTICS_FILE).read_text())
    assert kept["images"] == baselines.COLOUR_STATISTICS_IMAGES
    assert kept["dataset"] == "demo_target/train"
    # The stream's whole images carry the target's statistics, not the source's.
    source = data_pipelines.open_dataset("demo_source", None, "train")
    image = data_pipelines.normalize_image(source.read_image(0))
    matched_mean, _ = colour.lab_statistics(baselines.matched_to(statistics)(image))
    own_mean, _ = colour.lab_statistics(image)
    target_mean = np.array(kept["mean"])
    assert (np.abs(matched_mean - target_mean).max()
            < 0.2 * np.abs(own_mean - target_mean).max())
    # Computed once: a resumed run reads the kept file.
    (tmp_path / baselines.COLOUR_STATISTICS_FILE).write_text(json.dumps(
        {**kept, "mean": [50.0, 0.0, 0.0]}))
    again = baselines.matched_to(baselines.target_colour_statistics(
        cfg, str(tmp_path), chief=True))(image)
    assert float(colour.lab_statistics(again)[0][0]) == pytest.approx(50.0, abs=1.0)
    context = RunContext(workdir=str(tmp_path), chief=True, bad_files=None, state=None)
    batch = next(iter(stage.build_inputs(cfg, 0, context)))
    assert batch["image"].shape == (2, 32, 32, 3) and batch["label"].shape == (2, 32, 32)


def _batch_norm_inputs(model, images):
    """The input of the segmenter's first batch norm (after the stem conv) on `images`."""
    encoder = model.get_layer("encoder")
    norm = segmenter_lib.batch_norms(model)[0]
    probe = tf.keras.Model(encoder.inputs, norm.input)
    return probe([images])


def test_adabn_leaves_the_plain_average_of_every_batchs_statistics(tiny_config):
    cfg = tiny_config("adabn")
    stage = get_stage("adabn")
    state = TrainingState(cfg, stage)
    model = state.networks["segmenter"]
    weights = [v.numpy().copy() for v in model.trainable_variables]
    step = stage.make_step(state, cfg, stage.active_updates(0, cfg))
    rng = np.random.default_rng(0)
    batches = [rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32) * scale + shift
               for scale, shift in ((0.2, 0.5), (0.5, -0.3), (0.9, 0.0))]
    for images in batches:
        assert bool(step({"image": tf.constant(images)})["finite"])
    first = segmenter_lib.batch_norms(model)[0]
    inputs = [_batch_norm_inputs(model, b).numpy() for b in batches]
    np.testing.assert_allclose(first.moving_mean.numpy(),
                               np.mean([x.mean((0, 1, 2)) for x in inputs], 0), atol=1e-5)
    np.testing.assert_allclose(first.moving_variance.numpy(),
                               np.mean([x.var((0, 1, 2)) for x in inputs], 0), rtol=1e-4,
                               atol=1e-6)
    assert int(state.step) == 3
    assert all(np.array_equal(w, v.numpy()) for w, v in zip(weights, model.trainable_variables))


def test_the_baseline_methods_start_from_the_source_only_stage():
    for name in ("colour_transfer", "adabn"):
        assert methods.get_method(name).stages == ("source_only", name)
    configs = methods.stage_configs("demo", "adabn", {})
    assert configs["adabn"].optim.steps * configs["adabn"].optim.batch_size == 3 * 2000


def _scores(miou):
    return {"iou": {"road": miou}, "miou": miou}


def test_each_row_shows_the_fraction_of_the_source_only_to_oracle_gap_it_closes():
    scores = {"source_only": _scores(0.2), "adabn": _scores(0.25), "full": _scores(0.4),
              "oracle": _scores(0.6)}
    assert report.gap_fractions(scores, "source_only", "oracle") == pytest.approx(
        {"source_only": 0.0, "adabn": 0.125, "full": 0.5, "oracle": 1.0})
    assert report.gap_fractions({"full": _scores(0.4)}, "source_only", "oracle") == {}
    assert report.gap_closed(0.3, 0.5, 0.4) is None  # no gap to close
    text, rows = tables.comparison(tables.get_table(4), scores)
    assert "gap closed" in text and "(paper)" not in text
    assert rows["full"]["gap_closed"] == pytest.approx(0.5) and "paper" not in rows["full"]
    assert [line.split()[-1] for line in text.splitlines()[-4:]] == ["0%", "12%", "50%", "100%"]


def test_label_free_signals_of_known_probabilities():
    classes = 19
    sure = np.eye(classes, dtype=np.float32)[[0, 0, 2]]  # road, road, building: certain
    unsure = np.full((1, classes), 1 / classes, np.float32)  # uniform: predicted road
    sums = signals.prediction_sums(np.concatenate([sure, unsure])[None])
    source_share = np.zeros(classes)
    source_share[[0, 2]] = 0.5
    got = signals.summarize(*sums, source_share)
    assert got["mean_entropy"] == pytest.approx(np.log(classes) / 4, rel=1e-5)
    assert got["confident_pixels"] == 0.75
    assert got["confident_fraction"] == pytest.approx({"road": 2 / 3, "building": 1.0})
    assert got["predicted_share"]["road"] == 0.75 and got["predicted_share"]["sky"] == 0
    assert got["distribution_distance"] == pytest.approx(0.25)
    assert signals.scalars(got)["label_free/confident_fraction/road"] == pytest.approx(2 / 3)
    assert signals.scalars(None) == {}


def test_label_free_signals_when_every_sampled_image_is_a_bad_file():
    class Unreadable(Dataset):
        def __len__(self):
            return 2

        def read_image(self, index):
            raise DatasetError(f"image {index}: truncated")

        def read_label(self, index):
            raise AssertionError("labels are never read")

        def describe(self, index):
            return f"image {index}"

    got = signals.label_free_signals(
        None, Unreadable("folder", "train", has_labels=False), count=2,
        source_share=np.full(19, 1 / 19), bad_files=data_pipelines.BadFiles(5))
    assert got["images"] == 0 and got["confident_fraction"] == {}
    assert got["distribution_distance"] == pytest.approx(0.5)


def test_the_source_share_counts_labelled_pixels_only():
    source = data_pipelines.open_dataset("demo_source", None, "train")
    share = signals.label_shares(source, 3)
    labels = np.concatenate([source.read_label(i).ravel() for i in validation.sample_indices(2000, 3)])
    labels = labels[labels != 255]
    assert share.sum() == pytest.approx(1.0)
    assert share[0] == pytest.approx(np.mean(labels == 0))


def test_each_evaluation_writes_the_label_free_signals_and_needs_no_target_root(
        tiny_config, tmp_path, eagerly):
    final = trainer.train(tiny_config("source_only", steps=1, eval_max_images=1),
                          str(tmp_path / "demo"))
    label_free = final["label_free"]
    assert label_free["images"] == 2 and label_free["dataset"] == "demo_target/train"
    assert 0 <= label_free["mean_entropy"] <= np.log(19)
    assert sum(label_free["predicted_share"].values()) == pytest.approx(1.0)
    saved = json.loads((tmp_path / "demo" / "eval" / "final.json").read_text())
    assert saved["label_free"] == label_free
    # A file target without its folder: the stage still runs, without the signals.
    no_root = tiny_config("source_only", steps=1, eval_max_images=1, target="cityscapes")
    assert [d[0] for d in inputs.datasets_used(no_root, get_stage("source_only"))] == [
        "demo_source", "demo_source"]
