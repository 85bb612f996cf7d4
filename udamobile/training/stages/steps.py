"""The step machinery every stage shares.

Steps run under the state's tf.distribute strategy: each replica computes
its share of the losses and its gradients (`replica_side`, inside
`strategy.run`), then `finish` applies every update on every replica, and
only when every loss and gradient of every replica is finite, so a NaN never
reaches the weights. Each step returns the losses of the global batch and
`finite`; the trainer then stops or skips as configured.
"""
import numpy as np
import tensorflow as tf

from data_pipelines import classes


def finite_flag(metrics, grads):
    """1.0 when every metric and gradient is finite, else 0.0 (one replica's view)."""
    tensors = list(metrics.values()) + [g for group in grads for g in group if g is not None]
    return tf.cast(tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors]),
                   tf.float32)


def replica_side(state, updates, compute, *, check_gradients, multipliers=None):
    """A replica function: args -> (metrics, gradients, finite flag, carried tensors).

    `compute(*args)` runs inside a persistent tape and returns (objectives
    {update name: loss}, metrics {name: scalar}, carried {name: tensor}).
    Each objective is differentiated with respect to its update's variables,
    scaled by its optimizer (mixed precision loss scaling) inside the tape.
    `multipliers` ({update name: one factor per variable}) scales gradients.
    Carried tensors leave without a gradient.
    """
    multipliers = multipliers or {}

    def on_replica(*args):
        with tf.GradientTape(persistent=True) as tape:
            objectives, metrics, carried = compute(*args)
            scaled = [state.optimizers[u.name].scale_loss(objectives[u.name]) for u in updates]
        grads = []
        for update, loss in zip(updates, scaled):
            group = tape.gradient(loss, state.variables_of(*update.networks))
            factors = multipliers.get(update.name)
            if factors is not None:
                group = [g if g is None or f == 1 else g * f for g, f in zip(group, factors)]
            grads.append(group)
        flag = finite_flag(metrics, grads if check_gradients else [])
        return metrics, grads, flag, tf.nest.map_structure(tf.stop_gradient, carried)

    return on_replica


def finish(state, metrics, updates, grads, finite_flags):
    """Sums the replicas' loss shares and applies the updates if all is finite.

    updates: [Update]; grads: one gradient list per update (per replica);
    finite_flags: each replica's 1.0/0.0 from `finite_flag`.
    """
    strategy = state.strategy
    mean = tf.distribute.ReduceOp.MEAN
    finite = tf.reduce_all([strategy.reduce(mean, f, axis=None) >= 1.0 for f in finite_flags])

    def apply_on_replica(grads):
        for update, group in zip(updates, grads):
            state.optimizers[update.name].apply_gradients(
                zip(group, state.variables_of(*update.networks)))

    def apply():
        strategy.run(apply_on_replica, args=(grads,))
        return tf.constant(True)

    finite = tf.cond(finite, apply, lambda: tf.constant(False))
    state.step.assign_add(1)
    totals = {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
              for name, value in metrics.items()}
    return {**totals, "finite": finite}


def one_sided_step(state, updates, compute, cfg, multipliers=None):
    """The tf.function of a stage whose players all learn from one forward pass."""
    side = replica_side(state, updates, compute, check_gradients=not cfg.run.mixed_precision,
                        multipliers=multipliers)

    @tf.function
    def step(batch):
        metrics, grads, finite, _ = state.strategy.run(side, args=(batch,))
        return finish(state, metrics, updates, grads, [finite])

    return step


def colour_labels(labels):
    """[..., H, W] train ids -> uint8 [..., H, W, 3] in the Cityscapes palette."""
    return classes.colorize(np.asarray(labels))


def prediction_image(segmenter, image):
    """The colourized argmax of the segmenter on `image` [1, H, W, 3] in [-1, 1]."""
    logits = segmenter(image, training=False)["logits"]
    return colour_labels(tf.argmax(logits, -1))
