"""Small Keras layers shared by the segmenter, the translator and the discriminators.

All layers work on NHWC tensors with dynamic height and width, and are
registered as Keras serializables so `.keras` files load without
`custom_objects`. They use TensorFlow ops directly where Keras has no
dynamic-shape equivalent; the library runs on the TensorFlow backend only.
"""
import keras
import tensorflow as tf


def _spatial_padding(padding):
    """Normalizes `padding` (int, or (vertical, horizontal)) to ((t, b), (l, r))."""
    if isinstance(padding, int):
        vertical = horizontal = padding
    elif (isinstance(padding, (tuple, list)) and len(padding) == 2
          and all(isinstance(p, int) for p in padding)):
        vertical, horizontal = padding
    else:
        raise ValueError(
            "ReflectionPadding2D: padding must be an int or a pair of ints "
            f"(vertical, horizontal), got {padding!r}")
    if vertical < 0 or horizontal < 0:
        raise ValueError(
            f"ReflectionPadding2D: padding must be >= 0, got {padding!r}")
    return (vertical, vertical), (horizontal, horizontal)


def _padded(size, before_after):
    return None if size is None else size + sum(before_after)


@keras.saving.register_keras_serializable(package="udamobile")
class ReflectionPadding2D(keras.layers.Layer):
    """Pads height and width by mirroring, without repeating the edge pixel.

    [B, H, W, C] -> [B, H + 2 * vertical, W + 2 * horizontal, C], the same as
    numpy's `np.pad(..., mode="reflect")`. Each padding must be smaller than
    the corresponding input size. Exports to TFLite as MIRROR_PAD.

    Args:
      padding: int (the same on all four sides) or (vertical, horizontal).
    """

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.padding = _spatial_padding(padding)

    def call(self, x):
        (top, bottom), (left, right) = self.padding
        return keras.ops.pad(
            x, [[0, 0], [top, bottom], [left, right], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, _padded(height, self.padding[0]),
                _padded(width, self.padding[1]), channels)

    def get_config(self):
        (vertical, _), (horizontal, _) = self.padding
        return {**super().get_config(), "padding": (vertical, horizontal)}


# CycleGAN's and the authors' initialization of the generators and
# discriminators: conv kernels N(0, 0.02), instance-norm scales N(1, 0.02),
# biases and offsets 0 (Keras' default would be Glorot-uniform kernels, unit scales).
GAN_INIT_STDDEV = 0.02


def gan_kernel_initializer():
    """A new N(0, 0.02) initializer (one per layer: each draws its own values)."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=GAN_INIT_STDDEV)


def instance_norm(name=None):
    """Affine instance normalization over height and width, per sample and channel.

    GroupNormalization with one group per channel computes exactly
    gamma * (x - mean_hw) / sqrt(var_hw + 1e-5) + beta (the epsilon of the
    reference CycleGAN), so no add-on package is needed. Gamma starts at
    N(1, 0.02), beta at 0.
    """
    return keras.layers.GroupNormalization(
        groups=-1, epsilon=1e-5, name=name,
        gamma_initializer=keras.initializers.RandomNormal(mean=1.0, stddev=GAN_INIT_STDDEV))


@keras.saving.register_keras_serializable(package="udamobile")
class ResizeLike(keras.layers.Layer):
    """Bilinearly resizes x to the height and width of a reference tensor.

    Called on [x, reference]: x [B, h, w, C], reference [B, H, W, any]
    -> float32 [B, H, W, C]. Sizes are read at run time, so any H and W work.
    Uses half-pixel centers (`tf.image.resize`).
    """

    def call(self, inputs):
        x, reference = inputs
        return tf.image.resize(x, tf.shape(reference)[1:3], method="bilinear")

    def compute_output_shape(self, input_shape):
        x_shape, reference_shape = input_shape
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])


def _round_up(size, multiple):
    return None if size is None else -(-size // multiple) * multiple


@keras.saving.register_keras_serializable(package="udamobile")
class ReflectToMultiple(keras.layers.Layer):
    """Reflect-pads the bottom and right edges up to a multiple of `multiple`.

    [B, H, W, C] -> [B, ceil(H / m) * m, ceil(W / m) * m, C]. Undo it with
    `CropLike`. H and W must exceed the padding (at most m - 1).
    """

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(multiple, int) or multiple < 1:
            raise ValueError(
                f"ReflectToMultiple: multiple must be a positive int, got {multiple!r}")
        self.multiple = multiple

    def call(self, x):
        size = tf.shape(x)[1:3]
        pad_bottom_right = -size % self.multiple
        paddings = tf.stack([[0, 0], [0, pad_bottom_right[0]],
                             [0, pad_bottom_right[1]], [0, 0]])
        return tf.pad(x, paddings, mode="REFLECT")

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, _round_up(height, self.multiple),
                _round_up(width, self.multiple), channels)

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="udamobile")
class CropLike(keras.layers.Layer):
    """Keeps the top-left corner of x the size of a reference tensor.

    Called on [x, reference]: x [B, h, w, C] with h >= H, w >= W, reference
    [B, H, W, any] -> [B, H, W, C].
    """

    def call(self, inputs):
        x, reference = inputs
        size = tf.shape(reference)[1:3]
        return x[:, :size[0], :size[1], :]

    def compute_output_shape(self, input_shape):
        x_shape, reference_shape = input_shape
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])
