r"""Table 5: the rows of table 4 on every shift of the demo suite, and how they hold up.

    python -m udamobile.experiments --table=5 --workdir=runs/table5 [--shifts=demo_fog,demo_tone]

Each shift of the suite (`demo_shifts.SUITE`: demo_target, demo_city and the
shift domains, development shifts first) is a table of its own in
<workdir>/<shift>/, its rows run as table 4's are (`tables.run_table`) with
`--target=<shift>`: they resume, refuse mixed tables and print the same way,
and share their shift's source-only stage. The source-only segmenter does not
depend on the target, but its stage's config names the target it is scored
on, and a finished stage is only reused with the config it was trained with:
each shift trains its own (one of six rows' cost).

At the end one line per shift gives each row's mIoU and the share of the
source-only -> oracle gap it closes, held-out shifts marked, then the median
gap closed per row over the held-out shifts (the figure a preset is judged
by; docs/results.md, "The shift suite and its held-out split"); all of it is
written to <workdir>/table5.json.
"""
import os
import statistics

from data_pipelines import demo_shifts
from udamobile import checks, files
from udamobile.errors import UsageError
from udamobile.evaluation import report
from udamobile.experiments import methods, ranking, tables

NUMBER = 5
HELDOUT_MARK = " (held out)"
MEDIAN_ROW = "median, held out"


def select_shifts(names=None):
    """The shifts to run, in the suite's order: all, or `names` (the --shifts value)."""
    return checks.picked("shifts", names, demo_shifts.SUITE, "a shift of the suite")


def median_gaps(gaps_by_shift, heldout):
    """{row: median gap closed over the `heldout` shifts that measured it, or None}."""
    rows = {row for gaps in gaps_by_shift.values() for row in gaps}
    medians = {}
    for row in rows:
        measured = [gaps_by_shift[shift][row] for shift in heldout
                    if gaps_by_shift.get(shift, {}).get(row) is not None]
        medians[row] = statistics.median(measured) if measured else None
    return medians


def pick_lines(picks, gaps, heldout):
    """(lines, JSON-ready counts) of each shift's label-free pick, the share of the gap
    it closes (`gaps`: {shift: {row: gap closed}}), how many picks were within
    ranking.NEAR_BEST of the best row, over all shifts and the held-out ones, and the
    picks' median gap closed over the held-out shifts: the figure of the package's
    recommendation, to run the rows and ship the pick."""
    pick_gaps = {shift: gaps.get(shift, {}).get(record["pick"])
                 for shift, record in picks.items()}
    lines = [f"label-free pick by {next(iter(picks.values()))['criterion']}:"]
    lines += [f"  {shift}{HELDOUT_MARK if shift in heldout else ''}: "
              f"{ranking.pick_text(record, tables.TITLES)}; gap closed "
              f"{report.gap_percent(pick_gaps[shift])}" for shift, record in picks.items()]
    counts = {}
    for name, shifts in (("all", list(picks)), ("held_out", [s for s in picks if s in heldout])):
        near = sum(picks[shift]["near_best"] for shift in shifts)
        counts[name] = {"near_best": near, "shifts": len(shifts)}
    measured = [pick_gaps[shift] for shift in picks
                if shift in heldout and pick_gaps[shift] is not None]
    counts["median_gap_closed_held_out"] = statistics.median(measured) if measured else None
    lines.append(f"  within {report.percent(ranking.NEAR_BEST)} mIoU points of the best row on "
                 f"{counts['all']['near_best']} of {counts['all']['shifts']} shifts "
                 f"({counts['held_out']['near_best']} of {counts['held_out']['shifts']} "
                 "held out); the picks' median gap closed, held out: "
                 f"{report.gap_percent(counts['median_gap_closed_held_out'])}")
    return lines, counts


def summary(scores_by_shift, heldout=demo_shifts.HELDOUT_SHIFTS, picks=None):
    """(text, JSON-ready dict) of the suite: per shift, each row's mIoU and the gap it
    closes; then each row's median gap closed over the held-out shifts; with `picks`,
    each shift's label-free pick.

    Args:
      scores_by_shift: {shift: {row: scores}}, each scores a dict with "miou".
      heldout: the shifts the median is taken over.
      picks: {shift: ranking.rank_rows record, with the true order}.
    """
    rows = [row for row in tables.TABLES[NUMBER].rows
            if any(row in scores for scores in scores_by_shift.values())]
    gaps = {shift: report.gap_fractions(scores, methods.SOURCE_ONLY_ROW, methods.ORACLE_ROW)
            for shift, scores in scores_by_shift.items()}
    medians = median_gaps(gaps, heldout)
    names = [shift + (HELDOUT_MARK if shift in heldout else "") for shift in scores_by_shift]
    columns = {}
    for row in rows:
        cells = []
        for shift, scores in scores_by_shift.items():
            if row not in scores:
                cells.append("")
                continue
            gap = gaps[shift].get(row)
            cells.append(report.percent(scores[row]["miou"])
                         + ("" if gap is None else f" ({report.gap_percent(gap)})"))
        columns[tables.TITLES[row]] = cells + [report.gap_percent(medians[row])]
    text = report.text_table(names + [MEDIAN_ROW], columns, corner="mIoU % (gap closed)",
                             rule_before=(MEDIAN_ROW,))
    record = {"shifts": {shift: {"held_out": shift in heldout,
                                 "rows": {row: {"miou": scores[row]["miou"],
                                                "gap_closed": gaps[shift].get(row)}
                                          for row in scores}}
                         for shift, scores in scores_by_shift.items()},
              "held_out": list(heldout),
              "median_gap_closed_held_out": {row: medians[row] for row in rows}}
    if picks:
        lines, counts = pick_lines(picks, gaps, heldout)
        text += "\n\n" + "\n".join(lines)
        record["label_free_picks"] = {"shifts": picks, "counts": counts}
    return text, record


def run_suite(*, preset, workdir, overrides, rows=None, shifts=None, dry_run=False,
              rank_by=None):
    """Runs (or resumes) table 5's rows on every shift; returns {shift: {row: scores}}
    (None if dry). With `rank_by`, each shift's rows are also ranked without labels
    (`tables.run_table`) and the summary says how often the pick was near the best."""
    if "target" in overrides:
        raise UsageError(f"--target={overrides['target']}: table 5 sets the target to each "
                         "shift of the suite in turn; pick shifts with --shifts")
    selected = select_shifts(shifts)
    scores = {}
    for shift in selected:
        print(f"\n== shift {shift}{HELDOUT_MARK if shift in demo_shifts.HELDOUT_SHIFTS else ''}"
              f": {os.path.join(workdir, shift)}", flush=True)
        scores[shift] = tables.run_table(
            NUMBER, preset=preset, workdir=os.path.join(workdir, shift),
            overrides={**overrides, "target": shift}, rows=rows, dry_run=dry_run,
            rank_by=rank_by)
    if dry_run:
        return None
    picks = {}
    for shift in selected if rank_by else ():  # each shift's ranking, as run_table wrote it
        ranked = files.read_json(
            os.path.join(workdir, shift, f"table{NUMBER}.json"), keys=("label_free_ranking",),
            remedy="run the same command again")["label_free_ranking"]
        if "near_best" in ranked:  # some row had signals to rank by
            picks[shift] = ranked
    text, record = summary(scores, picks=picks)
    path = os.path.join(workdir, f"table{NUMBER}.json")
    files.write_json(path, {"table": NUMBER, "caption": tables.TABLES[NUMBER].caption,
                            "preset": preset or tables.TABLES[NUMBER].preset, **record})
    print(f"\n{tables.TABLES[NUMBER].caption}\n{text}\nwritten to {path}")
    return scores
