"""The loss terms of the paper, one pure function each.

Notation of the paper: G_ST maps source to target, G_TS target to source, M is
the segmenter with encoder Me. Adversarial terms use the least-squares (LSGAN)
form the paper adopts in place of the log losses of Eq. 1-2 and 6-7, split
into a generator objective and a discriminator objective.
"""
import tensorflow as tf

from udamobile.classes import IGNORE_LABEL


def lsgan_generator_loss(fake_scores, real_label=1.0):
    """Generator side of Eq. 1-2 (images) and 6-7 (features), LSGAN form.

    mean((D(fake) - real_label)^2): the generator wants its fakes scored real.
    """
    return tf.reduce_mean(tf.square(fake_scores - real_label))


def lsgan_discriminator_loss(real_scores, fake_scores, real_label=1.0):
    """Discriminator side of Eq. 1-2 and 6-7, LSGAN form.

    0.5 * (mean((D(real) - real_label)^2) + mean(D(fake)^2)); the 0.5 is
    CycleGAN's, so that D learns at half the generator's rate.
    """
    return 0.5 * (tf.reduce_mean(tf.square(real_scores - real_label))
                  + tf.reduce_mean(tf.square(fake_scores)))


def cycle_consistency_loss(images, reconstructions):
    """One direction of Eq. 3: mean |G_TS(G_ST(x)) - x| (L1 per pixel)."""
    return tf.reduce_mean(tf.abs(reconstructions - images))


def cross_entropy(labels, logits):
    """Eq. 5: pixel-wise cross-entropy averaged over non-ignored pixels.

    labels: [B, H, W] int train ids (255 ignored); logits: [B, H, W, C].
    Returns 0 when every pixel is ignored.
    """
    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, IGNORE_LABEL)
    safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=safe_labels, logits=tf.cast(logits, tf.float32))
    valid = tf.cast(valid, tf.float32)
    return tf.reduce_sum(per_pixel * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)


def semantic_consistency_loss(translated_logits, original_logits):
    """One direction of Eq. 4: L_ce(M(G(x)), rho(M(x))).

    The target is the argmax of the segmenter on the untranslated image, so
    no gradient flows through it: the term asks G to keep what M sees.
    """
    pseudo_labels = tf.argmax(tf.stop_gradient(original_logits), axis=-1, output_type=tf.int32)
    return cross_entropy(pseudo_labels, translated_logits)


def l2_regularization(kernels, weight_decay):
    """weight_decay * sum(||w||^2 / 2), the L2 form of TF-slim's weight decay."""
    if not kernels:
        return tf.constant(0.0)
    return weight_decay * tf.add_n([tf.nn.l2_loss(k) for k in kernels])
