r"""Every row of a table, trained, scored and printed (a paper table's beside the paper's).

    python -m udamobile.experiments --table=1 --source_root=/data/GTA5 \
        --target_root=/data/cityscapes --workdir=runs/table1

    table  source -> target            rows (methods of udamobile.experiments.methods)
    1      GTA5 -> Cityscapes          source_only, cyclegan, cycada, full_no_sem_no_feat,
                                       full_no_sem, full_no_feat, full, oracle
    2      SYNTHIA -> Cityscapes (16)  source_only, cyclegan, cycada, full, oracle
    3      GTA5 -> Cityscapes          source_only, full_no_sem_no_feat, full_no_sem,
           (ablation)                  full_no_feat, full
    4      demo_source -> demo_target  source_only, colour_transfer, adabn, cyclegan, full,
           (beyond the paper)          full_self_training, oracle
    5      demo_source -> each shift   source_only, colour_transfer, adabn, full,
           of the demo suite           full_self_training, colour_self_training, oracle
           (udamobile/experiments/shift_table.py)

Table 4 is not the paper's: it sets the paper's method beside the baselines
a practitioner tries first (colour transfer, AdaBN) and beside its
extension by self-training, on the built-in demo domains by default
(`--preset=demo`), or on any source and target given: `--target=demo_city`
is the demo target whose shift also changes texture and layout.

Each row is one `train.py --method=<row>` command, run in <workdir>/<row>; it
scores its stages on the target's val split with the table's protocol (19
classes; SYNTHIA 16, or 13 with --synthia_classes=13). The rows after
`source_only` take their source-only stage from <workdir>/source_only
(`--reuse_stages_from`) instead of training it again, and a row that extends
another (`EXTENDS`: full_self_training is full, then self-training;
colour_self_training is colour_transfer, then self-training) takes
that row's stages. A row whose
results.json exists is skipped, so running the same command again resumes
the table; a row that was run with another command, or whose stages were
trained with other settings than the same command gives now (a preset
changed since), is an error, never a silently mixed table. `--rows` picks
rows, `--dry_run` prints each row's command and runs nothing. Any config flag (see
`train.py --helpfull`) is passed on to every row, except where it contradicts
what defines a row (its method's settings: `--lambda_sem=0.2` leaves the
λsem=0 rows at 0): the runner says once which flags it kept off which rows,
and passes `--keep_method_settings` to those rows. `--preset` defaults to the
table's paper preset.

At the end the table is printed, our column beside the paper's, and written
to <workdir>/table<N>.json. With the source_only and oracle rows both run,
each row also shows the fraction of the source-only -> oracle gap in mIoU
that it closes (`report.gap_fractions`). With `--rank_by` the rows are also
ranked by a label-free signal they logged (ranking.py), beside their true
order; a target without a labelled val split is refused unless they are,
and then gets the ranking alone.
"""
import dataclasses
import os
import time
import typing

from udamobile import checks, config as config_lib, config_flags, files
from udamobile.errors import UsageError
from udamobile.evaluation import paper_tables, report
from udamobile.experiments import methods, plan, ranking, table_rows
from udamobile.training import inputs

# The paper's column title of each row (the columns of paper_tables.PAPER_TABLES).
TITLES = {
    "source_only": "source only", "cyclegan": "CycleGAN", "cycada": "CyCADA",
    "full_no_sem_no_feat": "λsem=λfeat=0", "full_no_sem": "λsem=0", "full_no_feat": "λfeat=0",
    "full": "full", "oracle": "oracle", "colour_transfer": "colour transfer",
    "adabn": "AdaBN", "full_self_training": "full + self-training",
    "colour_self_training": "colour transfer + self-training"}


@dataclasses.dataclass(frozen=True)
class Table:
    caption: str
    preset: str  # the default preset
    paper: typing.Optional[str]  # key of paper_tables.PAPER_TABLES; None: not a paper table
    source: str  # the source dataset the paper's numbers (or the default preset) are for
    rows: tuple


TABLES = {
    1: Table("Table 1: GTA5 -> Cityscapes val", "paper_gta5", "gta5", "gta5",
             ("source_only", "cyclegan", "cycada", "full_no_sem_no_feat", "full_no_sem",
              "full_no_feat", "full", "oracle")),
    2: Table("Table 2: SYNTHIA -> Cityscapes val", "paper_synthia", "synthia", "synthia",
             ("source_only", "cyclegan", "cycada", "full", "oracle")),
    3: Table("Table 3 (ablation): GTA5 -> Cityscapes val", "paper_gta5", "gta5", "gta5",
             ("source_only", "full_no_sem_no_feat", "full_no_sem", "full_no_feat", "full")),
    4: Table("Table 4 (beyond the paper): baselines and the paper's method", "demo", None,
             "demo_source",
             ("source_only", "colour_transfer", "adabn", "cyclegan", "full", "full_self_training",
              "oracle")),
    5: Table("Table 5 (beyond the paper): the shift suite", "demo", None, "demo_source",
             ("source_only", "colour_transfer", "adabn", "full", "full_self_training",
              "colour_self_training", "oracle")),
}


def get_table(number):
    checks.check_flags({"table": (number, checks.one_of(*TABLES))})
    return TABLES[number]


def select_rows(table_number, names=None):
    """The rows to run, in the table's order: all, or `names` (the --rows value)."""
    return checks.picked("rows", names, get_table(table_number).rows,
                         f"a row of table {table_number}")


def _paper_cells(paper, title, classes):
    """The paper's IoU of `classes` and its mIoU in its column `title` (None: not reported)."""
    index = paper["columns"].index(title)
    return {name: paper["iou"].get(name, (None,) * len(paper["columns"]))[index]
            for name in classes}, paper["miou"][index]


def comparison(table, scores):
    """(text, JSON-ready rows) of our IoU (%), beside the paper's for a paper table,
    for the rows in `scores`; with the gap each row closes when it can be measured."""
    paper = paper_tables.PAPER_TABLES[table.paper] if table.paper else None
    class_rows, ours = report.iou_columns({TITLES[row]: s for row, s in scores.items()})
    gaps = report.gap_fractions(scores, methods.SOURCE_ONLY_ROW, methods.ORACLE_ROW)
    columns, rows = {}, {}
    for row, result in scores.items():
        title = TITLES[row]
        columns[title] = ours[title]
        rows[row] = {"title": title, "ours": result}
        if gaps:
            rows[row]["gap_closed"] = gaps[row]
        if paper:
            iou, miou = _paper_cells(paper, title, class_rows[:-1])
            columns[f"{title} (paper)"] = ["" if iou[name] is None else f"{iou[name]:.1f}"
                                           for name in class_rows[:-1]] + [f"{miou:.1f}"]
            rows[row]["paper"] = {"iou": iou, "miou": miou, "protocol": paper["protocol"]}
    width = max(len("mIoU %"), *(len(TITLES[row]) for row in scores))
    header = f"{'mIoU %':<{width}} {'ours':>6}" + (f" {'paper':>6}" if paper else "") + (
        f" {'gap closed':>11}" if gaps else "")
    summary = [f"{TITLES[row]:<{width}} {report.percent(scores[row]['miou']):>6}"
               + (f" {rows[row]['paper']['miou']:>6.1f}" if paper else "")
               + (f" {report.gap_percent(gaps[row]):>11}" if gaps else "") for row in scores]
    text = report.text_table(class_rows, columns) + "\n\n" + header + "\n" + "\n".join(summary)
    return text, rows


def _caveats(table, cfg, protocol):
    notes = []
    if table.paper is None:
        return notes
    if cfg.data.source != table.source:
        notes.append(f"note: these rows ran on {cfg.data.source} -> {cfg.data.target}; the "
                     f"paper's numbers are for {table.caption}: not comparable")
    if protocol != paper_tables.PAPER_TABLES[table.paper]["protocol"]:
        notes.append(f"note: ours use the {protocol}-class protocol, the paper's "
                     f"{paper_tables.PAPER_TABLES[table.paper]['protocol']} classes")
    return notes


def _refuse_shrunk_rows(configs):
    """Refuses, before the first row runs, a row whose segmenter would never train
    within its --steps (`plan.idle_parts`), which its train.py would refuse later."""
    for row, stages in configs.items():
        for stage, cfg in stages.items():
            refusal, _ = plan.idle_parts(stage, cfg)
            if refusal:
                raise UsageError(f"row {row}: {refusal}")


def _labelled_target(configs, rank_by):
    """Whether the rows' target has a labelled val split to compare them on. Without
    one the rows can only be ranked by label-free signals: a table is then refused
    before any row runs unless --rank_by is given, and with the oracle row (it trains
    on target labels)."""
    cfg = list(list(configs.values())[0].values())[-1]
    if rank_by and not cfg.run.label_free_images:
        raise UsageError(f"--rank_by={rank_by} ranks the rows by the label-free signals they "
                         "log, and --label_free_images=0 logs none: give a positive count")
    if inputs.has_test_split(cfg):
        return True
    if not rank_by:
        raise UsageError(f"a table compares its rows on the target's labelled val split, and "
                         f"--target={cfg.data.target} has none: give --target_val_root (a folder "
                         "of labelled target images), or --rank_by=mean_entropy to rank the "
                         "rows without labels")
    if methods.ORACLE_ROW in configs:
        raise UsageError(f"row {methods.ORACLE_ROW} trains on the target's labels, and "
                         f"--target={cfg.data.target} has none: pick the other rows with --rows")
    return False


def _finished_rows(table, workdir, rows, labelled, rank_by):
    """(scores {row: scores}, or None for a target without labels; their printed
    text; JSON-ready rows; the label-free ranking, or None) of the finished `rows`."""
    if labelled:
        scores = {row: table_rows.row_scores(workdir, row) for row in rows}
        text, json_rows = comparison(table, scores)
    else:
        scores, text, json_rows = None, "", {row: {"title": TITLES[row]} for row in rows}
    if not rank_by:
        return scores, text, json_rows, None
    ranked, images = ranking.table_ranking(workdir, rows, rank_by, scores)
    ranking_text = ranking.ranking_text(ranked, TITLES, images)
    return scores, f"{text}\n\n{ranking_text}" if text else ranking_text, json_rows, ranked


def run_table(number, *, preset, workdir, overrides, rows=None, dry_run=False, rank_by=None):
    """Runs (or resumes) the rows of table `number`; returns {row: scores} (None if dry,
    or for a target without a labelled val split). With `rank_by` (a criterion of
    ranking.CRITERIA) it also ranks the rows without target labels, beside their true
    order, or alone for a target without labels."""
    table = get_table(number)
    selected = select_rows(number, rows)
    preset = preset or table.preset
    # Every row's configs resolve (and validate) before anything runs; a row's
    # defining settings win over the table-wide flags.
    configs = {row: methods.stage_configs(preset, row, overrides, keep_method_settings=True)
               for row in selected}
    _refuse_shrunk_rows(configs)
    labelled = _labelled_target(configs, rank_by)
    unapplied = table_rows.unapplied_flags(selected, overrides)
    if unapplied:
        print("flags not applied where they would change what defines a row:\n" + "".join(
            f"  row {row}: {c}\n" for row, found in unapplied.items() for c in found),
            end="", flush=True)
    flags = config_flags.as_flags(overrides)
    # Printed commands run in order, so a row exists by the time the later
    # ones take its stages; without it they train their own.
    available = set(selected) | {row for row in table.rows
                                 if os.path.isdir(table_rows.row_dir(workdir, row))}
    commands = {row: table_rows.row_command(row, preset=preset, workdir=workdir, flags=flags,
                                            reuse=table_rows.reused_row(row, available),
                                            keep_method_settings=row in unapplied)
                for row in selected}
    if dry_run:
        print("\n".join(table_rows.printable(commands[row]) for row in selected))
        return None
    started = time.perf_counter()
    seconds = table_rows.run_rows(selected, commands, workdir, configs)
    cfg = list(configs[selected[-1]].values())[-1]  # the last row's last stage
    protocol = config_lib.protocol(cfg)
    heading = (f"{protocol}-class protocol, IoU %: ours (preset {preset})"
               + (" beside the paper's" if table.paper else "")) if labelled else (
        f"preset {preset}; no labelled val split of {cfg.data.target}: the rows are ranked "
        "without labels")
    scores, text, json_rows, ranked = _finished_rows(table, workdir, selected, labelled, rank_by)
    for row in selected:
        json_rows[row].update(command=commands[row], workdir=table_rows.row_dir(workdir, row),
                              seconds_this_run=seconds.get(row))
    notes = _caveats(table, cfg, protocol)
    record = {"table": number, "caption": table.caption, "preset": preset,
              "protocol": protocol, "rows": json_rows, "notes": notes}
    if ranked:
        record["label_free_ranking"] = ranked
    path = os.path.join(workdir, f"table{number}.json")
    files.write_json(path, record)
    print(f"\n{table.caption}, {heading}\n{text}\n" + "".join(f"{n}\n" for n in notes)
          + f"\nrows run now: {len(seconds)} in {(time.perf_counter() - started) / 60:.1f} min; "
          f"written to {path}")
    return scores
