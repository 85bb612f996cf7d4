"""Evaluation: the paper-style report, bad inputs named clearly, the progress line.

Scores of one model in its three forms (checkpoint, SavedModel, TFLite) are
compared in test_export.py, which trains and exports that model once.
"""
import io
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import data_pipelines
from data_pipelines.classes import CLASS_NAMES, PROTOCOL_CLASSES
import dataset_files
from udamobile import config as config_lib, errors
from udamobile.evaluation import model_adapters, report, scoring
from udamobile.evaluation.paper_tables import PAPER_TABLES, paper_table
from udamobile.nets.segmenter import build_segmenter
from udamobile.progress import Progress
from udamobile.training import workdirs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NARROW = dict(width_multiplier=0.35, aspp_filters=16, low_level_filters=8, decoder_filters=16)


def _keras_model(num_classes=19):
    keras.utils.set_random_seed(0)
    return model_adapters.KerasSegmenter(build_segmenter(num_classes, **NARROW),
                                         model_adapters.ModelIdentity("keras", "in-memory", step=0))


def _results(protocol=16, label_sizes=((1024, 2048),)):
    """Hand-made results as `evaluate` returns them (only what the table reads)."""
    iou = {CLASS_NAMES[c]: 0.5 for c in PROTOCOL_CLASSES[protocol]}
    iou["road"], iou["bicycle"] = 0.9731, None
    return {"protocol": protocol, "iou": iou, "miou": 0.5, "pixel_accuracy": 0.875,
            "undefined_classes": ["bicycle"], "label_sizes": [list(s) for s in label_sizes],
            "dataset": {"name": "cityscapes", "split": "val", "num_images": 500}}


# --- the report ------------------------------------------------------------------

def test_table_has_classes_as_rows_and_the_paper_beside_ours():
    table = report.evaluation_table(_results(), paper_table("synthia", 16))
    lines = table.splitlines()
    header = lines[1].split()
    assert header[:3] == ["class", "ours", "source"]
    assert lines[3].split() == ["road", "97.3", "1.4", "42.9", "30.3", "53.8", "97.8"]
    assert next(l for l in lines if l.startswith("bicycle")).split()[1:3] == ["n/a", "0.5"]
    miou_row = next(l for l in lines if l.startswith("mIoU")).split()
    assert miou_row == ["mIoU", "50.0", "18.2", "24.2", "27.5", "32.6", "73.6"]
    class_rows = [l for l in lines if any(l.startswith(f"{name}  ") for name in CLASS_NAMES)]
    assert len(class_rows) == 16
    assert "left out of the mIoU: bicycle" in table
    assert "not comparable" not in table


def test_table_warns_when_labels_are_not_at_the_paper_resolution():
    table = report.evaluation_table(_results(19, [(512, 1024)]), paper_table("gta5", 19))
    assert "labels at 512x1024" in table and "not comparable" in table
    assert "λsem=λfeat=0" in table.splitlines()[1]


def test_paper_table_needs_its_own_protocol():
    with pytest.raises(errors.UsageError, match="--protocol=16"):
        paper_table("synthia", 13)
    with pytest.raises(errors.UsageError, match="--compare_paper"):
        paper_table("cityscapes", 19)


@pytest.mark.parametrize("name", sorted(PAPER_TABLES))
def test_paper_tables_are_complete_and_their_miou_is_the_mean_of_their_rows(name):
    table = PAPER_TABLES[name]
    assert list(table["iou"]) == [CLASS_NAMES[c] for c in PROTOCOL_CLASSES[table["protocol"]]]
    for column, miou in enumerate(table["miou"]):
        values = [row[column] for row in table["iou"].values()]
        assert len(values) == len(table["iou"])
        if None not in values:  # columns with per-class numbers: typed in right?
            assert np.mean(values) == pytest.approx(miou, abs=0.051)


# --- evaluating ------------------------------------------------------------------

def test_evaluate_scores_at_label_resolution_and_writes_panels(tmp_path):
    dataset = data_pipelines.open_dataset("demo_target", split="val")
    results = scoring.evaluate(_keras_model(), dataset, protocol=19, input_width=96,
                               max_images=3, predictions_dir=str(tmp_path))
    height, width = dataset.read_label(0).shape
    assert results["label_sizes"] == [[height, width]]
    assert results["dataset"] == {"name": "demo_target", "split": "val", "num_images": 3}
    assert results["num_pixels"] == 3 * height * width  # demo labels have no ignore pixels
    assert np.sum(results["confusion_matrix"]) == results["num_pixels"]
    assert 0 <= results["miou"] <= 1 and len(results["iou"]) == 19
    panels = sorted(os.listdir(tmp_path))
    assert panels == ["00000_0.png", "00001_1.png", "00002_2.png"]
    from PIL import Image
    assert Image.open(tmp_path / panels[0]).size == (3 * width, height)


def test_a_model_of_another_class_count_is_refused():
    dataset = data_pipelines.open_dataset("demo_target", split="val")
    with pytest.raises(errors.EvaluationError, match="predicts 16 classes.*19-class model"):
        scoring.evaluate(_keras_model(num_classes=16), dataset, protocol=16)


# --- bad input -------------------------------------------------------------------

def test_model_paths_that_are_not_models(tmp_path):
    (tmp_path / "weights.h5").write_text("")
    (tmp_path / "empty").mkdir()
    for path, message in ((tmp_path / "missing", "does not exist"),
                          (tmp_path / "weights.h5", "not a .tflite file"),
                          (tmp_path / "empty", "neither a work directory")):
        with pytest.raises(errors.ModelError, match=message):
            model_adapters.open_model(str(path))
    (tmp_path / "bad.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(errors.ModelError, match="cannot load the TFLite file"):
        model_adapters.open_model(str(tmp_path / "bad.tflite"))


def test_a_work_directory_without_checkpoints_is_named(tmp_path):
    workdirs.write_config(str(tmp_path), config_lib.get_config("demo", "source_only"))
    with pytest.raises(errors.WorkdirError, match=f"{tmp_path} has no checkpoint"):
        model_adapters.open_model(str(tmp_path))
    result = subprocess.run(
        [sys.executable, "evaluate.py", f"--model={tmp_path}", "--dataset=demo_target"],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert f"evaluate.py: {tmp_path} has no checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_dataset_root_without_val_labels_is_named_before_loading_the_model(tmp_path):
    root = tmp_path / "cityscapes"
    dataset_files.write_cityscapes(str(root), "val", [np.full((32, 64), 7, np.uint8)])
    shutil.rmtree(root / "gtFine")
    not_loadable = tmp_path / "not-a-model-either"  # exists, so only loading would fail
    not_loadable.mkdir()
    with pytest.raises(errors.DatasetError, match=str(root / "gtFine")):
        scoring.run_evaluation(str(not_loadable), dataset="cityscapes", root=str(root),
                               split="val")


def test_an_unlabelled_split_is_refused():
    dataset = data_pipelines.open_dataset("demo_target", split="train")
    dataset.has_labels = False  # as Cityscapes train opens without its gtFine folder
    with pytest.raises(errors.DatasetError, match="has no labels"):
        scoring.evaluate(_keras_model(), dataset)


# --- progress line ---------------------------------------------------------------

class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_prints_periodic_plain_lines_when_not_a_terminal():
    clock, stream = _Clock(), io.StringIO()
    with Progress(10, "evaluate", unit="img", stream=stream, log_interval=5, clock=clock) as bar:
        for _ in range(10):
            clock.now += 1
            bar.update(miou=0.41234)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "evaluate  5/10 [ 50%]  1.00 img/s  ETA 5s  miou=0.4123",
        "evaluate  10/10 [100%]  1.00 img/s  in 10s  miou=0.4123",
    ]


def test_the_eta_leaves_out_the_first_steps_tracing():
    # A stage whose first step traces for 60 s, then runs 2 steps a second.
    clock, stream = _Clock(), io.StringIO()
    with Progress(100, "adaptation", unit="step", stream=stream, log_interval=0,
                  clock=clock) as bar:
        clock.now += 60
        bar.update()
        for _ in range(9):
            clock.now += 0.5
            bar.update()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "adaptation  1/100 [  1%]  0.02 step/s"
    assert lines[9] == "adaptation  10/100 [ 10%]  2.00 step/s  ETA 45s"


def test_progress_refreshes_one_line_on_a_terminal():
    clock, stream = _Clock(), _Terminal()
    with Progress(None, "train", unit="step", stream=stream, clock=clock) as bar:
        for _ in range(3):
            clock.now += 0.5
            bar.update(loss=12345.0)
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "train  3  2.00 step/s  in 2s  loss=1.234e+04" in text


def test_a_methods_folder_is_refused_naming_its_stages_folders(tmp_path):
    from udamobile import config as config_lib

    workdirs.write_config(str(tmp_path / "source_only"), config_lib.get_config("demo"))
    with pytest.raises(errors.WorkdirError, match="method's folder: .*source_only"):
        model_adapters.keras_from_workdir(str(tmp_path))
