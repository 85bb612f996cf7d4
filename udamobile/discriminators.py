"""PatchGAN discriminators: D_S and D_T on images, D'_S and D'_T on features.

One builder serves both. Each conv but the last is 4x4 with "same" padding
and LeakyReLU 0.2; all but the first are instance-normalized; widths double
from `filters` up to 8 * filters. A final 4x4 conv gives one raw score per
patch (no sigmoid: the losses are least squares). With f = 64:

    stride       (s1)   (s2)   (s3)   (s4)   (s5)
    conv 4x4      64    128    256    512     1
    norm          -      IN     IN     IN     -
    activation   lrelu  lrelu  lrelu  lrelu   -

The image discriminators use one of IMAGE_DISCRIMINATOR_STRIDES; the feature
discriminators run at stride 1 on the encoder output (320 channels at width
1.0, see `udamobile.segmenter.encoder_channels`):

    build_patch_discriminator(input_channels=encoder_channels(width_multiplier),
                              strides=FEATURE_DISCRIMINATOR_STRIDES)
"""
import keras

from udamobile.layers import gan_kernel_initializer, instance_norm

IMAGE_DISCRIMINATOR_STRIDES = {
    # Four stride-2 convs and a stride-1 output conv (the paper's "5 stride-2
    # conv layers" as the authors' code implements them).
    "authors_code": (2, 2, 2, 2, 1),
    # CycleGAN's 70x70 PatchGAN.
    "patchgan70": (2, 2, 2, 1, 1),
}
FEATURE_DISCRIMINATOR_STRIDES = (1, 1, 1, 1, 1)
KERNEL_SIZE = 4
MAX_WIDTH_MULTIPLE = 8
LEAKY_RELU_SLOPE = 0.2


def _check_arguments(input_channels, filters, strides):
    if not isinstance(input_channels, int) or input_channels < 1:
        raise ValueError("build_patch_discriminator: input_channels must be a "
                         f"positive int, got {input_channels!r}")
    if not isinstance(filters, int) or filters < 1:
        raise ValueError("build_patch_discriminator: filters must be a positive "
                         f"int, got {filters!r}")
    if (len(strides) < 2
            or not all(isinstance(s, int) and s >= 1 for s in strides)):
        raise ValueError("build_patch_discriminator: strides must hold at least "
                         f"two positive ints (hidden convs, then the output "
                         f"conv), got {strides!r}")


def build_patch_discriminator(*, input_channels=3, filters=64,
                              strides=IMAGE_DISCRIMINATOR_STRIDES["authors_code"],
                              name="discriminator"):
    """Builds a PatchGAN: [B, H, W, input_channels] -> scores [B, h, w, 1].

    h = ceil(H / prod(strides)), w = ceil(W / prod(strides)); any H, W.

    Conv weights and biases: 2,764,737 at 64 filters for both image stride
    sets (the reference CycleGAN's 70x70 PatchGAN), plus 1,792 instance-norm
    gammas and betas: 2,766,529 parameters. The feature discriminator on 320
    channels has 3,089,345 conv parameters, 3,091,137 in all.

    Args:
      input_channels: 3 for images, the encoder's channels for features.
      filters: width of the first conv; it doubles per layer up to 8 * filters.
      strides: one stride per conv, the last for the 1-channel output conv.
      name: the model's name.
    """
    strides = tuple(strides)
    _check_arguments(input_channels, filters, strides)
    inputs = keras.Input((None, None, input_channels), name="inputs")
    x = inputs
    for index, stride in enumerate(strides[:-1]):
        width = filters * min(2 ** index, MAX_WIDTH_MULTIPLE)
        x = keras.layers.Conv2D(width, KERNEL_SIZE, strides=stride, padding="same",
                                kernel_initializer=gan_kernel_initializer(),
                                name=f"conv{index}")(x)
        if index > 0:
            x = instance_norm(name=f"conv{index}_norm")(x)
        x = keras.layers.LeakyReLU(LEAKY_RELU_SLOPE, name=f"conv{index}_lrelu")(x)
    scores = keras.layers.Conv2D(1, KERNEL_SIZE, strides=strides[-1], padding="same",
                                 kernel_initializer=gan_kernel_initializer(), name="scores")(x)
    return keras.Model(inputs, scores, name=name)
