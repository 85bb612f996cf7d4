"""SavedModel for servers: uint8 RGB images of any size in, train-id labels out.

Signature `serving_default`:

    images         uint8 [batch, height, width, 3] RGB, any batch and size
    -> labels         int32 [batch, height, width] train ids (data_pipelines.classes)
       probabilities  float32 [batch, height, width, num_classes] (softmax)

Signature `classes`, no inputs, what the assets hold (export/class_files.py):

    -> names    string [num_classes], names[i] the class of train id i
       palette  uint8 [num_classes, 3], the RGB colour of each train id

    classes = tf.saved_model.load(DIR).signatures["classes"]()

read from `assets/labels.txt` and `assets/palette.txt`, which a reader without
TensorFlow opens as files.

Inspect and run it without Python code:

    saved_model_cli show --dir DIR --tag_set serve --signature_def serving_default
    python -c "import numpy as np; np.save('x.npy', np.zeros((1, 512, 1024, 3), np.uint8))"
    saved_model_cli run --dir DIR --tag_set serve --signature_def serving_default \
        --inputs images=x.npy --outdir OUT     # writes OUT/labels.npy, OUT/probabilities.npy

The input is declared with an unknown rank on purpose (`show` prints
`unknown_rank`): with a declared rank 4, TensorFlow constant-folds the rank
check away and a rank-3 image then aborts the whole serving process inside
the oneDNN convolution, instead of failing the one request. A float input is
rejected before the graph runs ("expected to be a uint8 tensor").

A call takes at most `max_batch_pixels` pixels (batch x height x width; by
default export.MAX_BATCH_PIXELS, four 1024x2048 images): a larger batch
fails that call, naming the limit, before the segmenter allocates anything.
It is refused rather than split into chunks: the outputs alone take 80 bytes
a pixel (probabilities and labels), 10.7 GB for the 64 images of 1024x2048
that killed a server under an 8 GB cap, which splitting would not have saved.
"""
import tempfile

import keras
import tensorflow as tf

from data_pipelines.images import normalize_image
from export import MAX_BATCH_PIXELS, class_files
from export.graph import ArgmaxLabels, probabilities
from udamobile import files

SIGNATURE_KEY, CLASSES_KEY = "serving_default", "classes"
IMAGES_SPEC = tf.TensorSpec(shape=None, dtype=tf.uint8, name="images")
EXPECTED_IMAGES = "uint8 RGB images [batch, height, width, 3]"


def checked_images(images, max_batch_pixels):
    """`images` with its shape set to [B, H, W, 3], after a run-time check of it.

    Fails the call with InvalidArgumentError naming the expected input and
    the shape received: a wrong rank (a scalar too), a channel count other
    than 3, an empty batch, an image of zero height or width, or more than
    `max_batch_pixels` pixels in the batch.
    """
    shape = tf.shape(images)
    # Padded, so that indexing works whatever the rank (a scalar has shape []).
    dims = tf.concat([shape, tf.zeros([4], tf.int32)], axis=0)
    is_rgb_batch = tf.reduce_all([tf.equal(tf.size(shape), 4), tf.equal(dims[3], 3),
                                  tf.reduce_all(dims[:3] > 0)])
    # In int64: a batch of 1024 images of 1024x2048 overflows int32.
    pixels = tf.reduce_prod(tf.cast(dims[:3], tf.int64))
    checks = [
        tf.debugging.Assert(is_rgb_batch, [f"serving_default expects {EXPECTED_IMAGES}; "
                                           "got shape", shape], summarize=8),
        tf.debugging.Assert(pixels <= max_batch_pixels, [
            f"serving_default takes at most {max_batch_pixels} pixels (batch x height x "
            "width) a call; send the batch in smaller parts. Got shape", shape], summarize=8)]
    with tf.control_dependencies(checks):
        return tf.ensure_shape(images, [None, None, None, 3])


def serving_function(segmenter, max_batch_pixels=MAX_BATCH_PIXELS):
    """The `serving_default` function: images uint8 [B, H, W, 3] -> {"labels", "probabilities"}."""

    @tf.function(input_signature=[IMAGES_SPEC])
    def serve(images):
        checked = checked_images(images, max_batch_pixels)
        logits = segmenter(normalize_image(checked), training=False)["logits"]
        return {"labels": ArgmaxLabels("int32")(logits), "probabilities": probabilities(logits)}

    return serve


def line_table(path):
    """A lookup table: line number (int64, from 0) -> that line of the text file `path`.

    A lookup table rather than a bare tf.saved_model.Asset: the SavedModel
    copies a table's file into assets/ and reads it from there once loaded,
    while ExportArchive saves no bare Asset and the loaded function would
    read the file where it was at export time.
    """
    return tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
        path, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
        tf.string, tf.lookup.TextFileIndex.WHOLE_LINE), default_value="")


def classes_function(labels, palette):
    """The `classes` function: () -> {"names", "palette"} of two `line_table`s."""

    @tf.function(input_signature=[])
    def classes():
        ids = tf.range(labels.size())
        rows = tf.strings.split(palette.lookup(ids), " ").to_tensor()
        colours = tf.cast(tf.strings.to_number(rows, tf.int32), tf.uint8)
        return {"names": labels.lookup(ids), "palette": tf.ensure_shape(colours, [None, 3])}

    return classes


def export_saved_model(segmenter, path, *, max_batch_pixels=MAX_BATCH_PIXELS):
    """Writes `segmenter` (image in [-1, 1] -> {"logits", ...}) as a SavedModel at `path`.

    Atomic: `path` holds either the complete SavedModel or what it held before;
    a filesystem error (a full disk) is an OSError naming `path`. Calls take
    at most `max_batch_pixels` pixels. Returns `path`.
    """
    serve = serving_function(segmenter, max_batch_pixels)
    # Traced here, ExportArchive takes the function as it is (its own tracing
    # cannot express the unknown-rank input). ExportArchive saves the
    # tf.Variables the function captures; a tf.Module merely holding the
    # Keras model loads in Python but not in TF1-style loaders
    # (`saved_model_cli run`, TF Serving), which then miss every variable.
    serve.get_concrete_function()
    archive = keras.export.ExportArchive()
    archive.track(segmenter)
    archive.add_endpoint(SIGNATURE_KEY, serve)
    # The saver copies the tables' files into assets/: they need to exist until then.
    with tempfile.TemporaryDirectory() as sources, files.atomic_output(path) as staging, \
            files.tensorflow_writes(path, "writing the SavedModel"):
        written = class_files.write_class_files(sources)
        tables = [line_table(written[name])
                  for name in (class_files.LABELS_FILE, class_files.PALETTE_FILE)]
        for table in tables:
            archive.track(table)
        classes = classes_function(*tables)
        classes.get_concrete_function()
        archive.add_endpoint(CLASSES_KEY, classes)
        archive.write_out(staging, verbose=False)
    return path
