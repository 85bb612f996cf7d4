"""What evaluation shows: tables of per-class IoU as text, and prediction panels.

One formatter (`text_table`) serves the three tables the package prints:
`evaluate.py`'s (`evaluation_table`: ours beside the paper's columns), the
end of a method run (one column per stage) and the table runner (one column
per row of a paper table); `gap_fractions` gives the share of the
source-only -> oracle gap each result closes. `prediction_panel` draws
image | prediction | label, colourized.
"""
import math
import os

import numpy as np

from data_pipelines.classes import colorize
from udamobile import files
from udamobile.evaluation.paper_tables import PAPER_LABEL_SIZE


def percent(fraction):
    """'12.3' for a fraction in [0, 1]; 'n/a' for None or NaN (an undefined score)."""
    return "n/a" if fraction is None or math.isnan(fraction) else f"{100 * fraction:.1f}"


def text_table(row_names, columns, *, corner="class", rule_before=("mIoU",)):
    """Aligned text of `columns` ({title: [cell text per row]}) beside `row_names`.

    A rule is drawn under the header and above each row named in `rule_before`.
    """
    name_width = max(len(corner), *(len(name) for name in row_names))
    widths = [max(5, len(title), *(len(cell) for cell in cells))
              for title, cells in columns.items()]
    header = corner.ljust(name_width) + "".join(
        f"  {title:>{w}}" for title, w in zip(columns, widths))
    lines = [header, "-" * len(header)]
    for index, name in enumerate(row_names):
        if name in rule_before:
            lines.append("-" * len(header))
        lines.append(name.ljust(name_width) + "".join(
            f"  {cells[index]:>{w}}" for cells, w in zip(columns.values(), widths)))
    return "\n".join(lines)


def iou_columns(results_by_title):
    """(row names, {title: cells}) of per-class IoU and mIoU (%) of several results.

    Classes any result scores, in the order of the first that does; a class a
    result does not score shows as '-'.
    """
    names = []
    for results in results_by_title.values():
        names += [name for name in results["iou"] if name not in names]
    columns = {title: [("-" if name not in r["iou"] else percent(r["iou"][name]))
                       for name in names] + [percent(r["miou"])]
               for title, r in results_by_title.items()}
    return names + ["mIoU"], columns


def gap_closed(miou, source_only, oracle):
    """The fraction of the source-only -> oracle mIoU gap that `miou` closes
    (0: no gain, 1: the oracle's score); None without a gap to close."""
    if oracle <= source_only:
        return None
    return (miou - source_only) / (oracle - source_only)


def gap_fractions(scores, lower, upper):
    """{name: gap_closed} of every result in `scores` ({name: results}: a table's rows,
    or a method's stages), when it holds the results named `lower` and `upper`."""
    if not {lower, upper} <= set(scores):
        return {}
    low, high = scores[lower]["miou"], scores[upper]["miou"]
    return {name: gap_closed(result["miou"], low, high) for name, result in scores.items()}


def gap_percent(fraction):
    """'33%' for a gap_closed fraction; 'n/a' for None."""
    return "n/a" if fraction is None else f"{100 * fraction:.0f}%"


def evaluation_table(results, paper=None):
    """Per-class IoU (%) as rows, mIoU last, as in the paper's Tables 1 and 2.

    Args:
      results: the dict `evaluate` returns.
      paper: an entry of paper_tables.PAPER_TABLES (see `paper_table`) to show beside ours.
    """
    dataset = results["dataset"]
    rows, columns = iou_columns({"ours": results})
    if paper:
        for index, title in enumerate(paper["columns"]):
            cells = [paper["iou"][name][index] for name in rows[:-1]] + [paper["miou"][index]]
            columns[title] = ["" if v is None else f"{v:.1f}" for v in cells]
    lines = [
        f"{dataset['name']}/{dataset['split']}: {dataset['num_images']} images, "
        f"{results['protocol']}-class protocol, IoU %"
        + (f"; paper: {paper['caption']}" if paper else ""),
        text_table(rows, columns),
        f"pixel accuracy {percent(results['pixel_accuracy'])}%, labels at "
        + ", ".join(f"{h}x{w}" for h, w in results["label_sizes"]) + " (HxW)"]
    if results.get("bad_files"):
        lines.append(f"{len(results['bad_files'])} bad file(s) skipped, not scored; the first: "
                     + results["bad_files"][0])
    if results["undefined_classes"]:
        lines.append("absent from labels and predictions, left out of the mIoU: "
                     + ", ".join(results["undefined_classes"]))
    if paper and results["label_sizes"] != [PAPER_LABEL_SIZE]:
        lines.append("note: the paper scores 1024x2048 Cityscapes labels; scores at "
                     "another label resolution are not comparable")
    return "\n".join(lines)


def prediction_panel(image, prediction, label):
    """uint8 [H, 3W, 3]: the image (resized to the label), prediction, label; colourized."""
    size = label.shape
    if image.shape[:2] != size:
        import tensorflow as tf  # here: the tables above need no TensorFlow

        image = tf.image.resize(image, size, antialias=True)
    image = np.clip(np.round(np.asarray(image, np.float32)), 0, 255).astype(np.uint8)
    return np.concatenate([image, colorize(prediction), colorize(label)], axis=1)


class PredictionPanels:
    """Writes one prediction panel per image to `folder`, never at the scores' cost.

    Panels are optional output: a write that fails (a full disk, say) is
    recorded, and no later panel is tried, so that evaluation still prints and
    saves its scores; the caller reports `failure` after them.
    """

    def __init__(self, folder):
        self.folder, self.written, self.failure = folder, 0, None

    def write(self, dataset, index, prediction, label):
        if self.failure:
            return
        from PIL import Image

        stem = os.path.splitext(os.path.basename(dataset.describe(index)))[0]
        path = os.path.join(self.folder, f"{index:05d}_{stem}.png")
        try:
            with files.atomic_output(path) as staging:
                Image.fromarray(prediction_panel(dataset.read_image(index), prediction,
                                                 label)).save(staging, format="PNG")
            self.written += 1
        except OSError as error:
            self.failure = (f"writing prediction panels stopped after {self.written}: {error}; "
                            "the scores above are complete")


def signals_table(by_stage):
    """The label-free signals of each stage ({stage: signals}), one row each."""
    stages = list(by_stage)
    columns = {
        "mean entropy (nats)": [f"{by_stage[s]['mean_entropy']:.3f}" for s in stages],
        "confident pixels %": [percent(by_stage[s]["confident_pixels"]) for s in stages],
        "class mix distance to source %": [percent(by_stage[s]["distribution_distance"])
                                           for s in stages],
    }
    return text_table([s.replace("_", " ") for s in stages], columns, corner="stage",
                      rule_before=())
