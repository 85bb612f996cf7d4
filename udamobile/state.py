"""Everything a training stage updates, gathered in one checkpointable module.

The state holds exactly what its stage declares (`udamobile.stages`): the
networks it builds, one Adam optimizer per update (player), the image pools
if it uses them, and the global step. Frozen networks are built with
`trainable = False`, so no gradient is ever computed for them.

Learning rates are functions of the step, so a resumed run continues its
schedules:

    update                  initial LR                 schedule
    segmenter               segmenter_lr               polynomial (lr_power) to 0 at the last
                                                       step, from the step M starts training
    generators              gan_lr                     constant; linear to 0 from
    discriminators          gan_lr                     gan_lr_decay_start if set (CycleGAN)
    feature_discriminators  feature_discriminator_lr   constant
"""
import keras
import tensorflow as tf

from udamobile import distribute, networks
from udamobile.image_pool import ImagePool


def polynomial_decay(step, *, initial, total_steps, power, start=0):
    """initial * (1 - t)^power with t = (step - start) / (total - start) in [0, 1].

    Constant before `start`; reaches 0 at `total_steps`.
    """
    step = tf.cast(step, tf.float32)
    span = tf.maximum(float(total_steps - start), 1.0)
    progress = tf.clip_by_value((step - start) / span, 0.0, 1.0)
    return initial * tf.pow(1.0 - progress, power)


def learning_rate(update, cfg, step, segmenter_start=0):
    """The learning rate of `update` (a name) at `step` (a tensor), as the table above."""
    optim = cfg.optim
    if update == "segmenter":
        return polynomial_decay(step, initial=optim.segmenter_lr, total_steps=optim.steps,
                                power=optim.lr_power, start=segmenter_start)
    if update == "feature_discriminators":
        return tf.constant(optim.feature_discriminator_lr)
    if optim.gan_lr_decay_start is None:
        return tf.constant(optim.gan_lr)
    return polynomial_decay(step, initial=optim.gan_lr, total_steps=optim.steps, power=1.0,
                            start=optim.gan_lr_decay_start)


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

    def __init__(self, cfg, stage, strategy=None):
        """Builds every network and optimizer of `stage` under `strategy` (default: current).

        The step and the image pools stay outside it: they are updated once
        per step, in the cross-replica context (the pools with the whole
        global batch of fakes).
        """
        super().__init__(name="training_state")
        self.stage = stage
        self.strategy = strategy or tf.distribute.get_strategy()
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        with self.strategy.scope(), distribute.dtype_policy(cfg.run.mixed_precision):
            self._build(cfg)
        self.pools = {}
        if stage.uses_pools:
            image_shape = list(patch_shape(cfg)) + [3]
            self.pools = {"pool_s": ImagePool(cfg.loss.pool_size, image_shape, seed=cfg.run.seed),
                          "pool_t": ImagePool(cfg.loss.pool_size, image_shape,
                                              seed=cfg.run.seed + 1)}

    def _build(self, cfg):
        # Batch norm trains only where the stage says so; synchronized, it
        # normalizes with the global batch as one device would.
        self.networks = {
            name: networks.build_network(
                name, cfg.model, freeze_batch_norm=not self.stage.segmenter_batch_norm_trains,
                synchronized_batch_norm=self.strategy.num_replicas_in_sync > 1)
            for name in self.stage.networks}
        for name in self.stage.frozen:
            self.networks[name].trainable = False
        segmenter_start = self.stage.segmenter_start_step(cfg)
        self.optimizers = {}
        for update in self.stage.updates:
            beta_1 = cfg.optim.segmenter_beta1 if update.name == "segmenter" else cfg.optim.gan_beta1
            rate = (lambda name: lambda: learning_rate(name, cfg, self.step, segmenter_start))(
                update.name)
            self.optimizers[update.name] = distribute.optimizer_for(
                keras.optimizers.Adam(learning_rate=rate, beta_1=beta_1,
                                      epsilon=cfg.optim.adam_epsilon),
                cfg.run.mixed_precision)
        trained = "segmenter" in self.networks and "segmenter" not in self.stage.frozen
        self.regularized = regularized_kernels(self.networks["segmenter"]) if trained else []
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


def patch_shape(cfg):
    """(height, width) of the training images: the patch, or the rescaled whole image."""
    size = cfg.data.patch_size
    return (size, 2 * size) if cfg.data.whole_images else (size, size)
