"""Every network runs inside tf.function, converts to TFLite and runs there;
bad builder arguments are named."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from udamobile.experiments.presets import FEATURE_DISCRIMINATOR_STRIDES
from udamobile.nets.discriminators import build_patch_discriminator
from udamobile.nets.segmenter import build_segmenter
from udamobile.nets.translator import build_generator

SIZE = 32


def _fixed_size(model, channels):
    """The model behind a fixed [1, SIZE, SIZE, channels] input, as converters want."""
    image = keras.Input((SIZE, SIZE, channels), batch_size=1)
    outputs = model(image, training=False)
    return keras.Model(image, outputs["logits"] if isinstance(outputs, dict) else outputs)


NETWORKS = {
    "segmenter": (lambda: build_segmenter(width_multiplier=0.35, aspp_filters=8,
                                          low_level_filters=4, decoder_filters=8), 3),
    "generator": (lambda: build_generator(filters=4, num_blocks=1), 3),
    "image_discriminator": (lambda: build_patch_discriminator(filters=4), 3),
    "feature_discriminator": (lambda: build_patch_discriminator(
        input_channels=16, filters=4, strides=FEATURE_DISCRIMINATOR_STRIDES), 16),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_network_runs_in_tf_function_and_in_tflite(name, tmp_path):
    build, channels = NETWORKS[name]
    model = _fixed_size(build(), channels)
    x = np.random.default_rng(0).uniform(-1, 1, (1, SIZE, SIZE, channels)).astype(np.float32)
    expected = tf.function(lambda t: model(t, training=False))(tf.constant(x)).numpy()

    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, expected, atol=1e-4)


