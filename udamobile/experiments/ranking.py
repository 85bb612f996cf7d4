"""Which row of a finished table to ship, told without the target's labels.

Every stage that trains a segmenter logs label-free signals of its final
segmenter on the target's unlabelled train images (evaluation/signals.py,
in <stage>/eval/final.json). A table's rows, the oracle left out (it
trained on target labels), are ranked by one of those signals (`CRITERIA`),
and the first is the row a user without labels would ship. Where the
target's val labels exist, the ranking is printed beside the true one and
the pick counts as right when its mIoU is within `NEAR_BEST` of the best
row's (docs/results.md, "Telling which segmenter to ship without labels").

    python -m udamobile.experiments --table=5 --workdir=runs/table5 --rank_by=mean_entropy
"""
import os

from udamobile import files
from udamobile.evaluation import report
from udamobile.experiments import methods
from udamobile.training import workdirs

# signal of eval/final.json's "label_free" -> whether a lower value ranks first
CRITERIA = {"mean_entropy": True, "confident_pixels": False, "distribution_distance": True}
NEAR_BEST = 0.02  # mIoU: a pick this close to the best row's counts as right
UNRANKED = (methods.ORACLE_ROW,)


def row_signals(row_dir):
    """The label-free signals logged at the final evaluation of the last stage of the
    method folder `row_dir` that trained a segmenter; None if none were logged
    (--label_free_images=0, a target without train images to read, or the
    evaluation's file removed)."""
    from udamobile.experiments import runner  # keeps CRITERIA importable without TensorFlow

    stage_dir = runner.trained_segmenter_dir("workdir", row_dir)
    path = workdirs.eval_file(stage_dir, "final")
    if not os.path.isfile(path):
        return None
    final = files.read_json(path, keys=("miou",), remedy="run the row's stage again to "
                            "write it (python -m udamobile.experiments resumes a table)")
    return final.get("label_free")


def ranked(values, criterion):
    """The rows of `values` ({row: value of `criterion`}), best first by the criterion;
    ties keep the table's order."""
    lower_first = CRITERIA[criterion]
    return sorted(values, key=lambda row: values[row] if lower_first else -values[row])


def rank_rows(signals_by_row, criterion, scores=None):
    """JSON-ready ranking of the rows by `criterion`, with, given `scores` ({row:
    scores with "miou"}), each row's true place and how far the pick is below the
    best row. Rows without signals are listed as unranked."""
    values = {row: signals[criterion] for row, signals in signals_by_row.items()
              if row not in UNRANKED and signals is not None}
    order = ranked(values, criterion)
    record = {"criterion": criterion, "order": order, "values": values,
              "unranked": [row for row, s in signals_by_row.items()
                           if s is None and row not in UNRANKED],
              "pick": order[0] if order else None}
    if scores and order:
        miou = {row: scores[row]["miou"] for row in order}
        truth = sorted(order, key=lambda row: -miou[row])
        record.update(miou=miou, true_order=truth, best=truth[0],
                      pick_below_best=miou[truth[0]] - miou[order[0]])
        record["near_best"] = record["pick_below_best"] <= NEAR_BEST + 1e-9  # float noise
    return record


def _place(n):
    return f"{n}{'st' if n == 1 else 'nd' if n == 2 else 'rd' if n == 3 else 'th'}"


def ranking_text(record, titles, images=None):
    """The printed ranking of `rank_rows`'s record, row titles from `titles`."""
    criterion = record["criterion"]
    where = f" on {images}" if images else ""
    lines = [f"label-free ranking by {criterion}{where} "
             f"({'lowest' if CRITERIA[criterion] else 'highest'} first; no target label read):"]
    truth = record.get("true_order")
    width = max([len(titles[row]) for row in record["order"]] + [0])
    for place, row in enumerate(record["order"], 1):
        true_place = (f"   mIoU {report.percent(record['miou'][row])}, true place "
                      f"{_place(truth.index(row) + 1)}") if truth else ""
        lines.append(f"  {place}. {titles[row]:<{width}}  {record['values'][row]:.4f}"
                     f"{true_place}")
    lines += [f"  not ranked (no label-free signals logged): {titles[row]}"
              for row in record["unranked"]]
    if truth:
        lines.append(f"label-free pick: {pick_text(record, titles)}")
    return "\n".join(lines)


def pick_text(record, titles):
    """"<pick>, 1.2 mIoU points below the best row (<best>): within 2.0"."""
    return (f"{titles[record['pick']]}, {report.percent(record['pick_below_best'])} mIoU "
            f"points below the best row ({titles[record['best']]}): "
            + ("within" if record["near_best"] else "not within")
            + f" {report.percent(NEAR_BEST)}")


def table_ranking(workdir, rows, criterion, scores=None):
    """`rank_rows` of the finished `rows` of the table in `workdir`, and where the
    signals were measured ("100 images of demo_tone/train"), from the rows' logs."""
    signals = {row: row_signals(os.path.join(workdir, row)) for row in rows
               if row not in UNRANKED}
    logged = [s for s in signals.values() if s is not None]
    if not logged:
        return rank_rows(signals, criterion, scores), None
    count = logged[0]["images"]
    return (rank_rows(signals, criterion, scores),
            f"{count} image{'' if count == 1 else 's'} of {logged[0]['dataset']}")
