"""Shared fixtures: the smallest configs that still build every network."""
import pytest

from udamobile import config as config_lib

TINY = dict(
    patch_size=32, width_multiplier=0.35, aspp_filters=8, low_level_filters=4,
    decoder_filters=8, generator_filters=4, generator_blocks=1, discriminator_filters=4,
    discriminator_strides=(2, 2, 1), pool_size=2, batch_size=2, steps=6,
    checkpoint_every=2, log_every=2, image_every=4, eval_every=0, eval_max_images=4,
    label_free_images=2,
    segmenter_frozen_steps=2, feature_adaptation_start=0, lambda_feat=1.0)


@pytest.fixture
def tiny_config():
    """tiny_config(stage, **overrides): a demo-preset Config shrunk to test size."""
    def make(stage="adaptation", **overrides):
        cfg = config_lib.get_config("demo", stage)
        return config_lib.validate(config_lib.override(cfg, **{**TINY, **overrides}))
    return make
