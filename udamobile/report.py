"""Tables of per-class IoU as text: classes as rows, one column per model.

One formatter (`text_table`) serves the three tables the package prints:
`evaluate.py`'s (ours beside the paper's columns), the end of a method run
(one column per stage) and the table runner (one column per row of a paper
table).
"""
import math


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
