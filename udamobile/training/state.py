"""Everything a training stage updates, gathered in one checkpointable module.

The state holds exactly what its stage declares (`udamobile.training.stages`): the
networks it builds, one Adam optimizer per update (player), the image pools
if it uses them, and the global step. Frozen networks are built with
`trainable = False`, so no gradient is ever computed for them.

Each optimizer's settings and learning-rate schedule come with its update
(`udamobile.training.stages.updates`).
"""
import keras
import tensorflow as tf

from udamobile.nets import networks

from udamobile.training import distribute
from udamobile.training.image_pool import ImagePool
from udamobile.training.inputs import patch_shape


def regularized_kernels(model):
    """Kernels of the ordinary convs of `model`, nested models included.

    Depthwise kernels are left out, as TF-slim's MobileNetV2 does
    (regularize_depthwise=False).
    """
    kernels = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Conv2D) and layer.trainable:
            kernels.append(layer.kernel)
    return kernels


class TrainingState(tf.Module):
    """Networks, optimizers, image pools and the global step of one stage."""

    def __init__(self, cfg, stage, strategy=None, models=None):
        """Builds every network and optimizer of `stage` under `strategy` (default: current),
        each from `cfg.model` or, for those `models` names, from its ModelConfig there.

        The step and the image pools stay outside it: they are updated once
        per step, in the cross-replica context (the pools with the whole
        global batch of fakes).
        """
        super().__init__(name="training_state")
        self.stage = stage
        self.strategy = strategy or tf.distribute.get_strategy()
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        with self.strategy.scope(), distribute.dtype_policy(cfg.run.mixed_precision):
            self._build(cfg, models or {})
        self.pools = {}
        if stage.uses_pools:
            image_shape = list(patch_shape(cfg)) + [3]
            self.pools = {"pool_s": ImagePool(cfg.loss.pool_size, image_shape, seed=cfg.run.seed),
                          "pool_t": ImagePool(cfg.loss.pool_size, image_shape,
                                              seed=cfg.run.seed + 1)}

    def _build(self, cfg, models):
        # Batch norm trains only where the stage says so; synchronized, it
        # normalizes with the global batch as one device would.
        self.networks = {
            name: networks.build_network(
                name, models.get(name, cfg.model),
                freeze_batch_norm=not self.stage.segmenter_batch_norm_trains,
                synchronized_batch_norm=self.strategy.num_replicas_in_sync > 1)
            for name in self.stage.networks}
        for name in self.stage.frozen:
            self.networks[name].trainable = False
        starts = self.stage.update_starts(cfg)
        self.optimizers = {}
        for update in self.stage.updates:
            start = starts.get(update.name, (0, None))[0]
            rate = (lambda update, start: lambda: update.learning_rate(cfg, self.step, start))(
                update, start)
            self.optimizers[update.name] = distribute.optimizer_for(
                keras.optimizers.Adam(learning_rate=rate,
                                      beta_1=getattr(cfg.optim, update.beta_1),
                                      epsilon=cfg.optim.adam_epsilon),
                cfg.run.mixed_precision)
        self.regularized = [kernel for update in self.stage.updates if update.regularized
                            for name in update.networks
                            for kernel in regularized_kernels(self.networks[name])]
        # Keras optimizers create their slots on first use; building them here
        # keeps variable creation out of tf.function and lets a checkpoint
        # restore the slots before the first step.
        for update in self.stage.updates:
            self.optimizers[update.name].build(self.variables_of(*update.networks))

    def variables_of(self, *names):
        return [v for name in names for v in self.networks[name].trainable_variables]

    def random_states(self):
        """The states of the networks' Keras seed generators (dropout masks).

        Keras keeps them out of what tf.train.Checkpoint tracks; saving them
        lets a resumed run draw the masks an uninterrupted one would have.
        """
        return [v.value for model in self.networks.values() for v in model.non_trainable_variables
                if v.name == "seed_generator_state"]

    def checkpoint(self):
        """A tf.train.Checkpoint of named sub-objects (each network restorable alone)."""
        optimizers = {f"{name}_optimizer": opt for name, opt in self.optimizers.items()}
        return tf.train.Checkpoint(step=self.step, random_states=self.random_states(),
                                   **self.networks, **optimizers, **self.pools)

    def learning_rates(self):
        return {name: optimizer.learning_rate for name, optimizer in self.optimizers.items()}

