"""Trains a method of the paper's tables: all its stages, or one of them.

    udamobile-train --preset=paper_gta5 --method=full \
        --source_root=/data/GTA5 --target_root=/data/cityscapes --workdir=runs/gta5/full

--method picks the row (source_only, oracle, cyclegan, cycada, full; see
udamobile/methods.py); --stage=all (the default) runs its stages in order,
each in <workdir>/<stage>, each starting from the stages before it, then
scores every stage on the target's val split, exports the last segmenter and
draws figures; --oracle adds the oracle beside them. --stage=NAME runs one
stage. Every field of the config is a flag (see --helpfull); a flag left
unset keeps the preset's value. Each
stage's resolved config is written to <workdir>/<stage>/config.json.
(`python train.py` in a checkout runs the same program.)
"""
from absl import flags

from data_pipelines import cli
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
flags.DEFINE_bool("oracle", False, "With --stage=all: also train the oracle (the segmenter "
                  "on the target's train labels, which it needs) in <workdir>/oracle, score it "
                  "beside the method's stages and print the share of the source-only -> oracle "
                  "gap each stage closes.")
flags.mark_flag_as_required("workdir")
config_flags.define_config_flags()


def main(argv):
    cli.reject_arguments(argv)
    only = None if FLAGS.stage == "all" else FLAGS.stage
    if only and FLAGS.reuse_stages_from:
        raise cli.UsageError("--reuse_stages_from applies to --stage=all")
    overrides = config_flags.config_overrides(FLAGS)
    configs = methods.stage_configs(FLAGS.preset, FLAGS.method, overrides, only=only)
    oracle = (methods.stage_configs(FLAGS.preset, "oracle", overrides)["oracle"]
              if FLAGS.oracle else None)
    from udamobile import method_runner  # after flag parsing: importing TF is slow

    method_runner.run(FLAGS.method, configs, FLAGS.workdir, whole=only is None,
                      reuse_from=FLAGS.reuse_stages_from, oracle=oracle)


def run():
    cli.run("train.py", main)


if __name__ == "__main__":
    run()
