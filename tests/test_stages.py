"""Each stage's step: which variables it updates, eagerly and under tf.function;
that a NaN never reaches the weights; the phases and learning-rate schedules."""
import numpy as np
import pytest
import tensorflow as tf

from udamobile import config as config_lib

from udamobile.training import losses
from udamobile.training.inputs import patch_shape
from udamobile.training.stages import REGISTRY, get_stage
from udamobile.training.stages.updates import SEGMENTER, polynomial_decay
from udamobile.training.state import TrainingState


def _weights(model):
    """Trainable weights and batch-norm statistics (not dropout's seed state)."""
    return [v for v in model.trainable_variables + model.non_trainable_variables
            if v.name != "seed_generator_state"]


def _snapshot(state):
    return {n: [v.numpy().copy() for v in _weights(m)] for n, m in state.networks.items()}


def _changed(before, state):
    return {n for n, values in before.items()
            if any(not np.array_equal(b, v.numpy())
                   for b, v in zip(values, _weights(state.networks[n])))}


def batch_for(stage, cfg, nan=False):
    """A random batch of what `stage` reads, at the config's shapes."""
    rng = np.random.default_rng(0)
    (h, w), b = patch_shape(cfg), cfg.optim.batch_size
    images = rng.uniform(-1, 1, (2, b, h, w, 3)).astype(np.float32)
    if nan:
        images[0, 0, 0, 0, 0] = np.nan
    labels = rng.integers(0, 19, (b, h, w)).astype(np.int32)
    labels[:, :4] = 255  # some ignored pixels, as every dataset has
    labels = tf.constant(labels)
    values = {"image": images[0], "label": labels, "source_image": images[0],
              "source_label": labels, "target_image": images[1],
              "target_label": tf.reverse(labels, [1])}
    return {key: tf.constant(values[key]) for key in stage.batch_keys}


def _updated_networks(stage, active):
    return {n for u in stage.updates if u.name in active for n in u.networks}


# (stage, step of the phase to test, eager): every stage with all its players and
# the adaptation stage's two earlier phases, eagerly; under tf.function too for the
# step functions the trainer tests do not trace (tracing costs 10-40 s each here):
# translation's `cycle_step`, which semantic translation shares, and feature
# alignment's (translated_source shares source_only's, which the trainer traces).
CASES = ([(name, 10, True) for name in REGISTRY] + [("adaptation", 0, True), ("adaptation", 1, True)]
         + [(name, 10, False) for name in ("translation", "feature_alignment")])


@pytest.mark.parametrize("name, step, eager", CASES,
                         ids=[f"{n}-{s}-{'eager' if e else 'tf.function'}" for n, s, e in CASES])
def test_a_step_updates_exactly_its_active_players(tiny_config, name, step, eager):
    stage = get_stage(name)
    cfg = tiny_config(name, segmenter_frozen_steps=2, feature_adaptation_start=1)
    state = TrainingState(cfg, stage)
    active = stage.active_updates(step, cfg)
    before = _snapshot(state)
    tf.config.run_functions_eagerly(eager)
    try:
        metrics = stage.make_step(state, cfg, active)(batch_for(stage, cfg))
    finally:
        tf.config.run_functions_eagerly(False)
    assert bool(metrics["finite"]) and int(state.step) == 1
    assert all(np.isfinite(float(v)) for v in metrics.values())
    # Batch-norm statistics move with the segmenter's update in supervised stages
    # only, and alone in AdaBN's (test_baselines pins which).
    moved = {"segmenter"} if name == "adabn" else set()
    assert _changed(before, state) == _updated_networks(stage, active) | moved
    assert set(state.networks) == set(stage.networks)


def test_phases_of_the_adaptation_stage(tiny_config):
    stage = get_stage("adaptation")
    cfg = tiny_config("adaptation", segmenter_frozen_steps=10, feature_adaptation_start=5)
    assert stage.active_updates(0, cfg) == {"generators", "discriminators"}
    assert stage.active_updates(5, cfg) == {"generators", "discriminators",
                                            "feature_discriminators"}
    assert stage.active_updates(10, cfg) == {"generators", "discriminators",
                                             "feature_discriminators", "segmenter"}
    no_feat = tiny_config("adaptation", lambda_feat=0.0, segmenter_frozen_steps=0)
    assert "feature_discriminators" not in stage.active_updates(100, no_feat)


def test_what_each_stage_builds_and_takes_from_the_stages_before():
    assert "segmenter" not in get_stage("translation").networks
    assert get_stage("translation").restores == ()
    assert get_stage("semantic_translation").frozen == ("segmenter",)
    assert set(get_stage("translated_source").restores) == {"segmenter", "g_st"}
    assert get_stage("translated_source").frozen == ("g_st",)
    assert get_stage("feature_alignment").networks == ("segmenter", "g_st", "fd_t")
    assert get_stage("adaptation").restores == ("segmenter",)
    assert get_stage("colour_transfer").restores == ("segmenter",)
    assert get_stage("adabn").restores == ("segmenter",) and get_stage("adabn").updates == ()
    assert get_stage("self_training").restores == ("segmenter", "g_st")
    assert get_stage("self_training").frozen == ("g_st",)
    assert get_stage("colour_self_training").networks == ("segmenter",)
    assert get_stage("colour_self_training").restores == ("segmenter",)
    # The distill stage's teacher is the earlier stage's segmenter, frozen.
    assert get_stage("distill").restores == ("teacher",)
    assert get_stage("distill").restored_from == {"teacher": "segmenter"}
    assert get_stage("distill").frozen == ("teacher",)
    assert [s.name for s in REGISTRY.values() if s.evaluates] == [
        "source_only", "oracle", "colour_transfer", "adabn", "translated_source",
        "feature_alignment", "adaptation", "self_training", "colour_self_training", "distill"]


def test_ablations_switch_their_terms_off(tiny_config, eagerly):
    cfg = tiny_config("adaptation", lambda_sem=0.0, lambda_feat=0.0, segmenter_frozen_steps=0)
    stage = get_stage("adaptation")
    state = TrainingState(cfg, stage)
    active = stage.active_updates(5, cfg)
    metrics = stage.make_step(state, cfg, active)(batch_for(stage, cfg))
    assert float(metrics["loss/semantic"]) == 0.0
    assert float(metrics["loss/feature_adversarial"]) == 0.0
    assert "feature_discriminators" not in active  # lambda_feat=0: D' never trained


def _first_step_losses(cfg):
    tf.keras.utils.set_random_seed(0)
    stage = get_stage(cfg.stage)
    state = TrainingState(cfg, stage)
    metrics = stage.make_step(state, cfg, stage.active_updates(5, cfg))(batch_for(stage, cfg))
    return {k: float(v) for k, v in metrics.items()}


def test_each_objective_holds_only_its_players_terms(tiny_config, eagerly):
    # Every update differentiates its own objective only, so a term that
    # belongs to the generators must leave every other objective unchanged.
    cfg = tiny_config("adaptation", segmenter_frozen_steps=0, dropout_rate=0.0)
    with_cycle = _first_step_losses(config_lib.override(cfg, lambda_cycle=20.0))
    without_cycle = _first_step_losses(config_lib.override(cfg, lambda_cycle=0.0))
    for name in ("loss/segmenter", "loss/image_discriminators", "loss/feature_discriminators"):
        assert with_cycle[name] == pytest.approx(without_cycle[name], rel=1e-5), name
    assert with_cycle["loss/generators"] - without_cycle["loss/generators"] == pytest.approx(
        with_cycle["loss/cycle"], rel=1e-5)


def test_a_nan_batch_updates_nothing_and_is_reported(tiny_config, eagerly):
    stage = get_stage("adaptation")
    cfg = tiny_config("adaptation", segmenter_frozen_steps=0)
    state = TrainingState(cfg, stage)
    before = _snapshot(state)
    metrics = stage.make_step(state, cfg, stage.active_updates(5, cfg))(
        batch_for(stage, cfg, nan=True))
    assert not bool(metrics["finite"])
    assert not _changed(before, state)
    assert int(state.step) == 1


def test_the_semantic_loss_reaches_the_generators_not_the_frozen_segmenter(tiny_config):
    stage = get_stage("semantic_translation")
    cfg = tiny_config("semantic_translation")
    state = TrainingState(cfg, stage)
    assert not state.networks["segmenter"].trainable_variables  # frozen: no gradient at all
    x = batch_for(stage, cfg)["source_image"]
    segmenter, g_st = state.networks["segmenter"], state.networks["g_st"]
    with tf.GradientTape() as tape:
        loss = losses.semantic_consistency_loss(
            segmenter(g_st(x, training=True), training=False)["logits"],
            segmenter(x, training=False)["logits"])
    grads = tape.gradient(loss, g_st.trainable_variables)
    assert all(g is not None for g in grads)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads) > 0


def test_the_step_adds_both_terms_of_eq4(tiny_config, eagerly):
    cfg = tiny_config("semantic_translation", lambda_sem=0.5)
    stage = get_stage(cfg.stage)
    state = TrainingState(cfg, stage)
    batch = batch_for(stage, cfg)
    nets = state.networks
    m = lambda x: nets["segmenter"](x, training=False)["logits"]  # noqa: E731
    x_s, x_t = batch["source_image"], batch["target_image"]
    source_term = losses.semantic_consistency_loss(m(nets["g_st"](x_s, training=True)), m(x_s))
    target_term = losses.semantic_consistency_loss(m(nets["g_ts"](x_t, training=True)), m(x_t))
    metrics = stage.make_step(state, cfg, stage.active_updates(5, cfg))(batch)
    assert float(source_term) > 0 and float(target_term) > 0
    assert float(metrics["loss/semantic"]) == pytest.approx(
        0.5 * float(source_term + target_term), rel=1e-5)


def test_the_last_layers_gradient_multiplier_scales_only_the_decoder(tiny_config):
    from udamobile.training.stages.supervised import decoder_gradient_multipliers

    state = TrainingState(tiny_config("source_only"), get_stage("source_only"))
    segmenter = state.networks["segmenter"]
    factors = decoder_gradient_multipliers(segmenter, 10.0)
    decoder = {id(v) for v in segmenter.get_layer("decoder").trainable_variables}
    assert [f == 10.0 for f in factors] == [id(v) in decoder for v in segmenter.trainable_variables]
    assert 0 < factors.count(10.0) < len(factors)


def test_segmenter_learning_rate_schedules():
    poly = [float(polynomial_decay(s, initial=1.0, total_steps=100, power=0.9))
            for s in (0, 50, 100, 150)]
    np.testing.assert_allclose(poly, [1.0, 0.5 ** 0.9, 0.0, 0.0], rtol=1e-6)
    # Constant until step 20 (the segmenter starts), then poly to 0 at the end.
    later = [float(polynomial_decay(s, initial=1.0, total_steps=100, power=0.9, start=20))
             for s in (0, 20, 60, 100)]
    np.testing.assert_allclose(later, [1.0, 1.0, 0.5 ** 0.9, 0.0], rtol=1e-6)


@pytest.mark.parametrize("preset", ["paper_gta5", "paper_synthia"])
def test_paper_presets_train_the_segmenter_from_its_initial_rate(preset):
    cfg = config_lib.get_config(preset, "adaptation")
    stage = get_stage("adaptation")
    start = stage.update_starts(cfg)["segmenter"][0]
    assert start == cfg.optim.segmenter_frozen_steps == 20_000
    first = SEGMENTER.learning_rate(cfg, tf.constant(start), start)
    assert float(first) == pytest.approx(cfg.optim.segmenter_lr)
    assert "segmenter" in stage.active_updates(start, cfg)
    assert "segmenter" not in stage.active_updates(start - 1, cfg)
    assert float(SEGMENTER.learning_rate(cfg, tf.constant(cfg.optim.steps), start)) == 0.0


def test_the_optimizer_reads_the_schedule_of_its_stage(tiny_config):
    cfg = tiny_config("adaptation", segmenter_frozen_steps=2, gan_lr_decay_start=3, steps=6)
    state = TrainingState(cfg, get_stage("adaptation"))
    state.step.assign(2)
    assert float(state.learning_rates()["segmenter"]) == pytest.approx(cfg.optim.segmenter_lr)
    state.step.assign(4)  # a third of the way from 3 to 6: linear decay to 2/3
    assert float(state.learning_rates()["generators"]) == pytest.approx(cfg.optim.gan_lr * 2 / 3)
    assert float(state.learning_rates()["feature_discriminators"]) == pytest.approx(
        cfg.optim.feature_discriminator_lr)
    # Every optimizer runs the config's Adam epsilon (TF1's 1e-8 in the paper presets).
    cfg = tiny_config("adaptation", adam_epsilon=1e-8)
    state = TrainingState(cfg, get_stage("adaptation"))
    assert {name: opt.epsilon for name, opt in state.optimizers.items()} == dict.fromkeys(
        ("generators", "segmenter", "discriminators", "feature_discriminators"), 1e-8)
