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
indices, which no TensorFlow op returns) on tf.data's threads. A file that
cannot be read is skipped and recorded (`data_pipelines.bad_files`), never
raised there: an error in a Python op of tf.data ends the program with a
trace, or aborts or hangs it. And let
iterators end before the interpreter does (iterate inside a function, as
usual): an iterator still alive at interpreter shutdown can abort or hang
the process, a TensorFlow limitation of Python ops in tf.data.
"""
import numpy as np
import tensorflow as tf

from data_pipelines.bad_files import BadFiles
from data_pipelines.images import normalize_image
from data_pipelines.transforms import (crop_fitting_size, random_crop, random_flip, resize_to,
                                       resize_to_width)
from udamobile.errors import DatasetError

AUTOTUNE = tf.data.AUTOTUNE

# Stream ids keep the source and target orders and augmentations independent.
_SOURCE_STREAM, _TARGET_STREAM = 0, 1


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


_EMPTY_IMAGE = np.zeros((0, 0, 3), np.uint8)
_EMPTY_LABEL = np.zeros((0, 0), np.uint8)


def _read_or_skip(dataset, index, with_label, bad_files):
    """(image, label, True), or (image, True) without the label; for a bad file
    (DatasetError) empty arrays and False, after recording it in `bad_files`,
    since raising on a tf.data thread would end the program with a trace.
    The last value says whether the registry went past its limit."""
    try:
        read = dataset.read_pair(index) if with_label else (dataset.read_image(index),)
        ok = True
    except DatasetError as error:
        bad_files.record((dataset.name, dataset.split, index), str(error))
        read = (_EMPTY_IMAGE, _EMPTY_LABEL) if with_label else (_EMPTY_IMAGE,)
        ok = False
    return (*read, ok, bad_files.over_limit)


def _registry(bad_files):
    """`bad_files`, or for None a registry of limit 0 (the first bad file ends the stream)."""
    return BadFiles() if bad_files is None else bad_files


def _reader(dataset, with_label, bad_files):
    """int64 index -> {"image": uint8 [H, W, 3], "label": int32 [H, W] (with_label),
    "ok": whether the file was read, "stop": whether bad files are past the limit}."""
    outputs = (tf.uint8, tf.uint8, tf.bool, tf.bool) if with_label else (tf.uint8, tf.bool, tf.bool)

    def read(index):
        # stateful=False: the example is a function of the index (the registry
        # records each bad file once, however often it is read); only "stop"
        # depends on what was read before, and it only ends the stream.
        values = tf.numpy_function(
            lambda i: _read_or_skip(dataset, int(i), with_label, bad_files), [index], outputs,
            stateful=False)
        example = {"image": tf.ensure_shape(values[0], [None, None, 3]),
                   "ok": tf.ensure_shape(values[-2], []), "stop": tf.ensure_shape(values[-1], [])}
        if with_label:
            example["label"] = tf.cast(tf.ensure_shape(values[1], [None, None]), tf.int32)
        return example
    return read


def _within_limit(example):
    return tf.logical_not(example["stop"])


def _was_read(example):
    return example["ok"]


def _good_examples(examples):
    """`examples` without the bad files, ended where bad files went past their limit."""
    return examples.take_while(_within_limit).filter(_was_read)


def _shuffled_indices(length, seed):
    """Endless int64 stream of indices: each epoch a new permutation of
    range(length), a function of the stateless `seed` [2] and the epoch."""
    def epoch_order(epoch):
        epoch_seed = tf.random.experimental.stateless_fold_in(seed, epoch)
        return tf.random.experimental.stateless_shuffle(
            tf.range(length, dtype=tf.int64), seed=epoch_seed)
    return tf.data.Dataset.counter().map(epoch_order).unbatch()


def _patch_stream(dataset, *, with_label, size, resize_width, whole_images, flip, seed, stream,
                  bad_files, start=0, image_transform=None):
    """Endless (image [*size, 3] float32, label [*size] int32 or None) patches,
    from position `start` of the stream (skipped before decoding: cheap).
    With `whole_images` each image is resized to `size` instead of cropped.
    `image_transform` maps each whole image [H, W, 3] in [-1, 1] once it is
    resized, before it is cropped.
    A bad file is skipped (`bad_files`); the patches of the others keep the
    crops and flips of their positions."""
    order_seed, augment_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.constant([seed, stream], tf.int64), 2))
    read = _reader(dataset, with_label, bad_files)

    def read_example(position, index):
        return {**read(index), "position": position}

    def make_patch(example):
        position, image, label = example["position"], example["image"], example.get("label")
        image = normalize_image(image)
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(augment_seed, position), 2))
        fitting = size if whole_images else crop_fitting_size(tf.shape(image)[:2],
                                                              resize_width, size)
        image, label = resize_to(image, label, size=fitting)
        if image_transform is not None:
            # On the resized whole image: the same statistics as at full
            # resolution, at a fraction of the pixels (GTA5: 2.2x fewer).
            image = image_transform(image)
        if not whole_images:
            image, label = random_crop(image, label, size=size, seed=crop_seed)
        if flip:
            image, label = random_flip(image, label, seed=flip_seed)
        image = tf.ensure_shape(image, [*size, 3])
        return image if label is None else (image, tf.ensure_shape(label, size))

    positions = tf.data.Dataset.counter()
    indices = _shuffled_indices(len(dataset), order_seed)
    examples = tf.data.Dataset.zip((positions, indices)).skip(start).map(
        read_example, num_parallel_calls=AUTOTUNE, deterministic=True)
    return _good_examples(examples).map(make_patch, num_parallel_calls=AUTOTUNE,
                                        deterministic=True)


def supervised_patches(dataset, *, patch_size=600, resize_width=None, whole_images=False,
                       batch_size=5, flip=False, seed=0, start_batch=0, bad_files=None,
                       image_transform=None):
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
        continues exactly where it stopped; after skipped files, a resumed
        run re-reads as many examples as were skipped before it stopped).
      bad_files: a `bad_files.BadFiles` registry: files that cannot be read
        are recorded there and skipped, and the stream ends once they are
        more than its limit (the caller's `check()` says why). None: a
        registry of limit 0, so the first bad file ends the stream.
      image_transform: a function of tensors applied to each whole image
        [H, W, 3] in [-1, 1] after it is resized, before it is cropped (e.g. the
        colour transfer of `data_pipelines.colour`); None: none.

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
                            bad_files=_registry(bad_files), start=start_batch * batch_size,
                            image_transform=image_transform)
    return patches.map(lambda image, label: {"image": image, "label": label}).batch(
        batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def unlabelled_patches(dataset, *, patch_size, resize_width=None, whole_images=False,
                       batch_size=1, flip=False, seed=0, start_batch=0, bad_files=None):
    """Endless batches of image patches, labels never read (the target's train split).

    The patches are those of the target stream of `unpaired_patches` with the
    same arguments; the other arguments as in `supervised_patches`.

    Returns:
      tf.data.Dataset of {"image": float32 [B, P, P, 3] in [-1, 1]}.
    """
    size = _patch_size(patch_size)
    _check_positive("batch_size", batch_size)
    _check_positive("resize_width", resize_width, allow_none=True)
    if len(dataset) == 0:
        raise DatasetError(f"{dataset.name}/{dataset.split} is empty")
    patches = _patch_stream(dataset, with_label=False, size=size, resize_width=resize_width,
                            whole_images=whole_images, flip=flip, seed=seed, stream=_TARGET_STREAM,
                            bad_files=_registry(bad_files), start=start_batch * batch_size)
    return patches.map(lambda image: {"image": image}).batch(
        batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def unpaired_patches(source, target, *, patch_size, resize_width_source=None,
                     resize_width_target=None, whole_images=False, batch_size=1, flip=False,
                     seed=0, start_batch=0, bad_files=None, target_labels=False,
                     source_image_transform=None):
    """Endless batches of a labelled source patch beside an unrelated target patch.

    The two streams are shuffled and augmented independently; target labels
    are read only with `target_labels` (the pseudo-labels of self-training),
    so the target may be unlabelled. `whole_images`, `start_batch` and
    `bad_files` (shared by both streams) as in `supervised_patches`;
    `source_image_transform` is `supervised_patches`' `image_transform`, on
    the source images only.

    Returns:
      tf.data.Dataset of {"source_image": float32 [B, P, P, 3],
      "source_label": int32 [B, P, P], "target_image": float32 [B, P, P, 3]}
      and with `target_labels` "target_label": int32 [B, P, P].
    """
    size = _patch_size(patch_size)
    _check_positive("batch_size", batch_size)
    _check_positive("resize_width_source", resize_width_source, allow_none=True)
    _check_positive("resize_width_target", resize_width_target, allow_none=True)
    _require_labels(source, "the source stream of unpaired_patches")
    if len(target) == 0:
        raise DatasetError(f"{target.name}/{target.split} (target) is empty")
    if target_labels:
        _require_labels(target, "the labelled target stream of unpaired_patches")
    bad_files = _registry(bad_files)
    source_patches = _patch_stream(source, with_label=True, size=size,
                                   resize_width=resize_width_source,
                                   whole_images=whole_images, flip=flip, seed=seed,
                                   stream=_SOURCE_STREAM, bad_files=bad_files,
                                   start=start_batch * batch_size,
                                   image_transform=source_image_transform)
    target_patches = _patch_stream(target, with_label=target_labels, size=size,
                                   resize_width=resize_width_target,
                                   whole_images=whole_images, flip=flip, seed=seed,
                                   stream=_TARGET_STREAM, bad_files=bad_files,
                                   start=start_batch * batch_size)

    def pair(source_pair, target_example):
        example = {"source_image": source_pair[0], "source_label": source_pair[1]}
        if target_labels:
            example["target_image"], example["target_label"] = target_example
        else:
            example["target_image"] = target_example
        return example

    pairs = tf.data.Dataset.zip((source_patches, target_patches)).map(pair)
    return pairs.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def evaluation_images(dataset, *, input_width=None, bad_files=None):
    """Every labelled image once, in index order, as batches of one.

    Args:
      dataset: a labelled `Dataset`.
      input_width: width the image is downscaled to (aspect kept, bilinear);
        None keeps it. The label always keeps its full resolution, where the
        field compares predictions.
      bad_files: as in `supervised_patches`: a bad file is skipped (its index
        is missing from the stream) up to the registry's limit.

    Returns:
      tf.data.Dataset of {"image": float32 [1, h, w, 3] in [-1, 1],
      "label": int32 [1, H, W] train ids, "index": int64 scalar}.
    """
    _check_positive("input_width", input_width, allow_none=True)
    _require_labels(dataset, "evaluation_images")
    read = _reader(dataset, with_label=True, bad_files=_registry(bad_files))

    def read_example(index):
        return {**read(index), "index": index}

    def make_example(example):
        image = normalize_image(example["image"])
        if input_width is not None:
            image, _ = resize_to_width(image, width=input_width)
        return {"image": image[None], "label": example["label"][None], "index": example["index"]}

    examples = tf.data.Dataset.range(len(dataset)).map(
        read_example, num_parallel_calls=AUTOTUNE, deterministic=True)
    return _good_examples(examples).map(make_example).prefetch(AUTOTUNE)
