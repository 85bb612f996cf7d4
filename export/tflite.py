"""TFLite for boards: a fixed input size, uint8 RGB in, labels (or probabilities) out.

Every file has one signature, `serving_default` (and carries labels.txt and
palette.txt as metadata, export/class_files.py):

    images         uint8 [1, height, width, 3] RGB pixels (normalized inside)
    -> labels         uint8 [1, height, width] train ids (data_pipelines.classes),
                      the default: what a board consumes
    or, with output="stride4_labels":
       labels         the same, taken at the decoder's stride 4 (see below)
    or, with output="probabilities":
       probabilities  [1, height, width, num_classes]: float32, or uint8 with
                      scale 1/256 in the int8 file (dequantize: q / 256)

The labels are the argmax of the logits bilinearly upsampled to the input,
exactly the Keras model's prediction. The probabilities output adds a softmax
over every pixel and class, which a board that wants labels never uses
(README, "Benchmarks", for its cost).

"stride4_labels" takes the argmax of the decoder's logits at stride 4 and
repeats each label over its 4x4 block (nearest-neighbour upsampling): no
resize or argmax of every class at the input's size (a small student's int8
file at 512x1024 runs about 40% faster), but a boundary falls on the 4x4 grid instead
of between the bilinearly upsampled logits, so labels differ from the Keras
model's near boundaries (docs/deployment.md, "A smaller student", for both
costs). It needs a height and width divisible by 4.

Quantizations:

- float32: the trained weights as they are.
- float16: weights stored in float16 (half the file); CPUs compute in float32,
  GPU delegates in float16.
- int8: full-integer quantization, what int8-only accelerators (NPU, DSP,
  Edge TPU delegates) require and what is fastest on CPUs: every op runs on
  int8 tensors, with ranges calibrated on a representative set of unlabelled
  target-domain images. The input stays uint8 RGB: every calibration image
  carries one 0 and one 255 pixel, so the input's quantization range is
  exactly [0, 255], i.e. scale 1 and zero point 0 - the uint8 input IS the
  camera image and the board needs no conversion.

Conversion goes through a Keras model with a fixed input shape (converting
from a concrete function left batch norms unfolded and produced a broken
file; docs/deployment.md, "TFLite conversion path").
"""
import contextlib
import io
import warnings

import keras
import numpy as np
import tensorflow as tf

from data_pipelines import validation
from data_pipelines.images import normalize_image
from export import class_files, tflite_metadata
from export.graph import LOGITS_STRIDE, ArgmaxLabels, RepeatPixels, probabilities, stride4_logits
from udamobile import files

QUANTIZATIONS = ("float32", "float16", "int8")
OUTPUTS = ("labels", "stride4_labels", "probabilities")


def check_output(output, height, width):
    """Raises ValueError for an output the file cannot have at height x width."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if output == "stride4_labels" and (height % LOGITS_STRIDE or width % LOGITS_STRIDE):
        raise ValueError(f"output stride4_labels needs a height and width divisible by "
                         f"{LOGITS_STRIDE}, got {height}x{width}")


def deployment_model(segmenter, *, height, width, output="labels", input_dtype="uint8"):
    """The graph converted to TFLite: pixels [1, height, width, 3] -> one output.

    Args:
      segmenter: Keras model, image in [-1, 1] -> {"logits": [B, H, W, C], ...}.
      height, width: the fixed input size.
      output: "labels" or "stride4_labels" ({"labels": uint8 [1, H, W]}), or
        "probabilities" ({"probabilities": float32 [1, H, W, C]}).
      input_dtype: "uint8", or "float32" for the int8 conversion, whose
        converter quantizes a float input to uint8 itself.
    """
    check_output(output, height, width)
    pixels = keras.Input((height, width, 3), batch_size=1, dtype=input_dtype, name="images")
    if output == "stride4_labels":
        coarse = stride4_logits(segmenter)(normalize_image(pixels), training=False)
        labels = ArgmaxLabels("uint8")(coarse)
        return keras.Model(pixels, {"labels": RepeatPixels(LOGITS_STRIDE, name="labels")(labels)},
                           name="deployed_segmenter")
    logits = segmenter(normalize_image(pixels), training=False)["logits"]
    if output == "labels":
        outputs = {"labels": ArgmaxLabels("uint8", name="labels")(logits)}
    else:
        outputs = {"probabilities": probabilities(logits)}
    return keras.Model(pixels, outputs, name="deployed_segmenter")


def resize_pixels(image, height, width):
    """uint8 [h, w, 3] -> uint8 [height, width, 3] (bilinear, antialiased)."""
    resized = tf.image.resize(image, (height, width), antialias=True)
    return np.asarray(tf.cast(tf.round(tf.clip_by_value(resized, 0, 255)), tf.uint8))


def calibration_images(dataset, *, count, height, width):
    """`count` images of `dataset` spread evenly over it: uint8 [height, width, 3] each.

    `dataset` is a data_pipelines Dataset (its labels are never read).
    """
    if len(dataset) == 0:
        raise ValueError(f"calibration dataset {dataset.name}/{dataset.split} is empty")
    indices = validation.sample_indices(len(dataset), count)
    return [resize_pixels(dataset.read_image(int(i)), height, width) for i in indices]


def _stamped_with_input_range(image):
    """A float32 [1, H, W, 3] copy of `image` holding one 0 and one 255 pixel.

    The int8 input's quantization is the range seen in calibration: these two
    pixels pin it to [0, 255] (see the module docstring).
    """
    stamped = np.array(image, dtype=np.float32)[np.newaxis]
    stamped[0, 0, 0] = 0.0
    stamped[0, 0, 1] = 255.0
    return stamped


def _converter(model, quantization, representative_images):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [_stamped_with_input_range(image)] for image in representative_images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter


def convert(segmenter, *, height, width, quantization="float32", output="labels",
            representative_images=None):
    """The segmenter as TFLite flatbuffer bytes (see the module docstring).

    Args:
      segmenter: Keras model, image in [-1, 1] -> {"logits": [B, H, W, C], ...}.
      height, width: the fixed input size of the file.
      quantization: one of QUANTIZATIONS.
      output: one of OUTPUTS (see the module docstring).
      representative_images: for "int8" only, a sequence of uint8
        [height, width, 3] unlabelled target-domain images (calibration_images).
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    if quantization == "int8" and not representative_images:
        raise ValueError("int8 quantization needs representative_images (unlabelled "
                         "target-domain images) to calibrate its ranges")
    for image in representative_images or ():
        if image.shape != (height, width, 3) or image.dtype != np.uint8:
            raise ValueError(f"representative images must be uint8 [{height}, {width}, 3], "
                             f"got {image.dtype} {list(image.shape)}")
    model = deployment_model(segmenter, height=height, width=width, output=output,
                             input_dtype="float32" if quantization == "int8" else "uint8")
    converter = _converter(model, quantization, representative_images)
    # The converter's intermediate Keras export prints every captured
    # variable handle to stdout: noise in the output of our CLIs. Its warning
    # that the int8 input has no statistics is expected: the calibration
    # images pin the input's range (module docstring).
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
        return converter.convert()


def export_tflite(segmenter, path, **conversion):
    """Writes `convert(segmenter, **conversion)` to `path`, atomically, with labels.txt
    and palette.txt inside (export/class_files.py, export/tflite_metadata.py); returns
    `path`."""
    return files.write_bytes(path, tflite_metadata.embed(convert(segmenter, **conversion),
                                                         class_files.class_files()))
