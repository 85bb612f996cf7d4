"""Trains a method of the paper's tables: all its stages, or one of them.

    python train.py --preset=paper_gta5 --method=full \
        --source_root=/data/GTA5 --target_root=/data/cityscapes --workdir=runs/gta5/full

--method picks the row (source_only, oracle, cyclegan, cycada, full; see
udamobile/methods.py); --stage=all (the default) runs its stages in order,
each in <workdir>/<stage>, each starting from the stages before it, then
scores every stage on the target's val split, exports the last segmenter and
draws figures. --stage=NAME runs one stage. Every field of the config is a
flag (see --helpfull); a flag left unset keeps the preset's value. Each
stage's resolved config is written to <workdir>/<stage>/config.json.
"""
import sys

from absl import app, flags, logging

from udamobile import config as config_lib, config_flags, methods

FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "paper_gta5", list(config_lib.PRESETS),
                  "Preset the config starts from.")
flags.DEFINE_enum("method", "full", list(methods.METHODS),
                  "Method (a row of the paper's tables) whose stages to train.")
flags.DEFINE_string("stage", "all", "all (every stage of the method, in order) or one stage "
                    "of it: " + ", ".join(config_lib.STAGES) + ".")
flags.DEFINE_string("workdir", None, "Work directory of the method: one sub-folder per stage.")
flags.DEFINE_string("reuse_stages_from", None, "With --stage=all: take each stage that has a "
                    "finished twin (same config) in this method work directory from there "
                    "instead of training it again.")
flags.mark_flag_as_required("workdir")
config_flags.define_config_flags(flags)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    only = None if FLAGS.stage == "all" else FLAGS.stage
    if only and FLAGS.reuse_stages_from:
        raise app.UsageError("--reuse_stages_from applies to --stage=all")
    try:
        configs = methods.stage_configs(FLAGS.preset, FLAGS.method,
                                        config_flags.config_overrides(FLAGS), only=only)
    except ValueError as e:
        raise app.UsageError(str(e))
    from data_pipelines import UserError  # after flag parsing: importing TF is slow
    from udamobile import method_runner

    try:
        method_runner.run(FLAGS.method, configs, FLAGS.workdir, whole=only is None,
                          reuse_from=FLAGS.reuse_stages_from)
    except UserError as e:
        logging.error("%s", e)
        sys.exit(f"train.py: {e}")


if __name__ == "__main__":
    app.run(main)
