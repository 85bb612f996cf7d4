"""The players of the stages: each an Adam optimizer over some networks, with its schedule.

    update                  networks     initial LR                schedule
    segmenter               M            segmenter_lr              polynomial (lr_power) to 0
                                                                   at the last step, from the
                                                                   step M starts training
    generators              G_ST, G_TS   gan_lr                    constant; linear to 0 from
    discriminators          D_S, D_T     gan_lr                    gan_lr_decay_start if set
                                                                   (CycleGAN)
    feature_discriminators  D'_S, D'_T   feature_discriminator_lr  constant

Learning rates are functions of the step, so a resumed run continues its
schedules. The segmenter's beta1 is `segmenter_beta1`, every other
player's `gan_beta1`; the L2 weight decay of Eq. 5 and 8 is the segmenter's.
"""
import dataclasses
import typing

from udamobile.deferred import deferred

tf = deferred("tensorflow")


def polynomial_decay(step, *, initial, total_steps, power, start=0):
    """initial * (1 - t)^power with t = (step - start) / (total - start) in [0, 1].

    Constant before `start`; reaches 0 at `total_steps`.
    """
    step = tf.cast(step, tf.float32)
    span = tf.maximum(float(total_steps - start), 1.0)
    progress = tf.clip_by_value((step - start) / span, 0.0, 1.0)
    return initial * tf.pow(1.0 - progress, power)


def segmenter_rate(cfg, step, start):
    optim = cfg.optim
    return polynomial_decay(step, initial=optim.segmenter_lr, total_steps=optim.steps,
                            power=optim.lr_power, start=start)


def gan_rate(cfg, step, start):
    optim = cfg.optim
    if optim.gan_lr_decay_start is None:
        return tf.constant(optim.gan_lr)
    return polynomial_decay(step, initial=optim.gan_lr, total_steps=optim.steps, power=1.0,
                            start=optim.gan_lr_decay_start)


def feature_discriminator_rate(cfg, step, start):
    return tf.constant(cfg.optim.feature_discriminator_lr)


@dataclasses.dataclass(frozen=True)
class Update:
    """A player: one optimizer over the trainable variables of `networks`.

    `learning_rate(cfg, step, start)`: its rate at `step` (a tensor), for an
    update that starts at step `start`; `beta_1`: the config field of its
    Adam beta1; `regularized`: whether its loss holds the L2 of its networks'
    conv kernels.
    """
    name: str
    networks: tuple
    learning_rate: typing.Callable
    beta_1: str = "gan_beta1"
    regularized: bool = False


SEGMENTER = Update("segmenter", ("segmenter",), segmenter_rate, beta_1="segmenter_beta1",
                   regularized=True)
GENERATORS = Update("generators", ("g_st", "g_ts"), gan_rate)
DISCRIMINATORS = Update("discriminators", ("d_s", "d_t"), gan_rate)
FEATURE_DISCRIMINATORS = Update("feature_discriminators", ("fd_s", "fd_t"),
                                feature_discriminator_rate)
