"""The shared layers compute what their numpy definitions say, at any size."""
import keras
import numpy as np
import pytest

from udamobile.nets import layers


def _random(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def test_instance_norm_matches_numpy():
    x = _random((2, 5, 7, 3))
    norm = layers.instance_norm()
    norm.build(x.shape)
    gamma, beta = _random((3,), seed=1), _random((3,), seed=2)
    norm.set_weights([gamma, beta])

    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * gamma + beta

    np.testing.assert_allclose(np.asarray(norm(x)), expected, atol=1e-5)


@pytest.mark.parametrize("padding, numpy_padding", [
    (3, ((3, 3), (3, 3))),
    ((1, 2), ((1, 1), (2, 2))),
])
def test_reflection_padding_matches_numpy_reflect(padding, numpy_padding):
    x = _random((2, 5, 6, 3))
    padded = np.asarray(layers.ReflectionPadding2D(padding)(x))
    expected = np.pad(x, ((0, 0), *numpy_padding, (0, 0)), mode="reflect")
    np.testing.assert_array_equal(padded, expected)
    assert not np.array_equal(
        padded, np.pad(x, ((0, 0), *numpy_padding, (0, 0))))


def test_reflection_padding_rejects_bad_padding():
    with pytest.raises(ValueError, match="padding"):
        layers.ReflectionPadding2D((1, 2, 3))


def test_resize_like_follows_the_reference_size_at_run_time():
    resize = layers.ResizeLike()
    inputs = keras.Input((None, None, 4))
    reference = keras.Input((None, None, 1))
    model = keras.Model([inputs, reference], resize([inputs, reference]))

    constant = np.full((1, 1, 1, 4), 2.5, "float32")
    out = np.asarray(model([constant, np.zeros((1, 13, 7, 1), "float32")]))
    np.testing.assert_allclose(out, np.full((1, 13, 7, 4), 2.5))

    x = _random((2, 9, 11, 4))
    same_size = np.asarray(model([x, np.zeros((2, 9, 11, 1), "float32")]))
    np.testing.assert_allclose(same_size, x, atol=1e-6)


def test_reflect_to_multiple_then_crop_like_round_trips():
    x = _random((1, 5, 10, 2))
    padded = np.asarray(layers.ReflectToMultiple(4)(x))
    np.testing.assert_array_equal(
        padded, np.pad(x, ((0, 0), (0, 3), (0, 2), (0, 0)), mode="reflect"))
    np.testing.assert_array_equal(np.asarray(layers.CropLike()([padded, x])), x)


@pytest.mark.parametrize("network", ["generator", "discriminator"])
def test_generators_and_discriminators_start_as_cyclegan_does(network):
    from udamobile.nets.discriminators import build_patch_discriminator
    from udamobile.nets.translator import build_generator

    keras.utils.set_random_seed(0)
    model = build_generator() if network == "generator" else build_patch_discriminator()
    kernels, biases, scales, offsets = [], [], [], []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            kernels.append(layer.kernel.numpy())
            if layer.use_bias:
                biases.append(np.ravel(layer.bias.numpy()))
        elif isinstance(layer, keras.layers.GroupNormalization):
            scales.append(layer.gamma.numpy())
            offsets.append(layer.beta.numpy())
    # Every conv N(0, 0.02): Keras' Glorot default would give each layer a
    # std of sqrt(2 / (fan_in + fan_out)), 0.004 to 0.07 here.
    for kernel in kernels:
        assert abs(kernel.mean()) < 0.002 and kernel.std() == pytest.approx(0.02, rel=0.1)
    scales = np.concatenate(scales)  # instance-norm scales N(1, 0.02)
    assert scales.mean() == pytest.approx(1.0, abs=0.005)
    assert scales.std() == pytest.approx(0.02, rel=0.15)
    assert not np.any(np.concatenate(biases)) and not np.any(np.concatenate(offsets))
