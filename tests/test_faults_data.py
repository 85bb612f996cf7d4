"""Data-side faults of the second round (issue 34), through the programs: exit
status, one line naming the file and what was expected, no traceback, and
nothing computed lost.

| "Why" case                                          | test |
|-----------------------------------------------------|------|
| 5. symlinked city folders skipped silently (check, evaluate.py); a link loop | test_the_check_reads_linked_cities_and_names_tiny_huge_and_16_bit_files, test_evaluate_py_scores_linked_cities_and_skips_tiny_huge_and_16_bit_files; test_data_check.py::test_linked_city_folders_are_read_and_what_is_skipped_is_noted |
| 6. a 16-bit PNG holding 8-bit values reads as black | the same two tests; test_data_check.py::test_16_bit_files_holding_8_bit_values_are_problems_naming_what_was_expected, test_data_formats.py::test_a_16_bit_image_using_its_range_reads_as_its_high_bytes |
| 9. pseudo-labels of the wrong size or values; a damaged round.json | test_damaged_pseudo_labels_stop_the_resumed_run_naming_them_and_the_remedy; test_self_training.py::test_a_damaged_pseudo_label_is_a_bad_file_naming_it_and_the_remedy, ::test_a_damaged_round_file_is_named_with_the_remedy |
| 10. a 1x1 image and label pass and train            | the check and evaluate.py tests; test_data_check.py::test_a_tiny_image_is_a_problem_naming_it_and_the_floor |
| 12. a decompression bomb crashes check --all, aborts training | the check and evaluate.py tests (a bad file, skipped); test_data_check.py::test_an_image_past_the_pixel_limit_is_a_problem_and_is_never_decoded, test_data_errors.py::test_any_exception_of_a_decoder_is_an_error_naming_the_file |
| 17. no space left while pseudo-labelling            | test_self_training.py::test_a_full_disk_while_pseudo_labelling_names_the_round_folder |
| 20. SIGTERM during labelling waits for two passes   | test_sigterm_while_pseudo_labelling_stops_within_a_batch_with_a_checkpoint; test_self_training.py::test_a_stop_request_ends_the_labelling_between_batches_and_leaves_no_round |
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from data_pipelines import readers
import dataset_files
from program_runs import error_line
from udamobile import files
from udamobile.experiments import methods
from udamobile.training import checkpointing, pseudo_labels, workdirs
from udamobile.training.stages.self_training import round_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300  # seconds; a run that hangs fails the test instead of blocking the suite
# full_self_training at test size on the demo domains; its self-training stage
# labels demo_target's 2,000 train images (about a minute a pass here).
TINY = dict(patch_size=32, width_multiplier=0.35, aspp_filters=8, low_level_filters=4,
            decoder_filters=8, generator_filters=4, generator_blocks=1, batch_size=2, steps=4,
            log_every=1, image_every=1000, eval_every=0, eval_max_images=1,
            label_free_images=1)
SELF_TRAINING = ["--preset=demo", "--method=full_self_training", "--stage=self_training",
                 *(f"--{name}={value}" for name, value in TINY.items())]


def _env():
    return {**{k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
            "PYTHONPATH": REPO}


def _run(*command):
    return subprocess.run([sys.executable, *command], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=TIMEOUT)


# --- files no dataset holds, and cities behind links: the check and evaluate.py ---

@pytest.fixture(scope="module")
def faulty_cityscapes(tmp_path_factory):
    """(root, {fault: path}): Cityscapes val with aachen's 4 pairs, 3 of them faulty (a
    1x1 image, a 196 Mpx header, a 16-bit image of 8-bit values), and bonn's 2 good
    pairs in a folder linked in from elsewhere, beside a link looping back up."""
    base = tmp_path_factory.mktemp("faulty")
    root, elsewhere = base / "cityscapes", base / "other_disk"
    rng = np.random.default_rng(0)
    labels = [np.kron(rng.choice((7, 11, 21, 23, 26), (4, 8)), np.ones((8, 8), int)).astype(
        np.uint8) for _ in range(4)]
    pairs = dataset_files.write_cityscapes(root, "val", labels, city="aachen")
    dataset_files.write_cityscapes(elsewhere, "val", labels[:2], city="bonn")
    for kind in ("leftImg8bit", "gtFine"):
        os.symlink(elsewhere / kind / "val" / "bonn", root / kind / "val" / "bonn")
    loop = root / "leftImg8bit" / "val" / "aachen" / "loop"
    os.symlink(root / "leftImg8bit", loop)
    faults = {"tiny": pairs[0][0], "bomb": pairs[1][0], "16-bit": pairs[2][0], "loop": str(loop)}
    dataset_files.write_rgb_png(faults["tiny"], np.zeros((1, 1, 3), np.uint8))
    dataset_files.write_grey_png(pairs[0][1], np.full((1, 1), 7, np.uint8))
    dataset_files.write_png_header(faults["bomb"], 14000, 14000)
    dataset_files.write_rgb_png(faults["16-bit"],
                                dataset_files.grey_image_of(labels[2]).astype(np.uint16))
    return root, faults


# What the readers say of each faulty file (readers.py).
EXPECTED = {
    "tiny": f"1x1 pixels (width x height) is under the {readers.MIN_SIDE} pixels a side must "
            "have (readers.MIN_SIDE)",
    "bomb": "the header gives over 179 Mpx, more than the 64 Mpx an image may have "
            "(readers.MAX_PIXELS",
    "16-bit": "expected an 8-bit colour PNG (or a 16-bit one using its range), got 16-bit, 3 "
              "channel(s), largest value 26",
}


def test_the_check_reads_linked_cities_and_names_tiny_huge_and_16_bit_files(faulty_cityscapes):
    # Before: 4 images of 6, no word of the link; a traceback on the bomb.
    root, faults = faulty_cityscapes
    result = _run("-m", "data_pipelines.check", "--dataset=cityscapes", f"--root={root}",
                  "--split=val", "--all")
    assert result.returncode == 1
    line = error_line(result, "python -m data_pipelines.check")
    assert line.startswith(f"python -m data_pipelines.check: cityscapes/val at {root}: 3 "
                           "problem(s), the first: ")
    assert "6 images with labels; checked 6" in result.stdout
    assert f"note: skipped 1 symlink loop(s): {faults['loop']} -> {root / 'leftImg8bit'}" in (
        result.stdout)
    for fault, expected in EXPECTED.items():
        assert f"PROBLEM: {faults[fault]}: {expected}" in result.stdout, fault


@pytest.fixture(scope="module")
def adapted_method(tmp_path_factory):
    """A method folder of full_self_training whose adaptation stage has finished (its
    tiny networks untrained): what the self-training stage starts from."""
    import tensorflow as tf

    from udamobile.nets import networks

    workdir = tmp_path_factory.mktemp("method")
    cfg = methods.stage_configs("demo", "full_self_training", TINY,
                                only="adaptation")["adaptation"]
    folder = methods.stage_dir(str(workdir), "adaptation")
    workdirs.write_config(folder, cfg)
    checkpoint = tf.train.Checkpoint(
        step=tf.Variable(cfg.optim.steps, dtype=tf.int64),
        **{name: networks.build_network(name, cfg.model) for name in ("segmenter", "g_st")})
    tf.train.CheckpointManager(checkpoint, workdirs.checkpoint_dir(folder),
                               max_to_keep=1).save(checkpoint_number=cfg.optim.steps)
    return workdir


@pytest.mark.slow
def test_evaluate_py_scores_linked_cities_and_skips_tiny_huge_and_16_bit_files(
        faulty_cityscapes, adapted_method, tmp_path):
    root, faults = faulty_cityscapes
    output = tmp_path / "results.json"
    result = _run("evaluate.py", f"--model={methods.stage_dir(str(adapted_method), 'adaptation')}",
                  "--dataset=cityscapes", f"--root={root}", "--split=val",
                  f"--output_json={output}")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "cityscapes/val: 3 images" in result.stdout  # aachen's good one and bonn's two
    assert "3 bad file(s) skipped, not scored; the first: " in result.stdout
    assert f"Skipped {faults['loop']} -> {root / 'leftImg8bit'} (symlink loop)" in result.stderr
    results = json.loads(output.read_text())
    assert results["dataset"]["num_images"] == 3 and len(results["bad_files"]) == 3
    for fault, expected in EXPECTED.items():
        assert any(message.startswith(f"{faults[fault]}: {expected}")
                   for message in results["bad_files"]), fault


# --- self-training's labelling: a stop request, damaged rounds -------------------

@pytest.fixture(scope="module")
def interrupted_labelling(adapted_method, tmp_path_factory):
    """(train.py's result, seconds from SIGTERM to its exit, the method folder): the
    self-training stage stopped by SIGTERM once its first labelling pass started."""
    workdir = tmp_path_factory.mktemp("interrupted")
    shutil.copytree(adapted_method, workdir, dirs_exist_ok=True)
    with open(workdir / "stdout.txt", "w") as stdout:
        process = subprocess.Popen(
            [sys.executable, "train.py", *SELF_TRAINING, f"--workdir={workdir}"], cwd=REPO,
            env=_env(), stdout=stdout, stderr=subprocess.PIPE, text=True)
        lines, labelling = [], threading.Event()

        def read_stderr():
            for line in process.stderr:
                lines.append(line)
                if "Pseudo-labelling the 2000 images of demo_target/train" in line:
                    labelling.set()

        reader = threading.Thread(target=read_stderr)
        reader.start()
        assert labelling.wait(TIMEOUT), "".join(lines[-30:])
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        process.wait(TIMEOUT)
        seconds = time.monotonic() - signalled
        reader.join()
    result = subprocess.CompletedProcess(process.args, process.returncode,
                                         (workdir / "stdout.txt").read_text(), "".join(lines))
    return result, seconds, workdir


@pytest.mark.slow
def test_sigterm_while_pseudo_labelling_stops_within_a_batch_with_a_checkpoint(
        interrupted_labelling):
    # Before: the run went on through both passes over the 2,000 images (about
    # two minutes here) and a step before it stopped.
    result, seconds, workdir = interrupted_labelling
    stage_dir = methods.stage_dir(str(workdir), "self_training")
    assert result.returncode == 1
    assert error_line(result, "train.py") == (
        f"train.py: SIGTERM at step 0: checkpoint saved in {stage_dir}; run the same command "
        "to resume")
    assert seconds < 15, seconds
    labels = os.path.dirname(round_folder(stage_dir, 0))
    assert not os.path.exists(labels) or os.listdir(labels) == []  # no round, whole or half
    _, info = checkpointing.restore_segmenter(stage_dir)
    assert info["step"] == 0


@pytest.mark.slow
def test_damaged_pseudo_labels_stop_the_resumed_run_naming_them_and_the_remedy(
        interrupted_labelling):
    # A round damaged by hand: a label value no class has (the loss failed with
    # InvalidArgument) and a label of another size (it trained stretched).
    _, _, workdir = interrupted_labelling
    stage_dir = methods.stage_dir(str(workdir), "self_training")
    folder = round_folder(stage_dir, 0)
    os.makedirs(folder)
    files.write_json(os.path.join(folder, pseudo_labels.ROUND_FILE), {"labelled": [0, 1]})
    dataset_files.write_grey_png(pseudo_labels.label_path(folder, 0),
                                 np.full((128, 256), 77, np.uint8))
    dataset_files.write_grey_png(pseudo_labels.label_path(folder, 1), np.zeros((64, 128), np.uint8))
    result = _run("train.py", *SELF_TRAINING, f"--workdir={workdir}", "--max_bad_files=1")
    assert result.returncode == 1
    line = error_line(result, "train.py")
    assert line.startswith("train.py: 2 bad file(s), more than --max_bad_files=1; the last: ")
    assert pseudo_labels.damaged_round_remedy(folder) in line
    assert "Stopped at step 0, checkpoint saved" in line
    for index, problem in enumerate([
            "a pseudo-label holding 77; it must hold train ids 0..18 or 255 (ignore)",
            "a pseudo-label of 128x64 pixels (width x height) for an image of 256x128; it must "
            "have its image's size"]):
        assert f"{pseudo_labels.label_path(folder, index)}: {problem}; remove {folder}" in (
            result.stderr)
    assert checkpointing.newest_checkpoint(workdirs.checkpoint_dir(stage_dir)) == (
        os.path.join(workdirs.checkpoint_dir(stage_dir), "ckpt-0"))
