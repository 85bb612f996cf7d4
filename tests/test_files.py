"""Every artifact is written whole or not at all; JSON never holds NaN."""
import errno
import json
import os

import numpy as np
import pytest

from udamobile import errors, files


def test_failed_write_leaves_nothing_and_keeps_the_previous_artifact(tmp_path):
    target = tmp_path / "saved_model"
    with files.atomic_output(target) as staging:
        os.makedirs(staging)
        open(os.path.join(staging, "saved_model.pb"), "w").write("good")
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_output(target) as staging:
            os.makedirs(staging)
            open(os.path.join(staging, "saved_model.pb"), "w").write("half")
            raise KeyboardInterrupt
    assert (target / "saved_model.pb").read_text() == "good"
    assert os.listdir(tmp_path) == ["saved_model"]


def test_successful_write_replaces_the_previous_artifact(tmp_path):
    for content in ("old", "new"):
        with files.atomic_output(tmp_path / "model.tflite") as staging:
            open(staging, "w").write(content)
        with files.atomic_output(tmp_path / "saved_model") as staging:
            os.makedirs(staging)
            open(os.path.join(staging, "saved_model.pb"), "w").write(content)
    assert (tmp_path / "model.tflite").read_text() == "new"
    assert (tmp_path / "saved_model" / "saved_model.pb").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["model.tflite", "saved_model"]


def test_json_writes_undefined_scores_as_null_and_numpy_as_numbers(tmp_path):
    path = tmp_path / "eval" / "results.json"
    files.write_json(path, {"miou": float("nan"), "iou": {"road": None, "sky": np.float32(0.25)},
                            "matrix": np.eye(2, dtype=np.int64), "worst": -float("inf")})
    assert json.loads(path.read_text()) == {"miou": None, "iou": {"road": None, "sky": 0.25},
                                            "matrix": [[1, 0], [0, 1]], "worst": None}
    assert "NaN" not in path.read_text()


def test_every_json_the_package_writes_goes_through_write_json():
    """Results, evaluations, manifests: files.write_json is the one JSON writer
    (config.json is the config's own text, which holds no non-finite value: workdirs)."""
    library = os.path.dirname(os.path.dirname(os.path.abspath(files.__file__)))
    writers = set()
    for package in ("udamobile", "data_pipelines", "export"):
        for folder, _, names in os.walk(os.path.join(library, package)):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path, encoding="utf-8") as f:
                        source = f.read()
                    if "json.dump(" in source or "json.dumps(" in source:
                        writers.add(os.path.relpath(path, library))
    assert writers == {os.path.join("udamobile", "files.py"),
                       os.path.join("udamobile", "training", "workdirs.py")}


def test_read_json_names_a_damaged_file_what_it_lacks_and_the_remedy(tmp_path):
    path = tmp_path / "row.json"
    path.write_text('{"command": ["python"]}')
    assert files.read_json(path, keys=("command",), remedy="run it again") == {
        "command": ["python"]}
    for text, problem in (("{\"comm", "is damaged (not JSON"), ("[1, 2]", "holds no 'command'"),
                          ('{"seconds": 3}', "holds no 'command'")):
        path.write_text(text)
        with pytest.raises(errors.StateFileError, match="run it again") as error:
            files.read_json(path, keys=("command",), remedy="run it again")
        assert str(error.value).startswith(f"{path} ") and problem in str(error.value)


def test_every_state_file_the_package_reads_goes_through_read_json():
    root = os.path.join(os.path.dirname(__file__), "..")
    readers = []
    for folder in ("udamobile", "export", "data_pipelines"):
        for base, _, names in os.walk(os.path.join(root, folder)):
            for name in names:
                if name.endswith(".py"):
                    text = open(os.path.join(base, name), encoding="utf-8").read()
                    if "json.load(" in text:
                        readers.append(os.path.relpath(os.path.join(base, name), root))
    # The one other JSON file read is the user's own --label_map, an input rather than a
    # state file: its errors name the entry to fix (DatasetError), not a command to re-run.
    assert sorted(readers) == [os.path.join("data_pipelines", "label_maps.py"),
                               os.path.join("udamobile", "files.py")]


def test_a_full_disk_names_the_file_the_writer_did_not_name(tmp_path):
    # PIL and numpy raise ENOSPC without a file name; the user needs the path.
    target = tmp_path / "panel.png"
    with pytest.raises(OSError) as raised:
        with files.atomic_output(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert str(target) in str(raised.value) and not list(tmp_path.iterdir())


def test_an_error_inside_the_temporary_artifact_names_the_artifact(tmp_path):
    # An export writes its files inside the folder's temporary artifact, and
    # TensorFlow names the file it failed on in its message: both are shown
    # as where they go, not as a temporary path that is gone by then.
    target = tmp_path / "export"
    with pytest.raises(OSError) as raised:
        with files.atomic_output(target) as folder:
            with files.atomic_output(os.path.join(folder, "saved_model")) as saved_model:
                raise OSError(errno.ENOSPC, f"{saved_model}/variables; No space left on device",
                              os.path.join(saved_model, "variables"))
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == str(target / "saved_model" / "variables")
    assert raised.value.strerror == f"{target}/saved_model/variables; No space left on device"
    assert not list(tmp_path.iterdir())


def test_remove_leftovers_removes_what_a_killed_write_left_and_nothing_else(tmp_path):
    for name in (".export.partial-k1", ".export.retired-k2", ".export2.partial-k3", "export"):
        (tmp_path / name).mkdir()
    assert files.remove_leftovers(tmp_path / "export") == [
        str(tmp_path / ".export.partial-k1"), str(tmp_path / ".export.retired-k2")]
    assert sorted(os.listdir(tmp_path)) == [".export2.partial-k3", "export"]
