"""Evaluation of a segmenter, in any of its forms, with the paper's mIoU protocol.

`evaluate(model, dataset)` scores a model of `udamobile.evaluation.model_adapters` on
a labelled split: one confusion matrix covers the whole split (metrics.py),
predictions are scored at the label resolution, and the input may be
downscaled first (`input_width`); see docs/evaluation.md. `run_evaluation`
is what evaluate.py does: open the model and data, score, print, write.
"""
import os

import data_pipelines
from data_pipelines.classes import NUM_CLASSES, PROTOCOL_CLASSES
from udamobile import checks, config as config_lib, errors, files
from udamobile.config import RunConfig
from udamobile.evaluation import metrics, report
from udamobile.evaluation.model_adapters import TFLiteSegmenter, check_model_path, open_model
from udamobile.evaluation.paper_tables import paper_table
from udamobile.progress import Progress
from udamobile.training import workdirs


def check_protocol(protocol):
    checks.check_flags({"protocol": (protocol, checks.one_of(*sorted(PROTOCOL_CLASSES)))})


def check_model_classes(model, protocol):
    """Raises errors.EvaluationError unless `model` predicts the 19 train ids `protocol` scores.

    Every protocol (19, 16, 13) scores a subset of the same 19 Cityscapes
    train ids, so a model must predict exactly those 19 channels.
    """
    check_protocol(protocol)
    if model.num_classes is not None and model.num_classes != NUM_CLASSES:
        raise errors.EvaluationError(
            f"{model.identity.describe()} predicts {model.num_classes} classes, but the "
            f"{protocol}-class protocol scores train ids of the {NUM_CLASSES} Cityscapes "
            f"classes; expected a {NUM_CLASSES}-class model")


def check_predictions(prediction, model):
    """Raises errors.EvaluationError if `prediction` (of `model`) holds an id that is no
    train id: a model of another label space."""
    if prediction.size and not 0 <= prediction.min() <= prediction.max() < NUM_CLASSES:
        raise errors.EvaluationError(
            f"{model.identity.describe()} predicted train id {prediction.max()} "
            f"outside [0, {NUM_CLASSES})")


def evaluate(model, dataset, *, protocol=19, input_width=None, max_images=0,
             predictions_dir=None, bad_files=None):
    """Scores `model` on a labelled `dataset` (one confusion matrix over the split).

    Args:
      model: an adapter of `udamobile.evaluation.model_adapters` (see `open_model`).
      dataset: a data_pipelines Dataset with labels (else DatasetError).
      protocol: 19, 16 or 13 classes in the mIoU.
      input_width: downscale inputs to this width (aspect kept) before the
        model; predictions are still scored at the label resolution.
      max_images: evaluate the first `max_images` images only (0: all).
      predictions_dir: if set, write one PNG per image there: the image, the
        colourized prediction and the colourized label side by side.
      bad_files: a data_pipelines.BadFiles registry: an image or label that
        cannot be read is skipped (and listed in the results) up to its
        limit, past which BadFilesError names the last one. None: limit 0.

    Returns:
      metrics.protocol_scores(...) (fractions in [0, 1]) plus "model" (its
      identity), "dataset" {"name", "split", "num_images" (scored)},
      "bad_files" (the messages of the files skipped), "input_width",
      "label_sizes" (the [H, W] label resolutions seen), "images_per_second"
      and "confusion_matrix" (19 x 19 nested lists, rows = labels).
    """
    check_model_classes(model, protocol)
    if isinstance(model, TFLiteSegmenter):
        model.check_input_width(input_width)
    count = len(dataset) if not max_images else min(max_images, len(dataset))
    bad_files = data_pipelines.BadFiles() if bad_files is None else bad_files
    examples = data_pipelines.evaluation_images(dataset, input_width=input_width,
                                                bad_files=bad_files).take(count)
    matrix = metrics.ConfusionMatrix(NUM_CLASSES)
    panels = report.PredictionPanels(predictions_dir) if predictions_dir else None
    label_sizes = set()
    scored = 0
    with Progress(count, "evaluate", unit="img") as progress:
        for example in examples:
            label = example["label"][0].numpy()
            prediction = model.predict(example["image"], label.shape)
            check_predictions(prediction, model)
            matrix.update(label, prediction)
            label_sizes.add(label.shape)
            if panels:
                panels.write(dataset, int(example["index"]), prediction, label)
            progress.update(miou=metrics.mean_iou(matrix.result(), PROTOCOL_CLASSES[protocol]))
            scored += 1
    bad_files.check()
    return {
        **metrics.protocol_scores(matrix.result().numpy(), protocol),
        "model": model.identity.as_json(),
        "dataset": {"name": dataset.name, "split": dataset.split, "num_images": scored},
        "bad_files": bad_files.messages(lambda key: key[:2] == (dataset.name, dataset.split)),
        "input_width": input_width,
        "label_sizes": sorted(list(size) for size in label_sizes),
        "images_per_second": progress.rate(),
        "confusion_matrix": matrix.result().numpy().tolist(),
        **({"prediction_panels": {"folder": os.path.abspath(predictions_dir),
                                  "written": panels.written, "failure": panels.failure}}
           if panels else {}),
    }


def default_results_path(model, dataset, protocol):
    """<workdir>/eval/<dataset>_<split>_<protocol>cls_step<step>.json for a work
    directory's model; None for exported models (nowhere natural to write)."""
    identity = model.identity
    if identity.kind != "keras":
        return None
    return workdirs.eval_file(identity.path,
                              f"{dataset.name}_{dataset.split}_{protocol}cls_step{identity.step}")


def run_evaluation(model_path, *, checkpoint=None, dataset="cityscapes", root=None, split="val",
                   protocol=19, input_width=None, output_json=None, predictions_dir=None,
                   compare_paper=None, num_threads=2, max_images=0,
                   max_bad_files=RunConfig.max_bad_files, label_map=None):
    """What `evaluate.py` does: opens the model and the data and evaluates.

    Arguments are the flags of `evaluate.py`. Cheap checks (the model's path,
    protocol, paper table, dataset) run before the model is loaded. Nothing
    is written here (see `write_results`), so a caller can show the table
    first.

    Returns:
      (results of `evaluate` plus "results_path": `output_json`, or for a
      work directory `default_results_path`, the table text).
    """
    check_model_path(model_path)
    check_protocol(protocol)
    checks.check_flags({"max_images": (max_images, checks.non_negative_int),  # 0: all
                        "max_bad_files": (max_bad_files, config_lib.field_check("max_bad_files")),
                        "input_width": (input_width, config_lib.field_check("eval_input_width"))})
    paper = paper_table(compare_paper, protocol) if compare_paper else None
    data = data_pipelines.open_dataset(dataset, root, split, label_map=label_map,
                                       synthia_classes=13 if protocol == 13 else 16)
    model = open_model(model_path, checkpoint=checkpoint, num_threads=num_threads)
    results = evaluate(model, data, protocol=protocol, input_width=input_width,
                       max_images=max_images, predictions_dir=predictions_dir,
                       bad_files=data_pipelines.BadFiles(max_bad_files))
    results["results_path"] = output_json or default_results_path(model, data, protocol)
    return results, report.evaluation_table(results, paper)


def write_results(results):
    """Writes `results` to results["results_path"] (if any) as JSON; returns the path."""
    if results["results_path"]:
        files.write_json(results["results_path"], results)
    return results["results_path"]
