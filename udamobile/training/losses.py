"""The loss terms of the paper, one pure function each.

Notation of the paper: G_ST maps source to target, G_TS target to source, M is
the segmenter with encoder Me. Adversarial terms use the least-squares (LSGAN)
form the paper adopts in place of the log losses of Eq. 1-2 and 6-7, split
into a generator objective and a discriminator objective.

Every loss is a mean over the *global* batch. Under tf.distribute each
replica holds part of the batch and returns its share of that mean (its sum
over the global count); the optimizers sum the replicas' gradients, so N
replicas with B/N examples each take the step one device takes with B.
On one device the share is the whole mean.
"""
import numpy as np
import tensorflow as tf

from data_pipelines.classes import IGNORE_LABEL


def _replica_context():
    """The replica context, or None in a cross-replica context."""
    return tf.distribute.get_replica_context()


def global_mean(values, weights=None):
    """This replica's share of the weighted mean of `values` over the global batch.

    sum(values * weights) / (sum of weights over all replicas), at least 1.
    """
    values = tf.cast(values, tf.float32)
    weights = tf.ones_like(values) if weights is None else tf.cast(weights, tf.float32)
    count = tf.reduce_sum(weights)
    context = _replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return tf.reduce_sum(values * weights) / tf.maximum(count, 1.0)


def lsgan_generator_loss(fake_scores, real_label=1.0):
    """Generator side of Eq. 1-2 (images) and 6-7 (features), LSGAN form.

    mean((D(fake) - real_label)^2): the generator wants its fakes scored real.
    """
    return global_mean(tf.square(tf.cast(fake_scores, tf.float32) - real_label))


def lsgan_discriminator_loss(real_scores, fake_scores, real_label=1.0):
    """Discriminator side of Eq. 1-2 and 6-7, LSGAN form.

    0.5 * (mean((D(real) - real_label)^2) + mean(D(fake)^2)); the 0.5 is
    CycleGAN's, so that D learns at half the generator's rate.
    """
    real_scores = tf.cast(real_scores, tf.float32)
    fake_scores = tf.cast(fake_scores, tf.float32)
    return 0.5 * (global_mean(tf.square(real_scores - real_label))
                  + global_mean(tf.square(fake_scores)))


def cycle_consistency_loss(images, reconstructions):
    """One direction of Eq. 3: mean |G_TS(G_ST(x)) - x| (L1 per pixel)."""
    return global_mean(tf.abs(tf.cast(reconstructions, tf.float32) - tf.cast(images, tf.float32)))


def cross_entropy(labels, logits, class_weights=None):
    """Eq. 5: pixel-wise cross-entropy averaged over non-ignored pixels.

    labels: [B, H, W] int train ids (255 ignored); logits: [B, H, W, C].
    class_weights: [C] or None; each pixel then counts with its label's weight,
    and the mean divides by the sum of the weights (`class_balanced_weights`).
    Returns 0 when every pixel is ignored.
    """
    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, IGNORE_LABEL)
    safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=safe_labels, logits=tf.cast(logits, tf.float32))
    weights = tf.cast(valid, tf.float32)
    if class_weights is not None:
        weights *= tf.gather(tf.constant(class_weights, tf.float32), safe_labels)
    return global_mean(per_pixel, weights)


def class_balanced_weights(shares, power):
    """float32 [C]: (m / f_c)^power for each class c with a share f_c > 0 of the
    labelled pixels, m the median of those shares; 1 for classes with none.

    power 1 is median-frequency balancing (Eigen and Fergus, ICCV 2015), 0
    weighs every pixel alike; in between, rare classes weigh more, less steeply.
    """
    shares = np.asarray(shares, np.float64)
    present = shares > 0
    weights = np.ones_like(shares)
    if present.any():
        weights[present] = (np.median(shares[present]) / shares[present]) ** power
    return weights.astype(np.float32)


def semantic_consistency_loss(translated_logits, original_logits):
    """One direction of Eq. 4: L_ce(M(G(x)), rho(M(x))).

    The target is the argmax of the segmenter on the untranslated image, so
    no gradient flows through it: the term asks G to keep what M sees.
    """
    return top_class_cross_entropy(original_logits, translated_logits)


def top_class_cross_entropy(reference_logits, logits):
    """Cross-entropy of `logits` to the top class of `reference_logits`, through which
    no gradient flows (Eq. 4's form; the distill stage's hard targets)."""
    labels = tf.argmax(tf.stop_gradient(reference_logits), axis=-1, output_type=tf.int32)
    return cross_entropy(labels, logits)


def distillation_loss(teacher_logits, student_logits, temperature=1.0):
    """Knowledge distillation (Hinton et al. 2015; docs/distillation.md): per pixel
    T^2 KL(softmax(z_t / T) || softmax(z_s / T)), averaged over the pixels.

    Zero where the two predict the same probabilities, positive elsewhere; the
    T^2 keeps its gradients' scale as T changes. No gradient reaches the teacher.
    """
    teacher_log = tf.nn.log_softmax(
        tf.stop_gradient(tf.cast(teacher_logits, tf.float32)) / temperature)
    student_log = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature)
    per_pixel = tf.reduce_sum(tf.exp(teacher_log) * (teacher_log - student_log), axis=-1)
    return temperature ** 2 * global_mean(per_pixel)


def l2_regularization(kernels, weight_decay):
    """weight_decay * sum(||w||^2 / 2), the L2 form of TF-slim's weight decay.

    Split evenly between the replicas, whose gradients are summed.
    """
    if not kernels:
        return tf.constant(0.0)
    context = _replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    return weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(k, tf.float32)) for k in kernels]) / replicas
