"""Adapting to your own camera: train.py --stage=all from your simulator's labelled
folder (--source=folder) to a folder of your camera's unlabelled images
(--target=folder), through the programs.

The folders are written once for the module (`own_data`), from the demo
domains at half their size, in nested folders with mixed .jpg/.png names;
the unlabelled whole run (`unlabelled_run`: the source_only row of a table
run to the camera folder, `unlabelled_table`) is shared too.
"""
import json
import os
import shutil
import subprocess
import sys

import cv2
import pytest

import data_pipelines
import dataset_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = (64, 128)  # (height, width): the demo's 128x256 halved
# The cheapest whole run: source_only, two steps, tiny networks.
RUN_FLAGS = [
    "--preset=demo", "--method=source_only", "--steps=2", "--patch_size=32",
    "--width_multiplier=0.35", "--aspp_filters=8", "--low_level_filters=4",
    "--decoder_filters=8", "--batch_size=2", "--checkpoint_every=2", "--log_every=1",
    "--image_every=1000", "--eval_max_images=1", "--label_free_images=2"]


def _names(count):
    """Nested relative paths, the extension alternating .jpg / .png / .JPG."""
    return [f"drive_{i % 3}/part_{i % 2}/frame_{i:03d}{('.jpg', '.png', '.JPG')[i % 3]}"
            for i in range(count)]


def _demo(domain, split, count):
    """`count` (image, label) of a demo domain's split, resized to SIZE."""
    dataset = data_pipelines.open_dataset(domain, split=split)
    pairs = []
    for index in range(count):
        image, label = dataset.read_pair(index)
        pairs.append((cv2.resize(image, SIZE[::-1], interpolation=cv2.INTER_AREA),
                      cv2.resize(label, SIZE[::-1], interpolation=cv2.INTER_NEAREST)))
    return pairs


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    """{"source": a labelled folder of demo_source (the simulator), "target": 12
    unlabelled demo_target images (the camera), "target_val": a labelled folder of
    demo_target's val split}."""
    root = tmp_path_factory.mktemp("own_data")
    source = _demo("demo_source", "train", 8)
    target = _demo("demo_target", "train", 12)
    val = _demo("demo_target", "val", 3)
    dataset_files.write_folder(root / "simulator", _names(8), *zip(*source))
    dataset_files.write_folder(root / "camera", _names(12), [image for image, _ in target])
    dataset_files.write_folder(root / "camera_val", _names(3), *zip(*val))
    return {"source": root / "simulator", "target": root / "camera",
            "target_val": root / "camera_val"}


def _program(script, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO}, capture_output=True,
                          text=True, timeout=900)


def _train(workdir, own_data, *args):
    return _program("train.py", *RUN_FLAGS, f"--workdir={workdir}", "--source=folder",
                    f"--source_root={own_data['source']}", "--target=folder",
                    f"--target_root={own_data['target']}", *args)


@pytest.fixture(scope="module")
def unlabelled_table(own_data, tmp_path_factory):
    """(the finished table run of the rows source_only and adabn to the unlabelled
    camera folder, ranked without labels; its folder)."""
    table = tmp_path_factory.mktemp("own_camera") / "table"
    flags = [flag for flag in RUN_FLAGS if not flag.startswith("--method=")]
    return subprocess.run(
        [sys.executable, "-m", "udamobile.experiments", "--table=4", "--rows=source_only,adabn",
         "--rank_by=mean_entropy", f"--workdir={table}", *flags, "--source=folder",
         f"--source_root={own_data['source']}", "--target=folder",
         f"--target_root={own_data['target']}"], cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
        capture_output=True, text=True, timeout=900), table


@pytest.fixture(scope="module")
def unlabelled_run(unlabelled_table):
    """(the finished run to the unlabelled camera folder, its workdir): the table's
    source_only row, which its train.py command ran as `_train` does."""
    result, table = unlabelled_table
    return result, table / "source_only"


@pytest.mark.slow
def test_a_whole_run_to_an_unlabelled_folder_exports_and_reports_label_free_signals(
        unlabelled_run):
    result, workdir = unlabelled_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "No target labels were given (--target_val_root" in result.stdout
    assert "mean entropy (nats)" in result.stdout and "Scores on" not in result.stdout
    manifest = json.loads((workdir / "export" / "export.json").read_text())
    assert set(manifest["artifacts"]) == {"saved_model", "tflite_int8"}
    assert manifest["tflite_input"] == f"uint8 RGB [1, {SIZE[0]}, {SIZE[1]}, 3]"
    signals = json.loads((workdir / "results.json").read_text())["source_only"]
    assert signals["dataset"] == "folder/train" and signals["images"] == 2
    assert 0 <= signals["mean_entropy"] and 0 <= signals["confident_pixels"] <= 1
    assert (workdir / "figures" / "segmentations.png").is_file()


@pytest.mark.slow
def test_a_table_to_the_unlabelled_folder_ranks_its_rows_without_labels(unlabelled_table):
    result, table = unlabelled_table
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no labelled val split of folder: the rows are ranked without labels" in result.stdout
    assert ("label-free ranking by mean_entropy on 2 images of folder/train (lowest first; "
            "no target label read):") in result.stdout
    assert "true place" not in result.stdout and "label-free pick" not in result.stdout
    ranked = json.loads((table / "table4.json").read_text())["label_free_ranking"]
    assert sorted(ranked["order"]) == ["adabn", "source_only"] and "true_order" not in ranked
    entropy = {row: json.loads((table / row / "results.json").read_text())[row]["mean_entropy"]
               for row in ("source_only", "adabn")}
    assert ranked["order"] == sorted(entropy, key=entropy.get)  # what each row's run logged
    assert ranked["pick"] == ranked["order"][0]


@pytest.mark.slow
def test_labels_added_after_the_run_score_it_as_evaluate_py_does(
        unlabelled_run, own_data, tmp_path):
    # The user labels a few of the camera's images after the run: the same command with
    # --target_val_root scores the finished stages (no step is trained again).
    finished, trained = unlabelled_run
    assert finished.returncode == 0, finished.stderr[-3000:]
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    result = _train(workdir, own_data, f"--target_val_root={own_data['target_val']}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stage source_only resumes from" in result.stdout
    assert "Scores on folder/val (3 images), IoU %" in result.stdout
    scored = json.loads((workdir / "results.json").read_text())["source_only"]
    evaluated = _program("evaluate.py", f"--model={workdir / 'source_only'}", "--dataset=folder",
                         f"--root={own_data['target_val']}", "--split=val",
                         f"--output_json={tmp_path / 'evaluate.json'}")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    expected = json.loads((tmp_path / "evaluate.json").read_text())
    assert (scored["iou"], scored["miou"]) == (expected["iou"], expected["miou"])
    assert scored["confusion_matrix"] == expected["confusion_matrix"]


@pytest.mark.slow
def test_the_run_writes_a_card_saying_it_had_no_target_labels(unlabelled_run):
    result, workdir = unlabelled_run
    assert result.returncode == 0, result.stderr[-3000:]
    card = (workdir / "export" / "model_card.md").read_text()
    assert "folder" in card and str(workdir / "source_only") in card
    assert "no target labels" in card.lower()
    names = (workdir / "export" / "labels.txt").read_text().splitlines()
    assert names[:2] == ["road", "sidewalk"] and len(names) == 19


@pytest.mark.slow
def test_predict_segments_the_camera_folder_and_a_video_with_the_export(
        unlabelled_run, own_data, tmp_path):
    result, workdir = unlabelled_run
    assert result.returncode == 0, result.stderr[-3000:]
    tflite = workdir / "export" / f"segmenter_{SIZE[0]}x{SIZE[1]}_int8.tflite"
    folder = _program("predict.py", f"--model={tflite}", f"--input={own_data['target']}",
                      f"--output_dir={tmp_path / 'frames'}")
    assert folder.returncode == 0, folder.stderr[-3000:]
    for name in _names(12):
        stem = os.path.splitext(name)[0]
        labels = cv2.imread(str(tmp_path / "frames" / "labels" / f"{stem}.png"),
                            cv2.IMREAD_UNCHANGED)
        assert labels.shape == SIZE and labels.max() < 19
        assert (tmp_path / "frames" / "overlays" / f"{stem}.jpg").is_file()

    # A 2-second video at 10 frames/s, of the camera's images.
    video = tmp_path / "drive.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, SIZE[::-1])
    for image, _ in _demo("demo_target", "train", 20):
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    clip = _program("predict.py", f"--model={tflite}", f"--input={video}",
                    f"--output_dir={tmp_path / 'clip'}")
    assert clip.returncode == 0, clip.stderr[-3000:]
    overlay = cv2.VideoCapture(str(tmp_path / "clip" / "drive_overlay.mp4"))
    frames = 0
    while overlay.read()[0]:
        frames += 1
    assert frames == 20
