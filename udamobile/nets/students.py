"""The students a `distill` stage can train: smaller segmenters from the same builder.

Each row is the `ModelConfig` fields that make the student, applied to the
distill stage's config after the flags (`--student=NAME` picks the row).
Every row is DeepLabV3+ MobileNetV2 (`udamobile/nets/segmenter.py`) made
smaller along one or more of the axes that cost time on a board:

- the backbone's width (MobileNetV2's alpha 0.35 or 0.5, which have ImageNet
  weights in keras.applications and TF-slim, read by `--student_init_checkpoint`);
- the output stride (32: the last blocks keep their strides instead of dilating);
- the head: ASPP without its atrous branches (image pooling and a 1x1 conv
  only, as the mobile rows of the TF-DeepLab model zoo drop them);
- the first stride: MobileNetV2's block 0, not block 1, halves the resolution
  (`early_downsampling`), so less of the network runs at half the input's size;
- the decoder: fewer filters in its two separable 3x3 convs at stride 4, which
  at 512x1024 hold most of the default segmenter's multiply-accumulates.

At 512x1024 the default segmenter (width 1.0) is about 11.4 GMAC; the rows'
costs, latencies and demo accuracies are in docs/deployment.md, which says why
DEFAULT_STUDENT was chosen.
"""
STUDENTS = {
    # Width 0.35 with the full ASPP, its branches and decoder narrowed to 64.
    "mnv2_035_aspp64": dict(width_multiplier=0.35, output_stride=16, aspp_rates=(6, 12, 18),
                            aspp_filters=64, low_level_filters=24, decoder_filters=64),
    # Width 0.35 without atrous branches: pooling and 1x1 at 128, decoder 64.
    "mnv2_035_pool128": dict(width_multiplier=0.35, output_stride=16, aspp_rates=(),
                             aspp_filters=128, low_level_filters=24, decoder_filters=64),
    # The same at output stride 32.
    "mnv2_035_os32_pool128": dict(width_multiplier=0.35, output_stride=32, aspp_rates=(),
                                  aspp_filters=128, low_level_filters=24, decoder_filters=64),
    # Width 0.5 without atrous branches, decoder 96.
    "mnv2_050_pool128": dict(width_multiplier=0.5, output_stride=16, aspp_rates=(),
                             aspp_filters=128, low_level_filters=32, decoder_filters=96),
}
# The first with block 0 at stride 2 instead of block 1 (early_downsampling).
STUDENTS["mnv2_035_aspp64_early"] = {**STUDENTS["mnv2_035_aspp64"], "early_downsampling": True}
DEFAULT_STUDENT = "mnv2_035_aspp64_early"
