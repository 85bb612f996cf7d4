"""udamobile-predict: a user's images or video segmented by a model, resumably, bad files
skipped, bad inputs named in one line.

One tiny untrained segmenter, written as a real work directory, serves every
test: what is checked is where outputs go, their sizes and ids, never their
accuracy.
"""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY
import dataset_files
from data_pipelines.classes import NUM_CLASSES
from program_runs import error_line
from udamobile import config as config_lib, errors, inference, inference_inputs
from udamobile.evaluation import model_adapters
from udamobile.nets import networks
from udamobile.training import workdirs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = "udamobile-predict"
# name -> (height, width); sorted, a.jpg and sub/c.png share a size: one batch of two
# once b.PNG, of another size, is done.
PHOTOS = {"a.jpg": (48, 64), "b.PNG": (40, 56), "sub/c.png": (48, 64),
          "sub/deeper/d.jpeg": (48, 64)}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A work directory (config.json + one checkpoint) of a tiny untrained segmenter."""
    path = str(tmp_path_factory.mktemp("workdir"))
    cfg = config_lib.override(config_lib.get_config("demo", "source_only"), **TINY)
    workdirs.write_config(path, cfg)
    checkpoint = tf.train.Checkpoint(segmenter=networks.build_segmenter_from_config(cfg.model),
                                     step=tf.Variable(1, dtype=tf.int64))
    tf.train.CheckpointManager(checkpoint, workdirs.checkpoint_dir(path),
                               max_to_keep=1).save(checkpoint_number=1)
    return path


@pytest.fixture(scope="module")
def model(workdir):
    return model_adapters.open_model(workdir)


def _smooth_image(size, seed):
    """uint8 [H, W, 3] blurred noise: a picture JPEG keeps to a few levels, as it does photos."""
    noise = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 3)


def _write_photo(path, size, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), _smooth_image(size, seed))


@pytest.fixture
def photos(tmp_path):
    """A folder of PHOTOS (and a text file that is no image)."""
    folder = tmp_path / "photos"
    for seed, (name, size) in enumerate(PHOTOS.items()):
        _write_photo(folder / name, size, seed)
    (folder / "notes.txt").write_text("not an image")
    return folder


def _predict(model, input, output_dir, **options):
    return inference.predict_path(model, str(input), str(output_dir), **options)


def _read(path, flags=cv2.IMREAD_UNCHANGED):
    image = cv2.imread(str(path), flags)
    assert image is not None, path
    return image


def test_a_folder_gives_one_label_png_and_overlay_per_image_at_its_size(model, photos,
                                                                        tmp_path):
    out = tmp_path / "out"
    summary = _predict(model, photos, out, batch_size=2)
    for name, size in PHOTOS.items():
        stem = os.path.splitext(name)[0]
        labels = _read(out / "labels" / f"{stem}.png")
        assert labels.shape == size and labels.dtype == np.uint8
        assert labels.max() < NUM_CLASSES
        assert _read(out / "overlays" / f"{stem}.jpg").shape == (*size, 3)
    assert not (out / "panels").exists()
    assert sorted(os.listdir(out)) == ["labels", "overlays", "predict.json"]
    written = json.loads((out / "predict.json").read_text())
    assert written == json.loads(json.dumps(summary))
    assert (written["images"], written["segmented"], written["already_done"]) == (4, 4, 0)
    assert written["skipped"] == [] and written["model"]["path"] == model.identity.path
    assert written["batch_size"] == 2 and written["images_per_second"] > 0


def test_panels_show_the_image_beside_its_colourized_labels(model, photos, tmp_path):
    image = photos / "b.PNG"
    _predict(model, image, tmp_path / "out", panels=True, alpha=0.0)
    panel = _read(tmp_path / "out" / "panels" / "b.jpg", cv2.IMREAD_COLOR)
    assert panel.shape == (40, 112, 3)
    # At opacity 0 the overlay is the image itself (to JPEG's rounding).
    overlay = _read(tmp_path / "out" / "overlays" / "b.jpg", cv2.IMREAD_COLOR)
    assert np.abs(overlay.astype(int) - _read(image, cv2.IMREAD_COLOR)).mean() < 3


def test_a_stopped_run_resumes_and_a_half_written_file_is_not_taken_as_done(
        model, photos, tmp_path, capsys):
    out = tmp_path / "out"
    _predict(model, photos, out)
    # As a run stopped while writing c's overlay leaves it: only in the staging folder.
    os.remove(out / "overlays" / "sub" / "c.jpg")
    staging = out / "overlays" / "sub" / ".c.jpg.partial-k1ll3d00"
    staging.mkdir()
    (staging / "c.jpg").write_bytes(b"\xff\xd8half")
    summary = _predict(model, photos, out)
    assert (summary["segmented"], summary["already_done"]) == (1, 3)
    assert "3 of 4 images already done" in capsys.readouterr().out
    assert _read(out / "overlays" / "sub" / "c.jpg").shape == (48, 64, 3)
    assert not staging.exists()


def test_a_glob_mirrors_paths_under_its_fixed_leading_folder(photos, tmp_path):
    images = inference_inputs.resolve(f"{photos}/sub/**/*.[jp][pn]*g", str(tmp_path / "out"))
    assert images.root == f"{photos}/sub" and images.names == ("c", "deeper/d")


def test_images_that_differ_only_by_extension_keep_it_in_their_output_names(tmp_path):
    for name in ("x.jpg", "x.png", "y.jpg"):
        _write_photo(tmp_path / "in" / name, (32, 32))
    images = inference_inputs.resolve(str(tmp_path / "in"), str(tmp_path / "out"))
    assert images.names == ("x.jpg", "x.png", "y")


def test_a_video_gives_an_overlay_video_with_every_frame(model, tmp_path):
    video = str(tmp_path / "drive.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for seed in range(20):
        writer.write(_smooth_image((48, 64), seed))
    writer.release()
    summary = _predict(model, video, tmp_path / "out", batch_size=3)
    capture = cv2.VideoCapture(str(tmp_path / "out" / "drive_overlay.mp4"))
    frames = []
    while True:
        decoded, frame = capture.read()
        if not decoded:
            break
        frames.append(frame)
    assert len(frames) == 20 and frames[0].shape == (48, 64, 3)
    assert capture.get(cv2.CAP_PROP_FPS) == 10
    assert summary["frames"] == 20 and summary["kind"] == "video"
    assert _predict(model, video, tmp_path / "out")["already_done"] == 1


def test_a_folder_whose_every_image_is_bad_is_one_error(model, tmp_path):
    _write_photo(tmp_path / "in" / "a.png", (48, 64))
    dataset_files.truncate(tmp_path / "in" / "a.png")
    with pytest.raises(errors.DatasetError, match=r"none of its 1 image\(s\) could be segmented; "
                       r"the first: .*a\.png: cannot decode"):
        _predict(model, tmp_path / "in", tmp_path / "out")
    assert len(json.loads((tmp_path / "out" / "predict.json").read_text())["skipped"]) == 1


def test_an_image_the_model_cannot_take_is_skipped_and_the_others_segmented(model, photos,
                                                                            tmp_path):
    class FixedInput:
        """As a .tflite file: one image a call, refusing another aspect than its input's."""
        max_batch, identity = 1, model.identity

        def predict_batch(self, images, size):
            if size != (48, 64):
                raise errors.ModelError("takes a fixed 48x64 (HxW) input")
            return model.predict_batch(images, size)

    summary = _predict(FixedInput(), photos, tmp_path / "out", batch_size=4)
    assert (summary["segmented"], summary["batch_size"]) == (3, 1)
    assert summary["skipped"] == [f"{photos}/b.PNG: takes a fixed 48x64 (HxW) input"]


def _run(*args):
    return subprocess.run([sys.executable, "predict.py", *args], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True)


def test_the_program_skips_and_names_bad_images(workdir, photos, tmp_path):
    dataset_files.truncate(photos / "sub" / "c.png")
    _write_photo(photos / "tiny.jpg", (8, 8))
    result = _run(f"--model={workdir}", f"--input={photos}", f"--output_dir={tmp_path}/out")
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "Skipped" in line]
    assert len(warnings) == 2
    assert f"{photos}/sub/c.png: cannot decode" in warnings[0]
    assert f"{photos}/tiny.jpg: 8x8 pixels" in warnings[1]
    assert "3 of 5 images segmented" in result.stdout
    summary = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert [message.split(":")[0] for message in summary["skipped"]] == [
        f"{photos}/sub/c.png", f"{photos}/tiny.jpg"]


def _bad_inputs(tmp_path):
    """{case: (--input, --output_dir, exit status, words of the error line)}."""
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "broken.mp4").write_bytes(b"no video here" * 10)
    (tmp_path / "notes.txt").write_text("no image")
    _write_photo(tmp_path / "photos" / "a.png", (32, 32))
    photos, out = tmp_path / "photos", tmp_path / "out"
    return {
        "missing": (tmp_path / "nowhere", out, 1, "nowhere does not exist"),
        "empty folder": (tmp_path / "empty", out, 1, "no .jpg, .jpeg or .png file"),
        "glob matching nothing": (f"{photos}/*.jpg", out, 1, "the pattern matches no"),
        "undecodable video": (tmp_path / "broken.mp4", out, 1, "cannot be decoded (no frames)"),
        "output inside input": (photos, photos / "out", 2, "is inside the folder"),
        "output is the input": (photos, photos, 2, "is inside the folder"),
        "unknown extension": (tmp_path / "notes.txt", out, 1, "unknown extension '.txt'"),
    }


def test_bad_inputs_are_one_line_naming_them_before_the_model_loads(tmp_path):
    for case, (input, output_dir, status, words) in _bad_inputs(tmp_path).items():
        result = _run("--model=nowhere", f"--input={input}", f"--output_dir={output_dir}")
        assert result.returncode == status, (case, result.stderr[-2000:])
        line = error_line(result, PROGRAM)
        assert str(input) in line and words in line, (case, line)
    assert os.listdir(tmp_path / "photos") == ["a.png"]
