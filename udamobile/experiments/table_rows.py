"""The rows of a table: each one `train.py --method=<row>` command in its own folder.

    <table>/<row>/            the row's method folder (`train.py --workdir`)
    <table>/<row>/row.json    the command that finished it, and its time
    <table>/<row>/results.json  its stages scored on the target's val split

A row is run once: a finished row (its results.json and row.json there) is
skipped when its command is the same, compared with the folders inside the
table given relative to it, so a copied or moved table runs on. Rows share
the source_only row's stage (`--reuse_stages_from`), and a row that extends
another takes that row's stages (`EXTENDS`). SIGINT and SIGTERM reach the
running row, which saves a checkpoint before the runner exits.
"""
import os
import shlex
import signal
import subprocess
import sys
import time

from udamobile import errors, files
from udamobile.experiments import methods
from udamobile.training import workdirs

# Each row runs the training program with this interpreter, in a checkout or an install.
TRAIN = ("-m", "udamobile.commands.train")
ROW_FILE = "row.json"  # the command that produced a finished row

SHARED_ROW = methods.SOURCE_ONLY_ROW  # its stage starts every other row but the oracle
# row: the row whose stages it begins with
EXTENDS = {"full_self_training": "full", "colour_self_training": "colour_transfer"}


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
    record, results = os.path.join(folder, ROW_FILE), os.path.join(folder, methods.RESULTS_FILE)
    if not (os.path.isfile(record) and os.path.isfile(results)):
        return False
    previous = files.read_json(record, keys=("command",), remedy=(
        "remove it: the runner then runs the row's command again, which finds its finished "
        "stages"))["command"]
    if in_table(previous[2:]) != in_table(command[2:]):
        raise errors.ExperimentError(
            f"row {row} in {folder} was run as\n  {printable(previous)}\nnot\n  "
            f"{printable(command)}\nuse another --workdir for this command (the finished rows "
            "here are kept), or run the command the rows were run with")
    stage_folders = methods.read_method_file(os.path.join(folder, methods.METHOD_FILE))["stages"]
    for stage, cfg in configs.items():
        changed = workdirs.differences(workdirs.read_config(stage_folders[stage]), cfg)
        if changed:
            raise errors.ExperimentError(
                f"row {row}: its stage {stage} ({stage_folders[stage]}) was trained with other "
                f"settings than the same command gives now ({'; '.join(changed[:5])}): the "
                "preset changed since? Use another --workdir (the finished rows here are "
                "kept)")
    return True


def row_scores(workdir, row):
    """The scores of the row's last stage (its segmenter) on the target's val split."""
    results = methods.read_results_file(os.path.join(row_dir(workdir, row),
                                                     methods.RESULTS_FILE))
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
            raise errors.ExperimentError(
                f"{interrupted}: row {row} stopped after saving a checkpoint (exit code "
                f"{code}); the rows before it are kept. Run the same command to resume")
        if code != 0:
            raise errors.ExperimentError(
                f"row {row} stopped (exit code {code}); the rows before it are kept. Run the "
                f"same command to resume. The row's command:\n  {printable(commands[row])}")
        seconds[row] = time.perf_counter() - started
        files.write_json(os.path.join(row_dir(workdir, row), ROW_FILE),
                         {"command": commands[row], "seconds": seconds[row]})
        print(f"row {row}: done in {seconds[row] / 60:.1f} min", flush=True)
    return seconds
