"""PatchGAN discriminators: D_S and D_T on images, D'_S and D'_T on features.

One builder serves both. Each conv but the last is 4x4 with "same" padding
and LeakyReLU 0.2; all but the first are instance-normalized; widths double
from `filters` up to 8 * filters. A final 4x4 conv gives one raw score per
patch (no sigmoid: the losses are least squares). With f = 64:

    stride       (s1)   (s2)   (s3)   (s4)   (s5)
    conv 4x4      64    128    256    512     1
    norm          -      IN     IN     IN     -
    activation   lrelu  lrelu  lrelu  lrelu   -

The image discriminators use one of presets.IMAGE_DISCRIMINATOR_STRIDES; the feature
discriminators run at stride 1 on the encoder output (320 channels at width
1.0, see `udamobile.nets.segmenter.encoder_channels`):

    build_patch_discriminator(input_channels=encoder_channels(width_multiplier),
                              strides=presets.FEATURE_DISCRIMINATOR_STRIDES)

Like every builder, it trusts its arguments: `config.validate` checks them.
"""
import keras

from udamobile.experiments.presets import IMAGE_DISCRIMINATOR_STRIDES
from udamobile.nets.layers import gan_kernel_initializer, instance_norm

KERNEL_SIZE = 4
MAX_WIDTH_MULTIPLE = 8
LEAKY_RELU_SLOPE = 0.2


def build_patch_discriminator(*, input_channels=3, filters=64,
                              strides=IMAGE_DISCRIMINATOR_STRIDES["paper"],
                              name="discriminator"):
    """Builds a PatchGAN: [B, H, W, input_channels] -> scores [B, h, w, 1].

    h = ceil(H / prod(strides)), w = ceil(W / prod(strides)); any H, W.

    Conv weights and biases: 2,764,737 at 64 filters for every image stride
    set (the reference CycleGAN's 70x70 PatchGAN), plus 1,792 instance-norm
    gammas and betas: 2,766,529 parameters. The feature discriminator on 320
    channels has 3,089,345 conv parameters, 3,091,137 in all.

    Args:
      input_channels: 3 for images, the encoder's channels for features.
      filters: width of the first conv; it doubles per layer up to 8 * filters.
      strides: one stride per conv, the last for the 1-channel output conv.
      name: the model's name.
    """
    strides = tuple(strides)
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
