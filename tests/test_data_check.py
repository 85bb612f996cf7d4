"""check_dataset and its CLI report what would break training."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

import data_pipelines
from data_pipelines import readers
import dataset_files


def _labels(count, shape=(32, 40)):
    return [np.full(shape, (7, 11, 21, 23, 26)[n % 5], np.uint8) for n in range(count)]


def test_a_good_folder_is_ok(tmp_path):
    dataset_files.write_gta5(tmp_path, _labels(12))
    report = data_pipelines.check_dataset("gta5", tmp_path, "train")
    assert report.ok, str(report)
    assert (report.num_images, report.num_checked, report.has_labels) == (11, 8, True)
    assert report.image_sizes == {(32, 40): 8}
    assert report.train_ids_seen == {0, 2, 8, 10, 13}
    assert any("full dataset has 23966" in note for note in report.notes)
    text = str(report)
    assert "11 images with labels; checked 8" in text and text.endswith("OK")


def test_a_truncated_file_is_a_problem_found_by_the_full_check(tmp_path):
    dataset_files.write_cityscapes(tmp_path, "val", _labels(12))
    dataset = data_pipelines.open_dataset("cityscapes", tmp_path, "val")
    broken = dataset.describe(1)  # not in the sample of 3
    dataset_files.truncate(broken)
    assert data_pipelines.check_dataset("cityscapes", tmp_path, "val", sample_size=3).ok
    report = data_pipelines.check_dataset("cityscapes", tmp_path, "val", check_all=True)
    assert not report.ok and report.num_checked == 12
    assert report.problems == [f"{broken}: cannot decode the file (expected a readable PNG or "
                               "JPEG; is it truncated or corrupt?)"]
    assert str(report).endswith("1 problem(s)")


def test_labels_in_the_wrong_encoding_are_a_problem(tmp_path):
    # Train-id labels (what the authors' code wanted) where label ids are expected:
    # road (train id 0) is label id 0, "unlabeled", so everything reads as ignore.
    dataset_files.write_cityscapes(tmp_path, "val", [np.zeros((32, 40), np.uint8)] * 2)
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
    # GTA5 has such pairs: images a pixel larger than their labels.
    dataset_files.write_gta5(tmp_path, _labels(4), images=[np.zeros((33, 41, 3), np.uint8)] * 4)
    report = data_pipelines.check_dataset("gta5", tmp_path, "train", check_all=True)
    assert report.ok and report.num_checked == 3
    assert report.image_sizes == {(33, 41): 3}
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


# --- label sanity, per format: each written the wrong way -----------------------

def _write(name, root, labels, images=None):
    """Writes `labels` in the format of `name`; returns the split to check."""
    if name == "gta5":
        dataset_files.write_gta5(root, labels, images)
    elif name == "synthia":
        dataset_files.write_synthia(root, labels, images)
    else:
        dataset_files.write_cityscapes(root, "val", labels, images)
    return "val" if name == "cityscapes" else "train"


@pytest.mark.parametrize("name, known", [("gta5", "Cityscapes label ids 0..33"),
                                         ("cityscapes", "Cityscapes label ids 0..33"),
                                         ("synthia", "SYNTHIA class ids 0..22")])
def test_values_outside_the_formats_ids_are_a_problem_with_their_fraction(tmp_path, name, known):
    good = np.full((32, 40), 11, np.uint8)  # building in both id spaces
    bad = good.copy()
    bad[:12, :20] = 200  # 240 of 1280 pixels
    split = _write(name, tmp_path, [good, bad, good, good, good])
    dataset = data_pipelines.open_dataset(name, tmp_path, split)
    bad_label = next(path for path in dataset.label_paths
                     if (cv2.imread(path, cv2.IMREAD_UNCHANGED) == 200).any()
                     or (np.asarray(Image.open(path)) == 200).any())
    report = data_pipelines.check_dataset(name, tmp_path, split, check_all=True)
    assert report.problems == [
        f"{bad_label}: 18.8% of the pixels hold values outside {known}" + (
            " (GTA5 palette indices)" if name == "gta5" else
            " (*_gtFine_labelIds.png)" if name == "cityscapes" else "")
        + " (largest 200); at most 1% may, or they would all train as ignore"]


def test_a_label_of_another_aspect_is_a_problem_naming_it(tmp_path):
    dataset_files.write_gta5(tmp_path, [np.full((32, 40), 7, np.uint8)] * 5)
    bad_label = data_pipelines.open_dataset("gta5", tmp_path, "train").label_paths[2]
    dataset_files.write_palette_png(bad_label, np.full((40, 32), 7, np.uint8))  # transposed
    report = data_pipelines.check_dataset("gta5", tmp_path, "train", check_all=True)
    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"{bad_label}: label is 32x40 (width x height) but its "
                                         "image is 40x32")


@pytest.mark.parametrize("name", ["gta5", "cityscapes"])
def test_train_ids_saved_as_label_ids_are_named_as_such(tmp_path, name):
    # Road (train id 0) over building (2), sky (10) and car (13): as label ids
    # 0, 2 and 10 are ignored, 13 is "fence".
    train_ids = np.zeros((32, 32), np.uint8)
    train_ids[:8], train_ids[8:16], train_ids[16:20] = 10, 2, 13
    split = _write(name, tmp_path, [train_ids] * 4)
    report = data_pipelines.check_dataset(name, tmp_path, split)
    assert report.problems == [
        f"{name}/{split}: every label pixel of the {report.num_checked} files checked holds an "
        "id in 0-18, most of them ids that map to ignore; this looks like train ids (0-18) "
        "saved as label ids: such files need no mapping and are read as ignore here (expected "
        f"Cityscapes label ids 0..33 ({'GTA5 palette indices' if name == 'gta5' else '*_gtFine_labelIds.png'}))"]


def test_train_ids_with_their_ignore_value_name_the_likely_cause_per_file(tmp_path):
    train_ids = np.zeros((33, 40), np.uint8)
    train_ids[:11] = 255  # train-id files mark ignore with 255, no label id
    dataset_files.write_cityscapes(tmp_path, "val", [train_ids] * 2)
    report = data_pipelines.check_dataset("cityscapes", tmp_path, "val")
    assert all("33.3% of the pixels" in p and "looks like train ids (0-18) saved as label ids"
               in p for p in report.problems) and len(report.problems) == 2


def test_real_label_ids_with_few_classes_are_not_taken_for_train_ids(tmp_path):
    # Road, sidewalk and building only (label ids 7, 8, 11, all <= 18): none ignored.
    label_ids = np.full((32, 40), 7, np.uint8)
    label_ids[:8], label_ids[8:12] = 11, 8
    dataset_files.write_gta5(tmp_path, [label_ids] * 4)
    assert data_pipelines.check_dataset("gta5", tmp_path, "train").ok


# --- files no dataset holds: tiny, huge, 16-bit, and folders through links -------

def test_a_tiny_image_is_a_problem_naming_it_and_the_floor(tmp_path):
    pairs = dataset_files.write_gta5(tmp_path, _labels(3))
    dataset_files.write_rgb_png(pairs[0][0], np.zeros((1, 1, 3), np.uint8))
    dataset_files.write_palette_png(pairs[0][1], np.full((1, 1), 7, np.uint8))
    report = data_pipelines.check_dataset("gta5", tmp_path, "train", check_all=True)
    assert report.problems == [
        f"{pairs[0][0]}: 1x1 pixels (width x height) is under the {readers.MIN_SIDE} pixels a "
        "side must have (readers.MIN_SIDE): a placeholder or thumbnail, not a dataset's image"]


def test_an_image_past_the_pixel_limit_is_a_problem_and_is_never_decoded(tmp_path):
    # 196 Mpx, past PIL's own bound (it raises), and 81 Mpx, past ours only.
    pairs = dataset_files.write_gta5(tmp_path, _labels(4))
    dataset_files.write_png_header(pairs[0][0], 14000, 14000)
    dataset_files.write_png_header(pairs[1][0], 9000, 9000)
    dataset_files.write_png_header(pairs[2][1], 14000, 14000)  # a label, read by PIL
    report = data_pipelines.check_dataset("gta5", tmp_path, "train", check_all=True)
    limit = "more than the 64 Mpx an image may have (readers.MAX_PIXELS"
    assert len(report.problems) == 3 and all(limit in p for p in report.problems), report
    assert {p.split(": ")[0] for p in report.problems} == {
        str(pairs[0][0]), str(pairs[1][0]), str(pairs[2][1])}
    assert f"{pairs[1][0]}: the header gives 9000x9000 (81 Mpx), {limit}" in str(report)


def test_16_bit_files_holding_8_bit_values_are_problems_naming_what_was_expected(tmp_path):
    pairs = dataset_files.write_cityscapes(tmp_path, "val", _labels(3))
    dataset_files.write_rgb_png(pairs[0][0], np.full((32, 40, 3), 200, np.uint16))
    cv2.imwrite(pairs[1][1], np.full((32, 40), 26, np.uint16))
    report = data_pipelines.check_dataset("cityscapes", tmp_path, "val", check_all=True)
    assert report.problems == [
        f"{pairs[0][0]}: expected an 8-bit colour PNG (or a 16-bit one using its range), got "
        "16-bit, 3 channel(s), largest value 200: 8-bit values saved in a 16-bit file would "
        "read as black; save it as 8-bit",
        f"{pairs[1][1]}: expected an 8-bit single-channel PNG of Cityscapes label ids "
        "(*_gtFine_labelIds.png), got 16-bit, 1 channel(s), largest value 26"]


def test_linked_city_folders_are_read_and_what_is_skipped_is_noted(tmp_path):
    root, elsewhere = tmp_path / "cityscapes", tmp_path / "other_disk"
    dataset_files.write_cityscapes(root, "val", _labels(2), city="aachen")
    dataset_files.write_cityscapes(elsewhere, "val", _labels(3), city="bonn")
    for kind in ("leftImg8bit", "gtFine"):
        (root / kind / "val" / "bonn").symlink_to(elsewhere / kind / "val" / "bonn")
    loop = root / "leftImg8bit" / "val" / "aachen" / "loop"
    loop.symlink_to(root / "leftImg8bit")  # a folder above the split's
    broken = root / "gtFine" / "val" / "aachen" / "gone_gtFine_color.png"
    broken.symlink_to(tmp_path / "nothing.png")
    report = data_pipelines.check_dataset("cityscapes", root, "val", check_all=True)
    assert report.ok and report.num_images == 5, str(report)
    assert f"note: skipped 1 symlink loop(s): {loop} -> {root / 'leftImg8bit'}" in str(report)
    assert f"note: skipped 1 broken symlink(s): {broken} -> {tmp_path / 'nothing.png'}" in str(
        report)
