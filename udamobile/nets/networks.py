"""Builds the paper's networks from a `ModelConfig`.

Names used throughout the code, and the paper's names for them:

    segmenter  M = Md(Me(x))          DeepLabV3+ MobileNetV2
    g_st       G_ST: source -> target  ResNet generator
    g_ts       G_TS: target -> source  ResNet generator
    d_s, d_t   D_S, D_T                PatchGAN image discriminators
    fd_s, fd_t D'_S, D'_T              feature discriminators on Me(x)
    teacher    a frozen segmenter       (the distill stage's, beyond the paper)
"""
from udamobile.experiments.presets import FEATURE_DISCRIMINATOR_STRIDES
from udamobile.nets.discriminators import build_patch_discriminator
from udamobile.nets.segmenter import build_segmenter, encoder_channels
from udamobile.nets.translator import build_generator


def build_segmenter_from_config(model_cfg, *, freeze_batch_norm=False,
                                synchronized_batch_norm=False, name="segmenter"):
    return build_segmenter(
        model_cfg.num_classes,
        width_multiplier=model_cfg.width_multiplier,
        output_stride=model_cfg.output_stride,
        aspp_rates=model_cfg.aspp_rates,
        aspp_filters=model_cfg.aspp_filters,
        low_level_filters=model_cfg.low_level_filters,
        decoder_filters=model_cfg.decoder_filters,
        separable=model_cfg.separable,
        early_downsampling=model_cfg.early_downsampling,
        dropout_rate=model_cfg.dropout_rate,
        batch_norm_momentum=model_cfg.batch_norm_momentum,
        freeze_batch_norm=freeze_batch_norm,
        synchronized_batch_norm=synchronized_batch_norm, name=name)


def _generator(model_cfg, name):
    output = None if model_cfg.generator_output == "linear" else model_cfg.generator_output
    return build_generator(filters=model_cfg.generator_filters,
                           num_blocks=model_cfg.generator_blocks, output_activation=output,
                           name=name)


def _image_discriminator(model_cfg, name):
    return build_patch_discriminator(filters=model_cfg.discriminator_filters,
                                     strides=model_cfg.discriminator_strides, name=name)


def _feature_discriminator(model_cfg, name):
    return build_patch_discriminator(
        input_channels=encoder_channels(model_cfg.width_multiplier),
        filters=model_cfg.discriminator_filters, strides=FEATURE_DISCRIMINATOR_STRIDES,
        name=name)


_TRANSLATION_BUILDERS = {"g_st": _generator, "g_ts": _generator,
                         "d_s": _image_discriminator, "d_t": _image_discriminator,
                         "fd_s": _feature_discriminator, "fd_t": _feature_discriminator}
SEGMENTERS = ("segmenter", "teacher")
NAMES = SEGMENTERS + tuple(_TRANSLATION_BUILDERS)


def build_network(name, model_cfg, *, freeze_batch_norm=False, synchronized_batch_norm=False):
    """The network `name` (one of NAMES); the batch-norm options apply to the segmenters."""
    if name in SEGMENTERS:
        return build_segmenter_from_config(model_cfg, freeze_batch_norm=freeze_batch_norm,
                                           synchronized_batch_norm=synchronized_batch_norm,
                                           name=name)
    return _TRANSLATION_BUILDERS[name](model_cfg, name)
