r"""udamobile-table: every row of one of the paper's tables, trained, scored and printed.

    udamobile-table --table=1 --source_root=/data/GTA5 --target_root=/data/cityscapes \
        --workdir=runs/table1 [--rows=source_only,full] [--dry_run] [--preset=demo]
    udamobile-table --table=5 --workdir=runs/table5 [--shifts=demo_fog,demo_tone]

See udamobile/experiments/tables.py for what it runs (shift_table.py for table 5). (`python -m
udamobile.experiments` runs the same program.)
"""
from absl import flags

from data_pipelines import cli
from udamobile import config as config_lib, config_flags
from udamobile.errors import UsageError
from udamobile.experiments import ranking

FLAGS = flags.FLAGS
flags.DEFINE_integer("table", None, "The paper's table 1, 2 or 3, or 4: the baselines "
                     "beside the paper's method, or 5: table 4's rows on every shift of the "
                     "demo suite (udamobile/experiments/tables.py).")
flags.DEFINE_enum("preset", None, list(config_lib.PRESETS),
                  "Preset of every row (default: the table's paper preset).")
flags.DEFINE_string("workdir", None, "Folder of the table: one method folder per row.")
flags.DEFINE_list("rows", None, "Rows to run (default: all of the table's).")
flags.DEFINE_boolean("dry_run", False, "Print each row's command; run nothing.")
flags.DEFINE_list("shifts", None, "--table=5: the shifts of the suite to run (default: all; "
                  "data_pipelines/demo_shifts.py).")
flags.DEFINE_enum("rank_by", None, list(ranking.CRITERIA),
                  "Also rank the rows without target labels by this label-free signal of "
                  "their segmenters, logged on the target's train images, beside the true "
                  "order (udamobile/experiments/ranking.py). Off by default: its hit rate "
                  "is not yet measured on held-out shifts (docs/results.md).")
flags.mark_flags_as_required(["table", "workdir"])
config_flags.define_config_flags()


def main(argv):
    cli.reject_arguments(argv)
    from udamobile.experiments import shift_table, tables

    overrides = config_flags.config_overrides(FLAGS)
    if FLAGS.table == shift_table.NUMBER:
        shift_table.run_suite(preset=FLAGS.preset, workdir=FLAGS.workdir, overrides=overrides,
                              rows=FLAGS.rows, shifts=FLAGS.shifts, dry_run=FLAGS.dry_run,
                              rank_by=FLAGS.rank_by)
    elif FLAGS.shifts:
        raise UsageError(f"--shifts applies to --table={shift_table.NUMBER}, not "
                         f"--table={FLAGS.table}")
    else:
        tables.run_table(FLAGS.table, preset=FLAGS.preset, workdir=FLAGS.workdir,
                         overrides=overrides, rows=FLAGS.rows, dry_run=FLAGS.dry_run,
                         rank_by=FLAGS.rank_by)


def run():
    cli.run("python -m udamobile.experiments", main, uses_tensorflow=False)


if __name__ == "__main__":
    run()
