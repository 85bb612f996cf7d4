"""Dataset folder: your own images in each layout, the label map, the bad inputs as
one line, and config paths saved absolute. No TensorFlow: every test is cheap."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

import data_pipelines
import dataset_files
from data_pipelines import folder_dataset
from program_runs import error_line
from udamobile import config as config_lib, config_flags
from udamobile.errors import DatasetError, UsageError
from udamobile.training import inputs, workdirs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (32, 40)
# Mixed cases and extensions in nested folders, written in this (unsorted) order;
# file N's label holds id N.
NAMES = ["b/y/0.JPG", "a/1.png", "b/x/2.jpg", "a/3.jpeg", "4.png"]


def _ids(value):
    """uint8 [32, 40] ids: `value` with a 255 (ignore) stripe along the top."""
    ids = np.full(SHAPE, value, np.uint8)
    ids[:2] = 255
    return ids


def _image(value):
    return np.full((*SHAPE, 3), value * 10, np.uint8)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """{layout: root}: the same five images unlabelled, and labelled with train ids."""
    root = tmp_path_factory.mktemp("folders")
    images = [_image(i) for i in range(len(NAMES))]
    dataset_files.write_folder(root / "unlabelled", NAMES, images)
    (root / "unlabelled" / "notes.txt").write_text("not an image")
    dataset_files.write_folder(root / "labelled", NAMES, images,
                               [_ids(i) for i in range(len(NAMES))])
    return {"unlabelled": root / "unlabelled", "labelled": root / "labelled"}


def _run_check(*args):
    return subprocess.run([sys.executable, "-m", "data_pipelines.check", "--dataset=folder",
                           *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": REPO})


def test_an_unlabelled_folder_is_every_image_below_it_in_sorted_order(folders):
    dataset = data_pipelines.open_dataset("folder", folders["unlabelled"], "train")
    relative = [os.path.relpath(p, folders["unlabelled"]) for p in dataset.image_paths]
    assert relative == sorted(NAMES) and not dataset.has_labels
    assert dataset.read_image(relative.index("b/y/0.JPG")).shape == (*SHAPE, 3)
    with pytest.raises(DatasetError, match="needs labels, and the folder holds none"):
        data_pipelines.open_dataset("folder", folders["unlabelled"], "val")


def test_the_plain_layout_pairs_each_label_with_its_image_by_relative_stem(folders):
    root = folders["labelled"]
    val = data_pipelines.open_dataset("folder", root, "val")
    assert len(val) == len(NAMES)
    for index, path in enumerate(val.image_paths):
        number = NAMES.index(os.path.relpath(path, root / "images"))  # the image's own label
        np.testing.assert_array_equal(val.read_label(index), _ids(number))
        assert val.label_paths[index].endswith(os.path.splitext(NAMES[number])[0] + ".png")
    train, heldout = (data_pipelines.open_dataset("folder", root, split)
                      for split in ("train", "heldout"))
    assert len(heldout) == 1  # 1 in 25, at least one
    assert sorted(train.image_paths + heldout.image_paths) == sorted(val.image_paths)


def test_the_cityscapes_layout_reads_as_cityscapes(tmp_path):
    label_ids = [np.full(SHAPE, 7, np.uint8), np.full(SHAPE, 26, np.uint8)]  # road, car
    dataset_files.write_cityscapes(tmp_path, "val", label_ids)
    cityscapes = data_pipelines.open_dataset("cityscapes", tmp_path, "val")
    for split in ("val", "heldout"):
        folder = data_pipelines.open_dataset("folder", tmp_path, split)
        assert folder.image_paths == cityscapes.image_paths
        assert [np.unique(folder.read_label(i)).tolist() for i in range(2)] == [[0], [13]]


def test_a_label_map_maps_your_ids_and_reads_the_others_as_ignore(folders, tmp_path):
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"3": 13, "1": 0}))  # ids 0, 2, 4 and 255 unmapped
    dataset = data_pipelines.open_dataset("folder", folders["labelled"], "val",
                                          label_map=label_map)
    stems = [os.path.relpath(p, folders["labelled"] / "images") for p in dataset.image_paths]
    for name, expected in (("a/3.jpeg", 13), ("a/1.png", 0), ("4.png", 255)):
        label = dataset.read_label(stems.index(name))
        assert np.unique(label[2:]).tolist() == [expected] and (label[:2] == 255).all()


def test_unmatched_files_are_named_like_the_other_datasets(tmp_path):
    dataset_files.write_folder(tmp_path, ["a/x.jpg", "a/y.png"], [_image(1)] * 2,
                               [_ids(1)] * 2)
    os.remove(tmp_path / "labels" / "a" / "y.png")
    with pytest.raises(DatasetError, match=r"1 images without their label: .*a/y\.png"):
        data_pipelines.open_dataset("folder", tmp_path, "train")


@pytest.mark.parametrize("problem, expected", [
    ("empty", "no images found (expected .jpg, .jpeg or .png files"),
    ("id_over_255", "entry '300': 1: a key must be an id 0-255"),
    ("train_id_over_18", "entry '3': 19: a value must be a train id 0-18 or 255"),
    ("labels_not_train_ids", "of the pixels hold values outside train ids 0-18"),
])
def test_bad_input_is_one_line_naming_the_file(folders, tmp_path, problem, expected):
    root, args = folders["labelled"], ["--split=val"]
    if problem == "empty":
        root, args = tmp_path / "empty", []
        root.mkdir()
    elif problem == "labels_not_train_ids":  # a simulator's ids given without their map
        root = tmp_path / "simulator"
        dataset_files.write_folder(root, ["0.png"], [_image(1)],
                                   [np.full(SHAPE, 40, np.uint8)])
    else:
        entry = {"id_over_255": {"300": 1}, "train_id_over_18": {"3": 19}}[problem]
        (tmp_path / "map.json").write_text(json.dumps(entry))
        args.append(f"--label_map={tmp_path / 'map.json'}")
    result = _run_check(f"--root={root}", *args)
    assert result.returncode == 1
    line = error_line(result, "python -m data_pipelines.check")
    assert expected in line and (str(tmp_path) in line)


def test_the_test_split_of_a_folder_target_is_its_val_root():
    cfg = config_lib.override(config_lib.get_config("demo", "source_only"), target="folder",
                              target_root="/data/camera", target_val_root="/data/camera_val")
    assert inputs.test_split(cfg) == ("folder", "/data/camera_val", "val")
    unlabelled = config_lib.override(cfg, target_val_root=None)
    assert not inputs.has_test_split(unlabelled)
    with pytest.raises(DatasetError, match="give --target_val_root"):
        inputs.test_split(unlabelled)


def test_the_label_map_reads_the_source_only_and_needs_a_folder_source():
    cfg = config_lib.override(config_lib.get_config("demo", "source_only"), source="folder",
                              source_root="/sim", label_map="/sim/map.json", target="folder",
                              target_root="/camera")
    assert inputs.reading_options(cfg, inputs.source_train(cfg))["label_map"] == "/sim/map.json"
    assert inputs.reading_options(cfg, inputs.target_train(cfg))["label_map"] is None
    with pytest.raises(UsageError, match="--label_map applies to --source=folder, not "
                                         "--source=demo_source"):
        config_lib.validate(config_lib.override(cfg, source="demo_source", source_root=None))


def test_the_config_saves_paths_absolute_and_compares_them_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flag_values = flags.FlagValues()
    config_flags.define_config_flags(flag_values)
    flag_values(["train.py", "--target=folder", "--target_root=camera", "--source_root=./sim",
                 "--target_val_root=../val", "--steps=3"])
    overrides = config_flags.config_overrides(flag_values)
    assert overrides["target_root"] == str(tmp_path / "camera")
    assert overrides["target_val_root"] == str(tmp_path.parent / "val")
    assert overrides["source_root"] == str(tmp_path / "sim") and overrides["steps"] == 3
    cfg = config_lib.override(config_lib.get_config("demo", "source_only"), **overrides)
    written = json.loads(workdirs.to_json(cfg))["data"]
    assert written["target_root"] == str(tmp_path / "camera")
    # A config.json written before paths were saved absolute still resumes.
    relative = config_lib.override(cfg, target_root="camera", source_root="sim")
    assert workdirs.differences(relative, cfg) == []
    moved = config_lib.override(cfg, target_root="elsewhere")
    assert workdirs.differences(moved, cfg) == [
        f"target_root='elsewhere' there, {str(tmp_path / 'camera')!r} here"]


def test_a_field_only_another_stage_reads_is_no_difference_of_this_stage():
    # A stage trained when a distill-only default was another one is still its twin.
    source_only = config_lib.get_config("demo", "source_only")
    older = config_lib.override(source_only, student="mnv2_050_pool128")
    assert workdirs.differences(older, source_only) == []
    distill = config_lib.get_config("demo", "distill")
    assert workdirs.differences(config_lib.override(distill, student="mnv2_050_pool128"),
                                distill) == [
        f"student='mnv2_050_pool128' there, {distill.model.student!r} here"]


def test_open_folder_names_a_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="folder not found"):
        folder_dataset.open_folder(tmp_path / "missing", "train")
