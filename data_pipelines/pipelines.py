"""tf.data pipelines: random training patches and full evaluation images.

Images leave these pipelines as float32 in [-1, 1] (`data_pipelines.images`),
labels as int32 train ids (255 = ignore). A training example is made by:

    read (in parallel, in a fixed order) -> normalize_image
    -> resize to `crop_fitting_size` (bilinear image, nearest label): the
       resize width, widened where the patch would not fit, as the authors'
       reader does, so a patch never holds padding
    -> random_crop
    -> random_flip (optional; image and label together)

or, for whole images (the paper's CycleGAN baseline), a resize of the whole
image to a fixed size in place of the crop.

The per-example ops are small functions of tensors, usable eagerly and inside
tf.data. Their randomness is stateless: a stream's order and every crop and
flip are functions of (seed, stream, epoch, position), so a pipeline yields
the same batches for the same seed, whatever the thread timing.

Files are decoded in Python (`tf.numpy_function`: PIL reads GTA5's palette
indices, which no TensorFlow op returns) on tf.data's threads. So let
iterators end before the interpreter does (iterate inside a function, as
usual): an iterator still alive at interpreter shutdown can abort or hang
the process, a TensorFlow limitation of Python ops in tf.data.
"""
import tensorflow as tf

from data_pipelines.base import DatasetError
from data_pipelines.images import normalize_image
from data_pipelines.classes import IGNORE_LABEL

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_PAD_VALUE = 0.0  # mid-grey in [-1, 1]

# Stream ids keep the source and target orders and augmentations independent.
_SOURCE_STREAM, _TARGET_STREAM = 0, 1


def resize_to(image, label=None, *, size):
    """Resizes image [H, W, C] (bilinear) and label [H, W] (nearest) to size
    (height, width); returns (image, label or None)."""
    image = tf.image.resize(image, size, method="bilinear")
    if label is not None:
        label = tf.image.resize(label[..., None], size, method="nearest")[..., 0]
    return image, label


def _height_at_width(image_size, width):
    """round(H * width / W) for image_size (H, W): the height keeping the aspect."""
    height, old_width = (tf.cast(image_size[i], tf.float64) for i in (0, 1))
    return tf.cast(tf.round(height * tf.cast(width, tf.float64) / old_width), tf.int32)


def resize_to_width(image, label=None, *, width):
    """Scales image [H, W, C] (bilinear) and label [H, W] (nearest) to `width`
    columns and round(H * width / W) rows; returns (image, label or None)."""
    size = tf.stack([_height_at_width(tf.shape(image)[:2], width), tf.constant(width, tf.int32)])
    return resize_to(image, label, size=size)


def crop_fitting_size(image_size, resize_width, patch_size):
    """The (height, width) int32 [2] an image of image_size (H, W) is resized to
    before a random crop of patch_size (height, width).

    The width is `resize_width` (None: W), widened to max(patch width,
    ceil(patch height * W / H)) where the patch would not fit, and the height
    keeps the aspect: the authors' reader widens its resize the same way (an
    800-pixel crop of Cityscapes at width 1536, 768 rows, takes width 1600).
    """
    height, width = (tf.cast(image_size[i], tf.float64) for i in (0, 1))
    target = width if resize_width is None else tf.constant(resize_width, tf.float64)
    fitting = tf.reduce_max([target, float(patch_size[1]),
                             tf.math.ceil(patch_size[0] * width / height)])
    fitting = tf.cast(fitting, tf.int32)
    return tf.stack([_height_at_width(image_size, fitting), fitting])


def pad_to_size(image, label=None, *, size):
    """Pads image [H, W, C] (with IMAGE_PAD_VALUE) and label [H, W] (with 255)
    at the bottom and right to at least size = (height, width)."""
    shape = tf.shape(image)
    pad_rows = tf.maximum(size[0] - shape[0], 0)
    pad_cols = tf.maximum(size[1] - shape[1], 0)
    image = tf.pad(image, [[0, pad_rows], [0, pad_cols], [0, 0]],
                   constant_values=IMAGE_PAD_VALUE)
    if label is not None:
        label = tf.pad(label, [[0, pad_rows], [0, pad_cols]],
                       constant_values=tf.cast(IGNORE_LABEL, label.dtype))
    return image, label


def random_crop(image, label=None, *, size, seed):
    """The same random size = (height, width) window of image [H, W, C] and
    label [H, W], padded first where smaller; `seed` is a stateless seed [2]."""
    image, label = pad_to_size(image, label, size=size)
    shape = tf.shape(image)
    room = tf.stack([shape[0] - size[0] + 1, shape[1] - size[1] + 1])
    uniform = tf.random.stateless_uniform([2], seed=seed)
    # min() guards against float rounding up to `room` itself.
    offset = tf.minimum(tf.cast(uniform * tf.cast(room, tf.float32), tf.int32), room - 1)
    image = tf.slice(image, [offset[0], offset[1], 0], [size[0], size[1], -1])
    if label is not None:
        label = tf.slice(label, offset, size)
    return image, label


def random_flip(image, label=None, *, seed):
    """Mirrors image [H, W, C] and label [H, W] left-right together, with
    probability 1/2; `seed` is a stateless seed [2]."""
    flip = tf.random.stateless_uniform([], seed=seed) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    if label is not None:
        label = tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label)
    return image, label


def _patch_size(patch_size):
    """An int or (height, width) -> (height, width) of positive ints."""
    size = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise DatasetError(f"patch_size must be a positive int or (height, width), "
                           f"got {patch_size!r}")
    return size


def _check_positive(name, value, allow_none=False):
    if allow_none and value is None:
        return
    if not isinstance(value, int) or value <= 0:
        raise DatasetError(f"{name} must be a positive int{' or None' if allow_none else ''}, "
                           f"got {value!r}")


def _require_labels(dataset, purpose):
    if not dataset.has_labels:
        raise DatasetError(f"{dataset.name}/{dataset.split} has no labels, which {purpose} needs")
    if len(dataset) == 0:
        raise DatasetError(f"{dataset.name}/{dataset.split} is empty")


def _reader(dataset, with_label):
    """int64 index -> (uint8 image [H, W, 3], int32 label [H, W] or None), via numpy."""
    # stateful=False below: reading is a pure function of the index.
    if with_label:
        def read(index):
            image, label = tf.numpy_function(
                lambda i: dataset.read_pair(int(i)), [index], (tf.uint8, tf.uint8),
                stateful=False)
            return tf.ensure_shape(image, [None, None, 3]), tf.cast(
                tf.ensure_shape(label, [None, None]), tf.int32)
    else:
        def read(index):
            image = tf.numpy_function(lambda i: dataset.read_image(int(i)), [index], tf.uint8,
                                      stateful=False)
            return tf.ensure_shape(image, [None, None, 3]), None
    return read


def _shuffled_indices(length, seed):
    """Endless int64 stream of indices: each epoch a new permutation of
    range(length), a function of the stateless `seed` [2] and the epoch."""
    def epoch_order(epoch):
        epoch_seed = tf.random.experimental.stateless_fold_in(seed, epoch)
        return tf.random.experimental.stateless_shuffle(
            tf.range(length, dtype=tf.int64), seed=epoch_seed)
    return tf.data.Dataset.counter().map(epoch_order).unbatch()


def _patch_stream(dataset, *, with_label, size, resize_width, whole_images, flip, seed, stream,
                  start=0):
    """Endless (image [*size, 3] float32, label [*size] int32 or None) patches,
    from position `start` of the stream (skipped before decoding: cheap).
    With `whole_images` each image is resized to `size` instead of cropped."""
    order_seed, augment_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.constant([seed, stream], tf.int64), 2))
    read = _reader(dataset, with_label)

    def make_patch(position, index):
        image, label = read(index)
        image = normalize_image(image)
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(augment_seed, position), 2))
        if whole_images:
            image, label = resize_to(image, label, size=size)
        else:
            fitting = crop_fitting_size(tf.shape(image)[:2], resize_width, size)
            image, label = resize_to(image, label, size=fitting)
            image, label = random_crop(image, label, size=size, seed=crop_seed)
        if flip:
            image, label = random_flip(image, label, seed=flip_seed)
        image = tf.ensure_shape(image, [*size, 3])
        return image if label is None else (image, tf.ensure_shape(label, size))

    positions = tf.data.Dataset.counter()
    indices = _shuffled_indices(len(dataset), order_seed)
    return tf.data.Dataset.zip((positions, indices)).skip(start).map(
        make_patch, num_parallel_calls=AUTOTUNE, deterministic=True)


def supervised_patches(dataset, *, patch_size=600, resize_width=None, whole_images=False,
                       batch_size=5, flip=False, seed=0, start_batch=0):
    """Endless batches of labelled random patches, reshuffled every epoch.

    Args:
      dataset: a labelled `Dataset`.
      patch_size: int or (height, width) of the patches, P below.
      resize_width: width images are resized to (aspect kept) before
        cropping, widened where the patch would not fit (`crop_fitting_size`);
        None keeps their size where the patch fits.
      whole_images: resize each whole image to patch_size instead of
        cropping (patch_size is then (height, width)).
      batch_size: examples per batch.
      flip: mirror half of the patches (image and label together).
      seed: int; the same seed gives the same batches.
      start_batch: begin with this batch of the stream (a resumed run
        continues exactly where it stopped).

    Returns:
      tf.data.Dataset of {"image": float32 [B, P, P, 3] in [-1, 1],
      "label": int32 [B, P, P] train ids}.
    """
    size = _patch_size(patch_size)
    _check_positive("batch_size", batch_size)
    _check_positive("resize_width", resize_width, allow_none=True)
    _require_labels(dataset, "supervised_patches")
    patches = _patch_stream(dataset, with_label=True, size=size, resize_width=resize_width,
                            whole_images=whole_images, flip=flip, seed=seed, stream=_SOURCE_STREAM,
                            start=start_batch * batch_size)
    return patches.map(lambda image, label: {"image": image, "label": label}).batch(
        batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def unpaired_patches(source, target, *, patch_size, resize_width_source=None,
                     resize_width_target=None, whole_images=False, batch_size=1, flip=False,
                     seed=0, start_batch=0):
    """Endless batches of a labelled source patch beside an unrelated target patch.

    The two streams are shuffled and augmented independently; target labels
    are never read (the target may be unlabelled). `whole_images` and
    `start_batch` as in `supervised_patches`.

    Returns:
      tf.data.Dataset of {"source_image": float32 [B, P, P, 3],
      "source_label": int32 [B, P, P], "target_image": float32 [B, P, P, 3]}.
    """
    size = _patch_size(patch_size)
    _check_positive("batch_size", batch_size)
    _check_positive("resize_width_source", resize_width_source, allow_none=True)
    _check_positive("resize_width_target", resize_width_target, allow_none=True)
    _require_labels(source, "the source stream of unpaired_patches")
    if len(target) == 0:
        raise DatasetError(f"{target.name}/{target.split} (target) is empty")
    source_patches = _patch_stream(source, with_label=True, size=size,
                                   resize_width=resize_width_source,
                                   whole_images=whole_images, flip=flip, seed=seed,
                                   stream=_SOURCE_STREAM, start=start_batch * batch_size)
    target_patches = _patch_stream(target, with_label=False, size=size,
                                   resize_width=resize_width_target,
                                   whole_images=whole_images, flip=flip, seed=seed,
                                   stream=_TARGET_STREAM, start=start_batch * batch_size)
    pairs = tf.data.Dataset.zip((source_patches, target_patches)).map(
        lambda source_pair, target_image: {"source_image": source_pair[0],
                                           "source_label": source_pair[1],
                                           "target_image": target_image})
    return pairs.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def evaluation_images(dataset, *, input_width=None):
    """Every labelled image once, in index order, as batches of one.

    Args:
      dataset: a labelled `Dataset`.
      input_width: width the image is downscaled to (aspect kept, bilinear);
        None keeps it. The label always keeps its full resolution, where the
        field compares predictions.

    Returns:
      tf.data.Dataset of {"image": float32 [1, h, w, 3] in [-1, 1],
      "label": int32 [1, H, W] train ids, "index": int64 scalar}.
    """
    _check_positive("input_width", input_width, allow_none=True)
    _require_labels(dataset, "evaluation_images")
    read = _reader(dataset, with_label=True)

    def make_example(index):
        image, label = read(index)
        image = normalize_image(image)
        if input_width is not None:
            image, _ = resize_to_width(image, width=input_width)
        return {"image": image[None], "label": label[None], "index": index}

    return tf.data.Dataset.range(len(dataset)).map(
        make_example, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)
