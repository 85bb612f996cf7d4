"""CycleGAN's history of generated images, usable inside a tf.function.

Discriminators are trained on a mix of the newest fakes and fakes from
earlier steps, which damps oscillation (Shrivastava et al. 2017, used by
CycleGAN with 50 images). The history lives in tf.Variables and its random
choices come from a tf.random.Generator, so the pool is checkpointed and a
resumed run continues with exactly the same pool.
"""
import tensorflow as tf


class ImagePool(tf.Module):
    """A pool of `size` past images of shape `image_shape` ([H, W, C])."""

    def __init__(self, size, image_shape, seed=0, name=None):
        super().__init__(name=name)
        self.size = int(size)
        self.images = tf.Variable(tf.zeros([max(self.size, 1), *image_shape]),
                                  trainable=False, name="images")
        self.count = tf.Variable(0, dtype=tf.int32, trainable=False, name="count")
        self.rng = tf.random.Generator.from_seed(seed)

    def query(self, images):
        """Returns a batch like `images`, each entry new or swapped for a stored one.

        While the pool fills, new images are stored and returned unchanged.
        Once full, each new image is returned with probability 1/2; otherwise a
        random stored image is returned and the new one takes its place.
        """
        images = tf.cast(tf.stop_gradient(images), self.images.dtype)
        if self.size == 0:
            return images
        outputs = tf.TensorArray(images.dtype, size=tf.shape(images)[0])
        for i in tf.range(tf.shape(images)[0]):
            outputs = outputs.write(i, self._swap(images[i]))
        return tf.ensure_shape(outputs.stack(), images.shape)

    def _swap(self, image):
        if self.count < self.size:
            self.images[self.count].assign(image)
            self.count.assign_add(1)
            return image
        if self.rng.uniform([]) < 0.5:
            return image
        slot = self.rng.uniform([], maxval=self.size, dtype=tf.int32)
        stored = tf.identity(self.images[slot])
        self.images[slot].assign(image)
        return stored
