"""Export: the SavedModel signature, TFLite files that agree with Keras.

The end-to-end tests share one small trained model: a narrow segmenter fit for
a few seconds on demo_target images (an untrained model has near-uniform
logits, whose argmax flips with any rounding: agreement numbers would mean
nothing). It is written as a real work directory and exported through the CLI.
"""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

import data_pipelines
from data_pipelines.classes import CLASS_NAMES, IGNORE_LABEL, PALETTE
from export import card, class_files, graph, report, saved_model, tflite, tflite_metadata
from export.artifacts import export_workdir
from udamobile import config as config_lib, errors, provenance
from udamobile.errors import ExportError
from udamobile.evaluation import model_adapters, scoring
from udamobile.nets import networks
from udamobile.nets.students import STUDENTS
from udamobile.training import checkpointing, workdirs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEIGHT, WIDTH = 128, 256  # the demo domains' image size
NARROW = dict(width_multiplier=0.35, aspp_filters=16, low_level_filters=8, decoder_filters=16,
              dropout_rate=0.0)
FIT_STEPS = 150
EVAL_IMAGES = 12
# The int8 file's argmax agreement with Keras on this fit model: 99.1% measured
# on the 12 images, less a margin for how calibration and kernels vary by platform.
INT8_AGREEMENT = 0.97


def _one_conv_segmenter():
    image = keras.Input((None, None, 3))
    return keras.Model(image, {"logits": keras.layers.Conv2D(19, 1)(image)})


def test_interrupted_saved_model_export_leaves_no_artifact(tmp_path, monkeypatch):
    def write_half_then_fail(archive, path, **kwargs):
        os.makedirs(os.path.join(path, "variables"))
        open(os.path.join(path, "saved_model.pb"), "w").write("half")
        raise KeyboardInterrupt

    # ExportArchive() builds an instance of a backend-specific class.
    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", write_half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        saved_model.export_saved_model(_one_conv_segmenter(), str(tmp_path / "saved_model"))
    assert os.listdir(tmp_path) == []


def test_export_options_are_checked_before_any_work(tmp_path):
    with pytest.raises(ExportError, match="--formats"):
        export_workdir(str(tmp_path), str(tmp_path / "out"), formats=["onnx"])
    with pytest.raises(ExportError, match="--height"):
        export_workdir(str(tmp_path), str(tmp_path / "out"), height=0)
    with pytest.raises(ExportError, match=r"--tflite_output='logits' must be one of \('labels'"):
        export_workdir(str(tmp_path), str(tmp_path / "out"), tflite_output="logits")
    with pytest.raises(ExportError, match=r"--tflite_output=stride4_labels repeats each label "
                       r"of the stride-4 logits over a 4x4 block: --height=130 and --width=256 "
                       r"must both be divisible by 4"):
        export_workdir(str(tmp_path), str(tmp_path / "out"), height=130, width=256,
                       tflite_output="stride4_labels")
    with pytest.raises(ExportError, match="--report_images"):
        export_workdir(str(tmp_path), str(tmp_path / "out"), report_images=-1)
    with pytest.raises(ExportError, match="--max_batch_pixels=0 must be a positive integer"):
        export_workdir(str(tmp_path), str(tmp_path / "out"), max_batch_pixels=0)
    with pytest.raises(ExportError, match=r"--max_batch_pixels=100 is below one --height x "
                       r"--width image \(524288 pixels\)"):
        export_workdir(str(tmp_path), str(tmp_path / "out"), max_batch_pixels=100)


def test_an_input_below_the_segmenters_output_stride_is_refused_before_any_work(tmp_path):
    # A student at output stride 32 (udamobile/nets/students.py) cannot take 16 pixels.
    cfg = config_lib.override(config_lib.get_config("demo", "distill"),
                              **STUDENTS["mnv2_035_os32_pool128"])
    workdirs.write_config(str(tmp_path), cfg)
    with pytest.raises(ExportError, match=(
            rf"^--height=16 is below 32, the output stride of the segmenter in {tmp_path}: its "
            r"features would be a single pixel; export at 32 or more$")):
        export_workdir(str(tmp_path), str(tmp_path / "out"), height=16, width=64)
    assert sorted(os.listdir(tmp_path)) == ["config.json"]


def test_export_cli_names_a_calibration_folder_without_images(tmp_path):
    workdirs.write_config(str(tmp_path), config_lib.get_config("demo", "source_only"))
    empty = tmp_path / "cityscapes"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "export", f"--workdir={tmp_path}", f"--output_dir={tmp_path}/out",
         "--representative_dataset=cityscapes", f"--representative_root={empty}"],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr[-2000:]
    assert str(empty) in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _report_row(artifact, miou):
    return {"artifact": artifact, "miou": miou}


def test_int8_warning_names_the_loss_and_the_remedies():
    within = [_report_row("keras", 0.50), _report_row("tflite_float32", 0.50),
              _report_row("tflite_int8", 0.491)]
    assert report.int8_warning(within) is None
    lost = [_report_row("keras", 0.50), _report_row("tflite_float32", 0.49),
            _report_row("tflite_int8", 0.46)]
    warning = report.int8_warning(lost)
    assert "loses 3.0 mIoU points against tflite_float32" in warning
    assert "--num_calibration_images" in warning and "--representative_dataset" in warning
    # Without a float32 file the int8 one is compared with Keras.
    assert "against keras" in report.int8_warning([lost[0], lost[2]])
    assert report.int8_warning(lost[:2]) is None


def test_export_of_a_workdir_without_checkpoint_names_it(tmp_path):
    workdirs.write_config(str(tmp_path), config_lib.get_config("demo", "source_only"))
    with pytest.raises(errors.WorkdirError, match="no checkpoint"):
        export_workdir(str(tmp_path), str(tmp_path / "out"))
    result = subprocess.run(
        [sys.executable, "-m", "export", f"--workdir={tmp_path}", f"--output_dir={tmp_path}/out"],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{tmp_path} has no checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_int8_needs_calibration_images():
    with pytest.raises(ValueError, match="representative_images"):
        tflite.convert(keras.Sequential(), height=8, width=8, quantization="int8")


def test_tflite_metadata_leaves_the_model_and_its_outputs_as_they_were():
    converted = tflite.convert(_one_conv_segmenter(), height=16, width=24)
    carried = {"labels.txt": b"road\nsidewalk\n", "palette.txt": b"1 2 3\n4 5 6\n"}
    embedded = tflite_metadata.embed(converted, carried)
    entries = tflite_metadata.read(embedded)
    assert {name: entries[name] for name in carried} == carried
    assert "min_runtime_version" in entries  # the converter's own entries are kept
    image = np.random.default_rng(0).integers(0, 256, (1, 16, 24, 3), dtype=np.uint8)
    before, after = (Interpreter(model_content=content).get_signature_runner()(images=image)
                     for content in (converted, embedded))
    np.testing.assert_array_equal(before["labels"], after["labels"])
    with pytest.raises(ValueError, match="already has metadata named labels.txt"):
        tflite_metadata.embed(embedded, {"labels.txt": b""})


# --- one trained model in every form (slow) ------------------------------------------

def _fit(segmenter, steps):
    """A few Adam steps of cross-entropy on 64x64 demo_target patches.

    Batch-norm moving statistics follow with momentum 0.9 instead of 0.999:
    in so few steps the default would leave them at their initial values,
    and inference (which uses them) would not reflect the fit.
    """
    for part in ("encoder", "decoder"):
        for layer in segmenter.get_layer(part).layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
    dataset = data_pipelines.open_dataset("demo_target", split="train")
    batches = iter(data_pipelines.supervised_patches(dataset, patch_size=64, batch_size=8))
    optimizer = keras.optimizers.Adam(3e-3)
    optimizer.build(segmenter.trainable_variables)

    @tf.function
    def step(batch):
        counted = batch["label"] != IGNORE_LABEL
        with tf.GradientTape() as tape:
            logits = segmenter(batch["image"], training=True)["logits"]
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                tf.boolean_mask(batch["label"], counted), tf.boolean_mask(logits, counted)))
        variables = segmenter.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    for _ in range(steps):
        step(next(batches))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A work directory (config.json + checkpoint) of a narrow, briefly fit segmenter."""
    keras.utils.set_random_seed(0)
    path = str(tmp_path_factory.mktemp("workdir"))
    cfg = config_lib.override(config_lib.get_config("demo", "source_only"), **NARROW)
    segmenter = networks.build_segmenter_from_config(cfg.model)
    _fit(segmenter, FIT_STEPS)
    workdirs.write_config(path, cfg)
    step = tf.Variable(FIT_STEPS, dtype=tf.int64)
    tf.train.CheckpointManager(tf.train.Checkpoint(segmenter=segmenter, step=step),
                               workdirs.checkpoint_dir(path), max_to_keep=1).save(FIT_STEPS)
    return path


@pytest.fixture(scope="module")
def export_run(workdir, tmp_path_factory):
    """(output folder, the CLI's stdout) of `python -m export` writing every format with
    its defaults and a report on demo_target val."""
    output_dir = str(tmp_path_factory.mktemp("exports"))
    result = subprocess.run(
        [sys.executable, "-m", "export", f"--workdir={workdir}", f"--output_dir={output_dir}",
         f"--height={HEIGHT}", f"--width={WIDTH}", "--num_calibration_images=16",
         "--report_dataset=demo_target", f"--report_images={EVAL_IMAGES}"],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir, result.stdout


@pytest.fixture(scope="module")
def exports(workdir, export_run, tmp_path_factory):
    """{format: path} of what the CLI wrote, and "tflite_float32_probabilities": a
    float32 file that returns probabilities, through the library (in a folder of
    its own: an export replaces its folder whole)."""
    output_dir, _ = export_run
    paths = {fmt: os.path.join(output_dir, name) for fmt, name in
             json.load(open(os.path.join(output_dir, "export.json")))["artifacts"].items()}
    written = export_workdir(workdir, str(tmp_path_factory.mktemp("probabilities")),
                             formats=["tflite_float32"], height=HEIGHT, width=WIDTH,
                             tflite_output="probabilities")
    paths["tflite_float32_probabilities"] = written["tflite_float32"]
    return paths


@pytest.fixture(scope="module")
def target_images():
    """uint8 [N, H, W, 3] demo_target val images, never seen in the fit."""
    dataset = data_pipelines.open_dataset("demo_target", split="val")
    return np.stack([dataset.read_image(i) for i in range(EVAL_IMAGES)])


def _keras_labels(workdir, images):
    segmenter, _ = checkpointing.restore_segmenter(workdir)
    logits = segmenter(data_pipelines.normalize_image(images), training=False)["logits"]
    return np.argmax(logits, axis=-1)


def _litert_labels(path, images):
    """Runs a .tflite file in ai-edge-litert, as a board would."""
    runner = Interpreter(model_path=path, num_threads=2).get_signature_runner()
    labels = []
    for image in images:
        outputs = runner(images=image[np.newaxis])
        labels.append(outputs["labels"][0] if "labels" in outputs
                      else np.argmax(outputs["probabilities"][0], axis=-1))
    return np.stack(labels)


@pytest.mark.slow
def test_artifacts_and_interfaces(exports):
    assert sorted(exports) == ["saved_model", "tflite_float16", "tflite_float32",
                               "tflite_float32_probabilities", "tflite_int8"]
    sizes = {fmt: os.path.getsize(path) for fmt, path in exports.items() if fmt != "saved_model"}
    assert sizes["tflite_int8"] < sizes["tflite_float16"] < sizes["tflite_float32"]
    assert exports["tflite_float32"].endswith(f"segmenter_{HEIGHT}x{WIDTH}_float32.tflite")
    assert exports["tflite_float32_probabilities"].endswith("_float32_probabilities.tflite")
    # Labels are the default output of every TFLite file; probabilities are asked for.
    for fmt, output, dtype in (("tflite_float32", "labels", np.uint8),
                               ("tflite_float16", "labels", np.uint8),
                               ("tflite_int8", "labels", np.uint8),
                               ("tflite_float32_probabilities", "probabilities", np.float32)):
        runner = Interpreter(model_path=exports[fmt]).get_signature_runner()
        images = runner.get_input_details()["images"]
        assert images["dtype"] == np.uint8 and list(images["shape"]) == [1, HEIGHT, WIDTH, 3]
        assert list(runner.get_output_details()) == [output]
        assert runner.get_output_details()[output]["dtype"] == dtype
    # The int8 file's uint8 input is the image itself: scale 1, zero point 0.
    int8_input = Interpreter(model_path=exports["tflite_int8"]).get_input_details()[0]
    assert int8_input["quantization"] == (1.0, 0)


@pytest.mark.slow
def test_tflite_argmax_agrees_with_keras(workdir, exports, target_images):
    reference = _keras_labels(workdir, target_images)
    assert len(np.unique(reference)) >= 3, "the fit model should predict several classes"
    agreement = {fmt: np.mean(_litert_labels(exports[fmt], target_images) == reference)
                 for fmt in ("tflite_float32", "tflite_float16", "tflite_int8",
                             "tflite_float32_probabilities")}
    print("argmax agreement with Keras:", agreement)
    assert agreement["tflite_float32"] >= 0.999
    assert agreement["tflite_float32_probabilities"] >= 0.999
    assert agreement["tflite_float16"] >= 0.995
    assert agreement["tflite_int8"] >= INT8_AGREEMENT


def test_repeat_pixels_in_tflite_is_numpy_repeat_on_uint8():
    labels = np.random.default_rng(0).integers(0, 19, (1, 3, 5), dtype=np.uint8)
    inputs = keras.Input((3, 5), batch_size=1, dtype="uint8")
    model = keras.Model(inputs, graph.RepeatPixels(4)(inputs))
    runner = Interpreter(model_content=tf.lite.TFLiteConverter.from_keras_model(model).convert())
    runner.allocate_tensors()
    runner.set_tensor(runner.get_input_details()[0]["index"], labels)
    runner.invoke()
    repeated = runner.get_tensor(runner.get_output_details()[0]["index"])
    assert repeated.dtype == np.uint8
    np.testing.assert_array_equal(repeated, labels.repeat(4, axis=1).repeat(4, axis=2))


@pytest.mark.slow
def test_stride4_labels_are_the_stride4_argmax_repeated_over_4x4_blocks(
        workdir, target_images, tmp_path):
    path = export_workdir(workdir, str(tmp_path / "out"), formats=["tflite_float32"],
                          height=HEIGHT, width=WIDTH, tflite_output="stride4_labels",
                          report_images=2)["tflite_float32"]
    assert path.endswith(f"segmenter_{HEIGHT}x{WIDTH}_float32_stride4_labels.tflite")
    segmenter, _ = checkpointing.restore_segmenter(workdir)
    coarse = graph.stride4_logits(segmenter)(data_pipelines.normalize_image(target_images))
    expected = np.argmax(coarse, axis=-1).repeat(4, axis=1).repeat(4, axis=2)
    labels = _litert_labels(path, target_images)
    assert labels.shape == expected.shape == (EVAL_IMAGES, HEIGHT, WIDTH)
    assert np.mean(labels == expected) >= 0.999
    # Against the exact labels (bilinear logits), only pixels near boundaries differ.
    assert 0.8 < np.mean(labels == _keras_labels(workdir, target_images)) < 1.0


@pytest.mark.slow
def test_export_report_scores_every_artifact_written(export_run, exports):
    output_dir, stdout = export_run
    rows = json.load(open(os.path.join(output_dir, report.REPORT_JSON)))["rows"]
    by_name = {row["artifact"]: row for row in rows}
    assert list(by_name) == ["keras", "saved_model", "tflite_float32", "tflite_float16",
                             "tflite_int8"]
    for name in ("saved_model", "tflite_float32", "tflite_float16", "tflite_int8"):
        assert by_name[name]["path"] == exports[name]
        assert by_name[name]["megabytes"] > 0 and by_name[name]["median_ms"] > 0
    assert by_name["saved_model"]["agreement"] >= 0.999
    assert by_name["tflite_float32"]["agreement"] >= 0.999
    assert by_name["tflite_int8"]["agreement"] >= INT8_AGREEMENT
    assert abs(by_name["tflite_float32"]["miou"] - by_name["keras"]["miou"]) <= 0.001
    text = open(os.path.join(output_dir, report.REPORT_TEXT)).read()
    assert text in stdout  # the terminal shows what the file holds
    assert f"demo_target/val ({EVAL_IMAGES} images, resized to {HEIGHT}x{WIDTH})" in text
    for name in by_name:
        assert name in text


@pytest.mark.slow
def test_same_miou_as_checkpoint_saved_model_and_tflite(workdir, exports, capsys):
    dataset = data_pipelines.open_dataset("demo_target", split="val")
    scores = {}
    for fmt, path in (("keras", workdir), ("saved_model", exports["saved_model"]),
                      ("tflite_float32", exports["tflite_float32"]),
                      ("tflite_int8", exports["tflite_int8"])):
        results = scoring.evaluate(model_adapters.open_model(path), dataset, protocol=19,
                                   input_width=WIDTH, max_images=EVAL_IMAGES)
        scores[fmt] = 100 * results["miou"]
    print("mIoU %:", scores)
    assert scores["keras"] > 20
    assert abs(scores["saved_model"] - scores["keras"]) <= 0.1
    assert abs(scores["tflite_float32"] - scores["keras"]) <= 0.1
    # int8 only moves boundary pixels.
    assert abs(scores["tflite_int8"] - scores["keras"]) <= 3


@pytest.mark.slow
def test_saved_model_serves_uint8_images_of_any_size(exports):
    serve = tf.saved_model.load(exports["saved_model"]).signatures["serving_default"]
    outputs = serve(images=tf.zeros([2, 37, 53, 3], tf.uint8))
    assert outputs["labels"].dtype == tf.int32 and outputs["labels"].shape == (2, 37, 53)
    np.testing.assert_allclose(tf.reduce_sum(outputs["probabilities"], -1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_saved_model_rejects_float_wrong_rank_empty_and_scalar_input(exports):
    serve = tf.saved_model.load(exports["saved_model"]).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a uint8 tensor"):
        serve(images=tf.zeros([1, 32, 32, 3], tf.float32))
    for shape in ([32, 32, 3], [1, 32, 32, 4], [], [0, 32, 32, 3], [1, 0, 32, 3]):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"expects uint8 RGB images \[batch, height, width, 3\]"):
            serve(images=tf.zeros(shape, tf.uint8))


@pytest.mark.slow
def test_saved_model_cli_shows_and_runs_it(exports, tmp_path):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    common = ["--dir", exports["saved_model"], "--tag_set", "serve",
              "--signature_def", "serving_default"]
    shown = subprocess.run([cli, "show", *common], capture_output=True, text=True)
    assert "inputs['images']" in shown.stdout and "DT_UINT8" in shown.stdout
    assert "outputs['labels']" in shown.stdout and "outputs['probabilities']" in shown.stdout
    np.save(tmp_path / "images.npy", np.zeros((1, 16, 24, 3), np.uint8))
    ran = subprocess.run([cli, "run", *common, "--inputs", f"images={tmp_path}/images.npy",
                          "--outdir", str(tmp_path)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert np.load(tmp_path / "labels.npy").shape == (1, 16, 24)


@pytest.mark.slow
def test_tflite_input_size_must_match_the_input_width_flag(exports):
    model = model_adapters.open_model(exports["tflite_float32"])
    dataset = data_pipelines.open_dataset("demo_target", split="val")
    with pytest.raises(errors.ModelError,
                       match=rf"takes a fixed {HEIGHT}x{WIDTH} .*--input_width=64"):
        scoring.evaluate(model, dataset, input_width=64)


@pytest.mark.slow
def test_evaluate_cli_prints_the_table_and_writes_json_in_the_workdir(workdir):
    result = subprocess.run(
        [sys.executable, "evaluate.py", f"--model={workdir}", "--dataset=demo_target",
         "--split=val", "--max_images=2", "--compare_paper=gta5"],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "λsem=λfeat=0" in result.stdout and "mIoU" in result.stdout
    path = os.path.join(workdir, "eval", f"demo_target_val_19cls_step{FIT_STEPS}.json")
    assert f"results written to {path}" in result.stdout
    results = json.load(open(path))
    assert results["model"]["step"] == FIT_STEPS and results["dataset"]["num_images"] == 2


def test_the_readmes_board_example_is_the_one_run_on_a_board_alone():
    """The README shows docs/deployment.md's board snippet, which
    test_board_snippet_needs_only_numpy_pillow_and_litert runs."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"),
                  encoding="utf-8").read()
    snippet = docs_python_block("deployment.md",
                                "## On a board: ai-edge-litert, numpy and Pillow only")
    assert f"```python\n{snippet}```" in readme


@pytest.mark.slow
def test_export_folder_carries_the_classes_everywhere(export_run, exports):
    output_dir, _ = export_run
    labels = open(os.path.join(output_dir, "labels.txt"), encoding="utf-8").read()
    assert labels.splitlines() == list(CLASS_NAMES)
    np.testing.assert_array_equal(np.loadtxt(os.path.join(output_dir, "palette.txt"),
                                             dtype=np.uint8), PALETTE)
    expected = class_files.class_files()
    with open(os.path.join(output_dir, "model_card.md"), "rb") as f:
        model_card = f.read()
    for fmt in ("tflite_float32", "tflite_float16", "tflite_int8"):
        entries = tflite_metadata.read_file(exports[fmt])
        assert {name: entries[name] for name in expected} == expected, fmt
        assert entries["model_card.md"] == model_card, fmt
    for name, data in expected.items():
        assert open(os.path.join(exports["saved_model"], "assets", name), "rb").read() == data
    classes = tf.saved_model.load(exports["saved_model"]).signatures["classes"]()
    assert [name.decode() for name in classes["names"].numpy()] == list(CLASS_NAMES)
    assert classes["palette"].dtype == tf.uint8
    np.testing.assert_array_equal(classes["palette"], PALETTE)


@pytest.mark.slow
def test_export_json_and_model_card_record_provenance_and_scores(export_run, exports):
    output_dir, _ = export_run
    written_by = json.load(open(os.path.join(output_dir, "export.json")))["provenance"]
    assert written_by["udamobile_version"] == provenance.version()
    assert written_by["commit"] == getattr(provenance.commit(), "sha", None)
    text = open(os.path.join(output_dir, card.CARD_FILE), encoding="utf-8").read()
    for section in ("## Training", "## Scores", "## Export report", "## Inputs and outputs",
                    "## Intended use", "## Known limits", "## Provenance"):
        assert section in text
    assert "demo_source" in text and "demo_target" in text and "`source_only`" in text
    assert f"uint8 RGB [1, {HEIGHT}, {WIDTH}, 3] -> uint8 labels [1, {HEIGHT}, {WIDTH}]" in text
    assert provenance.describe(written_by) in text and written_by["commit"] in text
    # The report's per-class IoU, one column per file, and its int8 cost.
    rows = json.load(open(os.path.join(output_dir, report.REPORT_JSON)))["rows"]
    road = next(line for line in text.splitlines() if line.startswith("road "))
    assert road.split()[1:] == [f"{100 * row['iou']['road']:.1f}" for row in rows]
    assert open(os.path.join(output_dir, report.REPORT_TEXT)).read().strip() in text


def docs_python_block(document, heading):
    """The first ```python block under `heading` in docs/`document`."""
    text = open(os.path.join(REPO, "docs", document), encoding="utf-8").read()
    return text.split(f"\n{heading}\n", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


# Runs a program with every import refused but the standard library's and ALLOWED's.
ONLY_ALLOWED = """
import sys
ALLOWED = {"numpy", "PIL", "ai_edge_litert"}
class Refuse:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in ALLOWED or top in sys.stdlib_module_names:
            return None
        raise ModuleNotFoundError(f"{name} is not allowed on the board", name=name)
sys.meta_path.insert(0, Refuse())
try:
    import data_pipelines
    sys.exit("the import of data_pipelines was not refused")
except ImportError:
    pass
exec(compile(sys.argv[1], "docs/deployment.md", "exec"), {"__name__": "__main__"})
"""


@pytest.mark.slow
def test_board_snippet_needs_only_numpy_pillow_and_litert(exports, tmp_path):
    image_path, overlay_path = tmp_path / "street.png", tmp_path / "overlay.png"
    demo = data_pipelines.open_dataset("demo_target", split="val").read_image(0)
    Image.fromarray(demo).resize((2 * WIDTH, 2 * HEIGHT)).save(image_path)
    folder, name = os.path.split(exports["tflite_int8"])
    snippet = (docs_python_block("deployment.md",
                                 "## On a board: ai-edge-litert, numpy and Pillow only")
               .replace('"runs/dashcam/export"', repr(folder))
               .replace("segmenter_512x1024_int8.tflite", name)
               .replace('"street.png"', repr(str(image_path)))
               .replace('"overlay.png"', repr(str(overlay_path))))
    result = subprocess.run([sys.executable, "-c", ONLY_ALLOWED, snippet], cwd=tmp_path,
                            capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr[-3000:]
    assert Image.open(overlay_path).size == (2 * WIDTH, 2 * HEIGHT)
    assert "%" in result.stdout  # the share of each class seen, by name
