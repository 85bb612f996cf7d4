"""tf.distribute: two replicas take the step one device takes with the same global batch."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from test_stages import batch_for
from udamobile.training.stages import get_stage
from udamobile.training.state import TrainingState

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def mirrored_results(tmp_path_factory):
    # A fresh process: logical CPU devices can only be set up before TF first uses the CPU.
    output = tmp_path_factory.mktemp("mirrored") / "results.json"
    subprocess.run([sys.executable, os.path.join(HERE, "mirrored_step.py"), str(output)],
                   check=True, cwd=HERE, timeout=600)
    return json.loads(output.read_text())


# Stage 1 (batch norm trained, synchronized on the replicas) is left out: its
# losses agree to 1e-6 but 10-25% of the weights of the deepest blocks (4x4
# maps, block_9 to block_16) move more than lr / 10 apart after two Adam
# steps, which is not understood yet (docs/limitations.md;
# `python tests/mirrored_step.py out.json source_only` reproduces it).
@pytest.mark.slow
def test_mirrored_adaptation_step_on_two_cpus_equals_one_device(mirrored_results):
    assert mirrored_results["replicas"] == 2
    result = mirrored_results["adaptation"]
    # Losses of the global batch: a replica mean instead of a global one
    # would double them, per-replica batch norm would change them.
    for one, two in zip(result["one_device"], result["mirrored"]):
        assert two == pytest.approx(one, rel=1e-5, abs=1e-6)
    # Adam's first updates are about lr * sign(gradient), so float noise
    # flips the few weights whose gradient is ~0; anything else moves them
    # all: a share of weights over lr / 10 apart, per network.
    for name, weights in result["weights"].items():
        assert weights["share_updated"] > 0.5, name
        assert weights["share_over_lr_10"] < 0.01, (name, weights)


@pytest.mark.slow
def test_training_on_two_replicas_writes_a_restorable_checkpoint(mirrored_results):
    result = mirrored_results["trainer"]
    assert result["step"] == 2 and result["restored_step"] == 2
    assert result["logs"]  # summaries, images included, were written


def test_mixed_precision_computes_in_float16_and_keeps_float32_weights(tiny_config):
    keras.utils.set_random_seed(0)  # the same initial weights whichever tests ran before
    cfg = tiny_config("adaptation", mixed_precision=True)
    stage = get_stage("adaptation")
    state = TrainingState(cfg, stage)
    assert keras.config.dtype_policy().name == "float32"  # restored after building
    for name, model in state.networks.items():
        assert model.dtype_policy.compute_dtype == "float16", name
        assert all(v.dtype == "float32" for v in model.weights), name
    assert all(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in state.optimizers.values())
    step = stage.make_step(state, cfg, stage.active_updates(cfg.optim.steps, cfg))
    g_st, generators = state.networks["g_st"], state.optimizers["generators"]
    before = [v.numpy().copy() for v in g_st.trainable_variables]
    initial_scale = float(generators.dynamic_scale)
    # At these tiny shapes the feature discriminators see 2x2 maps and their
    # gradients reach ~7e4 even in float32, so the first steps overflow float16
    # at the initial loss scale. Each such step is skipped and halves the
    # scale, until the update goes through.
    batch = batch_for(stage, cfg)
    for attempt in range(1, 21):
        metrics = step(batch)
        # An overflow is for the loss scale to handle, not a NaN for the trainer to stop on.
        assert bool(metrics["finite"]) and all(np.isfinite(float(v)) for v in metrics.values())
        if any(not np.array_equal(b, v.numpy())
               for b, v in zip(before, g_st.trainable_variables)):
            break
    else:
        pytest.fail("no generator update in 20 mixed-precision steps")
    assert float(generators.dynamic_scale) == initial_scale / 2 ** (attempt - 1)


def test_mixed_precision_overflow_skips_the_update_and_lowers_the_loss_scale(tiny_config,
                                                                             eagerly):
    cfg = tiny_config("source_only", mixed_precision=True)
    stage = get_stage("source_only")
    state = TrainingState(cfg, stage)
    optimizer, segmenter = state.optimizers["segmenter"], state.networks["segmenter"]
    optimizer.dynamic_scale.assign(2.0 ** 100)  # float16 gradients overflow at this scale
    step = stage.make_step(state, cfg, stage.active_updates(0, cfg))
    before = [v.numpy().copy() for v in segmenter.trainable_variables]
    metrics = step(batch_for(stage, cfg))
    # Not a NaN loss for the trainer to stop on: the loss scaling handles it.
    assert bool(metrics["finite"])
    assert float(optimizer.dynamic_scale) == 2.0 ** 99
    assert all(np.array_equal(b, v.numpy())
               for b, v in zip(before, segmenter.trainable_variables))
