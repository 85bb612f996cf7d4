"""Faults a user meets on a long run, through the programs: exit status, one line
naming the file or flag, and nothing lost (the previous checkpoint loads, the
computed results are printed).

Each case of issue 15's "Why" list, and the test that pins it (here unless named):

| "Why" case                                     | test                                             |
|------------------------------------------------|--------------------------------------------------|
| 1. a truncated file mid-run (trace/abort/hang) | test_a_truncated_file_mid_run_is_skipped_or_stops_cleanly_five_times |
| 1. the held-out split never checked            | test_a_bad_held_out_file_stops_the_start_up_check_before_any_write |
| 1. evaluate.py on a bad val file               | test_evaluate_skips_a_bad_file_and_counts_it, test_evaluate_stops_at_a_bad_file_past_the_limit |
| 2. train ids stored as label ids               | test_the_check_names_train_ids_saved_as_label_ids; test_data_check.py::test_train_ids_* |
| 2. label values out of range (200)             | test_data_check.py::test_values_outside_the_formats_ids_are_a_problem_with_their_fraction |
| 2. labels of another size (3x2, transposed)    | test_data_check.py::test_a_label_of_another_aspect_is_a_problem_naming_it; test_data_formats.py::test_a_label_of_another_aspect_or_scale_is_an_error_naming_it |
| 3. a truncated checkpoint (resume, evaluate)   | test_resume.py::test_a_damaged_latest_checkpoint_is_named_and_resume_falls_back |
| 4. a read-only / full disk during a save       | test_a_failed_checkpoint_save_is_one_line_and_the_previous_checkpoint_loads |
| 4. --workdir that is a file                    | test_cli.py (case "{file}/run: Not a directory") |
| 4. the JSON of evaluate.py cannot be written   | test_evaluate_prints_its_table_before_a_failed_write |
| 4. ckpt-N_temp/ left behind                    | test_resume.py::test_a_stale_lock_and_unfinished_saves_are_cleaned_up_at_start |
| 5. resuming with a smaller --steps             | test_resume.py::test_resuming_with_other_settings_is_refused_and_keeps_the_config |
| 6. --aspp_rates=-6,12, --dropout_rate=1.5, --num_classes=5 | test_config.py::test_out_of_range_values_are_named |
| 6. a failed run leaves config.json; --segmenter_lr=nan | test_a_bad_flag_is_named_and_leaves_no_config |
| 6. --patch_size larger than the image          | test_trainer.py::test_a_patch_larger_than_the_resized_image_is_named_with_the_upscaling; test_data_patches.py::test_no_preset_crops_a_padded_row_of_any_dataset (the resize widens: no padding) |
| 6. evaluate.py --max_images=-1                 | test_cli.py (case "--max_images") |
| 7. two runs on one work directory              | test_trainer.py::test_cli_refuses_a_work_directory_in_use_naming_the_pid, test_resume.py::test_a_stale_lock_* |
| 8. SavedModel: empty batch, scalar             | test_export.py::test_saved_model_rejects_float_wrong_rank_empty_and_scalar_input |
| 8. TFLite input of the wrong shape             | test_export.py::test_readme_deployment_example, ::test_tflite_input_size_must_match_the_input_width_flag |
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import data_pipelines
from data_pipelines import validation
import dataset_files
from program_runs import error_line
from udamobile.training import checkpointing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, "train.py")
# One stage at test size: 4 steps of 4 patches read every file of a 15-image split.
STAGE_FLAGS = [
    "--preset=paper_gta5", "--method=source_only", "--stage=source_only",
    "--allow_random_start", "--patch_size=32", "--resize_width=64", "--width_multiplier=0.35",
    "--aspp_filters=8", "--low_level_filters=4", "--decoder_filters=8", "--batch_size=4",
    "--steps=4", "--checkpoint_every=2", "--log_every=1", "--image_every=1000",
    "--eval_every=0", "--eval_max_images=1", "--label_free_images=1"]
LABEL_IDS = (7, 8, 11, 21, 23, 26)  # road, sidewalk, building, vegetation, sky, car
TIMEOUT = 300  # seconds; a run that hangs fails the test instead of blocking the suite


def _labels(count, shape=(32, 64)):
    rng = np.random.default_rng(0)
    return [np.kron(rng.choice(LABEL_IDS, (shape[0] // 8, shape[1] // 8)),
                    np.ones((8, 8), int)).astype(np.uint8) for _ in range(count)]


def _run(command, *args, cwd=REPO):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = REPO
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)


def _train(*args):
    return _run([sys.executable, TRAIN], *STAGE_FLAGS, *args)


def _evaluate(*args):
    return _run([sys.executable, os.path.join(REPO, "evaluate.py")], *args)


@pytest.fixture(scope="module")
def broken_gta5(tmp_path_factory):
    """(root, path) of 16 GTA5 files (15 train, 1 held out) whose 10th train image is
    truncated; it is not among the files the start-up check samples."""
    root = tmp_path_factory.mktemp("GTA5")
    dataset_files.write_gta5(root, _labels(16))
    train = data_pipelines.open_dataset("gta5", root, "train")
    assert len(train) == 15 and 9 not in validation.sample_indices(15, 8)
    dataset_files.truncate(train.image_paths[9])
    return root, train.image_paths[9]


@pytest.fixture(scope="module")
def skipping_run(broken_gta5, tmp_path_factory):
    """(train.py's result, its stage work directory): a run on the broken dataset
    that skips the bad file."""
    root, _ = broken_gta5
    workdir = tmp_path_factory.mktemp("trained")
    return _train(f"--workdir={workdir}", f"--source_root={root}"), str(workdir / "source_only")


@pytest.fixture(scope="module")
def trained_stage(skipping_run):
    """A stage work directory trained on the broken dataset (its bad file skipped)."""
    result, stage_dir = skipping_run
    assert result.returncode == 0, result.stderr[-3000:]
    return stage_dir


@pytest.mark.slow
def test_a_truncated_file_mid_run_is_skipped_or_stops_cleanly_five_times(
        broken_gta5, skipping_run, tmp_path):
    # The first run skips the file and finishes (the evaluation tests below
    # score its segmenter); the other four stop at it (nine did, until the suite
    # neared its 15-minute budget). Those read the whole
    # split in their first batch, so they stop before tracing a step
    # (seconds, not a minute, each): the stop with the readers' threads busy
    # is where runs aborted or hung.
    root, bad = broken_gta5
    cause = f"{bad}: cannot decode the file"
    result, stage_dir = skipping_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert (result.stdout + result.stderr).count(cause) == 1  # reported once
    assert checkpointing.checkpoint_step(checkpointing.resolve_checkpoint(stage_dir)) == 4
    for run in range(1, 5):
        workdir = tmp_path / f"run{run}"
        stage_dir = str(workdir / "source_only")
        result = _train(f"--workdir={workdir}", f"--source_root={root}", "--max_bad_files=0",
                        "--batch_size=15")
        assert result.returncode == 1, result.stderr[-3000:]
        line = error_line(result, "train.py")
        assert f"1 bad file(s), more than --max_bad_files=0; the last: {cause}" in line
        stopped = int(re.search(r"Stopped at step (\d+), checkpoint saved", line).group(1))
        _, info = checkpointing.restore_segmenter(stage_dir)  # nothing lost: it loads
        assert info["step"] == stopped


@pytest.mark.slow
def test_a_failed_checkpoint_save_is_one_line_and_the_previous_checkpoint_loads(
        broken_gta5, tmp_path):
    # A real TensorFlow filesystem error in tf.train.CheckpointManager.save: the
    # folder the second save stages into is taken by a file.
    root, _ = broken_gta5
    blocker = tmp_path / "source_only" / "checkpoints" / "ckpt-4_temp"
    script = (
        "import runpy, sys, tensorflow as tf\n"
        "save = tf.train.CheckpointManager.save\n"
        "def blocked(self, checkpoint_number=None, **kwargs):\n"
        "    if checkpoint_number == 4:\n"
        f"        open({str(blocker)!r}, 'w').close()\n"
        "    return save(self, checkpoint_number=checkpoint_number, **kwargs)\n"
        "tf.train.CheckpointManager.save = blocked\n"
        f"sys.argv = [{TRAIN!r}] + sys.argv[1:]\n"
        f"runpy.run_path({TRAIN!r}, run_name='__main__')\n")
    result = _run([sys.executable, "-c", script], *STAGE_FLAGS, f"--workdir={tmp_path}",
                  f"--source_root={root}")
    assert result.returncode == 1, result.stderr[-3000:]
    line = error_line(result, "train.py")
    assert line.startswith(f"train.py: {blocker.parent}: saving checkpoint 4 failed: ")
    assert "Not a directory" in line
    # Nothing lost: the previous checkpoint loads (the next start removes the
    # leftover: test_resume.py::test_a_stale_lock_and_unfinished_saves_*).
    assert checkpointing.restore_segmenter(str(tmp_path / "source_only"))[1]["step"] == 2


@pytest.mark.slow
def test_evaluate_skips_a_bad_file_and_counts_it(trained_stage, broken_gta5, tmp_path):
    root, bad = broken_gta5
    output = tmp_path / "results.json"
    result = _evaluate(f"--model={trained_stage}", "--dataset=gta5", f"--root={root}",
                       "--split=train", f"--output_json={output}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "gta5/train: 14 images" in result.stdout
    assert f"1 bad file(s) skipped, not scored; the first: {bad}: cannot decode" in result.stdout
    results = json.loads(output.read_text())
    assert results["dataset"]["num_images"] == 14 and len(results["bad_files"]) == 1


@pytest.mark.slow
def test_evaluate_stops_at_a_bad_file_past_the_limit(trained_stage, broken_gta5):
    root, bad = broken_gta5
    result = _evaluate(f"--model={trained_stage}", "--dataset=gta5", f"--root={root}",
                       "--split=train", "--max_bad_files=0")
    assert result.returncode == 1
    assert f"more than --max_bad_files=0; the last: {bad}: cannot decode" in error_line(
        result, "evaluate.py")


@pytest.mark.slow
def test_evaluate_prints_its_table_before_a_failed_write(trained_stage, broken_gta5, tmp_path):
    root, _ = broken_gta5
    (tmp_path / "file").write_text("not a folder\n")
    result = _evaluate(f"--model={trained_stage}", "--dataset=gta5", f"--root={root}",
                       "--split=heldout", f"--output_json={tmp_path / 'file' / 'out.json'}")
    assert result.returncode == 1
    assert "mIoU" in result.stdout  # the computed results are not lost
    assert f"{tmp_path / 'file'}" in error_line(result, "evaluate.py")


def test_a_bad_held_out_file_stops_the_start_up_check_before_any_write(tmp_path):
    root = tmp_path / "GTA5"
    dataset_files.write_gta5(root, _labels(4))
    heldout = data_pipelines.open_dataset("gta5", root, "heldout").image_paths[0]
    dataset_files.truncate(heldout)
    workdir = tmp_path / "run"
    result = _train(f"--workdir={workdir}", f"--source_root={root}")
    assert result.returncode == 1
    line = error_line(result, "train.py")
    assert "dataset check failed: gta5/heldout" in line and f"{heldout}: cannot decode" in line
    assert "--split=heldout --all decodes every file" in line
    # Printed once at start-up: the command that checks every split the run reads.
    assert result.stdout.count(f"python -m data_pipelines.check --dataset=gta5 --root={root} "
                               "--split=train --all") == 1
    assert not (workdir / "source_only" / "config.json").exists()


@pytest.mark.parametrize("flag", ["--segmenter_lr=nan", "--num_classes=5", "--aspp_rates=-6,12"])
def test_a_bad_flag_is_named_and_leaves_no_config(tmp_path, flag):
    result = _train(f"--workdir={tmp_path}", "--source_root=/nowhere", flag)
    assert result.returncode == 2
    assert flag.split("=")[0] in error_line(result, "train.py")
    assert not (tmp_path / "source_only" / "config.json").exists()


def test_the_check_names_train_ids_saved_as_label_ids(tmp_path):
    train_ids = np.zeros((32, 32), np.uint8)  # road, train id 0, is label id 0 "unlabeled"
    train_ids[:12], train_ids[12:20] = 10, 13  # sky, car
    dataset_files.write_cityscapes(tmp_path, "val", [train_ids] * 3)
    result = _run([sys.executable, "-m", "data_pipelines.check"], "--dataset=cityscapes",
                  f"--root={tmp_path}", "--split=val", "--all")
    assert result.returncode == 1
    assert "looks like train ids (0-18) saved as label ids" in error_line(
        result, "python -m data_pipelines.check")
