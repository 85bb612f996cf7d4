"""What a training stage declares, and the step machinery every stage shares.

A stage is a small object that says:

- `reads`: the data stream it trains on: "source" (labelled source patches),
  "target" (labelled target patches), "target_images" (unlabelled target
  patches), "unpaired" (a labelled source patch beside an unlabelled
  target patch) or "pseudo_labelled" (beside a pseudo-labelled one);
  `also_reads`: the other train splits it reads ("target");
  `stream_options(...)`: what else its stream needs (an image transform, the
  pseudo-labelled target), and `stream_starts(cfg)`: the steps at which the
  trainer makes its stream again (self-training's rounds);
- `networks`: the networks it builds (names of `udamobile.networks`), and
  `restores`: those it takes from an earlier stage of its method;
- `updates`: its players, each an optimizer over some networks' variables;
  every other network it builds stays frozen;
- `update_starts(cfg)`: the step each player starts at, and the flag that
  sets it (its phases); `active_updates(step, cfg)` follows from it;
- `make_step(state, cfg, active)`: its tf.function over a batch;
- `summary_images(state, batch)`, `progress_metrics`: what it shows.

Steps run under the state's tf.distribute strategy: each replica computes
its share of the losses and its gradients (`replica_side`, inside
`strategy.run`), then `finish` applies every update on every replica, and
only when every loss and gradient of every replica is finite, so a NaN never
reaches the weights. Each step returns the losses of the global batch and
`finite`; the trainer then stops or skips as configured.
"""
import abc
import dataclasses

import numpy as np
import tensorflow as tf

from data_pipelines import classes


@dataclasses.dataclass(frozen=True)
class Update:
    """A player: one optimizer over the trainable variables of `networks`."""
    name: str
    networks: tuple


class Stage(abc.ABC):
    """Base of every stage; the subclasses fill in the class attributes."""
    name = None
    reads = None
    also_reads = ()
    networks = ()
    restores = ()
    frozen = ()  # built and restored, never updated
    updates = ()
    uses_pools = False
    segmenter_batch_norm_trains = False
    needs_trained_segmenter = False  # refuses --allow_random_start
    progress_metrics = ()

    def stream_options(self, cfg, workdir, *, chief, bad_files=None, state=None, step=0,
                       check_stop=lambda: None):
        """Keyword arguments of its training stream from `step` beyond the config's
        (trainer); `state`: the TrainingState at that step. Long work here (a
        labelling pass) calls `check_stop` between its batches: it raises once the
        run is asked to stop (the trainer's, after saving a checkpoint)."""
        return {}

    def stream_starts(self, cfg):
        """The steps at which its stream is made again (with new `stream_options`)."""
        return (0,)

    def update(self, name):
        return next(u for u in self.updates if u.name == name)

    def update_starts(self, cfg):
        """{update name: (first step, the flag that sets it or None)} of the updates
        this config runs; an update left out never runs (its loss weighted 0)."""
        return {u.name: (0, None) for u in self.updates}

    def segmenter_start_step(self, cfg):
        """The step the segmenter starts training (its LR decays from there)."""
        return self.update_starts(cfg).get("segmenter", (0, None))[0]

    def active_updates(self, step, cfg):
        """The names of the updates applied at global step `step` (a frozenset)."""
        return frozenset(name for name, (start, _) in self.update_starts(cfg).items()
                         if step >= start)

    def idle_updates(self, cfg):
        """{update name: (first step, flag)} of the updates that would start, but not
        within the config's steps: a shrunk run that never trains them."""
        return {name: start for name, start in self.update_starts(cfg).items()
                if start[0] >= cfg.optim.steps}

    @property
    def draws_images(self):
        return type(self).summary_images is not Stage.summary_images

    @abc.abstractmethod
    def make_step(self, state, cfg, active):
        """The tf.function of one step with the updates `active` applied."""

    def summary_images(self, state, batch):
        return {}

    @property
    def evaluates(self):
        """Stages that train a segmenter score it (a translation stage has none to score)."""
        return "segmenter" in self.networks and "segmenter" not in self.frozen

    def __repr__(self):
        return f"<stage {self.name}>"


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
