"""Faults of the second round (issue 34), through the programs: each case of the
issue's "Why" list and the test that pins it (in this module unless named;
test_faults_data.py holds the data-side ones, test_faults_export.py those of
export and serving).

| "Why" case                                          | test |
|-----------------------------------------------------|------|
| 1. a garbled, empty or missing checkpoint state file | test_a_damaged_or_missing_state_file_resumes_at_the_newest_intact_step |
| 2. SIGINT / SIGTERM to the table runner             | test_the_table_runner_passes_a_stop_to_its_row_and_waits_for_its_checkpoint |
| 3. evaluate.py --save_predictions_dir on a full disk | test_evaluate_on_a_full_disk_prints_and_saves_its_scores_before_the_panels |
| 4. the TensorBoard log fills the disk mid-run       | test_a_tensorboard_write_error_is_one_warning_and_training_goes_on |
| 5. symlinked city folders skipped silently          | test_faults_data.py::test_the_check_reads_linked_cities_and_names_tiny_huge_and_16_bit_files, ::test_evaluate_py_scores_linked_cities_and_skips_tiny_huge_and_16_bit_files |
| 6. a 16-bit PNG holding 8-bit values                | the same two tests of test_faults_data.py |
| 7. kill -9 during an export over an older one       | test_faults_export.py::test_a_killed_export_leaves_the_previous_one_whole_and_the_next_removes_its_leftover |
| 8. a .tflite of another aspect scored by a stretch  | test_faults_export.py::test_evaluate_refuses_a_tflite_of_another_aspect_naming_both_sizes |
| 9. pseudo-labels of the wrong size or values; a damaged round.json | test_faults_data.py::test_damaged_pseudo_labels_stop_the_resumed_run_naming_them_and_the_remedy |
| 10. a 1x1 image and label                           | test_faults_data.py's check and evaluate.py tests |
| 11. a damaged JSON state file (method.json here; every one is read by files.read_json) | test_a_damaged_method_file_is_one_line_naming_it_and_the_remedy, test_files.py::test_read_json_names_a_damaged_file_what_it_lacks_and_the_remedy |
| 12. a decompression-bomb image                      | test_faults_data.py's check and evaluate.py tests |
| 13. --seed=-1                                       | test_a_negative_seed_is_a_usage_error_that_writes_nothing |
| 14. a SavedModel exported to a full disk            | test_faults_export.py::test_a_full_disk_during_the_saved_model_export_is_one_line_naming_it |
| 15. a truncated SavedModel variables file           | test_faults_export.py::test_a_truncated_saved_model_is_one_line_naming_it_and_how_to_export_it_again |
| 16. an oversized batch sent to the SavedModel       | test_faults_export.py::test_a_batch_over_the_exported_pixel_limit_fails_its_call_naming_the_limit |
| 17. "No space left on device" naming no path        | test_evaluate_on_a_full_disk_prints_and_saves_its_scores_before_the_panels; test_faults_export.py::test_a_full_disk_during_the_saved_model_export_is_one_line_naming_it, ::test_a_full_disk_during_a_tflite_write_names_the_file_not_its_staging; test_self_training.py::test_a_full_disk_while_pseudo_labelling_names_the_round_folder |
| 18. a checkpoint rotated away while export reads it | test_faults_export.py::test_a_checkpoint_rotated_away_while_it_is_read_is_not_called_damaged |
| 19. a table folder copied elsewhere                 | test_experiments.py::test_two_rows_of_table_1_run_resume_and_print_beside_the_paper, ::test_a_copied_table_folder_runs_on_from_its_own_finished_rows |
| 20. SIGTERM during labelling                        | test_faults_data.py::test_sigterm_while_pseudo_labelling_stops_within_a_batch_with_a_checkpoint |
| 21. a killed round's `.round_N.partial-*` folder    | test_resume.py::test_a_stale_lock_and_unfinished_saves_are_cleaned_up_at_start |
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from udamobile.training import checkpointing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One demo stage at test size: 4 steps, a checkpoint every 2 (one stage alone:
# no scoring on the target, export or figures).
STAGE_FLAGS = [
    "--preset=demo", "--method=source_only", "--stage=source_only", "--patch_size=32", "--width_multiplier=0.35",
    "--aspp_filters=8", "--low_level_filters=4", "--decoder_filters=8", "--batch_size=2",
    "--steps=4", "--checkpoint_every=2", "--log_every=1", "--image_every=1000",
    "--eval_max_images=1", "--label_free_images=1"]


def _train(workdir, *args):
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *STAGE_FLAGS,
                           f"--workdir={workdir}", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_damaged_or_missing_state_file_resumes_at_the_newest_intact_step(tmp_path):
    first = _train(tmp_path / "run")
    assert first.returncode == 0, first.stderr[-2000:]
    stage = tmp_path / "run" / "source_only"
    folder = stage / "checkpoints"
    state = folder / checkpointing.STATE_FILE
    newest = sorted(folder.glob("ckpt-4.*"))
    written = {path: path.stat().st_mtime_ns for path in newest}
    for damage in ("garbled", "empty", "missing"):
        if damage == "missing":
            state.unlink()
        else:
            state.write_text("not a checkpoint state {\n" if damage == "garbled" else "")
        again = _train(tmp_path / "run")
        assert again.returncode == 0, (damage, again.stderr[-2000:])
        # Resumed at the finished step, nothing trained or saved over it.
        assert f"resumes from {folder / 'ckpt-4'} at step 4" in again.stdout, damage
        assert "source_only  1/4" not in again.stdout + again.stderr
        assert {path: path.stat().st_mtime_ns for path in newest} == written
        assert "the checkpoints are taken from their files" in again.stderr
        assert checkpointing.newest_checkpoint(str(folder)) == str(folder / "ckpt-4")
        assert state.read_text().startswith('model_checkpoint_path: "ckpt-4"')


def test_a_negative_seed_is_a_usage_error_that_writes_nothing(tmp_path):
    result = _train(tmp_path / "run", "--seed=-1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--seed=-1" in result.stderr and not (tmp_path / "run").exists()


def _processes_naming(text):
    """Pids of the live processes whose command line holds `text`."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_the_table_runner_passes_a_stop_to_its_row_and_waits_for_its_checkpoint(tmp_path, stop):
    workdir = tmp_path / "table"
    flags = [flag for flag in STAGE_FLAGS
             if not flag.startswith(("--method", "--stage", "--steps"))]
    runner = subprocess.Popen(
        [sys.executable, "-m", "udamobile.experiments", "--table=4", "--rows=source_only",
         f"--workdir={workdir}", *flags, "--steps=100000", "--checkpoint_every=3"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    folder = workdir / "source_only" / "source_only" / "checkpoints"
    deadline = time.monotonic() + 500
    while not list(folder.glob("ckpt-3.index")) and time.monotonic() < deadline:
        assert runner.poll() is None, runner.communicate()
        time.sleep(1)
    os.kill(runner.pid, stop)  # the runner alone, as a service manager stops it
    out, err = runner.communicate(timeout=300)
    assert runner.returncode == 1 and "Traceback" not in err, err[-2000:]
    assert f"{stop.name}: row source_only stopped after saving a checkpoint" in err
    assert "Run the same command to resume" in err
    assert _processes_naming(str(workdir)) == []  # no train.py outlives the runner
    saved = int(err.split(f"{stop.name} at step ")[1].split(":")[0])
    assert checkpointing.newest_checkpoint(str(folder)) == str(folder / f"ckpt-{saved}")


def test_a_damaged_method_file_is_one_line_naming_it_and_the_remedy(tmp_path):
    (tmp_path / "run").mkdir()
    method_file = tmp_path / "run" / "method.json"
    method_file.write_text('{"method": "source_on')  # cut short
    result = _train(tmp_path / "run")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"train.py: {method_file} is damaged (not JSON")
    assert "the same train.py command writes it again" in line


def _with_patch(patch, program, *args):
    """Runs `program` (a path) with `args` after executing `patch`: Python that makes
    a library call fail as a full disk would, in the program's own process."""
    script = (f"import runpy, sys\n{patch}\nsys.argv = [{program!r}, *sys.argv[1:]]\n"
              f"runpy.run_path({program!r}, run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", script, *args], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO}, capture_output=True,
                          text=True, timeout=600)


# The third TensorBoard scalar on, every write fails as on a full disk.
FULL_DISK_SUMMARIES = """
import tensorflow as tf
scalar, calls = tf.summary.scalar, []
def failing(*args, **kwargs):
    calls.append(1)
    if len(calls) > 2:
        raise tf.errors.ResourceExhaustedError(
            None, None, "Could not flush events file: No space left on device")
    return scalar(*args, **kwargs)
tf.summary.scalar = failing
"""


@pytest.fixture(scope="module")
def run_without_summaries(tmp_path_factory):
    """A stage whose TensorBoard log fills the disk at its first logged step."""
    workdir = tmp_path_factory.mktemp("summaries") / "run"
    result = _with_patch(FULL_DISK_SUMMARIES, os.path.join(REPO, "train.py"), *STAGE_FLAGS,
                         f"--workdir={workdir}")
    return workdir, result


@pytest.mark.slow
def test_a_tensorboard_write_error_is_one_warning_and_training_goes_on(run_without_summaries):
    workdir, result = run_without_summaries
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    logs = workdir / "source_only" / "logs"
    warnings = [line for line in result.stderr.splitlines() if "TensorBoard" in line]
    assert len(warnings) == 1 and f"{logs}: writing TensorBoard summaries failed: " in warnings[0]
    assert "No space left on device" in warnings[0]
    folder = workdir / "source_only" / "checkpoints"
    assert checkpointing.newest_checkpoint(str(folder)) == str(folder / "ckpt-4")


# The second prediction panel on, PIL's writes fail as on a full disk (no file name).
FULL_DISK_PANELS = """
import errno
from PIL import Image
save, calls = Image.Image.save, []
def failing(self, *args, **kwargs):
    calls.append(1)
    if len(calls) > 1:
        raise OSError(errno.ENOSPC, "No space left on device")
    return save(self, *args, **kwargs)
Image.Image.save = failing
"""


@pytest.mark.slow
def test_evaluate_on_a_full_disk_prints_and_saves_its_scores_before_the_panels(
        run_without_summaries, tmp_path):
    workdir, _ = run_without_summaries
    panels, output = tmp_path / "panels", tmp_path / "results.json"
    result = _with_patch(FULL_DISK_PANELS, os.path.join(REPO, "evaluate.py"),
                         f"--model={workdir / 'source_only'}", "--dataset=demo_target",
                         "--split=val", "--max_images=3", f"--save_predictions_dir={panels}",
                         f"--output_json={output}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "mIoU" in result.stdout and f"results written to {output}" in result.stdout
    scored = json.loads(output.read_text())
    assert scored["dataset"]["num_images"] == 3 and scored["prediction_panels"]["written"] == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"evaluate.py: {panels}: writing prediction panels stopped after 1: ")
    assert "No space left on device" in line and str(panels / "00001_") in line
    assert [p.name for p in panels.iterdir()] == ["00000_0.png"]  # no 0-byte PNG left
