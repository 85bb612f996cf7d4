"""Starting the segmenter from pretrained files: Keras MobileNetV2 .h5 files,
TF1 TF-slim / TF-DeepLab checkpoints (folder, prefix, .tar.gz), work
directories, and clear errors for files that do not fit."""
import io
import os
import tarfile
import tempfile

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.legacy.saving import legacy_h5_format

from udamobile import config as config_lib
from udamobile.errors import PretrainedError
from udamobile.nets import networks
from udamobile.nets.pretrained import initialize_segmenter
from udamobile.nets.segmenter import build_segmenter
from udamobile.nets.students import DEFAULT_STUDENT, STUDENTS
from udamobile.training import restore, workdirs
from udamobile.training.stages import get_stage
from udamobile.training.state import TrainingState

WIDTH = 0.35
TINY = {"width_multiplier": WIDTH, "aspp_filters": 16, "low_level_filters": 8,
        "decoder_filters": 16}
CLASSES = 5


def _images(height, width, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (1, height, width, 3)).astype("float32")


def _randomize_batch_norms(model, seed=0):
    # Fresh batch norms are identities: random statistics make comparisons meaningful.
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            gamma, variance = rng.uniform(0.5, 1.5, (2, channels))
            beta, mean = rng.uniform(-0.5, 0.5, (2, channels))
            layer.set_weights([gamma, beta, mean, variance])


def _keras_mobilenet_v2(alpha=WIDTH, include_top=False):
    model = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=alpha, include_top=include_top, weights=None,
        classes=10)
    _randomize_batch_norms(model)
    return model


def _save_legacy_h5(model, path):
    """The layout of keras.applications' downloadable .h5 files (Keras' own
    legacy writer: a group per layer listed in `layer_names`)."""
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def _fresh_segmenter(**overrides):
    return build_segmenter(CLASSES, **{**TINY, **overrides})


def _weights_by_layer(model):
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def _assert_encoder_has(segmenter, reference):
    expected = _weights_by_layer(reference)
    encoder = segmenter.get_layer("encoder")
    for layer in encoder.layers:
        if layer.weights:
            for actual, wanted in zip(layer.get_weights(), expected[layer.name], strict=True):
                np.testing.assert_array_equal(actual, wanted, err_msg=layer.name)


@pytest.fixture(scope="module")
def untouched_segmenter():
    """For files that are rejected: a rejected file changes nothing."""
    return _fresh_segmenter()


@pytest.fixture(scope="module")
def keras_reference():
    return _keras_mobilenet_v2()


@pytest.fixture(scope="module")
def legacy_h5(keras_reference, tmp_path_factory):
    return _save_legacy_h5(keras_reference,
                           tmp_path_factory.mktemp("h5") / "mobilenet_v2_0.35_96_no_top.h5")


# --- Keras .h5 -----------------------------------------------------------------

def test_keras_h5_gives_the_keras_backbone_features(keras_reference, legacy_h5):
    segmenter = _fresh_segmenter(output_stride=32)  # OS32: no dilation, Keras' own strides
    report = initialize_segmenter(segmenter, legacy_h5)

    encoder, decoder = segmenter.get_layer("encoder"), segmenter.get_layer("decoder")
    assert report.format == "keras_h5"
    assert report.variables_loaded == len(encoder.weights)
    assert set(report.fresh_layers) == {
        f"decoder/{layer.name}" for layer in decoder.layers if layer.weights}
    assert not report.mismatches

    taps = keras.Model(keras_reference.input, [
        keras_reference.get_layer("block_16_project_BN").output,
        keras_reference.get_layer("block_2_depthwise_relu").output])
    expected_features, expected_low_level = taps(_images(96, 96))
    assert np.abs(expected_features).mean() > 1e-2
    encoded = encoder(_images(96, 96))
    np.testing.assert_allclose(encoded["features"], expected_features, atol=1e-4)
    np.testing.assert_allclose(encoded["low_level"], expected_low_level, atol=1e-4)


@pytest.mark.parametrize("kind", ["full_model_h5", "keras3_weights_h5"])
def test_other_keras_weight_files_load_by_layer_name(kind, keras_reference, tmp_path):
    if kind == "full_model_h5":
        # The ImageNet model with its classifier, as `model.save("x.h5")` writes it.
        reference = _keras_mobilenet_v2(include_top=True)
        path = tmp_path / "mobilenet_v2_0.35_96.h5"
        reference.save(path)
    else:
        reference = keras_reference
        path = tmp_path / "mobilenet_v2.weights.h5"
        reference.save_weights(path)
    segmenter = _fresh_segmenter()
    report = initialize_segmenter(segmenter, path)
    assert report.variables_loaded == len(segmenter.get_layer("encoder").weights)
    _assert_encoder_has(segmenter, reference)


def test_keras_h5_of_another_width_is_rejected_and_nothing_changes(tmp_path):
    path = _save_legacy_h5(_keras_mobilenet_v2(alpha=0.5), tmp_path / "mnv2_0.5.h5")
    segmenter = _fresh_segmenter()
    before = [w.numpy().copy() for w in segmenter.weights]
    with pytest.raises(PretrainedError, match=r"(?s)block_1_project/kernel.*"
                       r"expected \(1, 1, 48, 8\), found \(1, 1, 48, 16\)"):
        initialize_segmenter(segmenter, path)
    for weight, value in zip(segmenter.weights, before):
        np.testing.assert_array_equal(weight.numpy(), value)


def test_h5_of_another_architecture_is_rejected(untouched_segmenter, tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")])
    path = _save_legacy_h5(other, tmp_path / "other.h5")
    with pytest.raises(PretrainedError, match="no layer of the MobileNetV2 backbone.*fc"):
        initialize_segmenter(untouched_segmenter, path)


def test_the_distill_stages_student_starts_from_an_imagenet_file_of_its_width(
        tiny_config, keras_reference, legacy_h5, tmp_path):
    # keras_reference is at width 0.35, the default student's.

    teacher_cfg = tiny_config("adaptation")
    teacher = networks.build_segmenter_from_config(teacher_cfg.model)
    checkpoint = tf.train.Checkpoint(segmenter=teacher, step=tf.Variable(6, dtype=tf.int64)).write(
        str(tmp_path / "teacher" / "ckpt-6"))
    cfg = config_lib.override(tiny_config("distill"), student_init_checkpoint=str(legacy_h5),
                              **STUDENTS[DEFAULT_STUDENT])
    state = TrainingState(cfg, get_stage("distill"), models={"teacher": teacher_cfg.model})
    origins = restore.start(state, cfg, str(tmp_path / "distill"), {"teacher": checkpoint},
                            chief=False)
    assert str(legacy_h5) in origins["segmenter"] and checkpoint in origins["teacher"]
    _assert_encoder_has(state.networks["segmenter"], keras_reference)
    for mine, theirs in zip(state.networks["teacher"].weights, teacher.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


# --- TF1 TF-slim / TF-DeepLab checkpoints --------------------------------------
#
# Names and shapes follow the public sources (tensorflow/models research/):
# slim/nets/mobilenet/mobilenet_v2.py V2_DEF (a 3x3 stride-2 conv of 32, then
# blocks as (expansion, channels, stride)), mobilenet.py `depth_multiplier`
# (channel rounding) and default scopes "Conv", "expanded_conv_<i>" under
# "MobilenetV2", conv_blocks.py `expanded_conv` ("expand" only when the
# expansion grows the depth, "depthwise" with "depthwise_weights" [3, 3, C, 1],
# "project", each with "BatchNorm"), and deeplab/model.py (image_pooling,
# aspp0, aspp<i>_depthwise/_pointwise, concat_projection,
# decoder/feature_projection0, decoder/decoder_conv<i>_depthwise/_pointwise,
# logits/semantic).
SLIM_BLOCKS = ([(1, 16, 1), (6, 24, 2), (6, 24, 1)] + [(6, 32, 2)] + [(6, 32, 1)] * 2
               + [(6, 64, 2)] + [(6, 64, 1)] * 3 + [(6, 96, 1)] * 3
               + [(6, 160, 2)] + [(6, 160, 1)] * 2 + [(6, 320, 1)])


def _slim_depth(value, divisor=8):
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class _SlimVariables:
    """Builds {checkpoint name: array} with known random values."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.values = {}

    def conv(self, scope, shape, leaf="weights"):
        fan_in = np.prod(shape[:3]) if leaf == "weights" else np.prod(shape[:2])
        self.values[f"{scope}/{leaf}"] = (
            self.rng.normal(0, 1, shape) / np.sqrt(fan_in)).astype("float32")

    def batch_norm(self, scope, channels):
        for name, low, high in (("gamma", 0.5, 1.5), ("beta", -0.5, 0.5),
                                ("moving_mean", -0.5, 0.5),
                                ("moving_variance", 0.5, 1.5)):
            self.values[f"{scope}/BatchNorm/{name}"] = self.rng.uniform(
                low, high, channels).astype("float32")

    def conv_bn(self, scope, shape, depthwise=False):
        self.conv(scope, shape, "depthwise_weights" if depthwise else "weights")
        self.batch_norm(scope, shape[2] if depthwise else shape[3])


def slim_checkpoint_values(*, classes, aspp=16, low_level=8, decoder=16):
    """A width-0.35 DeepLabV3+ MobileNetV2 checkpoint's variables, plus ones we ignore."""
    v = _SlimVariables()
    channels = _slim_depth(32 * WIDTH)
    v.conv_bn("MobilenetV2/Conv", (3, 3, 3, channels))
    for index, (expansion, outputs, _) in enumerate(SLIM_BLOCKS):
        scope = "MobilenetV2/expanded_conv" + (f"_{index}" if index else "")
        inner = _slim_depth(channels * expansion)
        if inner > channels:
            v.conv_bn(f"{scope}/expand", (1, 1, channels, inner))
        if index == 2:
            low_level_channels = inner
        v.conv_bn(f"{scope}/depthwise", (3, 3, inner, 1), depthwise=True)
        channels = _slim_depth(outputs * WIDTH)
        v.conv_bn(f"{scope}/project", (1, 1, inner, channels))

    v.conv_bn("image_pooling", (1, 1, channels, aspp))
    v.conv_bn("aspp0", (1, 1, channels, aspp))
    for index in (1, 2, 3):
        v.conv_bn(f"aspp{index}_depthwise", (3, 3, channels, 1), depthwise=True)
        v.conv_bn(f"aspp{index}_pointwise", (1, 1, channels, aspp))
    v.conv_bn("concat_projection", (1, 1, 5 * aspp, aspp))
    v.conv_bn("decoder/feature_projection0", (1, 1, low_level_channels, low_level))
    v.conv_bn("decoder/decoder_conv0_depthwise", (3, 3, aspp + low_level, 1), depthwise=True)
    v.conv_bn("decoder/decoder_conv0_pointwise", (1, 1, aspp + low_level, decoder))
    v.conv_bn("decoder/decoder_conv1_depthwise", (3, 3, decoder, 1), depthwise=True)
    v.conv_bn("decoder/decoder_conv1_pointwise", (1, 1, decoder, decoder))
    v.conv("logits/semantic", (1, 1, decoder, classes))
    v.values["logits/semantic/biases"] = v.rng.normal(0, 1, classes).astype("float32")

    # What real checkpoints also hold: the step, the 1280-channel head DeepLab
    # leaves out, optimizer slots.
    v.values["global_step"] = np.array(30000, np.int64)
    v.conv("MobilenetV2/Conv_1", (1, 1, channels, 1280))
    v.values["MobilenetV2/Conv/weights/Momentum"] = v.values["MobilenetV2/Conv/weights"]
    return v.values


def write_tf1_checkpoint(prefix, values):
    """A name-based (TF1 Saver) checkpoint: prefix.index + prefix.data-00000-of-00001."""
    names = sorted(values)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names,
                      shape_and_slices=[""] * len(names),
                      tensors=[values[name] for name in names])
    return str(prefix)


@pytest.fixture(scope="module")
def slim_values():
    return slim_checkpoint_values(classes=CLASSES)


@pytest.fixture(scope="module")
def slim_prefix(slim_values, tmp_path_factory):
    folder = tmp_path_factory.mktemp("deeplabv3_mnv2_pascal_trainval")
    return write_tf1_checkpoint(folder / "model.ckpt-30000", slim_values)


@pytest.fixture(scope="module")
def slim_loaded(slim_prefix):
    segmenter = _fresh_segmenter()
    return segmenter, initialize_segmenter(segmenter, slim_prefix)


def test_tf_checkpoint_values_land_in_their_layers(slim_loaded, slim_values):
    segmenter, report = slim_loaded
    assert report.format == "tf_checkpoint"
    assert report.variables_loaded == len(segmenter.weights)
    assert report.fresh_layers == () and report.mismatches == ()

    encoder, decoder = segmenter.get_layer("encoder"), segmenter.get_layer("decoder")
    expected = {
        (encoder, "Conv1", "kernel"): "MobilenetV2/Conv/weights",
        (encoder, "bn_Conv1", "moving_variance"): "MobilenetV2/Conv/BatchNorm/moving_variance",
        (encoder, "expanded_conv_depthwise", "kernel"):
            "MobilenetV2/expanded_conv/depthwise/depthwise_weights",
        (encoder, "block_3_depthwise", "kernel"):
            "MobilenetV2/expanded_conv_3/depthwise/depthwise_weights",
        (encoder, "block_5_expand_BN", "moving_mean"):
            "MobilenetV2/expanded_conv_5/expand/BatchNorm/moving_mean",
        (encoder, "block_16_project_BN", "gamma"):
            "MobilenetV2/expanded_conv_16/project/BatchNorm/gamma",
        (decoder, "image_pooling_BN", "beta"): "image_pooling/BatchNorm/beta",
        (decoder, "aspp2_depthwise", "kernel"): "aspp2_depthwise/depthwise_weights",
        (decoder, "aspp3_pointwise_BN", "moving_variance"):
            "aspp3_pointwise/BatchNorm/moving_variance",
        (decoder, "concat_projection", "kernel"): "concat_projection/weights",
        (decoder, "feature_projection0_BN", "moving_mean"):
            "decoder/feature_projection0/BatchNorm/moving_mean",
        (decoder, "decoder_conv1_depthwise", "kernel"):
            "decoder/decoder_conv1_depthwise/depthwise_weights",
        (decoder, "logits", "kernel"): "logits/semantic/weights",
        (decoder, "logits", "bias"): "logits/semantic/biases",
    }
    for (part, layer, attribute), name in expected.items():
        actual = getattr(part.get_layer(layer), attribute).numpy()
        np.testing.assert_array_equal(actual, slim_values[name], err_msg=name)


def _reference_first_blocks(values, images):
    """Conv and blocks 0-2 of TF-slim MobileNetV2 from the checkpoint's arrays.

    Returns (block 2's depthwise output, block 2's output).
    """
    def batch_norm(x, scope):
        bn = {name: values[f"{scope}/BatchNorm/{name}"]
              for name in ("gamma", "beta", "moving_mean", "moving_variance")}
        return ((x - bn["moving_mean"]) / np.sqrt(bn["moving_variance"] + 1e-3)
                * bn["gamma"] + bn["beta"])

    def conv(x, scope, stride=1):
        return batch_norm(tf.nn.conv2d(x, values[f"{scope}/weights"], stride, "SAME"), scope)

    x = tf.nn.relu6(conv(images, "MobilenetV2/Conv", stride=2))
    for index, (_, _, stride) in enumerate(SLIM_BLOCKS[:3]):
        scope = "MobilenetV2/expanded_conv" + (f"_{index}" if index else "")
        inputs = x
        if f"{scope}/expand/weights" in values:
            x = tf.nn.relu6(conv(x, f"{scope}/expand"))
        kernel = values[f"{scope}/depthwise/depthwise_weights"]
        x = tf.nn.depthwise_conv2d(x, kernel, [1, stride, stride, 1], "SAME")
        depthwise_output = x = tf.nn.relu6(batch_norm(x, f"{scope}/depthwise"))
        x = conv(x, f"{scope}/project")
        if stride == 1 and x.shape[-1] == inputs.shape[-1]:
            x = x + inputs
    return depthwise_output, x


def test_tf_checkpoint_forward_pass_equals_the_arrays_computation(slim_loaded, slim_values):
    encoder = slim_loaded[0].get_layer("encoder")
    images = _images(33, 46)  # odd and even sizes: "SAME" padding of stride-2 convs
    taps = keras.Model(encoder.input, [encoder.get_layer("block_2_depthwise_relu").output,
                                       encoder.get_layer("block_2_add").output])
    expected_depthwise, expected_block = _reference_first_blocks(slim_values, images)
    actual_depthwise, actual_block = taps(images)
    assert np.abs(expected_block).mean() > 1e-2
    np.testing.assert_allclose(actual_depthwise, expected_depthwise, atol=1e-4)
    np.testing.assert_allclose(actual_block, expected_block, atol=1e-4)


@pytest.fixture(scope="module")
def three_class_segmenter():
    return build_segmenter(3, **TINY)


def _model_zoo_archive(prefix, path, extra_members=()):
    """Like deeplabv3_mnv2_pascal_trainval_2018_01_29.tar.gz: a top folder
    holding the checkpoint and a frozen graph; extra_members: (TarInfo, bytes)."""
    graph = os.path.join(os.path.dirname(path), "frozen_inference_graph.pb")
    with open(graph, "wb") as f:
        f.write(b"\x00" * 64)
    with tarfile.open(path, "w:gz") as tar:
        for suffix in (".index", ".data-00000-of-00001"):
            tar.add(prefix + suffix,
                    arcname="deeplabv3_mnv2_pascal_trainval/model.ckpt-30000" + suffix)
        tar.add(graph, arcname="deeplabv3_mnv2_pascal_trainval/frozen_inference_graph.pb")
        for info, data in extra_members:
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("form", ["folder", "prefix", "index_file", "tar_gz"])
def test_checkpoint_forms_and_other_class_count(form, slim_prefix, three_class_segmenter,
                                                tmp_path):
    path = {"folder": lambda: os.path.dirname(slim_prefix),
            "prefix": lambda: slim_prefix,
            "index_file": lambda: slim_prefix + ".index",
            "tar_gz": lambda: _model_zoo_archive(slim_prefix, str(tmp_path / "zoo.tar.gz")),
            }[form]()
    report = initialize_segmenter(three_class_segmenter, path)
    assert report.format == "tf_checkpoint"
    assert report.fresh_layers == ("decoder/logits",)
    assert report.variables_loaded == len(three_class_segmenter.weights) - 2
    assert "has 5 classes, the segmenter 3" in str(report)


def test_shape_mismatch_is_an_error_unless_partial_loading_is_allowed(slim_prefix,
                                                                      slim_values):
    segmenter = _fresh_segmenter(aspp_filters=24)
    with pytest.raises(PretrainedError, match=r"(?s)aspp0/kernel <- aspp0/weights: "
                       r"expected \(1, 1, 112, 24\), found \(1, 1, 112, 16\).*allow_partial"):
        initialize_segmenter(segmenter, slim_prefix)

    report = initialize_segmenter(segmenter, slim_prefix, allow_partial=True)
    assert "decoder/aspp0" in report.fresh_layers
    assert not any(name.startswith("encoder/") for name in report.fresh_layers)
    assert "decoder/feature_projection0" not in report.fresh_layers
    assert {m.source for m in report.mismatches} >= {"aspp0/weights",
                                                     "concat_projection/weights"}
    assert "skipped for their shape" in str(report)
    np.testing.assert_array_equal(
        segmenter.get_layer("encoder").get_layer("Conv1").kernel.numpy(),
        slim_values["MobilenetV2/Conv/weights"])


def test_archive_members_cannot_leave_the_extraction_folder(slim_prefix,
                                                            three_class_segmenter,
                                                            tmp_path, monkeypatch):
    scratch = tmp_path / "scratch" / "deeper"
    scratch.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    escaping = tarfile.TarInfo("../../escaped.data-00000-of-00001")
    escaping.size = 4
    archive = _model_zoo_archive(slim_prefix, str(tmp_path / "zoo.tar.gz"),
                                 extra_members=[(escaping, b"evil")])
    initialize_segmenter(three_class_segmenter, archive)
    assert not list(tmp_path.rglob("escaped*"))


# --- work directories ------------------------------------------------------------

def test_work_directory_restores_the_runs_segmenter(tiny_config, tmp_path):
    cfg = tiny_config("source_only")
    trained = networks.build_segmenter_from_config(cfg.model)
    _randomize_batch_norms(trained, seed=1)
    workdirs.write_config(str(tmp_path), cfg)
    checkpoint = tf.train.Checkpoint(segmenter=trained, step=tf.Variable(7, dtype=tf.int64))
    tf.train.CheckpointManager(checkpoint, workdirs.checkpoint_dir(str(tmp_path)),
                               max_to_keep=1).save(checkpoint_number=7)

    segmenter = networks.build_segmenter_from_config(cfg.model)
    report = initialize_segmenter(segmenter, tmp_path)
    assert report.format == "workdir"
    assert report.fresh_layers == ()
    assert report.variables_loaded == len(segmenter.weights)
    images = _images(40, 56)
    np.testing.assert_array_equal(segmenter(images)["logits"], trained(images)["logits"])


# --- files that do not fit --------------------------------------------------------

def test_checkpoint_of_another_architecture_is_rejected(untouched_segmenter, tmp_path):
    prefix = write_tf1_checkpoint(tmp_path / "model.ckpt-1", {
        "resnet_v1_50/conv1/weights": np.zeros((7, 7, 3, 64), np.float32),
        "global_step": np.array(1, np.int64)})
    with pytest.raises(PretrainedError,
                       match="no MobilenetV2/ variables.*resnet_v1_50/conv1/weights"):
        initialize_segmenter(untouched_segmenter, prefix)


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


@pytest.mark.parametrize("kind", ["checkpoint_data", "checkpoint_index", "h5", "tar_gz"])
def test_truncated_files_are_rejected(kind, slim_values, keras_reference,
                                      untouched_segmenter, tmp_path):
    if kind == "h5":
        path = _save_legacy_h5(keras_reference, tmp_path / "mnv2.h5")
        _truncate(path)
    elif kind == "tar_gz":
        prefix = write_tf1_checkpoint(tmp_path / "model.ckpt-30000", slim_values)
        path = _model_zoo_archive(prefix, str(tmp_path / "zoo.tar.gz"))
        _truncate(path)
    else:
        path = write_tf1_checkpoint(tmp_path / "model.ckpt-30000", slim_values)
        suffix = ".data-00000-of-00001" if kind == "checkpoint_data" else ".index"
        _truncate(path + suffix)
    with pytest.raises(PretrainedError, match="truncated or corrupt"):
        initialize_segmenter(untouched_segmenter, path)


def test_missing_or_unknown_paths_are_rejected(untouched_segmenter, tmp_path):
    with pytest.raises(PretrainedError, match="no such file or folder"):
        initialize_segmenter(untouched_segmenter, tmp_path / "nowhere.h5")
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(PretrainedError, match="not a recognized pretrained-weights file"):
        initialize_segmenter(untouched_segmenter, tmp_path / "notes.txt")
    with pytest.raises(PretrainedError, match="neither a udamobile work directory"):
        initialize_segmenter(untouched_segmenter, tmp_path)
