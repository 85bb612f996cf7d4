"""Everything a training run updates, gathered in one checkpointable module.

Who updates what (each variable belongs to exactly one optimizer):

    optimizer            variables                 loss (equation numbers of the paper)
    segmenter_optimizer  segmenter M (Me and Md)   stage 1: L_ce on source labels + L2
                                                   stage 2: lambda_ce L_ce^s (Eq. 8)
                                                   + lambda_sem L_sem (Eq. 4)
                                                   + lambda_feat generator side of
                                                   Eq. 6-7 (through Me) + L2
    generator_optimizer  G_ST, G_TS                generator sides of Eq. 1-2
                                                   + lambda_cycle L_cycle (Eq. 3)
                                                   + lambda_sem L_sem (Eq. 4)
                                                   + lambda_feat generator side of Eq. 6-7
    discriminator_optimizer   D_S, D_T             discriminator sides of Eq. 1-2 on pooled fakes
    feature_optimizer    D'_S, D'_T                lambda_feat discriminator sides of Eq. 6-7

The task loss L_ce^s trains M only: the paper describes it as the loss "used
to train supervisedly M on source adapted data", and the authors' code keeps
it out of the generators' objective.
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


def _adam(learning_rate, beta_1, mixed_precision):
    return distribute.optimizer_for(
        keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1), mixed_precision)


class TrainingState(tf.Module):
    """Networks, optimizers, image pools and the global step of one run.

    Stage 1 (`source_only`) holds only the segmenter and its optimizer.
    Stage 2 (`adaptation`) holds the six networks of the paper, four
    optimizers and two image pools; its segmenter has frozen batch norm
    (batch size 1, as in the authors' code).
    """

    def __init__(self, cfg, strategy=None):
        """Builds every network and optimizer under `strategy` (default: the current one).

        The step and the image pools stay outside it: they are updated once
        per step, in the cross-replica context (the pools with the whole
        global batch of fakes).
        """
        super().__init__(name="training_state")
        self.strategy = strategy or tf.distribute.get_strategy()
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        adaptation = cfg.stage == "adaptation"
        with self.strategy.scope(), distribute.dtype_policy(cfg.run.mixed_precision):
            self._build_networks(cfg, adaptation)
        self.pools = {}
        if adaptation:
            image_shape = [cfg.data.patch_size, cfg.data.patch_size, 3]
            self.pool_s = ImagePool(cfg.loss.pool_size, image_shape, seed=cfg.run.seed)
            self.pool_t = ImagePool(cfg.loss.pool_size, image_shape, seed=cfg.run.seed + 1)
            self.pools = {"pool_s": self.pool_s, "pool_t": self.pool_t}

    def _build_networks(self, cfg, adaptation):
        optim, mixed = cfg.optim, cfg.run.mixed_precision
        # Batch norm trains in stage 1 only; synchronized, it normalizes with
        # the global batch as one device would.
        self.segmenter = networks.build_segmenter_from_config(
            cfg.model, freeze_batch_norm=adaptation,
            synchronized_batch_norm=self.strategy.num_replicas_in_sync > 1)
        self.segmenter_optimizer = _adam(
            lambda: polynomial_decay(self.step, initial=optim.segmenter_lr,
                                     total_steps=optim.steps, power=optim.lr_power,
                                     start=optim.lr_decay_start),
            optim.segmenter_beta1, mixed)
        self.networks = {"segmenter": self.segmenter}
        self.optimizers = {"segmenter_optimizer": self.segmenter_optimizer}
        if adaptation:
            translation = networks.build_translation_networks(cfg.model)
            for name, model in translation.items():
                setattr(self, name, model)
            self.networks.update(translation)
            self.generator_optimizer = _adam(optim.gan_lr, optim.gan_beta1, mixed)
            self.discriminator_optimizer = _adam(optim.gan_lr, optim.gan_beta1, mixed)
            self.feature_optimizer = _adam(optim.feature_discriminator_lr, optim.gan_beta1, mixed)
            self.optimizers.update(
                generator_optimizer=self.generator_optimizer,
                discriminator_optimizer=self.discriminator_optimizer,
                feature_optimizer=self.feature_optimizer)
        self.regularized = regularized_kernels(self.segmenter)
        self._build_optimizers()

    def variables_of(self, *names):
        return [v for name in names for v in self.networks[name].trainable_variables]

    def _build_optimizers(self):
        # Keras optimizers create their slots on first use; building them here
        # keeps variable creation out of tf.function and lets a checkpoint
        # restore the slots before the first step.
        self.segmenter_optimizer.build(self.segmenter.trainable_variables)
        if "g_st" in self.networks:
            self.generator_optimizer.build(self.variables_of("g_st", "g_ts"))
            self.discriminator_optimizer.build(self.variables_of("d_s", "d_t"))
            self.feature_optimizer.build(self.variables_of("fd_s", "fd_t"))

    def random_states(self):
        """The states of the networks' Keras seed generators (dropout masks).

        Keras keeps them out of what tf.train.Checkpoint tracks; saving them
        lets a resumed run draw the masks an uninterrupted one would have.
        """
        return [v.value for model in self.networks.values() for v in model.non_trainable_variables
                if v.name == "seed_generator_state"]

    def checkpoint(self):
        """A tf.train.Checkpoint of named sub-objects (segmenter restorable alone)."""
        return tf.train.Checkpoint(step=self.step, random_states=self.random_states(),
                                   **self.networks, **self.optimizers, **self.pools)

    def learning_rates(self):
        rates = {"segmenter": self.segmenter_optimizer.learning_rate}
        if "g_st" in self.networks:
            rates.update(gan=self.generator_optimizer.learning_rate,
                         feature_discriminator=self.feature_optimizer.learning_rate)
        return rates
