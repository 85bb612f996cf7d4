"""The networks: the segmenter M (DeepLabV3+ on MobileNetV2), the translators G_ST
and G_TS, the image and feature discriminators, and the readers of pretrained
weights. `networks.build_network(name, model_config)` builds any of them by name."""
