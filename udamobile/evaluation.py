"""Evaluation of a segmenter, in any of its forms, with the paper's mIoU protocol.

A model to evaluate is one of three adapters sharing one interface:

    KerasSegmenter      a work directory's segmenter (a checkpoint)
    SavedModelSegmenter an exported SavedModel directory (serving_default)
    TFLiteSegmenter     an exported `.tflite` file, run by ai-edge-litert

    model.predict(image, label_size) -> int32 [H, W] train ids
        image: [1, h, w, 3], float32 in [-1, 1] or uint8 RGB
        label_size: (H, W), the label resolution predictions are scored at

Scores at the label resolution (docs/evaluation.md, "Resolution"): the input may
be downscaled (`input_width`), and the model's logits (probabilities for the
exported forms) are upsampled bilinearly to (H, W) before the argmax; a
`.tflite` that already ends with the argmax has its labels upsampled by
nearest neighbour. One confusion matrix covers the whole split (metrics.py).

`open_model(path)` tells the three forms apart; `evaluate(model, dataset)`
returns a results dict; `format_table` prints it in the layout of the paper's
Tables 1 and 2 (classes as rows), optionally beside the paper's numbers
(`PAPER_TABLES`).
"""
import os

import numpy as np
import tensorflow as tf

import data_pipelines
from data_pipelines import UserError
from data_pipelines.images import to_pixels, to_unit_range
from udamobile import checkpointing, files, metrics, report
from udamobile.classes import NUM_CLASSES, PROTOCOL_CLASSES, colorize
from udamobile.progress import Progress


class EvaluationError(UserError):
    """A model, dataset or option that cannot be evaluated as asked; says why."""


# --- images in, labels out ------------------------------------------------------

def labels_from_scores(scores, size):
    """[1, h, w, C] logits or probabilities -> int32 [H, W] argmax at size (H, W).

    The scores are resized bilinearly first (an identity when h, w = H, W).
    """
    scores = tf.image.resize(tf.cast(scores, tf.float32), size)
    return tf.argmax(scores[0], axis=-1, output_type=tf.int32)


def resize_labels(labels, size):
    """[1, h, w] integer labels -> int32 [H, W], nearest neighbour."""
    labels = tf.cast(labels, tf.int32)[..., tf.newaxis]
    return tf.image.resize(labels, size, method="nearest")[0, ..., 0]


# --- the three forms of a model -------------------------------------------------

class KerasSegmenter:
    """A Keras segmenter (image in [-1, 1] -> {"logits": [B, H, W, C], ...})."""

    def __init__(self, model, identity):
        self.model = model
        self.identity = identity
        self.num_classes = int(model.output["logits"].shape[-1])
        self._labels = tf.function(self._labels_graph, reduce_retracing=True)

    def _labels_graph(self, image, size):
        logits = self.model(image, training=False)["logits"]
        return labels_from_scores(logits, size)

    def predict(self, image, label_size):
        """image [1, h, w, 3] -> int32 [H, W] train ids at label_size (H, W)."""
        return self._labels(to_unit_range(image), tf.constant(label_size, tf.int32)).numpy()


def keras_from_workdir(workdir, checkpoint=None):
    """The segmenter of a training work directory (its latest or named checkpoint)."""
    model, info = checkpointing.restore_segmenter(workdir, checkpoint)
    cfg = info["config"]
    return KerasSegmenter(model, {
        "kind": "keras", "workdir": os.path.abspath(workdir), "checkpoint": info["checkpoint"],
        "step": info["step"], "preset": cfg.preset, "stage": cfg.stage})


class SavedModelSegmenter:
    """A SavedModel exported by `python -m export` (signature serving_default)."""

    def __init__(self, path):
        try:
            loaded = tf.saved_model.load(path)
        except (OSError, ValueError, tf.errors.OpError) as e:
            raise EvaluationError(f"cannot load the SavedModel {path}: {e}") from e
        if "serving_default" not in loaded.signatures:
            raise EvaluationError(f"SavedModel {path} has no serving_default signature")
        self._loaded = loaded  # keeps the variables the signature reads alive
        self._serve = loaded.signatures["serving_default"]
        inputs = self._serve.structured_input_signature[1]
        outputs = self._serve.structured_outputs
        if list(inputs) != ["images"] or "probabilities" not in outputs:
            raise EvaluationError(
                f"SavedModel {path}: serving_default maps {sorted(inputs)} to "
                f"{sorted(outputs)}; expected 'images' to 'probabilities' "
                "(an export of `python -m export`)")
        self.num_classes = int(outputs["probabilities"].shape[-1])
        self.identity = {"kind": "saved_model", "path": os.path.abspath(path)}

    def predict(self, image, label_size):
        """image [1, h, w, 3] -> int32 [H, W] train ids at label_size (H, W)."""
        probabilities = self._serve(images=tf.constant(to_pixels(image)))["probabilities"]
        return labels_from_scores(probabilities, label_size).numpy()


class TFLiteSegmenter:
    """A `.tflite` file exported by `python -m export`, run by ai-edge-litert.

    Its input size is fixed: images are resized to it (bilinear), its
    probabilities upsampled to the labels (bilinear), or its labels, when the
    file ends with the argmax, by nearest neighbour.
    """

    def __init__(self, path, *, num_threads=2):
        # ai-edge-litert is an optional dependency, needed for .tflite files only.
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(model_path=path, num_threads=num_threads)
            self._runner = interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as e:
            raise EvaluationError(f"cannot load the TFLite file {path}: {e}") from e
        self._interpreter = interpreter  # the runner needs it alive
        inputs = self._runner.get_input_details()
        outputs = self._runner.get_output_details()
        images = inputs.get("images")
        if images is None or images["dtype"] != np.uint8 or len(images["shape"]) != 4:
            raise EvaluationError(
                f"TFLite file {path}: expected one input 'images', uint8 [1, H, W, 3] "
                f"(an export of `python -m export`), got {_describe_tensors(inputs)}")
        self.input_size = tuple(int(s) for s in images["shape"][1:3])
        self.output_name = "labels" if "labels" in outputs else "probabilities"
        if self.output_name not in outputs:
            raise EvaluationError(f"TFLite file {path}: expected an output 'labels' or "
                                  f"'probabilities', got {_describe_tensors(outputs)}")
        output = outputs[self.output_name]
        self._scale, self._zero_point = output["quantization"]
        self.num_classes = int(output["shape"][-1]) if self.output_name == "probabilities" else None
        self.identity = {
            "kind": "tflite", "path": os.path.abspath(path), "bytes": os.path.getsize(path),
            "input_size": list(self.input_size), "output": self.output_name,
            "num_threads": num_threads}

    def check_input_width(self, input_width):
        """Raises EvaluationError if `input_width` (a flag) contradicts the file's input."""
        if input_width is not None and input_width != self.input_size[1]:
            height, width = self.input_size
            raise EvaluationError(
                f"{self.identity['path']} takes a fixed {height}x{width} (HxW) input, but "
                f"--input_width={input_width}; pass --input_width={width} or leave it unset")

    def predict(self, image, label_size):
        """image [1, h, w, 3] -> int32 [H, W] train ids at label_size (H, W)."""
        image = tf.convert_to_tensor(image)
        if tuple(image.shape[1:3]) != self.input_size:
            image = tf.image.resize(to_unit_range(image), self.input_size, antialias=True)
        output = self._runner(images=to_pixels(image))[self.output_name]
        if self.output_name == "labels":
            return resize_labels(output, label_size).numpy()
        if self._scale:
            output = (output.astype(np.float32) - self._zero_point) * self._scale
        return labels_from_scores(output, label_size).numpy()


def _describe_tensors(details):
    return ", ".join(f"{name} {np.dtype(d['dtype']).name} {list(d['shape'])}"
                     for name, d in details.items()) or "nothing"


def open_model(path, *, checkpoint=None, num_threads=2):
    """The adapter for `path`: a work directory, a SavedModel directory or a `.tflite` file.

    `checkpoint` (a work directory only) names a checkpoint instead of the
    latest; `num_threads` is the TFLite interpreter's thread count.
    """
    if not os.path.exists(path):
        raise EvaluationError(f"--model {path} does not exist")
    if os.path.isfile(path):
        if not path.endswith(".tflite"):
            raise EvaluationError(f"--model {path} is a file but not a .tflite file")
        return TFLiteSegmenter(path, num_threads=num_threads)
    if checkpoint and not os.path.isfile(os.path.join(path, "config.json")):
        raise EvaluationError(f"--checkpoint applies to a work directory; {path} is not one")
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return SavedModelSegmenter(path)
    if os.path.isfile(os.path.join(path, "config.json")):
        return keras_from_workdir(path, checkpoint)
    raise EvaluationError(
        f"--model {path} is neither a work directory (no config.json), a SavedModel "
        "directory (no saved_model.pb) nor a .tflite file")


# --- the evaluation ---------------------------------------------------------------

def check_protocol(protocol):
    if protocol not in PROTOCOL_CLASSES:
        raise EvaluationError(f"--protocol must be one of {sorted(PROTOCOL_CLASSES)}, "
                              f"got {protocol!r}")


def check_model_classes(model, protocol):
    """Raises EvaluationError unless `model` predicts the 19 train ids `protocol` scores.

    Every protocol (19, 16, 13) scores a subset of the same 19 Cityscapes
    train ids, so a model must predict exactly those 19 channels.
    """
    check_protocol(protocol)
    if model.num_classes is not None and model.num_classes != NUM_CLASSES:
        raise EvaluationError(
            f"{_model_name(model)} predicts {model.num_classes} classes, but the "
            f"{protocol}-class protocol scores train ids of the {NUM_CLASSES} Cityscapes "
            f"classes; expected a {NUM_CLASSES}-class model")


def _model_name(model):
    identity = model.identity
    return f"{identity['kind']} model {identity.get('workdir') or identity.get('path')}"


def _check_predictions(prediction, model):
    if prediction.size and not 0 <= prediction.min() <= prediction.max() < NUM_CLASSES:
        raise EvaluationError(f"{_model_name(model)} predicted train id {prediction.max()} "
                              f"outside [0, {NUM_CLASSES})")


def evaluate(model, dataset, *, protocol=19, input_width=None, max_images=0,
             predictions_dir=None):
    """Scores `model` on a labelled `dataset` (one confusion matrix over the split).

    Args:
      model: an adapter of this module (see `open_model`).
      dataset: a data_pipelines Dataset with labels (else DatasetError).
      protocol: 19, 16 or 13 classes in the mIoU.
      input_width: downscale inputs to this width (aspect kept) before the
        model; predictions are still scored at the label resolution.
      max_images: evaluate the first `max_images` images only (0: all).
      predictions_dir: if set, write one PNG per image there: the image, the
        colourized prediction and the colourized label side by side.

    Returns:
      metrics.protocol_scores(...) (fractions in [0, 1]) plus "model" (its
      identity), "dataset" {"name", "split", "num_images"}, "input_width",
      "label_sizes" (the [H, W] label resolutions seen), "images_per_second"
      and "confusion_matrix" (19 x 19 nested lists, rows = labels).
    """
    check_model_classes(model, protocol)
    if isinstance(model, TFLiteSegmenter):
        model.check_input_width(input_width)
    count = len(dataset) if not max_images else min(max_images, len(dataset))
    examples = data_pipelines.evaluation_images(dataset, input_width=input_width).take(count)
    matrix = metrics.ConfusionMatrix(NUM_CLASSES)
    label_sizes = set()
    with Progress(count, "evaluate", unit="img") as progress:
        for example in examples:
            label = example["label"][0].numpy()
            prediction = model.predict(example["image"], label.shape)
            _check_predictions(prediction, model)
            matrix.update(label, prediction)
            label_sizes.add(label.shape)
            if predictions_dir:
                write_prediction_panel(predictions_dir, dataset, int(example["index"]),
                                       prediction, label)
            progress.update(miou=metrics.mean_iou(matrix.result(), PROTOCOL_CLASSES[protocol]))
    return {
        **metrics.protocol_scores(matrix.result().numpy(), protocol),
        "model": model.identity,
        "dataset": {"name": dataset.name, "split": dataset.split, "num_images": count},
        "input_width": input_width,
        "label_sizes": sorted(list(size) for size in label_sizes),
        "images_per_second": progress.rate(),
        "confusion_matrix": matrix.result().numpy().tolist(),
    }


def default_results_path(model, dataset, protocol):
    """<workdir>/eval/<dataset>_<split>_<protocol>cls_step<step>.json for a work
    directory's model; None for exported models (nowhere natural to write)."""
    identity = model.identity
    if identity["kind"] != "keras":
        return None
    name = f"{dataset.name}_{dataset.split}_{protocol}cls_step{identity['step']}.json"
    return os.path.join(identity["workdir"], "eval", name)


def run_evaluation(model_path, *, checkpoint=None, dataset="cityscapes", root=None, split="val",
                   protocol=19, input_width=None, output_json=None, predictions_dir=None,
                   compare_paper=None, num_threads=2, max_images=0):
    """What `evaluate.py` does: opens the model and the data, evaluates, writes JSON.

    Arguments are the flags of `evaluate.py`. Cheap checks (protocol, paper
    table, dataset) run before the model is loaded. The JSON goes to
    `output_json`, or for a work directory to `default_results_path`.

    Returns:
      (results of `evaluate` plus "results_path", the table text).
    """
    check_protocol(protocol)
    paper = paper_table(compare_paper, protocol) if compare_paper else None
    data = data_pipelines.open_dataset(dataset, root, split,
                                       synthia_classes=13 if protocol == 13 else 16)
    model = open_model(model_path, checkpoint=checkpoint, num_threads=num_threads)
    results = evaluate(model, data, protocol=protocol, input_width=input_width,
                       max_images=max_images, predictions_dir=predictions_dir)
    results["results_path"] = output_json or default_results_path(model, data, protocol)
    if results["results_path"]:
        files.write_json(results["results_path"], results)
    return results, format_table(results, paper)


# --- outputs: colourized predictions, JSON, the table ----------------------------

def prediction_panel(image, prediction, label):
    """uint8 [H, 3W, 3]: the image (resized to the label), prediction, label; colourized."""
    size = label.shape
    image = tf.image.resize(image, size, antialias=True) if image.shape[:2] != size else image
    image = np.clip(np.round(np.asarray(image, np.float32)), 0, 255).astype(np.uint8)
    return np.concatenate([image, colorize(prediction), colorize(label)], axis=1)


def write_prediction_panel(folder, dataset, index, prediction, label):
    """Writes prediction_panel(...) of image `index` to `folder` as a PNG; returns its path."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    stem = os.path.splitext(os.path.basename(dataset.describe(index)))[0]
    path = os.path.join(folder, f"{index:05d}_{stem}.png")
    Image.fromarray(prediction_panel(dataset.read_image(index), prediction, label)).save(path)
    return path


# The paper's per-class IoUs (%), Cityscapes val; columns left to right as in
# its tables; None where only the mIoU is kept: Table 1's CycleGAN and CyCADA
# columns, whose per-class values are partly lost in the paper's extracted text
# (docs/paper.md, "Table 1", "Table 2", "Table 3").
PAPER_TABLES = {
    "gta5": {
        "caption": "GTA5 -> Cityscapes val (paper Tables 1 and 3)",
        "protocol": 19,
        "columns": ("source only", "CycleGAN", "CyCADA", "λsem=λfeat=0", "λsem=0",
                    "λfeat=0", "full", "oracle"),
        "iou": {
            "road": (23.1, None, None, 87.8, 88.3, 87.3, 87.6, 97.7),
            "sidewalk": (13.1, None, None, 39.1, 37.1, 36.6, 36.7, 81.9),
            "building": (42.6, None, None, 81.0, 81.1, 82.8, 83.5, 91.0),
            "wall": (2.3, None, None, 24.8, 25.4, 29.1, 29.1, 47.6),
            "fence": (13.9, None, None, 16.0, 15.3, 19.9, 17.8, 50.1),
            "pole": (5.0, None, None, 31.9, 33.6, 32.9, 33.6, 58.4),
            "traffic light": (10.3, None, None, 27.2, 29.5, 24.9, 24.3, 62.3),
            "traffic sign": (8.0, None, None, 25.7, 28.8, 32.3, 35.2, 73.4),
            "vegetation": (68.6, None, None, 78.6, 80.0, 82.8, 83.1, 91.4),
            "terrain": (6.7, None, None, 22.9, 24.4, 28.1, 28.9, 59.8),
            "sky": (24.5, None, None, 69.7, 69.2, 74.6, 76.3, 94.3),
            "person": (40.8, None, None, 55.5, 56.0, 58.3, 59.1, 77.2),
            "rider": (0.3, None, None, 16.7, 15.6, 11.6, 14.0, 50.5),
            "car": (48.1, None, None, 85.3, 85.0, 85.9, 85.9, 93.2),
            "truck": (9.4, None, None, 25.7, 25.5, 26.3, 25.4, 59.2),
            "bus": (16.3, None, None, 31.0, 30.8, 31.9, 29.4, 74.8),
            "train": (0.0, None, None, 4.4, 3.9, 1.3, 2.6, 55.8),
            "motorcycle": (0.0, None, None, 14.7, 16.3, 19.5, 19.5, 49.5),
            "bicycle": (0.0, None, None, 5.6, 6.2, 6.8, 9.3, 73.0),
        },
        "miou": (17.5, 29.3, 37.3, 39.1, 39.6, 40.7, 41.1, 70.6),
    },
    "synthia": {
        "caption": "SYNTHIA-RAND-CITYSCAPES -> Cityscapes val (paper Table 2)",
        "protocol": 16,
        "columns": ("source only", "CycleGAN", "CyCADA", "full", "oracle"),
        "iou": {
            "road": (1.4, 42.9, 30.3, 53.8, 97.8),
            "sidewalk": (10.6, 26.7, 15.8, 21.3, 83.7),
            "building": (29.1, 44.6, 64.0, 69.4, 91.2),
            "wall": (1.0, 0.5, 5.9, 3.7, 47.7),
            "fence": (0.0, 0.1, 0.0, 0.1, 49.7),
            "pole": (17.2, 29.2, 30.6, 31.6, 58.8),
            "traffic light": (2.0, 3.5, 3.8, 3.5, 63.0),
            "traffic sign": (3.6, 5.8, 10.4, 12.6, 73.9),
            "vegetation": (68.5, 67.1, 76.4, 77.5, 92.4),
            "sky": (65.0, 70.8, 73.0, 75.2, 94.4),
            "person": (42.3, 46.0, 42.9, 51.9, 77.9),
            "rider": (0.1, 3.4, 4.9, 13.2, 53.7),
            "car": (41.7, 32.8, 54.3, 64.1, 94.1),
            "bus": (8.2, 7.0, 15.0, 15.9, 80.5),
            "motorcycle": (0.0, 2.4, 3.0, 10.8, 44.7),
            "bicycle": (0.5, 3.7, 8.9, 16.7, 73.5),
        },
        "miou": (18.2, 24.2, 27.5, 32.6, 73.6),
    },
}

# Cityscapes labels, the resolution the published numbers are computed at.
PAPER_LABEL_SIZE = [1024, 2048]


def paper_table(name, protocol):
    """PAPER_TABLES[name], checking it reports the same protocol as ours."""
    if name not in PAPER_TABLES:
        raise EvaluationError(f"--compare_paper must be one of {sorted(PAPER_TABLES)}, "
                              f"got {name!r}")
    table = PAPER_TABLES[name]
    if table["protocol"] != protocol:
        raise EvaluationError(
            f"the paper's {name} table reports {table['protocol']} classes; evaluate "
            f"with --protocol={table['protocol']} to compare with it (got {protocol})")
    return table


def format_table(results, paper=None):
    """Per-class IoU (%) as rows, mIoU last, as in the paper's Tables 1 and 2.

    Args:
      results: the dict `evaluate` returns.
      paper: an entry of PAPER_TABLES (see `paper_table`) to show beside ours.
    """
    dataset = results["dataset"]
    rows, columns = report.iou_columns({"ours": results})
    if paper:
        for index, title in enumerate(paper["columns"]):
            cells = [paper["iou"][name][index] for name in rows[:-1]] + [paper["miou"][index]]
            columns[title] = ["" if v is None else f"{v:.1f}" for v in cells]
    lines = [
        f"{dataset['name']}/{dataset['split']}: {dataset['num_images']} images, "
        f"{results['protocol']}-class protocol, IoU %"
        + (f"; paper: {paper['caption']}" if paper else ""),
        report.text_table(rows, columns),
        f"pixel accuracy {report.percent(results['pixel_accuracy'])}%, labels at "
        + ", ".join(f"{h}x{w}" for h, w in results["label_sizes"]) + " (HxW)"]
    if results["undefined_classes"]:
        lines.append("absent from labels and predictions, left out of the mIoU: "
                     + ", ".join(results["undefined_classes"]))
    if paper and results["label_sizes"] != [PAPER_LABEL_SIZE]:
        lines.append("note: the paper scores 1024x2048 Cityscapes labels; scores at "
                     "another label resolution are not comparable")
    return "\n".join(lines)
