"""CycleGAN's ResNet generator: the image translators G_ST and G_TS.

Architecture (Zhu et al. 2017, appendix; Johnson et al. 2016), ngf = `filters`:

    c7s1-ngf        reflect pad 3, 7x7 conv, instance norm, ReLU
    d(2 ngf)        3x3 conv stride 2, instance norm, ReLU
    d(4 ngf)        3x3 conv stride 2, instance norm, ReLU
    R(4 ngf) x n    residual: reflect pad 1, 3x3 conv, IN, ReLU,
                              reflect pad 1, 3x3 conv, IN, add the input
    u(2 ngf)        3x3 transposed conv stride 2, instance norm, ReLU
    u(ngf)          3x3 transposed conv stride 2, instance norm, ReLU
    c7s1-3          reflect pad 3, 7x7 conv, then tanh (or linear)

Every conv keeps its bias, as in the reference CycleGAN, whose instance norms
have no affine parameters; ours are affine, adding gammas and betas on top.
Weights start as CycleGAN's and the authors' do (`layers.gan_kernel_initializer`).
"""
import keras

from udamobile.nets.layers import (CropLike, ReflectionPadding2D, ReflectToMultiple,
                                   gan_kernel_initializer, instance_norm)

# The stages before the output conv c7s1-3: (kind, width as a multiple of
# ngf); the "R" row stands for num_blocks residual blocks.
GENERATOR_SPEC = (
    ("c7s1", 1),
    ("d", 2),
    ("d", 4),
    ("R", 4),
    ("u", 2),
    ("u", 1),
)
# Two stride-2 downsamplings followed by two stride-2 upsamplings give back
# the input size only when H and W are multiples of 4.
SIZE_MULTIPLE = 4


def _norm_relu(x, name):
    x = instance_norm(name=f"{name}_norm")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _c7s1_conv(x, filters, name):
    x = ReflectionPadding2D(3, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(filters, 7, kernel_initializer=gan_kernel_initializer(),
                               name=f"{name}_conv")(x)


def _c7s1(x, filters, name):
    return _norm_relu(_c7s1_conv(x, filters, name), name)


def _downsample(x, filters, name):
    x = keras.layers.Conv2D(filters, 3, strides=2, padding="same",
                            kernel_initializer=gan_kernel_initializer(), name=f"{name}_conv")(x)
    return _norm_relu(x, name)


def _upsample(x, filters, name):
    x = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same",
                                     kernel_initializer=gan_kernel_initializer(),
                                     name=f"{name}_conv")(x)
    return _norm_relu(x, name)


def _residual_block(inputs, filters, name):
    x = ReflectionPadding2D(1, name=f"{name}_pad1")(inputs)
    x = keras.layers.Conv2D(filters, 3, kernel_initializer=gan_kernel_initializer(),
                            name=f"{name}_conv1")(x)
    x = _norm_relu(x, f"{name}_1")
    x = ReflectionPadding2D(1, name=f"{name}_pad2")(x)
    x = keras.layers.Conv2D(filters, 3, kernel_initializer=gan_kernel_initializer(),
                            name=f"{name}_conv2")(x)
    # No ReLU after the second norm, as in the reference: the block adds a
    # residual to its input.
    x = instance_norm(name=f"{name}_2_norm")(x)
    return keras.layers.Add(name=f"{name}_add")([inputs, x])


_STAGE_BUILDERS = {"c7s1": _c7s1, "d": _downsample, "R": _residual_block,
                   "u": _upsample}


def _stages(filters, num_blocks):
    """Expands GENERATOR_SPEC into (kind, width, layer-name prefix) per stage."""
    for kind, multiple in GENERATOR_SPEC:
        width = filters * multiple
        if kind == "R":
            for index in range(num_blocks):
                yield kind, width, f"R_{width}_{index}"
        else:
            yield kind, width, f"{kind}_{width}"


def build_generator(*, filters=64, num_blocks=9, output_activation="tanh",
                    name="generator"):
    """Builds the ResNet generator: image [B, H, W, 3] -> image [B, H, W, 3].

    Works at any H, W >= 5 (odd sizes too): the input is reflect-padded to a
    multiple of 4 and the output cropped back to the input size. (Below 5 the
    stride-4 map is 1 pixel wide, too small for the residual blocks' reflection
    padding.)

    At filters=64 and num_blocks=9 the convolutions hold 11,378,179 weights and
    biases, as in the reference CycleGAN; the affine instance norms add 10,496
    gammas and betas, 11,388,675 parameters in all.

    Args:
      filters: ngf, the width of the first conv; later stages use 2 and 4 ngf.
      num_blocks: number of residual blocks at 4 ngf (9 in CycleGAN and the
        authors' code).
      output_activation: "tanh" (CycleGAN, output in [-1, 1]) or None (the
        authors' code: linear output).
      name: the model's name.

    Like every builder, it trusts its arguments: `config.validate` checks them.
    """
    image = keras.Input((None, None, 3), name="image")
    x = ReflectToMultiple(SIZE_MULTIPLE, name="pad_to_multiple")(image)
    for kind, width, stage_name in _stages(filters, num_blocks):
        x = _STAGE_BUILDERS[kind](x, width, stage_name)
    x = _c7s1_conv(x, 3, "c7s1_3")
    if output_activation:
        x = keras.layers.Activation(output_activation, name="output_activation")(x)
    x = CropLike(name="crop_to_input")([x, image])
    return keras.Model(image, x, name=name)
