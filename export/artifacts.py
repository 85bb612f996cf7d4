"""Exports the segmenter of a training work directory in the requested formats.

    <output_dir>/saved_model/                          format saved_model
    <output_dir>/segmenter_<H>x<W>_float32.tflite      format tflite_float32
    <output_dir>/segmenter_<H>x<W>_float16.tflite      format tflite_float16
    <output_dir>/segmenter_<H>x<W>_int8.tflite         format tflite_int8
    <output_dir>/export.json                           what was exported from where

With `argmax_output` the TFLite names end in `_argmax` and the files return
uint8 labels. Each artifact is written atomically, one after the other.
"""
import os

import data_pipelines
from data_pipelines.base import UsageError
from data_pipelines.classes import CLASS_NAMES
from export.saved_model import export_saved_model
from export.tflite import calibration_images, export_tflite
from udamobile import checkpointing, files

FORMATS = ("saved_model", "tflite_float32", "tflite_float16", "tflite_int8")


class ExportError(UsageError):
    """Export options that cannot work; the message names the option."""


def artifact_path(output_dir, fmt, *, height, width, argmax_output):
    """Where format `fmt` is written in `output_dir`."""
    if fmt == "saved_model":
        return os.path.join(output_dir, "saved_model")
    quantization = fmt[len("tflite_"):]
    suffix = "_argmax" if argmax_output else ""
    return os.path.join(output_dir, f"segmenter_{height}x{width}_{quantization}{suffix}.tflite")


def _check_options(formats, height, width, num_calibration_images):
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"--formats must be a non-empty list of {', '.join(FORMATS)}; "
                          f"got {', '.join(formats) or 'nothing'}")
    for name, value in (("height", height), ("width", width),
                        ("num_calibration_images", num_calibration_images)):
        if not isinstance(value, int) or value <= 0:
            raise ExportError(f"--{name} must be a positive integer, got {value!r}")


def _representative_dataset(cfg, name, root):
    """The unlabelled target-domain split calibrating int8: --representative_dataset,
    by default the run's own target domain (its train split, labels never read)."""
    if name is None:
        name, root = cfg.data.target, root or cfg.data.target_root
    return data_pipelines.open_dataset(name, root, "train")


def export_workdir(workdir, output_dir, *, formats=FORMATS, checkpoint=None, height=512,
                   width=1024, argmax_output=False, representative_dataset=None,
                   representative_root=None, num_calibration_images=100):
    """Exports the segmenter of `workdir` (latest or named checkpoint).

    Args:
      workdir: a training work directory.
      output_dir: folder of the artifacts (created if needed).
      formats: a subset of FORMATS.
      checkpoint: a checkpoint name of the work directory (default: latest).
      height, width: the fixed input size of the TFLite files (the SavedModel
        takes any size).
      argmax_output: TFLite files return uint8 labels instead of probabilities.
      representative_dataset, representative_root: the dataset whose train
        split (unlabelled target-domain images) calibrates int8; default the
        run's target dataset and root.
      num_calibration_images: images of it used for calibration.

    Returns:
      {format: path} of the artifacts written.
    """
    formats = tuple(formats)
    _check_options(formats, height, width, num_calibration_images)
    segmenter, info = checkpointing.restore_segmenter(workdir, checkpoint)
    calibration = None
    if "tflite_int8" in formats:
        dataset = _representative_dataset(info["config"], representative_dataset,
                                           representative_root)
        calibration = calibration_images(dataset, count=num_calibration_images,
                                         height=height, width=width)
    paths = {}
    for fmt in formats:
        path = artifact_path(output_dir, fmt, height=height, width=width,
                             argmax_output=argmax_output)
        if fmt == "saved_model":
            paths[fmt] = export_saved_model(segmenter, path)
        else:
            quantization = fmt[len("tflite_"):]
            paths[fmt] = export_tflite(
                segmenter, path, height=height, width=width, quantization=quantization,
                argmax_output=argmax_output,
                representative_images=calibration if quantization == "int8" else None)
    _write_manifest(output_dir, paths, workdir, info, height=height, width=width,
                    argmax_output=argmax_output)
    return paths


def _write_manifest(output_dir, paths, workdir, info, *, height, width, argmax_output):
    manifest = {
        "workdir": os.path.abspath(workdir),
        "checkpoint": info["checkpoint"],
        "step": info["step"],
        "class_names": list(CLASS_NAMES),
        "tflite_input": f"uint8 RGB [1, {height}, {width}, 3]",
        "tflite_output": (f"uint8 labels [1, {height}, {width}]" if argmax_output else
                          f"probabilities [1, {height}, {width}, {len(CLASS_NAMES)}]"),
        "artifacts": {fmt: os.path.basename(path) for fmt, path in paths.items()},
    }
    files.write_json(os.path.join(output_dir, "export.json"), manifest)
