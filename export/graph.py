"""The ops every exported graph wraps around the segmenter.

Exported models take what a camera gives, uint8 RGB pixels, and normalize
inside the graph exactly as training did (`data_pipelines.images`). These work
both on the symbolic tensors of a Keras functional model (TFLite export) and
on the tensors of a `tf.function` (SavedModel export).
"""
import keras
import tensorflow as tf


def probabilities(logits):
    """[B, H, W, C] logits -> float32 softmax over C."""
    return keras.ops.softmax(logits, axis=-1)


class ArgmaxLabels(keras.layers.Layer):
    """[B, H, W, C] logits or probabilities -> [B, H, W] train ids of `output_dtype`.

    Calls `tf.argmax` (one TFLite ARG_MAX op): `keras.ops.argmax` adds a
    sign-bit test for -0.0 that TFLite has no builtin op for. Its int32 ids
    (not tf.argmax's default int64) halve what the cast after it reads.
    """

    def __init__(self, output_dtype, **kwargs):
        super().__init__(**kwargs)
        self.output_dtype = output_dtype

    def call(self, scores):
        return tf.cast(tf.argmax(scores, axis=-1, output_type=tf.int32), self.output_dtype)


# The stride of the decoder's logits (udamobile/nets/segmenter.py), before they are
# upsampled to the input.
LOGITS_STRIDE = 4


def stride4_logits(segmenter):
    """The sub-model of `segmenter` up to its decoder's logits, before the upsampling:
    image [B, H, W, 3] -> [B, ceil(H / 4), ceil(W / 4), C]."""
    return keras.Model(segmenter.inputs, segmenter.get_layer("upsample_logits").input[0],
                       name=f"{segmenter.name}_stride4")


class RepeatPixels(keras.layers.Layer):
    """[B, h, w] -> [B, h * factor, w * factor], each pixel repeated over a factor x factor
    block: nearest-neighbour upsampling by a whole factor, exactly what
    `tf.image.resize(method="nearest")` gives there.

    A reshape to [B, h, 1, w, 1], a TILE over the two unit axes and a reshape:
    TFLite runs these on uint8 (its RESIZE_NEAREST_NEIGHBOR does not take a uint8
    tensor that is not a quantized one), in 1 ms at 512x1024 on a 2-core Xeon
    where the same blocks made by indexing (a STRIDED_SLICE) and BROADCAST_TO took
    6-7 ms, a quarter of a student's int8 file (docs/deployment.md).
    """

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, labels):
        batch, height, width = labels.shape
        single = tf.reshape(labels, (batch, height, 1, width, 1))
        blocks = tf.tile(single, (1, 1, self.factor, 1, self.factor))
        return tf.reshape(blocks, (batch, height * self.factor, width * self.factor))
