"""DeepLabV3+ with a MobileNetV2 backbone: the segmentation network M = Md(Me(x)).

The model is built from three parts that code can address by name:

    encoder  (Me)  image [B, H, W, 3] in [-1, 1]
                   -> {"features":  [B, ceil(H/os), ceil(W/os), C_enc],
                       "low_level": [B, ceil(H/4),  ceil(W/4),  C_low]}
    decoder  (Md)  {"features", "low_level"} -> logits [B, ceil(H/4), ceil(W/4), K]
    segmenter      image -> {"logits":   [B, H, W, K] (decoder logits, bilinearly
                                         upsampled to the input size),
                             "features": the encoder's "features"}

"features" (C_enc = 320 at width 1.0) is the input of ASPP and of the feature
discriminators; "low_level" (C_low = 144 at width 1.0) feeds the decoder.

The backbone layers carry the names keras.applications.MobileNetV2 gives them
(`Conv1`, `bn_Conv1`, `block_{i}_expand`, ...), so its ImageNet weights (and,
after renaming, TF-slim checkpoints) load by layer name. The ASPP and decoder
layers are named after TF-DeepLab's variable scopes (`aspp0`, `concat_projection`,
`feature_projection0`, `decoder_conv0`, `logits`).
"""
import keras

from udamobile.nets.layers import ResizeLike

# MobileNetV2 (Sandler et al. 2018, Table 2) without its 1280-channel head,
# one row per group of inverted residual blocks:
# (expansion t, output channels c, repeats n, stride of the first repeat s).
MOBILENET_V2_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
FIRST_CONV_FILTERS = 32
FIRST_CONV_STRIDE = 2

# TF-DeepLab's decoder tap point for mobilenet_v2, `layer_4/depthwise_output`:
# the output of the depthwise conv (after BN and ReLU6) of the third inverted
# residual block, which Keras numbers block_2 (stride 4, 144 channels at 1.0).
LOW_LEVEL_BLOCK = 2

# Batch-norm settings of the sources whose weights these layers are meant to
# take: keras.applications / TF-slim MobileNetV2 for the backbone, TF-DeepLab
# for the ASPP and decoder.
BACKBONE_BATCH_NORM = {"epsilon": 1e-3, "momentum": 0.999}
HEAD_BATCH_NORM = {"epsilon": 1e-5, "momentum": 0.9997}


def make_divisible(value, divisor=8):
    """Rounds a channel count to the nearest multiple of `divisor` (Keras' rule).

    Never goes below `divisor`, nor more than 10% below `value`.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _block_channels(channels, width_multiplier):
    # keras.applications truncates before rounding; so do we, to get its shapes.
    return make_divisible(int(channels * width_multiplier))


def encoder_channels(width_multiplier=1.0):
    """Channels of the encoder's "features" (320 at width 1.0)."""
    return _block_channels(MOBILENET_V2_BLOCKS[-1][1], width_multiplier)


def block_specs(early_downsampling=False):
    """(expansion, channels, stride) of each of the 17 blocks in order.

    With `early_downsampling` block 0 takes block 1's stride 2, so that only the
    first conv runs at half the input's resolution and block 1's expansion to
    6x the channels runs at a quarter. Beyond MobileNetV2, for the students
    (nets/students.py): at 512x1024 those layers hold a quarter of a student's
    int8 time, bound by memory traffic (docs/deployment.md). The weights keep
    their shapes, so ImageNet files still load.
    """
    specs = [(expansion, channels, stride if repeat == 0 else 1)
             for expansion, channels, repeats, stride in MOBILENET_V2_BLOCKS
             for repeat in range(repeats)]
    if early_downsampling:
        (t0, c0, s0), (t1, c1, s1) = specs[:2]
        specs[:2] = [(t0, c0, s1), (t1, c1, s0)]
    return specs


def strides_and_rates(strides, output_stride):
    """Turns nominal block strides into (stride, dilation rate) per block.

    Follows TF-slim's mobilenet `output_stride` rule: once the running stride
    (starting at FIRST_CONV_STRIDE) equals `output_stride`, each block runs at
    stride 1 and dilates by the rate accumulated so far, and its nominal
    stride multiplies the rate of the blocks after it. At OS16 block_13 keeps
    rate 1 and blocks 14-16 dilate by 2; at OS8 blocks 6-12 dilate by 2,
    block_13 by 2 and blocks 14-16 by 4.
    """
    running_stride, rate = FIRST_CONV_STRIDE, 1
    result = []
    for stride in strides:
        if running_stride == output_stride:
            result.append((1, rate))
            rate *= stride
        else:
            result.append((stride, 1))
            running_stride *= stride
    return result


def _backbone_batch_norm(name):
    return keras.layers.BatchNormalization(name=name, **BACKBONE_BATCH_NORM)


def _inverted_residual_block(x, *, block_id, expansion, filters, stride, rate):
    """One MobileNetV2 block; returns (block output, depthwise output).

    The first block has no expansion conv and, as in Keras, its layers are
    prefixed `expanded_conv_` instead of `block_0_`.
    """
    in_channels = x.shape[-1]
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    inputs = x
    if block_id:
        x = keras.layers.Conv2D(expansion * in_channels, 1, use_bias=False,
                                name=f"{prefix}expand")(x)
        x = _backbone_batch_norm(f"{prefix}expand_BN")(x)
        x = keras.layers.ReLU(6.0, name=f"{prefix}expand_relu")(x)
    # "same" pads stride-2 convs by (0, 1) at even sizes and (1, 1) at odd
    # sizes, exactly what Keras' correct_pad + "valid" does.
    x = keras.layers.DepthwiseConv2D(3, strides=stride, dilation_rate=rate,
                                     padding="same", use_bias=False,
                                     name=f"{prefix}depthwise")(x)
    x = _backbone_batch_norm(f"{prefix}depthwise_BN")(x)
    depthwise_output = x = keras.layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{prefix}project")(x)
    x = _backbone_batch_norm(f"{prefix}project_BN")(x)
    # `stride` is the effective one: like TF-slim, a block whose stride the
    # output stride turned into a dilation gets a residual if its widths match.
    if stride == 1 and in_channels == filters:
        x = keras.layers.Add(name=f"{prefix}add")([inputs, x])
    return x, depthwise_output


def _build_encoder(*, width_multiplier, output_stride, early_downsampling):
    """Me: MobileNetV2 image -> {"features", "low_level"} (see module docstring)."""
    image = keras.Input((None, None, 3), name="image")
    x = keras.layers.Conv2D(make_divisible(FIRST_CONV_FILTERS * width_multiplier), 3,
                            strides=FIRST_CONV_STRIDE, padding="same",
                            use_bias=False, name="Conv1")(image)
    x = _backbone_batch_norm("bn_Conv1")(x)
    x = keras.layers.ReLU(6.0, name="Conv1_relu")(x)

    specs = block_specs(early_downsampling)
    schedule = strides_and_rates([stride for _, _, stride in specs], output_stride)
    for block_id, ((expansion, channels, _), (stride, rate)) in enumerate(
            zip(specs, schedule)):
        x, depthwise_output = _inverted_residual_block(
            x, block_id=block_id, expansion=expansion,
            filters=_block_channels(channels, width_multiplier),
            stride=stride, rate=rate)
        if block_id == LOW_LEVEL_BLOCK:
            low_level = depthwise_output
    return keras.Model(image, {"features": x, "low_level": low_level},
                       name="encoder")


def _conv_bn_relu(x, filters, kernel_size, name, rate=1):
    x = keras.layers.Conv2D(filters, kernel_size, dilation_rate=rate,
                            padding="same", use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(name=f"{name}_BN", **HEAD_BATCH_NORM)(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _separable_conv_bn_relu(x, filters, name, rate):
    """TF-DeepLab's split separable conv: depthwise 3x3 + BN + ReLU, then 1x1 + BN + ReLU."""
    x = keras.layers.DepthwiseConv2D(3, dilation_rate=rate, padding="same",
                                     use_bias=False, name=f"{name}_depthwise")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_depthwise_BN",
                                        **HEAD_BATCH_NORM)(x)
    x = keras.layers.ReLU(name=f"{name}_depthwise_relu")(x)
    return _conv_bn_relu(x, filters, 1, f"{name}_pointwise")


def _conv3x3_bn_relu(x, filters, name, *, rate, separable):
    if separable:
        return _separable_conv_bn_relu(x, filters, name, rate)
    return _conv_bn_relu(x, filters, 3, name, rate)


def _aspp(features, *, rates, filters, separable, dropout_rate):
    """Atrous spatial pyramid pooling: [B, h, w, C_enc] -> [B, h, w, filters]."""
    pooled = keras.layers.GlobalAveragePooling2D(
        keepdims=True, name="image_pooling_average")(features)
    pooled = _conv_bn_relu(pooled, filters, 1, "image_pooling")
    branches = [
        ResizeLike(name="image_pooling_resize")([pooled, features]),
        _conv_bn_relu(features, filters, 1, "aspp0"),
    ]
    for index, rate in enumerate(rates, start=1):
        branches.append(_conv3x3_bn_relu(features, filters, f"aspp{index}",
                                         rate=rate, separable=separable))
    x = keras.layers.Concatenate(name="aspp_concat")(branches)
    x = _conv_bn_relu(x, filters, 1, "concat_projection")
    return keras.layers.Dropout(dropout_rate, name="concat_projection_dropout")(x)


def _build_decoder(*, num_classes, features_channels, low_level_channels,
                   aspp_rates, aspp_filters, low_level_filters, decoder_filters,
                   separable, dropout_rate):
    """Md: {"features", "low_level"} -> stride-4 logits [B, h4, w4, num_classes]."""
    features = keras.Input((None, None, features_channels), name="features")
    low_level = keras.Input((None, None, low_level_channels), name="low_level")

    x = _aspp(features, rates=aspp_rates, filters=aspp_filters,
              separable=separable, dropout_rate=dropout_rate)
    projected = _conv_bn_relu(low_level, low_level_filters, 1, "feature_projection0")
    x = ResizeLike(name="aspp_resize")([x, low_level])
    x = keras.layers.Concatenate(name="decoder_concat")([x, projected])
    for index in range(2):
        x = _conv3x3_bn_relu(x, decoder_filters, f"decoder_conv{index}",
                             rate=1, separable=separable)
    logits = keras.layers.Conv2D(num_classes, 1, name="logits")(x)
    return keras.Model({"features": features, "low_level": low_level}, logits,
                       name="decoder")


def _batch_norms(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def batch_norms(segmenter):
    """Every batch norm of a segmenter from `build_segmenter`: Me's, then Md's."""
    return _batch_norms(segmenter.get_layer("encoder")) + _batch_norms(
        segmenter.get_layer("decoder"))


def _set_batch_norms(layers, *, trains, synchronized, momentum):
    """Batch norms that train or not, synchronized or not; `momentum` None keeps theirs."""
    for layer in layers:
        layer.trainable = trains
        layer.synchronized = synchronized
        if momentum is not None:
            layer.momentum = momentum


def build_segmenter(num_classes=19, *, width_multiplier=1.0, output_stride=16,
                    aspp_rates=(6, 12, 18), aspp_filters=256, low_level_filters=48,
                    decoder_filters=256, separable=True, early_downsampling=False,
                    freeze_batch_norm=False, batch_norm_momentum=None,
                    synchronized_batch_norm=False, dropout_rate=0.1, name="segmenter"):
    """Builds DeepLabV3+ MobileNetV2: image [B, H, W, 3] in [-1, 1] -> dict.

    Outputs {"logits": [B, H, W, num_classes], "features": [B, ceil(H /
    output_stride), ceil(W / output_stride), encoder_channels(width_multiplier)]}
    for any H and W. Sub-models `get_layer("encoder")` (Me) and
    `get_layer("decoder")` (Md) are described in the module docstring.

    At the defaults (19 classes, width 1.0, separable ASPP and decoder, as in
    TF-DeepLab and the authors' code) the model has 2,763,843 parameters:
    1,843,264 in the encoder, 920,579 in the decoder; 2,725,059 of them are
    trainable, the rest are batch-norm moving statistics. With
    `separable=False` (plain 3x3 atrous convs) it has 5,857,043 (5,821,299
    trainable).

    Args:
      num_classes: channels of the logits.
      width_multiplier: MobileNetV2's alpha; channels are rounded as Keras does.
      output_stride: 8, 16 or 32, the stride of "features"; the strides of the
        later blocks become dilations.
      aspp_rates: dilation rates of the three atrous ASPP branches, used as
        given (TF-DeepLab passes rates 6, 12, 18 for OS16 and 12, 24, 36 for OS8).
      aspp_filters, low_level_filters, decoder_filters: widths of the ASPP
        branches, the low-level projection and the two decoder convs.
      separable: depthwise + pointwise atrous/decoder convs instead of plain 3x3.
      early_downsampling: block 0 strides, not block 1 (`block_specs`).
      freeze_batch_norm: make every batch norm non-trainable, so it always
        normalizes with its moving statistics and keeps gamma and beta fixed
        (the adaptation stage runs at batch size 1). With dropout_rate=0 the
        outputs then no longer depend on `training`.
      batch_norm_momentum: moving-average momentum of every batch norm; None keeps
        the sources' (0.999 backbone, 0.9997 head), which need tens of thousands
        of steps to settle: short runs (the CPU demo) need less, e.g. 0.9.
      synchronized_batch_norm: under tf.distribute, normalize with the
        statistics of the global batch rather than each replica's part.
      dropout_rate: dropout after the ASPP projection (training only).
      name: the model's name.

    Like every builder, it trusts its arguments: `config.validate` checks them.
    """
    encoder = _build_encoder(width_multiplier=width_multiplier, output_stride=output_stride,
                             early_downsampling=early_downsampling)
    image = keras.Input((None, None, 3), name="image")
    encoded = encoder(image)
    decoder = _build_decoder(
        num_classes=num_classes,
        features_channels=encoded["features"].shape[-1],
        low_level_channels=encoded["low_level"].shape[-1],
        aspp_rates=tuple(aspp_rates), aspp_filters=aspp_filters,
        low_level_filters=low_level_filters, decoder_filters=decoder_filters,
        separable=separable, dropout_rate=dropout_rate)
    _set_batch_norms(_batch_norms(encoder) + _batch_norms(decoder), trains=not freeze_batch_norm,
                     synchronized=synchronized_batch_norm, momentum=batch_norm_momentum)
    logits = ResizeLike(name="upsample_logits")([decoder(encoded), image])
    return keras.Model(image, {"logits": logits, "features": encoded["features"]},
                       name=name)
