"""DeepLabV3+ MobileNetV2: shapes at any size, output strides, Keras-compatible
backbone, parameter counts, frozen batch norm and saving."""
import math

import keras
import numpy as np
import pytest

from udamobile.nets import segmenter
from udamobile.nets.segmenter import build_segmenter, encoder_channels

# A narrow, thin configuration that keeps forward passes fast.
TINY = {"width_multiplier": 0.35, "aspp_filters": 16, "low_level_filters": 8,
        "decoder_filters": 16}


def _images(height, width, batch=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (batch, height, width, 3)).astype("float32")


@pytest.fixture(scope="module")
def tiny_segmenter():
    return build_segmenter(5, **TINY)


@pytest.fixture(scope="module")
def default_segmenter():
    return build_segmenter()


@pytest.mark.parametrize("height, width", [(600, 600), (512, 1024), (321, 481)])
def test_logits_match_input_and_features_are_at_stride_16(tiny_segmenter,
                                                          height, width):
    out = tiny_segmenter(_images(height, width), training=False)
    assert out["logits"].shape == (1, height, width, 5)
    assert out["features"].shape == (1, math.ceil(height / 16),
                                     math.ceil(width / 16), encoder_channels(0.35))


def test_default_model_features_have_320_channels(default_segmenter):
    assert encoder_channels(1.0) == 320
    out = default_segmenter(_images(65, 97), training=False)
    assert out["features"].shape == (1, 5, 7, 320)
    assert out["logits"].shape == (1, 65, 97, 19)
    low_level = default_segmenter.get_layer("encoder")(_images(65, 97))["low_level"]
    assert low_level.shape == (1, 17, 25, 144)


@pytest.mark.parametrize("output_stride", [8, 32])
def test_other_output_strides(output_stride):
    model = build_segmenter(3, output_stride=output_stride, **TINY)
    encoded = model.get_layer("encoder")(_images(65, 97))
    assert encoded["features"].shape[1:3] == (math.ceil(65 / output_stride),
                                              math.ceil(97 / output_stride))
    assert encoded["low_level"].shape[1:3] == (17, 25)
    assert model(_images(65, 97))["logits"].shape == (1, 65, 97, 3)


def test_output_stride_turns_late_strides_into_dilations():
    strides = [stride for _, _, stride in segmenter.block_specs()]
    assert segmenter.strides_and_rates(strides, 32) == [(s, 1) for s in strides]
    os16 = segmenter.strides_and_rates(strides, 16)
    assert os16[13:] == [(1, 1), (1, 2), (1, 2), (1, 2)]
    os8 = segmenter.strides_and_rates(strides, 8)
    assert os8[6:] == [(1, 1)] + [(1, 2)] * 7 + [(1, 4)] * 3


def test_early_downsampling_moves_the_first_stride_and_keeps_every_weight_shape():
    plain = build_segmenter(3, **TINY)
    early = build_segmenter(3, early_downsampling=True, **TINY)
    assert [w.shape for w in early.weights] == [w.shape for w in plain.weights]
    encoder = early.get_layer("encoder")
    assert encoder.get_layer("expanded_conv_depthwise").strides == (2, 2)
    assert encoder.get_layer("block_1_depthwise").strides == (1, 1)
    block_1 = keras.Model(encoder.input, encoder.get_layer("block_1_expand").output)
    assert block_1(_images(64, 96)).shape[1:3] == (16, 24)  # stride 4, not 2
    encoded = encoder(_images(65, 97))
    assert encoded["low_level"].shape[1:3] == (17, 25)
    assert encoded["features"].shape[1:3] == (5, 7)
    assert early(_images(65, 97))["logits"].shape == (1, 65, 97, 3)


def _randomize_batch_norms(model, seed=0):
    # Fresh batch norms are identities, and activations then fade to ~1e-10
    # by the last block: random statistics make the comparison meaningful.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            gamma, variance = rng.uniform(0.5, 1.5, (2, channels))
            beta, mean = rng.uniform(-0.5, 0.5, (2, channels))
            layer.set_weights([gamma, beta, mean, variance])


def test_backbone_is_keras_mobilenet_v2_by_layer_name():
    """Keras' weights load by name and give Keras' activations at OS32, at odd
    and even sizes (our "same" padding equals Keras' correct_pad + "valid")."""
    height, width = 64, 98
    reference = keras.applications.MobileNetV2(
        input_shape=(height, width, 3), alpha=0.35, include_top=False, weights=None)
    _randomize_batch_norms(reference)
    encoder = build_segmenter(output_stride=32, **TINY).get_layer("encoder")
    for layer in encoder.layers:
        if layer.weights:
            layer.set_weights(reference.get_layer(layer.name).get_weights())

    taps = keras.Model(reference.input, [
        reference.get_layer("block_16_project_BN").output,
        reference.get_layer("block_2_depthwise_relu").output])
    expected_features, expected_low_level = taps(_images(height, width))
    assert np.abs(expected_features).mean() > 1e-2
    encoded = encoder(_images(height, width))
    np.testing.assert_allclose(encoded["features"], expected_features, atol=1e-4)
    np.testing.assert_allclose(encoded["low_level"], expected_low_level, atol=1e-4)


def test_parameter_counts_at_default_width(default_segmenter):
    assert default_segmenter.count_params() == 2_763_843
    assert default_segmenter.get_layer("encoder").count_params() == 1_843_264
    assert build_segmenter(separable=False).count_params() == 5_857_043


def test_frozen_batch_norm_makes_training_and_inference_agree():
    images = _images(33, 45, batch=2)
    frozen = build_segmenter(3, freeze_batch_norm=True, dropout_rate=0.0, **TINY)
    np.testing.assert_array_equal(frozen(images, training=True)["logits"],
                                  frozen(images, training=False)["logits"])
    batch_norm_weights = {
        weight.path for part in ("encoder", "decoder")
        for layer in frozen.get_layer(part).layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for weight in layer.weights}
    assert batch_norm_weights
    assert not batch_norm_weights & {w.path for w in frozen.trainable_weights}

    unfrozen = build_segmenter(3, dropout_rate=0.0, **TINY)
    assert not np.allclose(unfrozen(images, training=True)["logits"],
                           unfrozen(images, training=False)["logits"])


def test_save_and_load_round_trip(tmp_path):
    model = build_segmenter(4, freeze_batch_norm=True, **TINY)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")

    images = _images(37, 51)
    expected, actual = model(images), loaded(images)
    for key in ("logits", "features"):
        np.testing.assert_array_equal(actual[key], expected[key])
    assert loaded.get_layer("encoder").get_layer("bn_Conv1").trainable is False


def test_batch_norm_momentum_reaches_every_batch_norm_and_is_checked():
    def momenta(model):
        return {layer.momentum for part in ("encoder", "decoder")
                for layer in model.get_layer(part).layers
                if isinstance(layer, keras.layers.BatchNormalization)}

    tiny = dict(width_multiplier=0.35, aspp_filters=8, low_level_filters=4, decoder_filters=8)
    assert momenta(build_segmenter(**tiny)) == {0.999, 0.9997}  # TF-slim and TF-DeepLab
    assert momenta(build_segmenter(batch_norm_momentum=0.9, **tiny)) == {0.9}
