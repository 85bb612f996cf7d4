r"""Every row of a table, trained, scored and printed (a paper table's beside the paper's).

    python -m udamobile.experiments --table=1 --source_root=/data/GTA5 \
        --target_root=/data/cityscapes --workdir=runs/table1

    table  source -> target            rows (methods of udamobile.methods)
    1      GTA5 -> Cityscapes          source_only, cyclegan, cycada, full_no_sem_no_feat,
                                       full_no_sem, full_no_feat, full, oracle
    2      SYNTHIA -> Cityscapes (16)  source_only, cyclegan, cycada, full, oracle
    3      GTA5 -> Cityscapes          source_only, full_no_sem_no_feat, full_no_sem,
           (ablation)                  full_no_feat, full
    4      demo_source -> demo_target  source_only, colour_transfer, adabn, cyclegan, full,
           (beyond the paper)          full_self_training, oracle

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
another (`EXTENDS`: full_self_training is full, then self-training) takes
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
that it closes (`report.gap_fractions`).
"""
import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import time
import typing

from data_pipelines.base import UsageError, UserError
from udamobile import config as config_lib, config_flags, files, methods, paper_tables, report

# Each row runs the training program with this interpreter, in a checkout or an install.
TRAIN = ("-m", "udamobile.commands.train")
ROW_FILE = "row.json"  # the command that produced a finished row
RESULTS_FILE = "results.json"  # written by train.py at the end of a whole run

# The paper's column title of each row (the columns of paper_tables.PAPER_TABLES).
TITLES = {
    "source_only": "source only", "cyclegan": "CycleGAN", "cycada": "CyCADA",
    "full_no_sem_no_feat": "λsem=λfeat=0", "full_no_sem": "λsem=0", "full_no_feat": "λfeat=0",
    "full": "full", "oracle": "oracle", "colour_transfer": "colour transfer",
    "adabn": "AdaBN", "full_self_training": "full + self-training"}


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
}
SHARED_ROW = methods.SOURCE_ONLY  # its stage starts every other row but the oracle
EXTENDS = {"full_self_training": "full"}  # row: the row whose stages it begins with


class ExperimentError(UserError):
    """A row that failed, or a table folder that holds other commands' rows."""


def get_table(number):
    if number not in TABLES:
        raise UsageError(f"--table={number} is not one of {', '.join(map(str, TABLES))}")
    return TABLES[number]


def select_rows(table_number, names=None):
    """The rows to run, in the table's order: all, or `names` (the --rows value)."""
    table = get_table(table_number)
    if not names:
        return table.rows
    unknown = [name for name in names if name not in table.rows]
    if unknown:
        raise UsageError(f"--rows={','.join(unknown)}: not a row of table {table_number}; its "
                         f"rows are {', '.join(table.rows)}")
    return tuple(row for row in table.rows if row in names)


def row_dir(workdir, row):
    return os.path.join(workdir, row)


def reused_row(row, available):
    """The row whose finished stages `row` takes, of the rows `available` (run before
    it, or already in the table's folder): the row it extends, else source_only."""
    if EXTENDS.get(row) in available:
        return EXTENDS[row]
    if row != SHARED_ROW and SHARED_ROW in available and (
            methods.get_method(row).stages[0] == SHARED_ROW):
        return SHARED_ROW
    return None


def row_command(row, *, preset, workdir, flags, reuse=None, keep_method_settings=False):
    """The train.py argv of `row` (`flags`: the --name=value config flags passed on);
    with `reuse` (a row), the stages it shares with that row come from there; with
    `keep_method_settings`, a flag that contradicts the row's method keeps off its stages."""
    command = [sys.executable, *TRAIN, f"--preset={preset}", f"--method={row}",
               f"--workdir={row_dir(workdir, row)}", *flags]
    if keep_method_settings:
        command.append("--keep_method_settings")
    if reuse:
        command.append(f"--reuse_stages_from={row_dir(workdir, reuse)}")
    return command


def unapplied_flags(rows, overrides):
    """{row: [methods.Contradiction]}: the flags a row keeps off the stages its method
    defines (a table-wide flag never changes what a row is)."""
    return {row: found for row in rows
            if (found := methods.contradictions(row, methods.get_method(row).stages, overrides))}


TABLE_FOLDER_FLAGS = ("--workdir", "--reuse_stages_from")  # folders inside the table's


def in_table(arguments):
    """A row's train.py `arguments` with the folders inside the table given relative
    to it: a table folder copied or moved elsewhere runs the same rows."""
    workdir = next(arg.split("=", 1)[1] for arg in arguments if arg.startswith("--workdir="))
    table = os.path.dirname(os.path.abspath(workdir))
    flag_values = [arg.split("=", 1) if arg.startswith("--") and "=" in arg else (arg, None)
                   for arg in arguments]
    return [f"{flag}={os.path.relpath(os.path.abspath(value), table)}"
            if flag in TABLE_FOLDER_FLAGS else flag if value is None else f"{flag}={value}"
            for flag, value in flag_values]


def printable(command):
    """The command as a shell line: `udamobile-train ...`, the program it runs."""
    return shlex.join(["udamobile-train", *command[1 + len(TRAIN):]])


def finished_row(workdir, row, command, configs):
    """True when the row has its results from this same command, trained with the
    settings it gives now (`configs`, {stage: Config}); raises for another command,
    or for stages trained with other settings (a preset changed since, say)."""
    folder = row_dir(workdir, row)
    record = os.path.join(folder, ROW_FILE)
    if not (os.path.isfile(record) and os.path.isfile(os.path.join(folder, RESULTS_FILE))):
        return False
    previous = files.read_json(record, keys=("command",), remedy=(
        "remove it: the runner then runs the row's command again, which finds its finished "
        "stages"))["command"]
    if in_table(previous[2:]) != in_table(command[2:]):
        raise ExperimentError(
            f"row {row} in {folder} was run as\n  {printable(previous)}\nnot\n  "
            f"{printable(command)}\nuse another --workdir for this command (the finished rows "
            "here are kept), or run the command the rows were run with")
    stage_folders = methods.read_method_file(os.path.join(folder, methods.METHOD_FILE))["stages"]
    for stage, cfg in configs.items():
        with open(os.path.join(stage_folders[stage], config_lib.CONFIG_FILE),
                  encoding="utf-8") as f:
            changed = config_lib.differences(config_lib.from_json(f.read()), cfg)
        if changed:
            raise ExperimentError(
                f"row {row}: its stage {stage} ({stage_folders[stage]}) was trained with other "
                f"settings than the same command gives now ({'; '.join(changed[:5])}): the "
                "preset changed since? Use another --workdir (the finished rows here are "
                "kept)")
    return True


def row_scores(workdir, row):
    """The scores of the row's last stage (its segmenter) on the target's val split."""
    results = files.read_json(os.path.join(row_dir(workdir, row), RESULTS_FILE), remedy=(
        "remove it: the row's command scores its finished stages again"))
    if not results:
        raise files.StateFileError(f"{os.path.join(row_dir(workdir, row), RESULTS_FILE)} holds "
                                   "no scores; remove it: the row's command scores its "
                                   "finished stages again")
    return list(results.values())[-1]


def run_row(command):
    """Runs a row's train.py; returns (its exit code, the name of the SIGINT or SIGTERM
    the runner received meanwhile, or None).

    Either signal is passed on to the row, which saves a checkpoint and
    exits, and the runner waits for that: a row never outlives the runner,
    and is never killed before it saves.
    """
    child = subprocess.Popen(command)
    received = []

    def forward(signum, frame):
        received.append(signal.Signals(signum).name)
        if child.poll() is None:
            child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code, (received[0] if received else None)


def run_rows(rows, commands, workdir, configs):
    """Runs the rows not finished yet, in order; {row: seconds} of those it ran."""
    seconds = {}
    for row in rows:
        if finished_row(workdir, row, commands[row], configs[row]):
            print(f"row {row}: done, in {row_dir(workdir, row)}", flush=True)
            continue
        print(f"row {row}: {printable(commands[row])}", flush=True)
        started = time.perf_counter()
        code, interrupted = run_row(commands[row])
        if interrupted:
            raise ExperimentError(
                f"{interrupted}: row {row} stopped after saving a checkpoint (exit code "
                f"{code}); the rows before it are kept. Run the same command to resume")
        if code != 0:
            raise ExperimentError(
                f"row {row} stopped (exit code {code}); the rows before it are kept. Run the "
                f"same command to resume. The row's command:\n  {printable(commands[row])}")
        seconds[row] = time.perf_counter() - started
        files.write_json(os.path.join(row_dir(workdir, row), ROW_FILE),
                         {"command": commands[row], "seconds": seconds[row]})
        print(f"row {row}: done in {seconds[row] / 60:.1f} min", flush=True)
    return seconds


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
    gaps = report.gap_fractions(scores, methods.SOURCE_ONLY, methods.ORACLE)
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


def run_table(number, *, preset, workdir, overrides, rows=None, dry_run=False):
    """Runs (or resumes) the rows of table `number`; returns {row: scores} (None if dry)."""
    table = get_table(number)
    selected = select_rows(number, rows)
    preset = preset or table.preset
    # Every row's configs resolve (and validate) before anything runs; a row's
    # defining settings win over the table-wide flags.
    configs = {row: methods.stage_configs(preset, row, overrides, keep_method_settings=True)
               for row in selected}
    unapplied = unapplied_flags(selected, overrides)
    if unapplied:
        print("flags not applied where they would change what defines a row:\n" + "".join(
            f"  row {row}: {c}\n" for row, found in unapplied.items() for c in found),
            end="", flush=True)
    flags = config_flags.as_flags(overrides)
    # Printed commands run in order, so a row exists by the time the later
    # ones take its stages; without it they train their own.
    available = set(selected) | {row for row in table.rows
                                 if os.path.isdir(row_dir(workdir, row))}
    commands = {row: row_command(row, preset=preset, workdir=workdir, flags=flags,
                                 reuse=reused_row(row, available),
                                 keep_method_settings=row in unapplied)
                for row in selected}
    if dry_run:
        print("\n".join(printable(commands[row]) for row in selected))
        return None
    started = time.perf_counter()
    seconds = run_rows(selected, commands, workdir, configs)
    scores = {row: row_scores(workdir, row) for row in selected}
    cfg = list(configs[selected[-1]].values())[-1]  # the last row's last stage
    protocol = config_lib.protocol(cfg)
    text, json_rows = comparison(table, scores)
    for row in selected:
        json_rows[row].update(command=commands[row], workdir=row_dir(workdir, row),
                              seconds_this_run=seconds.get(row))
    notes = _caveats(table, cfg, protocol)
    path = os.path.join(workdir, f"table{number}.json")
    files.write_json(path, {"table": number, "caption": table.caption, "preset": preset,
                            "protocol": protocol, "rows": json_rows, "notes": notes})
    beside = " beside the paper's" if table.paper else ""
    print(f"\n{table.caption}, {protocol}-class protocol, IoU %: ours (preset {preset})"
          f"{beside}\n{text}\n" + "".join(f"{n}\n" for n in notes)
          + f"\nrows run now: {len(seconds)} in {(time.perf_counter() - started) / 60:.1f} min; "
          f"written to {path}")
    return scores


if __name__ == "__main__":
    from udamobile.commands import table

    table.run()
