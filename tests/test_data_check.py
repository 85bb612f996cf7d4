"""check_dataset and its CLI report what would break training."""
import os
import subprocess
import sys

import numpy as np

import data_pipelines
import dataset_files


def _labels(count, shape=(6, 8)):
    return [np.full(shape, (7, 11, 21, 23, 26)[n % 5], np.uint8) for n in range(count)]


def test_a_good_folder_is_ok(tmp_path):
    dataset_files.write_gta5(tmp_path, _labels(12))
    report = data_pipelines.check_dataset("gta5", tmp_path, "train")
    assert report.ok, str(report)
    assert (report.num_images, report.num_checked, report.has_labels) == (11, 8, True)
    assert report.image_sizes == {(6, 8): 8}
    assert report.train_ids_seen == {0, 2, 8, 10, 13}
    assert any("full dataset has 23966" in note for note in report.notes)
    text = str(report)
    assert "11 images with labels; checked 8" in text and text.endswith("OK")


def test_a_truncated_file_is_a_problem_found_by_the_full_check(tmp_path):
    dataset_files.write_cityscapes(tmp_path, "val", _labels(12))
    dataset = data_pipelines.open_dataset("cityscapes", tmp_path, "val")
    broken = dataset.describe(1)  # not in the sample of 3
    data = open(broken, "rb").read()
    with open(broken, "wb") as file:
        file.write(data[:40])
    assert data_pipelines.check_dataset("cityscapes", tmp_path, "val", sample_size=3).ok
    report = data_pipelines.check_dataset("cityscapes", tmp_path, "val", check_all=True)
    assert not report.ok and report.num_checked == 12
    assert report.problems == [f"{broken}: cannot decode the file (expected a readable PNG; "
                               "is it truncated or corrupt?)"]
    assert str(report).endswith("1 problem(s)")


def test_labels_in_the_wrong_encoding_are_a_problem(tmp_path):
    # Train-id labels (what the authors' code wanted) where label ids are expected:
    # road (train id 0) is label id 0, "unlabeled", so everything reads as ignore.
    dataset_files.write_cityscapes(tmp_path, "val", [np.zeros((6, 8), np.uint8)] * 2)
    report = data_pipelines.check_dataset("cityscapes", tmp_path, "val")
    assert not report.ok
    assert "every label pixel reads as 255" in report.problems[0]


def test_opening_errors_become_problems(tmp_path):
    report = data_pipelines.check_dataset("synthia", tmp_path / "missing", "train")
    assert not report.ok and not report.opened
    assert str(report).splitlines() == [
        f"synthia/train at {tmp_path / 'missing'}: cannot be opened",
        f"  PROBLEM: {report.problems[0]}",
        "1 problem(s)"]
    assert report.problems[0].startswith(f"{tmp_path / 'missing'}: folder not found")


def test_resized_labels_are_noted(tmp_path):
    # GTA5 has such pairs: 7 x 9 images with 6 x 8 labels.
    dataset_files.write_gta5(tmp_path, _labels(4), images=[np.zeros((7, 9, 3), np.uint8)] * 4)
    report = data_pipelines.check_dataset("gta5", tmp_path, "train", check_all=True)
    assert report.ok and report.num_checked == 3
    assert report.image_sizes == {(7, 9): 3}
    assert "note: 3 label(s) differ in size from their image; they are resized with nearest " \
           "neighbour when read" in str(report)


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "data_pipelines.check", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_prints_the_report_and_exits_non_zero_on_problems(tmp_path):
    dataset_files.write_gta5(tmp_path, _labels(4))
    good = _run_cli("--dataset=gta5", f"--root={tmp_path}", "--split=heldout", "--all")
    assert good.returncode == 0, good.stderr
    assert "gta5/heldout" in good.stdout and good.stdout.strip().endswith("OK")
    os.remove(tmp_path / "labels" / "00002.png")
    bad = _run_cli("--dataset=gta5", f"--root={tmp_path}")
    assert bad.returncode == 1
    assert "PROBLEM" in bad.stdout and "00002.png" in bad.stdout
