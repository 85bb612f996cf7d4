"""Exports the segmenter of a training work directory in the requested formats.

    <output_dir>/saved_model/                          format saved_model
    <output_dir>/segmenter_<H>x<W>_float32.tflite      format tflite_float32
    <output_dir>/segmenter_<H>x<W>_float16.tflite      format tflite_float16
    <output_dir>/segmenter_<H>x<W>_int8.tflite         format tflite_int8
    <output_dir>/labels.txt, palette.txt               the classes (export/class_files.py)
    <output_dir>/model_card.md                         what the files are for (export/card.py)
    <output_dir>/export.json                           what was exported from where, by
                                                       which code (udamobile.provenance)
    <output_dir>/export_report.{txt,json}              with a report split (export/report.py)

The TFLite files return uint8 labels; with tflite_output="stride4_labels" or
"probabilities" their names end in `_stride4_labels` (labels taken at the
decoder's stride 4) or `_probabilities` (probabilities).

The folder is written all at once: every file goes into a staging sibling,
`.<output_dir>.partial-*`, with export.json last, and the whole folder is then
renamed into place (`files.atomic_output`), so that a reader never sees the
files of two exports mixed. A killed export leaves only that sibling, which
the next export into the folder removes. Since the folder is replaced whole,
an export refuses one that holds anything but a previous export.
"""
import os

from absl import logging

import data_pipelines
from data_pipelines.classes import CLASS_NAMES
from export import MANIFEST, MAX_BATCH_PIXELS, card, class_files, report, tflite_metadata
from export.graph import LOGITS_STRIDE
from export.saved_model import export_saved_model
from export.tflite import OUTPUTS, calibration_images, export_tflite
from udamobile import checks, errors, files, provenance
from udamobile.evaluation import model_adapters
from udamobile.experiments import methods
from udamobile.machine import describe as describe_machine
from udamobile.nets import networks
from udamobile.training import checkpointing, workdirs
from udamobile.training.stages import distill

FORMATS = ("saved_model", "tflite_float32", "tflite_float16", "tflite_int8")


def artifact_name(fmt, *, height, width, tflite_output="labels"):
    """The name of format `fmt`'s file (or folder) in the output folder."""
    if fmt == "saved_model":
        return "saved_model"
    quantization = fmt[len("tflite_"):]
    suffix = "" if tflite_output == "labels" else f"_{tflite_output}"
    return f"segmenter_{height}x{width}_{quantization}{suffix}.tflite"


def _check_options(formats, height, width, num_calibration_images, tflite_output, report_images,
                   max_batch_pixels):
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise errors.ExportError(f"--formats must be a non-empty list of {', '.join(FORMATS)}; "
                                 f"got {', '.join(formats) or 'nothing'}")
    checks.check_flags({"height": (height, checks.positive_int),
                        "width": (width, checks.positive_int),
                        "num_calibration_images": (num_calibration_images, checks.positive_int),
                        "max_batch_pixels": (max_batch_pixels, checks.positive_int),
                        "tflite_output": (tflite_output, checks.one_of(*OUTPUTS)),
                        "report_images": (report_images, checks.non_negative_int)},  # 0: all
                       error=errors.ExportError)
    if tflite_output == "stride4_labels" and (height % LOGITS_STRIDE or width % LOGITS_STRIDE):
        raise errors.ExportError(f"--tflite_output=stride4_labels repeats each label of the "
                                 f"stride-4 logits over a 4x4 block: --height={height} and "
                                 f"--width={width} must both be divisible by 4")
    if max_batch_pixels < height * width:
        raise errors.ExportError(f"--max_batch_pixels={max_batch_pixels} is below one --height x "
                                 f"--width image ({height * width} pixels), which the report sends")


def _check_input_size(cfg, workdir, height, width):
    """The TFLite input must be at least the segmenter's output stride (32 for some
    students): below it its features are a single pixel and the atrous rates look at
    padding only."""
    stride = cfg.model.output_stride
    for name, value in (("height", height), ("width", width)):
        if value < stride:
            raise errors.ExportError(
                f"--{name}={value} is below {stride}, the output stride of the segmenter in "
                f"{workdir}: its features would be a single pixel; export at {stride} or more")


def _representative_dataset(cfg, name, root):
    """The unlabelled target-domain split calibrating int8: --representative_dataset,
    by default the run's own target domain (its train split, labels never read)."""
    if name is None:
        name, root = cfg.data.target, root or cfg.data.target_root
    dataset = data_pipelines.open_dataset(name, root, "train")
    if len(dataset) == 0:
        raise errors.ExportError(
            f"--representative_dataset {name} (root {root}) has no train images "
            "to calibrate int8 with")
    return dataset


def _check_output_dir(output_dir):
    """Raises errors.ExportError unless `output_dir` is new, empty or a previous export: the
    export replaces it whole, and must not take a user's other files with it."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise errors.ExportError(f"--output_dir {output_dir} is a file; expected a folder")
    entries = os.listdir(output_dir) if os.path.isdir(output_dir) else []
    if entries and MANIFEST not in entries:
        raise errors.ExportError(
            f"--output_dir {output_dir} holds files that no export wrote (it has "
            f"no {MANIFEST}); an export replaces its folder whole: name a new or "
            "empty folder")


def _check_report_dataset(dataset):
    """The report's dataset, if any, must have labels."""
    if dataset is not None and not dataset.has_labels:
        raise errors.ExportError(
            f"the export report needs labels; {dataset.name}/{dataset.split} has none")


def export_workdir(workdir, output_dir, *, formats=FORMATS, checkpoint=None, height=512,
                   width=1024, tflite_output="labels", representative_dataset=None,
                   representative_root=None, num_calibration_images=100, report_set=None,
                   report_images=0, max_batch_pixels=MAX_BATCH_PIXELS):
    """Exports the segmenter of `workdir` (latest or named checkpoint).

    Args:
      workdir: a training work directory.
      output_dir: folder of the artifacts, written (or replaced) whole: it
        must be new, empty or a previous export.
      formats: a subset of FORMATS.
      checkpoint: a checkpoint name of the work directory (default: latest).
      height, width: the TFLite files' fixed input size (the SavedModel takes any).
      tflite_output: what the TFLite files return, one of export.tflite.OUTPUTS.
      representative_dataset, representative_root: the dataset whose train
        split (unlabelled target-domain images) calibrates int8; default the
        run's target dataset and root.
      num_calibration_images: images of it used for calibration.
      report_set: a labelled data_pipelines Dataset of the target: every artifact
        is scored on it, in a report written, printed (export/report.py) and carded.
      report_images: score the first `report_images` images only (0: all).
      max_batch_pixels: the most pixels a call of the SavedModel takes.

    Returns:
      {format: path} of the artifacts written, "report": the report's text if any.
    """
    formats = tuple(formats)
    _check_options(formats, height, width, num_calibration_images, tflite_output, report_images,
                   max_batch_pixels)
    _check_output_dir(output_dir)
    _check_report_dataset(report_set)
    cfg = workdirs.read_config(workdir)
    _check_input_size(cfg, workdir, height, width)
    # The calibration folder is checked before the checkpoint is read.
    dataset = (_representative_dataset(cfg, representative_dataset, representative_root)
               if "tflite_int8" in formats else None)
    segmenter, info = checkpointing.restore_segmenter(workdir, checkpoint)
    calibration = (None if dataset is None else calibration_images(
        dataset, count=num_calibration_images, height=height, width=width))
    names = {fmt: artifact_name(fmt, height=height, width=width, tflite_output=tflite_output)
             for fmt in formats}
    paths = {fmt: os.path.join(output_dir, name) for fmt, name in names.items()}
    manifest = _manifest(names, workdir, info, height=height, width=width,
                         tflite_output=tflite_output, max_batch_pixels=max_batch_pixels,
                         calibration=dataset and f"{len(calibration)} images of "
                         f"{dataset.name}/{dataset.split}")
    for leftover in files.remove_leftovers(output_dir):
        logging.warning("Removed %s, left by an export that did not finish", leftover)
    with files.atomic_output(output_dir) as staging:
        os.makedirs(staging)
        staged = {fmt: os.path.join(staging, name) for fmt, name in names.items()}
        _write_artifacts(staged, segmenter, height=height, width=width, calibration=calibration,
                         tflite_output=tflite_output, max_batch_pixels=max_batch_pixels)
        scored = None if report_set is None else _report(
            staging, staged, paths, segmenter, workdir, info, report_set,
            report_images=report_images, height=height, width=width)
        _write_descriptions(staging, staged, cfg, manifest, workdir, scored)
    if report_set is not None:
        paths["report"] = os.path.join(output_dir, report.REPORT_TEXT)
    return paths


def _write_artifacts(staged, segmenter, *, height, width, calibration, tflite_output,
                     max_batch_pixels):
    """Writes each artifact of `staged` ({format: path}) from `segmenter`."""
    for fmt, path in staged.items():
        if fmt == "saved_model":
            export_saved_model(segmenter, path, max_batch_pixels=max_batch_pixels)
            continue
        quantization = fmt[len("tflite_"):]
        export_tflite(segmenter, path, height=height, width=width, quantization=quantization,
                      output=tflite_output,
                      representative_images=calibration if quantization == "int8" else None)


def _report(folder, staged, paths, segmenter, workdir, info, dataset, *, report_images,
            height, width):
    """Scores the `staged` artifacts against `segmenter`, prints the report and writes
    it in `folder`, naming each artifact by where it goes (`paths`); returns the
    report's {"rows", "scope", "text"}."""
    reference = model_adapters.KerasSegmenter(segmenter, model_adapters.ModelIdentity(
        "keras", os.path.abspath(workdir), checkpoint=info["checkpoint"], step=info["step"]))
    teacher = _teacher(workdir, info["checkpoint"])
    rows = [{**row, "path": paths.get(row["artifact"], row["path"])}
            for row in report.score_artifacts(reference, staged, dataset, height=height,
                                              width=width, max_images=report_images,
                                              teacher=teacher)]
    scope = (f"{dataset.name}/{dataset.split} ({report.scored_count(dataset, report_images)} "
             f"images, resized to {height}x{width})")
    text = report.report_text(rows, scope, describe_machine())
    print(text, end="")
    report.write_report(folder, rows, text)
    return {"rows": rows, "scope": scope, "text": text}


def _teacher(workdir, checkpoint):
    """The teacher of a distill stage's student, as a Keras model adapter, read from the
    student's own checkpoint (which holds it); None for any other stage."""
    record = distill.teacher_record(workdir)
    if record is None:
        return None
    model = networks.build_segmenter_from_config(record["config"].model, name=distill.TEACHER)
    checkpointing.restore_into(checkpoint, **{distill.TEACHER: model})
    return model_adapters.KerasSegmenter(model, model_adapters.ModelIdentity(
        "keras", record["workdir"], checkpoint=record["checkpoint"]))


def _method_records(workdir):
    """(method.json's record, results.json's scores) of the method folder holding the
    stage's `workdir`, each None where there is none (a stage trained alone)."""
    folder = os.path.dirname(os.path.abspath(workdir))
    method_file, results_file = (os.path.join(folder, name)
                                 for name in (methods.METHOD_FILE, methods.RESULTS_FILE))
    method = methods.read_method_file(method_file) if os.path.isfile(method_file) else None
    if method is None or os.path.abspath(workdir) not in method["stages"].values():
        return None, None
    results = (methods.read_results_file(results_file) if os.path.isfile(results_file)
               else None)
    return method, results


def _write_descriptions(folder, staged, cfg, manifest, workdir, scored):
    """Writes labels.txt, palette.txt, model_card.md (export/card.py; `scored`: the
    report, if any) and, last, export.json (`manifest`) in `folder`. The card goes
    into each .tflite of `staged` ({format: path}) too, beside the class files that
    went in when it was written: the card reports the files' sizes and scores, so it
    goes in after them, and the sizes reported are those before it (a few kilobytes
    less, below the 0.1 MB the card shows them to)."""
    class_files.write_class_files(folder)
    method, results = _method_records(workdir)
    model_card = card.model_card(cfg, manifest, machine=describe_machine(), method=method,
                                 results=results, report=scored)
    files.write_text(os.path.join(folder, card.CARD_FILE), model_card)
    for fmt, path in staged.items():
        if fmt != "saved_model":
            tflite_metadata.embed_in_file(path, {card.CARD_FILE: model_card.encode("utf-8")})
    files.write_json(os.path.join(folder, MANIFEST), manifest)


def _manifest(names, workdir, info, *, height, width, tflite_output, max_batch_pixels,
              calibration):
    """export.json's record: where the `names` ({format: file name}) come from, what
    their inputs and outputs are, and which code wrote them."""
    manifest = {
        "workdir": os.path.abspath(workdir),
        "checkpoint": info["checkpoint"],
        "step": info["step"],
        "class_names": list(CLASS_NAMES),
        "tflite_input": f"uint8 RGB [1, {height}, {width}, 3]",
        "tflite_output": {
            "labels": f"uint8 labels [1, {height}, {width}]",
            "stride4_labels": f"uint8 labels [1, {height}, {width}], the argmax at stride 4 "
                              "upsampled nearest",
            "probabilities": f"probabilities [1, {height}, {width}, {len(CLASS_NAMES)}]",
        }[tflite_output],
        "artifacts": names,
        "provenance": provenance.record(),
    }
    if "saved_model" in names:
        manifest["saved_model_max_batch_pixels"] = max_batch_pixels
    if calibration:
        manifest["int8_calibration"] = calibration
    return manifest
