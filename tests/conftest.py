"""Shared fixtures (the smallest configs that still build every network, eager
execution) and the order in which the modules are collected."""
import pytest
import tensorflow as tf

from udamobile import config as config_lib

# Grappler rewrites each traced function for speed at its first call: 8-40 s per
# step function here (40 of the 85 s of tests/mirrored_step.py's two replicas, which
# imports this module), more than the tiny steps a test runs. The tests check what a
# step computes, which the rewrites keep; the programs the tests start (train.py,
# export) run with Grappler, as users do.
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})

TINY = dict(
    patch_size=32, width_multiplier=0.35, aspp_filters=8, low_level_filters=4,
    decoder_filters=8, generator_filters=4, generator_blocks=1, discriminator_filters=4,
    discriminator_strides=(2, 2, 1), pool_size=2, batch_size=2, steps=6,
    checkpoint_every=2, log_every=2, image_every=4, eval_every=0, eval_max_images=4,
    label_free_images=2,
    segmenter_frozen_steps=2, feature_adaptation_start=0, lambda_feat=1.0)


def as_flags(values):
    """{field: value} as the command-line flags that set them."""
    return [f"--{name}={','.join(map(str, value)) if isinstance(value, tuple) else value}"
            for name, value in values.items()]


# The modules that take a minute or more, longest first (measured on the 2-core
# machine). pytest-xdist hands whole modules (--dist loadscope) to the workers
# in collection order (--no-loadscope-reorder: by default it orders them by
# their number of tests instead), each worker taking the next when it is free.
# Longest first, the short ones fill the gaps at the end instead of one long
# module leaving the other worker idle.
LONG_MODULES = ("test_trainer.py", "test_resume.py", "test_export.py", "test_faults.py",
                "test_faults_second.py", "test_faults_export.py", "test_own_camera.py",
                "test_faults_data.py",
                "test_distribute.py", "test_experiments.py", "test_api.py", "test_predict.py",
                "test_commands.py", "test_stages.py", "test_cli.py")


def pytest_collection_modifyitems(items):
    rank = {name: position for position, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept within


@pytest.fixture
def eagerly():
    """Runs tf.functions eagerly: the same Python code without tracing, which costs
    20-40 s a step function here. For tests whose subject is not the traced graph
    (the trainer tests of test_trainer.py and test_faults.py trace it)."""
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.fixture
def tiny_config():
    """tiny_config(stage, **overrides): a demo-preset Config shrunk to test size."""
    def make(stage="adaptation", **overrides):
        cfg = config_lib.get_config("demo", stage)
        return config_lib.validate(config_lib.override(cfg, **{**TINY, **overrides}))
    return make
