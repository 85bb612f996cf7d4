"""Each loss term of the paper on inputs whose value can be computed by hand."""
import math

import numpy as np
import pytest
import tensorflow as tf

from udamobile.training import losses


def test_lsgan_generator_loss_pulls_fakes_to_the_real_label():
    scores = tf.constant([0.5, 1.5])
    assert float(losses.lsgan_generator_loss(scores)) == pytest.approx(0.25)
    # authors' code: one-sided label smoothing, real = 0.9
    assert float(losses.lsgan_generator_loss(scores, 0.9)) == pytest.approx((0.16 + 0.36) / 2)


def test_lsgan_discriminator_loss_is_half_the_sum_of_both_errors():
    assert float(losses.lsgan_discriminator_loss(tf.ones([4]), tf.zeros([4]))) == 0.0
    assert float(losses.lsgan_discriminator_loss(tf.zeros([4]), tf.ones([4]))) == pytest.approx(1.0)
    value = losses.lsgan_discriminator_loss(tf.constant([1.0]), tf.constant([0.0]), real_label=0.9)
    assert float(value) == pytest.approx(0.5 * 0.01)


def test_cycle_consistency_is_mean_absolute_error():
    x = tf.constant([[0.0, 1.0], [-1.0, 0.5]])
    assert float(losses.cycle_consistency_loss(x, x)) == 0.0
    assert float(losses.cycle_consistency_loss(x, x + 0.25)) == pytest.approx(0.25)


def test_cross_entropy_averages_over_non_ignored_pixels_only():
    logits = tf.zeros([1, 2, 2, 4])  # uniform over 4 classes: -log(1/4) per pixel
    labels = tf.constant([[[0, 3], [255, 255]]])
    assert float(losses.cross_entropy(labels, logits)) == pytest.approx(math.log(4), rel=1e-6)
    confident = tf.one_hot([[[0, 3], [1, 1]]], 4) * 50.0
    assert float(losses.cross_entropy(labels, confident)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.cross_entropy(tf.fill([1, 2, 2], 255), logits)) == 0.0


def test_class_weights_weigh_each_pixel_and_divide_by_their_sum():
    # Pixel 0 (class 0) is certain (CE 0); pixel 1 (class 1) is uniform (CE log 4).
    logits = tf.constant([[[[50.0, 0, 0, 0], [0, 0, 0, 0]]]])
    labels = tf.constant([[[0, 1]]])
    weights = np.array([1.0, 3.0, 1.0, 1.0], np.float32)
    assert float(losses.cross_entropy(labels, logits)) == pytest.approx(math.log(4) / 2)
    assert float(losses.cross_entropy(labels, logits, weights)) == pytest.approx(
        3 * math.log(4) / 4, rel=1e-6)
    ignored = tf.constant([[[0, 255]]])  # an ignored pixel weighs nothing, whatever its class
    assert float(losses.cross_entropy(ignored, logits, weights)) == pytest.approx(0.0, abs=1e-6)


def test_class_balanced_weights_are_the_median_share_over_each_share_to_the_power():
    shares = np.array([0.5, 0.2, 0.05, 0.0, 0.25])  # median of the present shares: 0.225
    assert losses.class_balanced_weights(shares, 1.0) == pytest.approx(
        [0.45, 1.125, 4.5, 1.0, 0.9])
    assert losses.class_balanced_weights(shares, 0.5) == pytest.approx(
        np.sqrt([0.45, 1.125, 4.5, 1.0, 0.9]))
    assert losses.class_balanced_weights(shares, 0.0) == pytest.approx(np.ones(5))


def test_semantic_consistency_targets_the_argmax_of_the_original():
    rng = np.random.default_rng(0)
    original = tf.constant(rng.normal(size=(1, 3, 3, 5)), tf.float32)
    pseudo = tf.argmax(original, -1)
    agreeing = tf.one_hot(pseudo, 5) * 50.0
    disagreeing = tf.one_hot((pseudo + 1) % 5, 5) * 50.0
    assert float(losses.semantic_consistency_loss(agreeing, original)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.semantic_consistency_loss(disagreeing, original)) == pytest.approx(50.0, rel=1e-4)
    with tf.GradientTape() as tape:
        tape.watch(original)
        loss = losses.semantic_consistency_loss(agreeing, original)
    assert tape.gradient(loss, original) is None  # the target carries no gradient


def test_l2_regularization_matches_tf_slim_weight_decay():
    kernels = [tf.constant([1.0, 2.0]), tf.constant([[3.0]])]
    assert float(losses.l2_regularization(kernels, 4e-5)) == pytest.approx(4e-5 * (1 + 4 + 9) / 2)
    assert float(losses.l2_regularization([], 4e-5)) == 0.0
