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
