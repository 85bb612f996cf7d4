"""Which variables each step updates, and that a NaN never reaches the weights."""
import numpy as np
import pytest
import tensorflow as tf

from udamobile import losses, train_step
from udamobile.state import TrainingState, polynomial_decay


def _snapshot(state, *names):
    return {n: [v.numpy().copy() for v in state.networks[n].trainable_variables] for n in names}


def _changed(before, state):
    return {n: any(not np.array_equal(b, v.numpy())
                   for b, v in zip(values, state.networks[n].trainable_variables))
            for n, values in before.items()}


def _unpaired_batch(cfg, nan=False):
    rng = np.random.default_rng(0)
    p, b = cfg.data.patch_size, cfg.optim.batch_size
    source = rng.uniform(-1, 1, (b, p, p, 3)).astype(np.float32)
    if nan:
        source[0, 0, 0, 0] = np.nan
    return {"source_image": tf.constant(source),
            "source_label": tf.constant(rng.integers(0, 19, (b, p, p)), tf.int32),
            "target_image": tf.constant(rng.uniform(-1, 1, (b, p, p, 3)), tf.float32)}


NETWORKS = ("segmenter", "g_st", "g_ts", "d_s", "d_t", "fd_s", "fd_t")


@pytest.mark.parametrize("update_segmenter, feature_adaptation, expected_frozen", [
    (False, False, {"segmenter", "fd_s", "fd_t"}),
    (False, True, {"segmenter"}),
    (True, True, set()),
])
def test_adaptation_step_updates_exactly_the_active_players(
        tiny_config, update_segmenter, feature_adaptation, expected_frozen):
    cfg = tiny_config("adaptation")
    state = TrainingState(cfg)
    step = train_step.make_adaptation_step(state, cfg, update_segmenter=update_segmenter,
                                           feature_adaptation=feature_adaptation)
    before = _snapshot(state, *NETWORKS)
    metrics = step(_unpaired_batch(cfg))
    assert bool(metrics["finite"]) and int(state.step) == 1
    changed = _changed(before, state)
    assert {n for n, c in changed.items() if not c} == expected_frozen
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_ablations_switch_their_terms_off(tiny_config):
    cfg = tiny_config("adaptation", lambda_sem=0.0, lambda_feat=0.0)
    state = TrainingState(cfg)
    step = train_step.make_adaptation_step(state, cfg, update_segmenter=True, feature_adaptation=True)
    before = _snapshot(state, "fd_s", "fd_t")
    metrics = step(_unpaired_batch(cfg))
    assert float(metrics["loss/semantic"]) == 0.0 and float(metrics["loss/feature_adversarial"]) == 0.0
    assert not any(_changed(before, state).values())  # lambda_feat=0: D' never trained


def test_a_nan_batch_updates_nothing_and_is_reported(tiny_config):
    cfg = tiny_config("adaptation")
    state = TrainingState(cfg)
    step = train_step.make_adaptation_step(state, cfg, update_segmenter=True, feature_adaptation=True)
    before = _snapshot(state, *NETWORKS)
    metrics = step(_unpaired_batch(cfg, nan=True))
    assert not bool(metrics["finite"])
    assert not any(_changed(before, state).values())
    assert int(state.step) == 1


def _eagerly_and_in_graph(cfg, run):
    """[run(state) eagerly, run(state) under tf.function], each from the same init."""
    results = []
    for eager in (True, False):
        tf.keras.utils.set_random_seed(0)
        state = TrainingState(cfg)
        tf.config.run_functions_eagerly(eager)
        try:
            results.append(run(state))
        finally:
            tf.config.run_functions_eagerly(False)
    return results


def test_source_only_step_trains_the_segmenter_eagerly_and_in_graph(tiny_config):
    cfg = tiny_config("source_only", dropout_rate=0.0)  # no dropout: same randomness both ways
    batch = _unpaired_batch(cfg)
    batch = {"image": batch["source_image"], "label": tf.ones_like(batch["source_label"])}

    def three_steps(state):
        step = train_step.make_source_only_step(state, cfg)
        before = _snapshot(state, "segmenter")
        losses = [float(step(batch)["loss/ce"]) for _ in range(3)]
        assert _changed(before, state)["segmenter"]
        return losses

    losses = _eagerly_and_in_graph(cfg, three_steps)
    # Same loss from the same weights; later steps drift apart within float
    # noise that Adam's normalized first updates amplify, so only the trend is compared.
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-5)
    assert losses[0][-1] < losses[0][0] and losses[1][-1] < losses[1][0]  # both learn


def test_segmenter_learning_rate_schedules():
    poly = [float(polynomial_decay(s, initial=1.0, total_steps=100, power=0.9)) for s in (0, 50, 100, 150)]
    np.testing.assert_allclose(poly, [1.0, 0.5 ** 0.9, 0.0, 0.0], rtol=1e-6)
    # authors' code: constant until step 20 (unfreezing), then poly to 0 at the end
    later = [float(polynomial_decay(s, initial=1.0, total_steps=100, power=0.9, start=20))
             for s in (0, 20, 60, 100)]
    np.testing.assert_allclose(later, [1.0, 1.0, 0.5 ** 0.9, 0.0], rtol=1e-6)


def test_adaptation_phase_follows_the_freeze_schedule(tiny_config):
    cfg = tiny_config("adaptation", segmenter_frozen_steps=10, feature_adaptation_start=5)
    assert train_step.adaptation_phase(0, cfg) == (False, False)
    assert train_step.adaptation_phase(5, cfg) == (False, True)
    assert train_step.adaptation_phase(10, cfg) == (True, True)


def _one_step_changes(cfg, steps=1, seed=0):
    """Variables of every network after `steps` phase-2 steps from a fixed init."""
    tf.keras.utils.set_random_seed(seed)
    state = TrainingState(cfg)
    step = train_step.make_adaptation_step(state, cfg, update_segmenter=True, feature_adaptation=True)
    batch = _unpaired_batch(cfg)
    for _ in range(steps):
        step(batch)
    return state, _snapshot(state, *NETWORKS)


def _share_different(a, b, *names, lr):
    """Share of the weights of `names` that differ by more than lr / 10."""
    moved = [np.abs(x - y) > 0.1 * lr for name in names for x, y in zip(a[name], b[name])]
    return sum(int(m.sum()) for m in moved) / sum(m.size for m in moved)


def test_discriminators_ignore_the_generator_objective_and_vice_versa(tiny_config):
    # Adam moves nearly every weight by about lr at its first steps: a term
    # that reached a player would change most of its update, float noise
    # between two traced graphs only the few weights whose gradient is ~0.
    lr = tiny_config("adaptation").optim.gan_lr
    # lambda_cycle enters only the generators' objective: D_S, D_T, D'_S, D'_T
    # take the same first update with or without it.
    _, with_cycle = _one_step_changes(tiny_config("adaptation", lambda_cycle=20.0))
    _, without_cycle = _one_step_changes(tiny_config("adaptation", lambda_cycle=0.0))
    assert _share_different(with_cycle, without_cycle, "d_s", "d_t", "fd_s", "fd_t", lr=lr) < 0.01
    assert _share_different(with_cycle, without_cycle, "g_st", "g_ts", lr=lr) > 0.2
    # A one-image pool swaps in old fakes from step 2 on: only the image
    # discriminators' objective changes, so the generators' second update
    # (made against the discriminators of step 1) does not.
    _, small_pool = _one_step_changes(tiny_config("adaptation", pool_size=1), steps=2)
    _, large_pool = _one_step_changes(tiny_config("adaptation", pool_size=50), steps=2)
    assert _share_different(small_pool, large_pool, "g_st", "g_ts", lr=lr) < 0.01
    assert _share_different(small_pool, large_pool, "d_s", "d_t", lr=lr) > 0.2


def test_semantic_consistency_gradient_reaches_the_generators(tiny_config):
    cfg = tiny_config("adaptation")
    state = TrainingState(cfg)
    x = _unpaired_batch(cfg)["source_image"]
    with tf.GradientTape() as tape:
        loss = losses.semantic_consistency_loss(
            state.segmenter(state.g_st(x, training=True), training=True)["logits"],
            state.segmenter(x, training=False)["logits"])
    grads = tape.gradient(loss, state.g_st.trainable_variables)
    assert all(g is not None for g in grads)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads) > 0


def test_adaptation_step_gives_the_same_result_eagerly_and_in_graph(tiny_config):
    cfg = tiny_config("adaptation", dropout_rate=0.0)  # no dropout: same randomness both ways

    def one_step(state):
        step = train_step.make_adaptation_step(state, cfg, update_segmenter=True,
                                               feature_adaptation=True)
        metrics = {k: float(v) for k, v in step(_unpaired_batch(cfg)).items()}
        return metrics, _snapshot(state, *NETWORKS)

    (eager_metrics, eager_vars), (graph_metrics, graph_vars) = _eagerly_and_in_graph(cfg, one_step)
    assert eager_metrics == pytest.approx(graph_metrics, rel=1e-5)
    # Adam's first update is about lr * sign(gradient): compare within 2 lr.
    for name in NETWORKS:
        for a, b in zip(eager_vars[name], graph_vars[name]):
            np.testing.assert_allclose(a, b, atol=2 * max(cfg.optim.gan_lr, cfg.optim.segmenter_lr))
