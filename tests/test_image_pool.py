"""The CycleGAN image pool: fills first, then mixes history in, inside tf.function."""
import numpy as np
import tensorflow as tf

from udamobile.training.image_pool import ImagePool


def _batch(value):
    return tf.fill([2, 2, 2, 1], float(value))


def test_pool_returns_new_images_while_filling_then_mixes_in_history():
    pool = ImagePool(4, [2, 2, 1], seed=3)
    query = tf.function(pool.query)
    assert np.all(query(_batch(1)).numpy() == 1) and np.all(query(_batch(2)).numpy() == 2)
    assert int(pool.count) == 4
    seen = np.concatenate([query(_batch(v)).numpy()[:, 0, 0, 0] for v in range(3, 40)])
    history = seen[seen < np.repeat(np.arange(3, 40), 2)]
    assert 0.3 < history.size / seen.size < 0.7  # about half come from the pool


def test_pool_of_size_zero_is_the_identity_and_pool_state_is_checkpointed(tmp_path):
    assert np.all(ImagePool(0, [2, 2, 1]).query(_batch(5)).numpy() == 5)
    pool = ImagePool(2, [2, 2, 1], seed=0)
    pool.query(_batch(7))
    path = tf.train.Checkpoint(pool=pool).write(str(tmp_path / "pool"))
    restored = ImagePool(2, [2, 2, 1], seed=99)
    tf.train.Checkpoint(pool=restored).read(path).assert_consumed()
    assert int(restored.count) == 2 and np.all(restored.images.numpy() == 7)
    a, b = pool.query(_batch(8)).numpy(), restored.query(_batch(8)).numpy()
    np.testing.assert_array_equal(a, b)  # same random state after restore
