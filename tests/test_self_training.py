"""Self-training (CBST): the class-balanced thresholds, the stored rounds of
pseudo-labels, a stopped run resuming in its round, and the errors of its
inputs."""
import dataclasses
import errno
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import data_pipelines
from data_pipelines import cli
from data_pipelines.classes import IGNORE_LABEL
import dataset_files
from udamobile import config as config_lib, errors
from udamobile.experiments import methods, runner
from udamobile.training import checkpointing, losses, trainer, workdirs
from udamobile.training import pseudo_labels
from udamobile.training.stages.base import RunContext
from udamobile.training.stages.baselines import COLOUR_STATISTICS_FILE
from udamobile.training.pseudo_labels import CONFIDENCE_LEVELS
from udamobile.training.stages import get_stage
from udamobile.training.stages.self_training import class_weights, round_folder, round_of, round_starts
from udamobile.training.state import TrainingState

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABEL_IDS = (7, 8, 11, 21, 23, 26)  # road, sidewalk, building, vegetation, sky, car


def test_the_thresholds_keep_the_stated_fraction_of_each_class():
    # Class 0: 10 pixels, class 1: 20, class 2: 3, each with distinct confidences.
    predicted = np.array([0] * 10 + [1] * 20 + [2] * 3)
    levels = np.concatenate([np.arange(10) * 100, np.arange(20) * 50 + 7, [5, 6, 9]])
    counts = pseudo_labels.level_counts(predicted, levels, 3)
    for fraction, kept in ((0.3, (3, 6, 0)), (0.5, (5, 10, 1)), (1.0, (10, 20, 3))):
        thresholds = pseudo_labels.class_balanced_thresholds(counts, fraction)
        label = pseudo_labels.argmax_label(predicted, levels, thresholds)
        assert tuple(int((label == c).sum()) for c in range(3)) == kept
        # The most confident of each class are the ones kept; the rest are ignored.
        for c in range(3):
            mine = levels[predicted == c]
            chosen = mine[label[predicted == c] == c]
            assert np.all(chosen[:, None] > np.setdiff1d(mine, chosen)[None, :])
        assert set(np.unique(label)) <= {0, 1, 2, IGNORE_LABEL}
    assert pseudo_labels.class_balanced_thresholds(counts, 0.3)[2] == CONFIDENCE_LEVELS
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        pseudo_labels.class_balanced_thresholds(counts, 0.0)


def test_confidence_levels_are_steps_of_the_log_odds_and_do_not_saturate():
    # Softmax confidences 0.8, 1/2 (a tie) and two that are 1.0 in float32.
    logits = np.array([[0.0, np.log(4.0), -50.0], [1.0, 1.0, 1.0 + np.log(1e-9)],
                       [30.0, 0.0, 0.0], [40.0, 0.0, 0.0]], np.float32)
    assert np.all(tf.nn.softmax(logits).numpy()[2:].max(-1) == 1.0)
    predicted, levels = pseudo_labels.confidence_levels(logits)
    assert predicted.tolist() == [1, 0, 0, 0]
    odds = pseudo_labels.log_odds(logits)
    assert odds == pytest.approx([np.log(4.0), 0.0, 30.0 - np.log(2.0), 40.0 - np.log(2.0)],
                                 abs=1e-5)
    assert levels[1] < levels[0] < levels[2] < levels[3]
    assert pseudo_labels.confidence_of_level(levels[0]) == pytest.approx(0.8, abs=1e-3)


def test_cbst_assigns_the_class_of_the_largest_ratio_to_its_threshold():
    # p = (0.6, 0.4) against k = (0.99, 0.3): 0.6 / 0.99 < 1 <= 0.4 / 0.3.
    log_p, log_k = np.log([[0.6, 0.4]]), np.log([0.99, 0.3])
    assert pseudo_labels.class_normalised_label(log_p, log_k).tolist() == [1]
    # The top class alone (the argmax assignment) misses its threshold: ignored.
    assert pseudo_labels.class_normalised_label(log_p, np.log([0.99, 0.5])).tolist() == [
        IGNORE_LABEL]
    assert pseudo_labels.class_normalised_label(log_p, [np.log(0.5), np.inf]).tolist() == [0]


def test_both_assignments_label_logits_by_thresholds_of_levels():
    # Pixel 0: class 0 sure; pixel 1: class 0 barely above class 2, whose threshold is low.
    logits = np.array([[9.0, 0.0, 0.0], [1.0, -9.0, 0.9]])
    predicted, levels = pseudo_labels.confidence_levels(logits)
    low_for_2 = pseudo_labels.level_of(np.log(0.4 / 0.6))
    thresholds = np.array([levels[0], CONFIDENCE_LEVELS, low_for_2])
    assert pseudo_labels.pseudo_label(logits, thresholds, "argmax").tolist() == [0, IGNORE_LABEL]
    assert pseudo_labels.pseudo_label(logits, thresholds, "normalised").tolist() == [0, 2]
    # Exact where the probability rounds to 1: log p of the top class stays below 0.
    sure = pseudo_labels.log_probabilities(np.array([[60.0, 0.0, 0.0]]))
    assert sure[0, 0] < 0 and sure[0, 0] == pytest.approx(-2 * np.exp(-60.0), rel=1e-9)


def test_the_fraction_grows_each_round_up_to_its_maximum():
    schedule = [pseudo_labels.round_fraction(r, initial=0.2, step=0.05, maximum=0.3)
                for r in range(4)]
    assert schedule == pytest.approx([0.2, 0.25, 0.3, 0.3])


class _FixedLabeller:
    """Predicts class (column // 8) % 3 everywhere, with a confidence growing along the
    row: one logit per pixel above the others' 0, each distinct."""

    def logits(self, images):
        height, width = images[0].shape[:2]
        predicted = np.tile((np.arange(width) // 8) % 3, (height, 1))
        top = 3.0 + 0.01 * (np.tile(np.arange(width) * 16, (height, 1))
                            + np.arange(height)[:, None])
        logits = np.zeros((height, width, 19), np.float32)
        np.put_along_axis(logits, predicted[..., None], top[..., None], -1)
        return np.stack([logits] * len(images))


def _labels(count, shape=(32, 64)):
    rng = np.random.default_rng(0)
    return [np.kron(rng.choice(LABEL_IDS, (shape[0] // 8, shape[1] // 8)),
                    np.ones((8, 8), int)).astype(np.uint8) for _ in range(count)]


def test_a_round_is_stored_whole_and_read_back_with_the_ignored_pixels(tmp_path):
    dataset_files.write_cityscapes(tmp_path / "cs", "train", _labels(4))
    target = data_pipelines.open_dataset("cityscapes", tmp_path / "cs", "train")
    dataset_files.truncate(target.image_paths[2])
    bad_files = data_pipelines.BadFiles(1)
    folder = str(tmp_path / "round_0")
    record = pseudo_labels.label_round(_FixedLabeller(), target, folder, fraction=0.25,
                                       num_classes=19, bad_files=bad_files, about={"round": 0})
    assert record["assignment"] == "normalised"
    assert record["labelled"] == [0, 1, 3] and len(bad_files) == 1  # the bad one skipped
    assert pseudo_labels.read_round(folder) == record
    # Per class, a quarter of its predicted pixels (3 images x 32 rows x 16 or 24
    # columns): the most confident.
    assert record["kept_fraction"][:3] == [0.25, 0.25, 0.25]
    assert record["kept_fraction"][3:] == [None] * 16
    labelled = pseudo_labels.PseudoLabelled(target, folder, 19)
    assert len(labelled) == 3 and labelled.has_labels
    image, label = labelled.read_pair(2)
    assert np.array_equal(image, target.read_image(3)) and label.shape == (32, 64)
    assert set(np.unique(label)) == {0, 1, 2, IGNORE_LABEL}
    assert np.mean(label != IGNORE_LABEL) == pytest.approx(0.25)
    with pytest.raises(errors.DatasetError, match="no complete round"):
        pseudo_labels.PseudoLabelled(target, str(tmp_path / "elsewhere"), 19)


@pytest.fixture
def labelled_round(tmp_path):
    """(the target, its round folder): 4 Cityscapes train images of 32 x 64, labelled."""
    dataset_files.write_cityscapes(tmp_path / "cs", "train", _labels(4))
    target = data_pipelines.open_dataset("cityscapes", tmp_path / "cs", "train")
    folder = str(tmp_path / "round_0")
    pseudo_labels.label_round(_FixedLabeller(), target, folder, fraction=0.5, num_classes=19)
    return target, folder


def test_a_damaged_pseudo_label_is_a_bad_file_naming_it_and_the_remedy(labelled_round):
    # Before, a label of another size trained stretched and a value of 77 made
    # the loss fail with InvalidArgument.
    target, folder = labelled_round
    paths = [pseudo_labels.label_path(folder, index) for index in range(3)]
    dataset_files.write_grey_png(paths[0], np.full((32, 64), 77, np.uint8))
    dataset_files.write_grey_png(paths[1], np.zeros((64, 128), np.uint8))
    os.remove(paths[2])
    labelled = pseudo_labels.PseudoLabelled(target, folder, 19)
    remedy = re.escape(pseudo_labels.damaged_round_remedy(folder))
    for index, problem in enumerate([
            "a pseudo-label holding 77; it must hold train ids 0..18 or 255 (ignore)",
            "a pseudo-label of 128x64 pixels (width x height) for an image of 64x32; it must "
            "have its image's size", "file not found"]):
        with pytest.raises(errors.DatasetError,
                           match=f"^{re.escape(paths[index])}: {re.escape(problem)}; {remedy}$"):
            labelled.read_pair(index)
    assert remedy.startswith(re.escape(f"remove {folder} to label the round again"))
    assert labelled.read_label(3).shape == (32, 64)


@pytest.mark.parametrize("text, what", [('{"labelled": [0, 1', "not JSON"),
                                        ('{"images": 4}', "it holds no 'labelled'"),
                                        ('{"labelled": [0, 9]}', "not a list of image indices")])
def test_a_damaged_round_file_is_named_with_the_remedy(labelled_round, text, what):
    target, folder = labelled_round
    path = os.path.join(folder, pseudo_labels.ROUND_FILE)
    with open(path, "w") as file:
        file.write(text)
    with pytest.raises(errors.StateFileError) as error:
        pseudo_labels.PseudoLabelled(target, folder, 19)
    assert str(error.value).startswith(f"{path} is damaged") and what in str(error.value)
    assert str(error.value).endswith(pseudo_labels.damaged_round_remedy(folder))


def test_a_stop_request_ends_the_labelling_between_batches_and_leaves_no_round(tmp_path):
    dataset_files.write_cityscapes(tmp_path / "cs", "train", _labels(20))
    target = data_pipelines.open_dataset("cityscapes", tmp_path / "cs", "train")
    asked = []

    def stop_before_the_third_batch():
        asked.append(True)
        if len(asked) == 3:
            raise errors.Interrupted("SIGTERM at step 0")

    with pytest.raises(errors.Interrupted):
        pseudo_labels.label_round(_FixedLabeller(), target, str(tmp_path / "round_0"),
                                  fraction=0.5, num_classes=19,
                                  check_stop=stop_before_the_third_batch)
    assert os.listdir(tmp_path) == ["cs"]  # neither the round nor its staging folder


def test_a_full_disk_while_pseudo_labelling_names_the_round_folder(labelled_round, monkeypatch):
    # PIL's write error names no file; files.atomic_output adds the artifact's path.
    target, folder = labelled_round
    full = os.path.join(os.path.dirname(folder), "round_1")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", no_space)
    with pytest.raises(OSError) as error:
        pseudo_labels.label_round(_FixedLabeller(), target, full, fraction=0.5, num_classes=19)
    assert cli.describe_os_error(error.value) == f"{full}: No space left on device"
    assert sorted(os.listdir(os.path.dirname(folder))) == ["cs", "round_0"]


def test_the_self_training_loss_leaves_ignored_target_pixels_out(tiny_config, eagerly):
    stage = get_stage("self_training")
    cfg = tiny_config("self_training", dropout_rate=0.0)
    state = TrainingState(cfg, stage)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (2, 2, 32, 32, 3)), tf.float32)
    labels = tf.constant(rng.integers(0, 19, (2, 32, 32)), tf.int32)
    step = stage.make_step(state, cfg, stage.active_updates(0, cfg))
    ignored = tf.fill([2, 32, 32], IGNORE_LABEL)
    metrics = step({"source_image": images[0], "source_label": labels,
                    "target_image": images[1], "target_label": ignored})
    assert float(metrics["loss/target_ce"]) == 0.0 and float(metrics["loss/source_ce"]) > 0


def test_class_weights_come_from_the_source_labels_and_are_off_in_cbst(domains):
    assert class_weights(_config(domains, class_weight_power=0.0)) is None
    assert config_lib.get_config("paper_gta5", "self_training").loss.class_weight_power == 0
    weights = class_weights(_config(domains, class_weight_power=1.0))
    source = data_pipelines.open_dataset("gta5", domains[0], "train")
    shares = np.zeros(19)
    for index in range(len(source)):  # 8 train labels: all read
        label = source.read_label(index)
        shares += np.bincount(label[label != IGNORE_LABEL], minlength=19)[:19]
    shares /= shares.sum()
    present = shares > 0
    assert set(np.flatnonzero(present)) == {0, 1, 2, 8, 10, 13}
    assert weights[present] == pytest.approx(np.median(shares[present]) / shares[present])
    assert weights[~present] == pytest.approx(1.0)


def test_class_weights_weigh_the_source_cross_entropy_and_not_the_pseudo_labels(
        tiny_config, eagerly):
    stage = get_stage("self_training")
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (2, 2, 32, 32, 3)), tf.float32)
    labels = tf.constant(rng.integers(0, 19, (2, 2, 32, 32)), tf.int32)
    batch = {"source_image": images[0], "source_label": labels[0],
             "target_image": images[1], "target_label": labels[1]}
    metrics = {}
    for power in (0.0, 1.0):
        cfg = tiny_config("self_training", dropout_rate=0.0, class_weight_power=power)
        tf.keras.utils.set_random_seed(0)  # the same initial weights for both
        state = TrainingState(cfg, stage)
        metrics[power] = stage.make_step(state, cfg, stage.active_updates(0, cfg))(batch)
    assert float(metrics[1.0]["loss/target_ce"]) == pytest.approx(
        float(metrics[0.0]["loss/target_ce"]), rel=1e-5)
    assert abs(float(metrics[1.0]["loss/source_ce"]) - float(metrics[0.0]["loss/source_ce"])) > 1e-3


# --- the stage in the trainer: rounds, resuming, errors --------------------------

@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    """(GTA5 root, Cityscapes root): 9 source files (8 train), 3 target train images."""
    root = tmp_path_factory.mktemp("domains")
    dataset_files.write_gta5(root / "GTA5", _labels(9, (32, 64)))
    dataset_files.write_cityscapes(root / "cityscapes", "train", _labels(3, (32, 64)))
    return str(root / "GTA5"), str(root / "cityscapes")


def _config(domains, stage="self_training", **overrides):
    from conftest import TINY

    source, target = domains
    cfg = config_lib.get_config("demo", stage)
    return config_lib.validate(config_lib.override(cfg, **{
        **TINY, "source": "gta5", "source_root": source, "target": "cityscapes",
        "target_root": target, "resize_width": 64, "steps": 4, "self_training_rounds": 2,
        "checkpoint_every": 1, "keep_checkpoints": 10, "eval_max_images": 1,
        "label_free_images": 1, **overrides}))


@pytest.fixture(scope="module")
def adapted(domains, tmp_path_factory):
    """{network: checkpoint} of an 'adapted' segmenter and G_ST (untrained, tiny)."""
    cfg = _config(domains)
    state = TrainingState(dataclasses.replace(cfg, stage="adaptation"), get_stage("adaptation"))
    path = tf.train.Checkpoint(step=state.step, segmenter=state.networks["segmenter"],
                               g_st=state.networks["g_st"]).write(
        str(tmp_path_factory.mktemp("adapted") / "ckpt"))
    return {"segmenter": path, "g_st": path}


def _round_files(workdir, round_index):
    folder = round_folder(workdir, round_index)
    return {name: (os.path.getmtime(os.path.join(folder, name)),
                   open(os.path.join(folder, name), "rb").read())
            for name in sorted(os.listdir(folder))}


def test_the_rounds_split_the_steps():
    cfg = config_lib.override(config_lib.get_config("demo", "self_training"), steps=10,
                              self_training_rounds=3)
    assert round_starts(cfg) == (0, 3, 6)
    assert [round_of(step, cfg) for step in range(10)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]


@pytest.mark.slow
def test_a_stopped_run_resumes_in_its_round_with_the_same_pseudo_labels(
        domains, adapted, tmp_path, monkeypatch, eagerly):
    cfg = _config(domains)  # 4 steps, rounds starting at steps 0 and 2
    workdir = str(tmp_path / "self_training")
    next_batch = trainer.StageRun.next_batch

    def stopped_at_step_1(run):  # SIGTERM while the first step runs
        os.kill(os.getpid(), signal.SIGTERM)
        return next_batch(run)

    monkeypatch.setattr(trainer.StageRun, "next_batch", stopped_at_step_1)
    with pytest.raises(errors.Interrupted, match="at step 1"):
        trainer.train(cfg, workdir, sources=adapted)
    monkeypatch.setattr(trainer.StageRun, "next_batch", next_batch)
    assert os.listdir(os.path.dirname(round_folder(workdir, 0))) == ["round_0"]
    round_0 = _round_files(workdir, 0)
    record = pseudo_labels.read_round(round_folder(workdir, 0))
    assert record["step"] == 0 and record["fraction"] == pytest.approx(0.2)

    # Its labels gone, the round cannot resume from the same weights: refused.
    os.rename(round_folder(workdir, 0), str(tmp_path / "kept"))
    with pytest.raises(errors.DatasetError, match="round_0: the pseudo-labels of round 0 "
                       "are missing, but the run resumes at step 1"):
        trainer.train(cfg, workdir, sources=adapted)
    os.rename(str(tmp_path / "kept"), round_folder(workdir, 0))

    scores = trainer.train(cfg, workdir, sources=adapted)
    assert scores["step"] == 4
    assert _round_files(workdir, 0) == round_0  # the same files, not made again
    record = pseudo_labels.read_round(round_folder(workdir, 1))
    assert record["step"] == 2 and record["fraction"] == pytest.approx(0.25)
    # The round was labelled by the segmenter saved at its first step.
    assert 2 in {checkpointing.checkpoint_step(p) for p in tf.train.get_checkpoint_state(
        workdirs.checkpoint_dir(workdir)).all_model_checkpoint_paths}


def test_a_self_training_stage_needs_an_adapted_segmenter(domains, tmp_path):
    with pytest.raises(errors.StartError, match="needs a trained segmenter"):
        trainer.train(_config(domains, allow_random_start=True), str(tmp_path / "random"),
                      sources={})
    dirs = {stage: methods.stage_dir(str(tmp_path), stage)
            for stage in methods.get_method("full_self_training").stages}
    with pytest.raises(errors.WorkdirError,
                       match="starts its segmenter from stage adaptation .* has not been run"):
        runner.stage_sources("full_self_training", "self_training", dirs,
                             _config(domains))


def test_a_target_folder_without_images_is_named(domains, tmp_path):
    empty = tmp_path / "cityscapes"
    (empty / "leftImg8bit" / "train").mkdir(parents=True)
    with pytest.raises(errors.DatasetError, match=str(empty / "leftImg8bit" / "train")):
        trainer.train(_config(domains, target_root=str(empty)), str(tmp_path / "run"),
                      sources={})
    assert not os.path.exists(tmp_path / "run" / "config.json")


@pytest.mark.parametrize("values, message", [
    (dict(pseudo_label_fraction=0.0), "--pseudo_label_fraction=0.0 must be in (0, 1]"),
    (dict(pseudo_label_fraction_max=1.2), "--pseudo_label_fraction_max=1.2 must be in (0, 1]"),
    (dict(pseudo_label_fraction=0.6), "--pseudo_label_fraction_max=0.5 is below "
                                      "--pseudo_label_fraction=0.6")])
def test_a_fraction_outside_0_1_is_named(values, message):
    with pytest.raises(errors.UsageError) as error:
        methods.stage_configs("demo", "full_self_training", values)
    assert message in str(error.value)


def test_train_py_names_a_bad_fraction_before_anything_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), "--preset=demo",
         "--method=full_self_training", f"--workdir={tmp_path}", "--pseudo_label_fraction=1.5"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--pseudo_label_fraction=1.5 must be in (0, 1]" in result.stderr
    assert "Traceback" not in result.stderr and not os.listdir(tmp_path)


# --- colour_self_training: the same rounds from the colour-transfer segmenter ----

def test_colour_self_training_feeds_the_source_patch_itself_and_builds_no_translator(
        tiny_config, eagerly):
    stage = get_stage("colour_self_training")
    cfg = tiny_config("colour_self_training", dropout_rate=0.0)
    state = TrainingState(cfg, stage)
    assert set(state.networks) == {"segmenter"}
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (2, 2, 32, 32, 3)), tf.float32)
    labels = tf.constant(rng.integers(0, 19, (2, 2, 32, 32)), tf.int32)
    # Training mode normalizes with the batch's statistics: the same logits as in the step.
    expected = losses.cross_entropy(labels[0], state.networks["segmenter"](
        images[0], training=True)["logits"], class_weights(cfg))
    metrics = stage.make_step(state, cfg, stage.active_updates(0, cfg))(
        {"source_image": images[0], "source_label": labels[0], "target_image": images[1],
         "target_label": labels[1]})
    assert float(metrics["loss/source_ce"]) == pytest.approx(float(expected), rel=1e-5)


def test_the_colour_self_training_row_starts_from_the_colour_transfer_segmenter(
        domains, tmp_path):
    dirs = {stage: methods.stage_dir(str(tmp_path), stage)
            for stage in methods.get_method("colour_self_training").stages}
    with pytest.raises(errors.WorkdirError, match="starts its segmenter from stage "
                       "colour_transfer .* has not been run"):
        runner.stage_sources("colour_self_training", "colour_self_training", dirs,
                             _config(domains, "colour_self_training"))


@pytest.mark.slow
def test_colour_self_training_trains_on_colour_matched_source_and_its_rounds(
        domains, adapted, tmp_path, eagerly):
    cfg = _config(domains, "colour_self_training")
    workdir = str(tmp_path / "colour_self_training")
    scores = trainer.train(cfg, workdir, sources={"segmenter": adapted["segmenter"]})
    assert scores["step"] == 4
    assert [pseudo_labels.read_round(round_folder(workdir, r))["step"] for r in (0, 1)] == [0, 2]
    path = os.path.join(workdir, COLOUR_STATISTICS_FILE)
    statistics = json.load(open(path))
    assert statistics["dataset"] == "cityscapes/train"
    # The stream reads the statistics kept in the folder and moves the source
    # images, only, to them (here far from the test domains' own colours).
    json.dump({**statistics, "mean": [20.0, 60.0, -60.0]}, open(path, "w"))
    run = RunContext(workdir=workdir, chief=True, bad_files=None, state=None)
    matched = next(iter(get_stage("colour_self_training").build_inputs(cfg, 0, run)))
    plain = next(iter(get_stage("self_training").build_inputs(cfg, 0, run)))
    assert np.array_equal(plain["source_label"], matched["source_label"])
    assert np.array_equal(plain["target_image"], matched["target_image"])
    assert np.abs(plain["source_image"] - matched["source_image"]).mean() > 0.2
