"""The export report: what each artifact written costs in accuracy, size and time.

Every artifact is scored on a labelled split of the target against the Keras
segmenter it was exported from:

    artifact        mIoU %   vs Keras   agrees with Keras   size MB   median ms
    keras             41.3       -             -               -        ...
    saved_model       41.3     +0.0         100.00%          10.9       ...
    tflite_int8       40.9     -0.4          98.71%           3.0       ...

All of them see the same input: each image resized once to the TFLite files'
fixed size (`tflite.resize_pixels`), so a disagreement is the artifact's own,
never a difference of resizing. Predictions are scored at the label
resolution, as `evaluation.evaluate` does. Latency is the median of a bare
forward pass (`model.run`) on this machine, after one untimed pass.

An int8 file that loses more than INT8_LOSS_LIMIT mIoU points against the
float32 file (or, without one, against Keras) is flagged, with the remedies
this package supports.

A student of the distill stage is also compared with its teacher: a first
row `teacher` (the frozen teacher it learned from, as Keras, on the same
inputs; its agreement is with the student) and a column `vs teacher`.
"""
import os
import statistics
import time

import numpy as np

from data_pipelines.classes import NUM_CLASSES
from export.tflite import resize_pixels
from udamobile import files
from udamobile.evaluation import metrics, model_adapters, report as tables
from udamobile.progress import Progress

INT8_LOSS_LIMIT = 1.0  # mIoU points
TEACHER_ROW = "teacher"
REPORT_TEXT, REPORT_JSON = "export_report.txt", "export_report.json"


def median_ms(run, runs):
    """Median wall time of `run()` in milliseconds over `runs` calls, after one untimed call."""
    run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def disk_megabytes(path):
    """Size of a file, or of every file under a directory, in MB."""
    if os.path.isfile(path):
        return os.path.getsize(path) / 1e6
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(path) for name in names) / 1e6


def scored_count(dataset, max_images):
    """How many images of `dataset` the report scores: all, or the first `max_images`."""
    return len(dataset) if not max_images else min(max_images, len(dataset))


def score_artifacts(reference, artifacts, dataset, *, height, width, max_images=0,
                    protocol=19, latency_runs=10, teacher=None):
    """Rows of the report: one for `reference` (Keras) and one per artifact, after
    one for `teacher` (a model_adapters.KerasSegmenter) if given.

    Args:
      reference: a model_adapters.KerasSegmenter, the model exported.
      artifacts: {format: path} as export_workdir returns.
      dataset: a labelled data_pipelines Dataset of the target.
      height, width: the size every image is resized to first.
      max_images: score the first `max_images` images only (0: all).
      protocol: 19, 16 or 13 classes in the mIoU.
      latency_runs: timed forward passes per model.

    Returns:
      [{"artifact", "path", "miou", "iou", "agreement", "megabytes", "median_ms"}]:
      mIoU, IoU ({class name: IoU, None if undefined}, as scoring.evaluate
      gives) and agreement (the fraction of pixels whose label equals Keras')
      are fractions in [0, 1]; the Keras row has no path, agreement or size.
    """
    models = {TEACHER_ROW: teacher} if teacher is not None else {}
    models["keras"] = reference
    models.update({fmt: model_adapters.open_model(path) for fmt, path in artifacts.items()})
    matrices = {name: metrics.ConfusionMatrix(NUM_CLASSES) for name in models}
    agreeing = dict.fromkeys(models, 0)
    pixels_seen = 0
    count = scored_count(dataset, max_images)
    with Progress(count, "export report", unit="img") as progress:
        for index in range(count):
            image = resize_pixels(dataset.read_image(index), height, width)[np.newaxis]
            label = dataset.read_label(index)
            expected = reference.predict(image, label.shape)
            for name, model in models.items():
                prediction = expected if name == "keras" else model.predict(image, label.shape)
                matrices[name].update(label, prediction)
                agreeing[name] += int(np.sum(prediction == expected))
            pixels_seen += label.size
            progress.update()
    probe = resize_pixels(dataset.read_image(0), height, width)[np.newaxis]
    scores = {name: metrics.protocol_scores(matrix.result().numpy(), protocol)
              for name, matrix in matrices.items()}
    return [{
        "artifact": name,
        "path": model.identity.path if name == TEACHER_ROW else artifacts.get(name),
        "miou": scores[name]["miou"],
        "iou": scores[name]["iou"],
        "agreement": None if name == "keras" else agreeing[name] / pixels_seen,
        "megabytes": disk_megabytes(artifacts[name]) if name in artifacts else None,
        "median_ms": median_ms(lambda m=model: m.run(probe), latency_runs),
    } for name, model in models.items()]


def int8_warning(rows):
    """A plain sentence if the int8 file loses more than INT8_LOSS_LIMIT points, else None."""
    by_name = {row["artifact"]: row for row in rows}
    if "tflite_int8" not in by_name:
        return None
    baseline = by_name.get("tflite_float32", by_name["keras"])
    loss = 100 * (baseline["miou"] - by_name["tflite_int8"]["miou"])
    if loss <= INT8_LOSS_LIMIT:
        return None
    return (f"WARNING: the int8 file loses {loss:.1f} mIoU points against "
            f"{baseline['artifact']} (more than {INT8_LOSS_LIMIT:g}). Calibrate it on more "
            "target images (--num_calibration_images) or on images more like the board's "
            "camera (--representative_dataset, --representative_root), or ship the float16 "
            "file. LiteRT's 16x8 quantization is not offered: its int16 kernels are "
            "reference code, 14x slower than int8 here (docs/deployment.md).")


def report_text(rows, dataset_description, machine):
    """The report's table, its scope and, if due, the int8 warning, as text."""
    names = [row["artifact"] for row in rows]
    by_name = {row["artifact"]: row for row in rows}

    def column(key, fmt):
        return [("-" if row[key] is None else fmt(row[key])) for row in rows]

    def versus(reference, excluded):
        # round() first, so that a loss too small to show reads +0.0, not -0.0
        return [("-" if row["artifact"] in excluded else
                 f"{round(100 * (row['miou'] - by_name[reference]['miou']), 1) + 0.0:+.1f}")
                for row in rows]

    columns = {
        "mIoU %": column("miou", lambda v: f"{100 * v:.1f}"),
        "vs Keras": versus("keras", ("keras", TEACHER_ROW)),
        "agrees with Keras": column("agreement", lambda v: f"{100 * v:.2f}%"),
        "size MB": column("megabytes", lambda v: f"{v:.1f}"),
        "median ms": column("median_ms", lambda v: f"{v:.1f}"),
    }
    if TEACHER_ROW in by_name:
        columns["vs teacher"] = versus(TEACHER_ROW, (TEACHER_ROW,))
    table = tables.text_table(names, columns, corner="artifact", rule_before=())
    lines = [f"Export report on {dataset_description}; latency on {machine}:", table]
    warning = int8_warning(rows)
    if warning:
        lines.append(warning)
    return "\n".join(lines) + "\n"


def write_report(output_dir, rows, text):
    """Writes export_report.txt and export_report.json in `output_dir`; returns both paths."""
    paths = (os.path.join(output_dir, REPORT_TEXT), os.path.join(output_dir, REPORT_JSON))
    files.write_text(paths[0], text)
    files.write_json(paths[1], {"rows": rows, "int8_warning": int8_warning(rows)})
    return paths
