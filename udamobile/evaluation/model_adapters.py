"""A segmenter in any of its three forms, behind one interface, and opening one by path.

    KerasSegmenter      a work directory's segmenter (a checkpoint)
    SavedModelSegmenter an exported SavedModel directory (serving_default)
    TFLiteSegmenter     an exported `.tflite` file, run by ai-edge-litert

    model.predict(image, label_size=None) -> int32 [H, W] train ids
        image: [1, h, w, 3] or [h, w, 3], float32 in [-1, 1] or uint8 RGB
        label_size: (H, W), the label resolution predictions are scored at
                    (by default the image's size)
    model.predict_batch(images, label_size) -> int32 [B, H, W] train ids
        images: [B, h, w, 3]; B is at most model.max_batch (None: any)
    model.run(pixels)   one bare forward pass of uint8 [1, h, w, 3] pixels, its
                        outputs as the form gives them: what latency is timed on
    model.num_classes   channels it predicts (None for a labels-only .tflite)
    model.identity      a ModelIdentity: where it came from

Predictions are made at the label resolution (docs/evaluation.md,
"Resolution"): the model's logits (probabilities for the exported forms) are
upsampled bilinearly to (H, W) before the argmax; a `.tflite` that already
ends with the argmax has its labels upsampled by nearest neighbour. A
`.tflite` refuses images of another aspect than its fixed input's rather
than stretch them. `open_model(path)` tells the three forms apart.
"""
import dataclasses
import os
import re
import typing

import numpy as np
import tensorflow as tf

from data_pipelines.images import to_pixels, to_unit_range
from export import MANIFEST
from udamobile import errors, files
from udamobile.training import checkpointing, workdirs


# --- images in, labels out ------------------------------------------------------

def labels_from_scores(scores, size):
    """[B, h, w, C] logits or probabilities -> int32 [B, H, W] argmax at size (H, W).

    The scores are resized bilinearly first (an identity when h, w = H, W).
    """
    scores = tf.image.resize(tf.cast(scores, tf.float32), size)
    return tf.argmax(scores, axis=-1, output_type=tf.int32)


def resize_labels(labels, size):
    """[B, h, w] integer labels -> int32 [B, H, W], nearest neighbour."""
    labels = tf.cast(labels, tf.int32)[..., tf.newaxis]
    return tf.image.resize(labels, size, method="nearest")[..., 0]


# --- where a model came from ----------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ModelIdentity:
    """Where a scored model came from; every results JSON carries it (`as_json`)."""
    kind: str  # "keras", "saved_model" or "tflite"
    path: str  # the work directory, SavedModel directory or .tflite file
    checkpoint: typing.Optional[str] = None  # keras: the checkpoint restored
    step: typing.Optional[int] = None  # keras: its training step
    preset: typing.Optional[str] = None  # keras: the run's preset and stage
    stage: typing.Optional[str] = None
    bytes: typing.Optional[int] = None  # tflite: file size, fixed input (H, W), output
    input_size: typing.Optional[tuple] = None
    output: typing.Optional[str] = None  # "labels" or "probabilities"
    num_threads: typing.Optional[int] = None

    def describe(self):
        return f"{self.kind} model {self.path}"

    def as_json(self):
        """The fields that are set, as a JSON-ready dict."""
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items() if v is not None}


# --- the three forms of a model -------------------------------------------------

class _Segmenter:
    """What the three forms share: one image is a batch of one."""

    def predict(self, image, label_size=None):
        """image [1, h, w, 3] or [h, w, 3] -> int32 [H, W] train ids at label_size (H, W),
        by default the image's own size."""
        image = image if image.ndim == 4 else image[np.newaxis]
        return self.predict_batch(image, label_size or tuple(image.shape[1:3]))[0]


class KerasSegmenter(_Segmenter):
    """A Keras segmenter (image in [-1, 1] -> {"logits": [B, H, W, C], ...})."""

    max_batch = None

    def __init__(self, model, identity):
        self.model = model
        self.identity = identity  # a ModelIdentity
        self.num_classes = int(model.output["logits"].shape[-1])
        self._labels = tf.function(self._labels_graph, reduce_retracing=True)

    def _labels_graph(self, image, size):
        logits = self.model(image, training=False)["logits"]
        return labels_from_scores(logits, size)

    def predict_batch(self, images, label_size):
        """images [B, h, w, 3] -> int32 [B, H, W] train ids at label_size (H, W)."""
        return self._labels(to_unit_range(images), tf.constant(label_size, tf.int32)).numpy()

    def run(self, pixels):
        return self._labels(to_unit_range(pixels), tf.constant(pixels.shape[1:3], tf.int32))


def keras_from_workdir(workdir, checkpoint=None):
    """The segmenter of a training work directory (its latest or named checkpoint)."""
    model, info = checkpointing.restore_segmenter(workdir, checkpoint)
    cfg = info["config"]
    return KerasSegmenter(model, ModelIdentity(
        "keras", os.path.abspath(workdir), checkpoint=info["checkpoint"], step=info["step"],
        preset=cfg.preset, stage=cfg.stage))


class SavedModelSegmenter(_Segmenter):
    """A SavedModel exported by `python -m export` (signature serving_default)."""

    max_batch = None  # but at most the pixels its export allows a call (`run`)

    def __init__(self, path):
        try:
            loaded = tf.saved_model.load(path)
        except (IndexError, OSError, ValueError, tf.errors.OpError) as e:
            # A truncated variables file raises IndexError, a corrupt index
            # OpError, a corrupt saved_model.pb OSError.
            raise errors.ModelError(f"SavedModel {path} is damaged and cannot be loaded "
                                    f"({str(e).splitlines()[0][:300]}); re-export it with "
                                    f"{_reexport_command(path)}") from e
        if "serving_default" not in loaded.signatures:
            raise errors.ModelError(f"SavedModel {path} has no serving_default signature")
        self._loaded = loaded  # keeps the variables the signature reads alive
        self._serve = loaded.signatures["serving_default"]
        inputs = self._serve.structured_input_signature[1]
        outputs = self._serve.structured_outputs
        if list(inputs) != ["images"] or "probabilities" not in outputs:
            raise errors.ModelError(
                f"SavedModel {path}: serving_default maps {sorted(inputs)} to "
                f"{sorted(outputs)}; expected 'images' to 'probabilities' "
                "(an export of `python -m export`)")
        self.num_classes = int(outputs["probabilities"].shape[-1])
        self.identity = ModelIdentity("saved_model", os.path.abspath(path))

    def predict_batch(self, images, label_size):
        """images [B, h, w, 3] -> int32 [B, H, W] train ids at label_size (H, W)."""
        probabilities = self.run(to_pixels(images))["probabilities"]
        return labels_from_scores(probabilities, label_size).numpy()

    def run(self, pixels):
        """serving_default's outputs for uint8 `pixels`; an image over the pixels its
        export allows a call (--max_batch_pixels) is a errors.ModelError."""
        try:
            return self._serve(images=tf.constant(pixels))
        except tf.errors.InvalidArgumentError as e:
            refusal = re.search(r"assertion failed: \[(.*?)\] \[(.*?)\]", e.message)
            if refusal is None:
                raise
            raise errors.ModelError(
                f"SavedModel {self.identity.path}: {refusal.group(1)} [{refusal.group(2)}]; "
                "downscale the images (--input_width)") from e


def _reexport_command(saved_model):
    """The `python -m export` command that writes the export folder of `saved_model`
    anew: from where its export.json says it came, if it can be read."""
    folder = os.path.dirname(os.path.abspath(saved_model))
    try:
        manifest = files.read_json(os.path.join(folder, MANIFEST),
                                   keys=("workdir", "checkpoint"), remedy="")
        source = f"--workdir={manifest['workdir']} --checkpoint={manifest['checkpoint']}"
    except (OSError, errors.StateFileError):
        source = "--workdir=<the work directory it came from>"
    return (f"python -m export {source} --output_dir={folder} (and the other flags it was "
            "exported with)")


class TFLiteSegmenter(_Segmenter):
    """A `.tflite` file exported by `python -m export`, run by ai-edge-litert.

    Its input size is fixed: images are resized to it (bilinear), its
    probabilities upsampled to the labels (bilinear), or its labels, when the
    file ends with the argmax, by nearest neighbour.
    """

    max_batch = 1  # the file's input is [1, H, W, 3]

    def __init__(self, path, *, num_threads=2):
        # ai-edge-litert is an optional dependency, needed for .tflite files only.
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(model_path=path, num_threads=num_threads)
            self._runner = interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as e:
            raise errors.ModelError(f"cannot load the TFLite file {path}: {e}") from e
        self._interpreter = interpreter  # the runner needs it alive
        inputs = self._runner.get_input_details()
        outputs = self._runner.get_output_details()
        images = inputs.get("images")
        if images is None or images["dtype"] != np.uint8 or len(images["shape"]) != 4:
            raise errors.ModelError(
                f"TFLite file {path}: expected one input 'images', uint8 [1, H, W, 3] "
                f"(an export of `python -m export`), got {_describe_tensors(inputs)}")
        self.input_size = tuple(int(s) for s in images["shape"][1:3])
        self.output_name = "labels" if "labels" in outputs else "probabilities"
        if self.output_name not in outputs:
            raise errors.ModelError(f"TFLite file {path}: expected an output 'labels' or "
                                    f"'probabilities', got {_describe_tensors(outputs)}")
        output = outputs[self.output_name]
        self._scale, self._zero_point = output["quantization"]
        self.num_classes = int(output["shape"][-1]) if self.output_name == "probabilities" else None
        self.identity = ModelIdentity(
            "tflite", os.path.abspath(path), bytes=os.path.getsize(path),
            input_size=self.input_size, output=self.output_name, num_threads=num_threads)

    def check_input_width(self, input_width):
        """Raises errors.ModelError if `input_width` (a flag) contradicts the file's input."""
        if input_width is not None and input_width != self.input_size[1]:
            height, width = self.input_size
            raise errors.ModelError(
                f"{self.identity.path} takes a fixed {height}x{width} (HxW) input, but "
                f"--input_width={input_width}; pass --input_width={width} or leave it unset")

    def _check_aspect(self, size):
        """Raises errors.ModelError unless images of `size` (h, w) keep their aspect, to a pixel,
        when resized to the file's input: the labels of stretched images would mislead."""
        (height, width), (h, w) = self.input_size, size
        if abs(width * h / w - height) > 1:
            kept = round(width * h / w)  # the height of the images' aspect at the file's width
            stretch = max(width / height, w / h) / min(width / height, w / h)
            raise errors.ModelError(
                f"{self.identity.path} takes a fixed {height}x{width} (HxW) input, but the "
                f"images are {h}x{w}: segmenting them would stretch their aspect {stretch:.1f}x; "
                f"export a .tflite of the images' aspect (python -m export --height={kept} "
                f"--width={width}) or use the SavedModel")

    def predict_batch(self, image, label_size):
        """image [1, h, w, 3] -> int32 [1, H, W] train ids at label_size (H, W)."""
        image = tf.convert_to_tensor(image)
        if tuple(image.shape[1:3]) != self.input_size:
            self._check_aspect(tuple(image.shape[1:3]))
            image = tf.image.resize(to_unit_range(image), self.input_size, antialias=True)
        output = self._runner(images=to_pixels(image))[self.output_name]
        if self.output_name == "labels":
            return resize_labels(output, label_size).numpy()
        if self._scale:
            output = (output.astype(np.float32) - self._zero_point) * self._scale
        return labels_from_scores(output, label_size).numpy()

    def run(self, pixels):
        return self._runner(images=pixels)


def _describe_tensors(details):
    return ", ".join(f"{name} {np.dtype(d['dtype']).name} {list(d['shape'])}"
                     for name, d in details.items()) or "nothing"


def check_model_path(path):
    """Raises errors.ModelError unless `path` exists (cheap: before any data is opened)."""
    if not os.path.exists(path):
        raise errors.ModelError(f"--model {path} does not exist")


def open_model(path, *, checkpoint=None, num_threads=2):
    """The adapter for `path`: a work directory, a SavedModel directory or a `.tflite` file.

    `checkpoint` (a work directory only) names a checkpoint instead of the
    latest; `num_threads` is the TFLite interpreter's thread count.
    """
    check_model_path(path)
    if os.path.isfile(path):
        if not path.endswith(".tflite"):
            raise errors.ModelError(f"--model {path} is a file but not a .tflite file")
        return TFLiteSegmenter(path, num_threads=num_threads)
    if checkpoint and not os.path.isfile(workdirs.config_path(path)):
        raise errors.ModelError(f"--checkpoint applies to a work directory; {path} is not one")
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return SavedModelSegmenter(path)
    if os.path.isfile(workdirs.config_path(path)):
        return keras_from_workdir(path, checkpoint)
    raise errors.ModelError(
        f"--model {path} is neither a work directory (no config.json), a SavedModel "
        "directory (no saved_model.pb) nor a .tflite file")
