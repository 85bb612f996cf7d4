"""The ResNet generator: size-preserving at any size, output range, the
reference parameter count, and saving."""
import keras
import numpy as np
import pytest

from udamobile.nets.translator import build_generator

TINY = {"filters": 4, "num_blocks": 1}


def _images(height, width, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (1, height, width, 3)).astype("float32")


@pytest.mark.parametrize("height, width", [(321, 481), (5, 7), (64, 32)])
def test_output_has_the_input_shape(height, width):
    generator = build_generator(**TINY)
    assert generator(_images(height, width)).shape == (1, height, width, 3)


def _scaled_up_output(output_activation):
    """Output on inputs large enough to push a linear output outside [-1, 1]."""
    generator = build_generator(output_activation=output_activation, **TINY)
    output_conv = generator.get_layer("c7s1_3_conv")
    kernel, bias = output_conv.get_weights()
    output_conv.set_weights([kernel * 50, bias])
    return np.asarray(generator(_images(21, 19)))


def test_tanh_output_stays_in_minus_one_one():
    output = _scaled_up_output("tanh")
    assert np.all(np.abs(output) <= 1)


def test_linear_output_is_unbounded():
    assert np.abs(_scaled_up_output(None)).max() > 1


def test_parameter_count_matches_reference_cyclegan():
    generator = build_generator()
    conv_parameters = sum(
        layer.count_params() for layer in generator.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)))
    assert conv_parameters == 11_378_179
    assert generator.count_params() == 11_378_179 + 10_496


def test_save_and_load_round_trip(tmp_path):
    generator = build_generator(output_activation=None, **TINY)
    generator.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    images = _images(13, 22)
    np.testing.assert_array_equal(loaded(images), generator(images))
