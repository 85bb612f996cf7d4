"""PatchGAN discriminators: reference parameter counts, score-map shapes,
the stride-1 feature variant, and saving."""
import math

import keras
import numpy as np
import pytest

from udamobile.experiments.presets import FEATURE_DISCRIMINATOR_STRIDES, IMAGE_DISCRIMINATOR_STRIDES
from udamobile.nets.discriminators import build_patch_discriminator
from udamobile.nets.segmenter import encoder_channels

INSTANCE_NORM_PARAMETERS = 2 * (128 + 256 + 512)


def _conv_parameters(model):
    return sum(layer.count_params() for layer in model.layers
               if isinstance(layer, keras.layers.Conv2D))


def _inputs(height, width, channels, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (1, height, width, channels)).astype("float32")


@pytest.mark.parametrize("strides_name", sorted(IMAGE_DISCRIMINATOR_STRIDES))
def test_image_discriminator_parameter_counts(strides_name):
    model = build_patch_discriminator(
        strides=IMAGE_DISCRIMINATOR_STRIDES[strides_name])
    assert _conv_parameters(model) == 2_764_737
    assert model.count_params() == 2_764_737 + INSTANCE_NORM_PARAMETERS


def test_feature_discriminator_parameter_count():
    model = build_patch_discriminator(input_channels=encoder_channels(1.0),
                                      strides=FEATURE_DISCRIMINATOR_STRIDES)
    assert _conv_parameters(model) == 3_089_345
    assert model.count_params() == 3_089_345 + INSTANCE_NORM_PARAMETERS


@pytest.mark.parametrize("strides, total_stride", [
    (IMAGE_DISCRIMINATOR_STRIDES["paper"], 32),
    (IMAGE_DISCRIMINATOR_STRIDES["authors_code"], 16),
    (IMAGE_DISCRIMINATOR_STRIDES["patchgan70"], 8),
    (IMAGE_DISCRIMINATOR_STRIDES["demo"], 4),
    (FEATURE_DISCRIMINATOR_STRIDES, 1),
])
def test_score_map_shape(strides, total_stride):
    model = build_patch_discriminator(input_channels=5, filters=4, strides=strides)
    scores = model(_inputs(37, 50, 5))
    assert scores.shape == (1, math.ceil(37 / total_stride),
                            math.ceil(50 / total_stride), 1)


def test_widths_double_up_to_eight_times_filters_and_norm_skips_the_first():
    model = build_patch_discriminator(filters=2, strides=(2, 2, 1, 1, 1, 1, 1))
    widths = [layer.filters for layer in model.layers
              if isinstance(layer, keras.layers.Conv2D)]
    assert widths == [2, 4, 8, 16, 16, 16, 1]
    norms = [layer.name for layer in model.layers
             if isinstance(layer, keras.layers.GroupNormalization)]
    assert norms == [f"conv{index}_norm" for index in range(1, 6)]


def test_scores_are_raw_not_squashed():
    model = build_patch_discriminator(filters=4, strides=(1, 1, 1))
    scores_layer = model.get_layer("scores")
    kernel, bias = scores_layer.get_weights()
    scores_layer.set_weights([kernel * 100, bias])
    scores = np.asarray(model(_inputs(9, 9, 3)))
    assert scores.min() < 0 and scores.max() > 1


def test_save_and_load_round_trip(tmp_path):
    model = build_patch_discriminator(input_channels=7, filters=4)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    features = _inputs(33, 20, 7)
    np.testing.assert_array_equal(loaded(features), model(features))
