"""Faults of the second round (issue 34) in export and serving, pinned through the programs.

| "Why" case                                          | test |
|-----------------------------------------------------|------|
| 7. kill -9 during an export over an older one       | test_a_killed_export_leaves_the_previous_one_whole_and_the_next_removes_its_leftover, test_an_export_refuses_a_folder_that_holds_more_than_an_export |
| 8. a .tflite of another aspect scored by a stretch  | test_evaluate_refuses_a_tflite_of_another_aspect_naming_both_sizes |
| 14. a SavedModel exported to a full disk            | test_a_full_disk_during_the_saved_model_export_is_one_line_naming_it |
| 15. a truncated SavedModel variables file           | test_a_truncated_saved_model_is_one_line_naming_it_and_how_to_export_it_again |
| 16. an oversized batch sent to the SavedModel       | test_a_batch_over_the_exported_pixel_limit_fails_its_call_naming_the_limit; test_export.py::test_export_options_are_checked_before_any_work (--max_batch_pixels) |
| 17. "No space left on device" from export, no path  | test_a_full_disk_during_the_saved_model_export_is_one_line_naming_it (the SavedModel), test_a_full_disk_during_a_tflite_write_names_the_file_not_its_staging; test_files.py::test_an_error_inside_the_temporary_artifact_names_the_artifact |
| 18. a checkpoint rotated away while export reads it | test_a_checkpoint_rotated_away_while_it_is_read_is_not_called_damaged (and the killed export of case 7 reads one) |

The programs export a tiny segmenter whose checkpoints (steps 2, 4 and 6)
each hold their step in the logits' bias, so that an exported SavedModel
says which checkpoint it came from (`_exported_step`). Their SavedModel
writer is given a one-layer model carrying that bias instead of the
segmenter (ONE_LAYER_SAVED_MODEL), 8 s less a run; test_export.py exports
the segmenter itself.
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from data_pipelines.classes import NUM_CLASSES
from export import tflite
from export.artifacts import export_workdir
from udamobile import config as config_lib, errors, files
from udamobile.errors import ExportError
from udamobile.evaluation import model_adapters
from udamobile.nets import networks
from udamobile.training import checkpointing, workdirs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NARROW = dict(width_multiplier=0.35, aspp_filters=8, low_level_filters=4, decoder_filters=8)
STEPS = (2, 4, 6)
HEIGHT, WIDTH = 32, 64
MAX_BATCH_PIXELS = 2 * HEIGHT * WIDTH  # two images a call
TIMEOUT = 300  # seconds; a run that hangs fails the test instead of blocking the suite

# The end of a wrapper that injects faults into `python -m export`: the
# program runs as it is, but for the functions the wrapper replaced.
PROGRAM = ("sys.argv = ['python -m export'] + sys.argv[1:]\n"
           "runpy.run_module('export', run_name='__main__', alter_sys=True)\n")
# The program's SavedModel writer, given a one-layer model that holds the
# restored segmenter's logits bias (its checkpoint's step) in place of the
# segmenter, whose own SavedModel takes 8 s more to write; then `written()`.
ONE_LAYER_SAVED_MODEL = (
    "import keras\n"
    "from export import artifacts\n"
    "save = artifacts.export_saved_model\n"
    "def one_layer_saved_model(segmenter, path, **kwargs):\n"
    "    image, logits = keras.Input((None, None, 3)), keras.layers.Conv2D(19, 1)\n"
    "    one_layer = keras.Model(image, {'logits': logits(image)})\n"
    "    logits.bias.assign(next(v for v in segmenter.weights if v.path == 'logits/bias'))\n"
    "    save(one_layer, path, **kwargs)\n"
    "    written()\n"
    "artifacts.export_saved_model = one_layer_saved_model\n")
EXPORT = "import runpy, sys\ndef written():\n    pass\n" + ONE_LAYER_SAVED_MODEL + PROGRAM
# ckpt-6 is rotated away between its listing and its read, as a running
# train.py's CheckpointManager does it (the state file first, then the
# files), and the export is killed once its SavedModel is written.
ROTATED_THEN_KILLED = (
    "import glob, os, runpy, signal, sys\n"
    "from udamobile.training import checkpointing\n"
    "read = checkpointing.restore_into\n"
    "def rotated_while_read(path, **objects):\n"
    "    if path.endswith('ckpt-6'):\n"
    "        with open(os.path.join(os.path.dirname(path), 'checkpoint'), 'w') as f:\n"
    "            f.write('model_checkpoint_path: \"ckpt-4\"\\n')\n"
    "        for name in glob.glob(path + '.*'):\n"
    "            os.remove(name)\n"
    "    return read(path, **objects)\n"
    "checkpointing.restore_into = rotated_while_read\n"
    "def written():\n"
    "    os.kill(os.getpid(), signal.SIGKILL)\n" + ONE_LAYER_SAVED_MODEL + PROGRAM)
# What TensorFlow raises when the disk fills under the SavedModel's variables
# (patched behind tf.saved_model.save, which TensorFlow's lazy loading rebinds
# after a patch of it).
FULL_DISK = (
    "import runpy, sys, tensorflow as tf\n"
    "from tensorflow.python.saved_model import save\n"
    "def full_disk(obj, export_dir, *args, **kwargs):\n"
    "    raise tf.errors.ResourceExhaustedError(None, None, export_dir + '/variables/"
    "variables_temp/part-00000-of-00001.data-00000-of-00001.tempstate1; No space left on "
    "device')\n"
    "save.save_and_return_nodes = full_disk\n" + PROGRAM)


def _run(*command):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = REPO
    return subprocess.run([sys.executable, *command], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)


def _export(wrapper, workdir, output_dir, *args):
    """`python -m export` of a SavedModel, run by `wrapper` (a script ending in PROGRAM)."""
    return _run("-c", wrapper, f"--workdir={workdir}", f"--output_dir={output_dir}",
                "--formats=saved_model", f"--height={HEIGHT}", f"--width={WIDTH}", *args)


def _error_line(result, program):
    """The one `<program>: ...` line of a failed run (asserting it is the only one)."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{program}: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def _exported_step(saved_model):
    """The step of the checkpoint a SavedModel of the `workdir` fixture was exported from."""
    reader = tf.train.load_checkpoint(os.path.join(saved_model, "variables", "variables"))
    bias = next(name for name, shape in reader.get_variable_to_shape_map().items()
                if shape == [NUM_CLASSES])
    return int(reader.get_tensor(bias)[0])


def _manifest(output_dir):
    with open(os.path.join(output_dir, "export.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A work directory of a tiny segmenter with checkpoints at STEPS, each holding its
    step in the logits' bias."""
    path = str(tmp_path_factory.mktemp("workdir"))
    cfg = config_lib.override(config_lib.get_config("demo", "source_only"), **NARROW)
    workdirs.write_config(path, cfg)
    segmenter = networks.build_segmenter_from_config(cfg.model)
    bias = next(v for v in segmenter.weights if v.path == "logits/bias")
    step = tf.Variable(0, dtype=tf.int64)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(segmenter=segmenter, step=step),
                                         workdirs.checkpoint_dir(path), max_to_keep=None)
    for value in STEPS:
        step.assign(value)
        bias.assign(tf.fill(bias.shape, float(value)))
        manager.save(value)
    return path


@pytest.fixture(scope="module")
def previous_export(workdir, tmp_path_factory):
    """The output folder of a complete export of ckpt-2 by the program (EXPORT), with
    a SavedModel that takes MAX_BATCH_PIXELS a call."""
    output_dir = str(tmp_path_factory.mktemp("exports") / "export")
    result = _export(EXPORT, workdir, output_dir, "--checkpoint=ckpt-2",
                     f"--max_batch_pixels={MAX_BATCH_PIXELS}")
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir


@pytest.fixture(scope="module")
def killed_export(workdir, previous_export, tmp_path_factory):
    """An export of the latest checkpoint over `previous_export`, killed once its
    SavedModel was written, from a copy of `workdir` in which ckpt-6 rotates away
    while it is read: {"result", "workdir" (the copy), "leftovers": the folders it
    left, "staged_steps": the steps of the SavedModels in them}."""
    training = str(tmp_path_factory.mktemp("training") / "workdir")
    shutil.copytree(workdir, training)
    result = _export(ROTATED_THEN_KILLED, training, previous_export)
    leftovers = glob.glob(os.path.join(os.path.dirname(previous_export), ".export.partial-*"))
    return {"result": result, "workdir": training, "leftovers": leftovers, "staged_steps": [
        _exported_step(os.path.join(folder, "export", "saved_model")) for folder in leftovers]}


@pytest.fixture(scope="module")
def full_disk_export(workdir, previous_export, killed_export):
    """The result of an export over `previous_export` (after the killed one) whose
    SavedModel meets a full disk."""
    return _export(FULL_DISK, workdir, previous_export)


def _assert_whole_export_of_step_2(output_dir):
    manifest = _manifest(output_dir)
    assert manifest["checkpoint"].endswith("ckpt-2") and manifest["step"] == 2
    assert sorted(os.listdir(output_dir)) == ["export.json", "labels.txt", "model_card.md",
                                              "palette.txt", "saved_model"]
    assert _exported_step(os.path.join(output_dir, "saved_model")) == 2


@pytest.mark.slow
def test_a_killed_export_leaves_the_previous_one_whole_and_the_next_removes_its_leftover(
        previous_export, killed_export, full_disk_export):
    result = killed_export["result"]
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    # It left its staging folder, holding the SavedModel of ckpt-4 (ckpt-6 was
    # rotated away), which the old code had put beside the export.json of ckpt-2.
    assert killed_export["staged_steps"] == [4]
    _assert_whole_export_of_step_2(previous_export)
    # The next export, failed as it did, removed the leftover first.
    leftover = killed_export["leftovers"][0]
    assert not os.path.exists(leftover)
    assert f"Removed {leftover}, left by an export that did not finish" in full_disk_export.stderr


def test_an_export_refuses_a_folder_that_holds_more_than_an_export(workdir, tmp_path):
    # The folder is replaced whole: a user's other files would go with it.
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(ExportError, match=rf"^--output_dir {tmp_path} holds files that no "
                       r"export wrote \(it has no export.json\)"):
        export_workdir(workdir, str(tmp_path))
    with pytest.raises(ExportError, match=rf"^--output_dir {tmp_path}/notes.txt is a file"):
        export_workdir(workdir, str(tmp_path / "notes.txt"))


@pytest.mark.slow
def test_a_checkpoint_rotated_away_while_it_is_read_is_not_called_damaged(
        workdir, killed_export, tmp_path, monkeypatch, caplog):
    # Through the program (the export of case 7): ckpt-6 vanished while it was read.
    stderr = killed_export["result"].stderr
    assert (f"checkpoint {killed_export['workdir']}/checkpoints/ckpt-6 was removed while reading "
            "(rotated away by a running train.py?); reading the newest one instead") in stderr
    assert "damaged" not in stderr
    # In the library, with TensorFlow's own rotation: a save of ckpt-8 by a
    # CheckpointManager keeping one checkpoint, between the listing and the read.
    rotating = str(tmp_path / "rotating")
    shutil.copytree(workdir, rotating)
    segmenter, _ = checkpointing.restore_segmenter(rotating, "ckpt-6")
    step = tf.Variable(8, dtype=tf.int64)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(segmenter=segmenter, step=step),
                                         workdirs.checkpoint_dir(rotating), max_to_keep=1)
    listed = checkpointing.checkpoint_candidates

    def rotated_after_listing(folder):
        candidates = listed(folder)
        if not glob.glob(os.path.join(folder, "ckpt-8.*")):
            manager.save(8)
        return candidates

    monkeypatch.setattr(checkpointing, "checkpoint_candidates", rotated_after_listing)
    _, info = checkpointing.restore_segmenter(rotating)
    assert info["checkpoint"].endswith("ckpt-8") and info["step"] == 8
    warnings = [r.getMessage() for r in caplog.records if "removed while reading" in r.getMessage()]
    assert len(warnings) == 1 and "ckpt-6 was removed" in warnings[0]
    assert "damaged" not in caplog.text
    # A checkpoint asked for by name is not replaced by another.
    with pytest.raises(errors.CheckpointRemoved, match="ckpt-4 was removed while reading"):
        checkpointing.restore_into(os.path.join(workdirs.checkpoint_dir(rotating), "ckpt-4"),
                                   segmenter=segmenter)


@pytest.mark.slow
def test_a_full_disk_during_the_saved_model_export_is_one_line_naming_it(
        previous_export, full_disk_export):
    assert full_disk_export.returncode == 1
    line = _error_line(full_disk_export, "python -m export")
    assert line.startswith(f"python -m export: {previous_export}/saved_model: writing the "
                           "SavedModel failed: ")
    assert line.endswith("; No space left on device") and ".partial-" not in line
    _assert_whole_export_of_step_2(previous_export)  # nothing lost


def test_a_full_disk_during_a_tflite_write_names_the_file_not_its_staging(
        workdir, tmp_path, monkeypatch):
    output_dir = tmp_path / "export"
    monkeypatch.setattr(tflite, "convert", lambda *args, **kwargs: b"a flatbuffer")
    monkeypatch.setattr(tflite.tflite_metadata, "embed", lambda model, entries: model)
    # Every write lands on /dev/full, which fails like a full disk: ENOSPC, no file name.
    monkeypatch.setattr(files, "open", lambda path, mode="r", **kwargs: open(
        "/dev/full", mode) if "w" in mode else open(path, mode, **kwargs), raising=False)
    with pytest.raises(OSError) as failed:
        export_workdir(workdir, str(output_dir), formats=["tflite_float32"], height=HEIGHT,
                       width=WIDTH)
    assert failed.value.strerror == "No space left on device"
    assert failed.value.filename == str(output_dir / f"segmenter_{HEIGHT}x{WIDTH}_float32.tflite")
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_a_batch_over_the_exported_pixel_limit_fails_its_call_naming_the_limit(
        previous_export):
    assert _manifest(previous_export)["saved_model_max_batch_pixels"] == MAX_BATCH_PIXELS
    path = os.path.join(previous_export, "saved_model")
    model = model_adapters.open_model(path)
    serve = model._serve  # serving_default, as a server calls it
    assert serve(images=tf.zeros([2, HEIGHT, WIDTH, 3], tf.uint8))["labels"].shape == (
        2, HEIGHT, WIDTH)
    limit = (rf"serving_default takes at most {MAX_BATCH_PIXELS} pixels \(batch x height x "
             r"width\) a call; send the batch in smaller parts. Got shape\] \[{}\]")
    for shape in ([3, HEIGHT, WIDTH, 3], [1, HEIGHT, 2 * WIDTH + 1, 3]):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=limit.format(" ".join(map(str, shape)))):
            serve(images=tf.zeros(shape, tf.uint8))
    # evaluate.py scores one image a call: one over the limit is one line.
    with pytest.raises(errors.ModelError, match=rf"^SavedModel {path}: serving_default "
                       rf"takes at most {MAX_BATCH_PIXELS} pixels .*--input_width"):
        model.predict(np.zeros([1, 2 * HEIGHT, 2 * WIDTH, 3], np.uint8), (HEIGHT, WIDTH))


@pytest.mark.slow
def test_a_truncated_saved_model_is_one_line_naming_it_and_how_to_export_it_again(
        workdir, previous_export, tmp_path):
    damaged = tmp_path / "export"
    shutil.copytree(previous_export, damaged)
    variables = damaged / "saved_model" / "variables" / "variables.data-00000-of-00001"
    os.truncate(variables, variables.stat().st_size // 2)
    result = _run("evaluate.py", f"--model={damaged / 'saved_model'}", "--dataset=demo_target",
                  "--split=val", "--max_images=1")
    assert result.returncode == 1
    assert _error_line(result, "evaluate.py") == (
        f"evaluate.py: SavedModel {damaged / 'saved_model'} is damaged and cannot be loaded "
        "(Read less bytes than requested); re-export it with python -m export "
        f"--workdir={workdir} --checkpoint={workdir}/checkpoints/ckpt-2 "
        f"--output_dir={damaged} (and the other flags it was exported with)")


@pytest.mark.slow
def test_evaluate_refuses_a_tflite_of_another_aspect_naming_both_sizes(tmp_path):
    image = keras.Input((None, None, 3))
    one_conv = keras.Model(image, {"logits": keras.layers.Conv2D(NUM_CLASSES, 1)(image)})
    path = files.write_bytes(tmp_path / "segmenter_64x32_float32.tflite",
                             tflite.convert(one_conv, height=64, width=32))
    # demo_target's images are 128x256 (HxW).
    result = _run("evaluate.py", f"--model={path}", "--dataset=demo_target", "--split=val",
                  "--max_images=1")
    assert result.returncode == 1
    assert _error_line(result, "evaluate.py") == (
        f"evaluate.py: {path} takes a fixed 64x32 (HxW) input, but the images are 128x256: "
        "segmenting them would stretch their aspect 4.0x; export a .tflite of the images' aspect "
        "(python -m export --height=16 --width=32) or use the SavedModel")
