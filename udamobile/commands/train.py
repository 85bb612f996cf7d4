r"""Trains a method of the paper's tables: all its stages, or one of them.

    udamobile-train --preset=paper_gta5 --method=full \
        --source_root=/data/GTA5 --target_root=/data/cityscapes --workdir=runs/gta5/full

--method picks the row (source_only, oracle, cyclegan, cycada, full, ...;
udamobile/experiments/methods.py). --stage=all (the default) runs its stages in order,
each in <workdir>/<stage>, each starting from the stages before it, then
scores every stage on the target's val split, exports the last segmenter
and draws figures; --oracle adds the oracle beside them. --stage=NAME runs
one stage, from the finished stages before it in the same <workdir>.

Every field of the config is a flag (--helpfull lists them); a flag left
unset keeps the preset's value. Settings apply in this order: the stage's
recipe, the preset, the method's defining settings, the flags. A flag that
contradicts a defining setting of the method (--method=full_no_sem
--lambda_sem=0.2) is refused, unless --keep_method_settings keeps the
method's value on its stages.

    --print_config   prints each stage's resolved config, where each
                     non-default value came from, and where each network's
                     weights will come from; runs nothing
    --config=FILE    runs the stage of a saved <workdir>/<stage>/config.json
                     exactly as it was resolved (no config flag beside it)

Each stage's resolved config is written to <workdir>/<stage>/config.json
and where its networks started from to <workdir>/<stage>/sources.json.
(`python train.py` in a checkout runs the same program.)
"""
import os

from absl import flags

from data_pipelines import cli
from udamobile import config as config_lib, config_flags, errors
from udamobile.experiments import methods
from udamobile.training import workdirs

FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "paper_gta5", list(config_lib.PRESETS),
                  "Preset the config starts from.")
flags.DEFINE_enum("method", methods.PAPER_ROW, list(methods.METHODS),
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
flags.DEFINE_bool("keep_method_settings", False, "Where a config flag contradicts a setting "
                  "that defines --method (e.g. full_no_sem's lambda_sem=0), keep the method's "
                  "value on its stages and apply the flag to the others, saying so, instead of "
                  "refusing the command (the table runner passes it).")
flags.DEFINE_bool("print_config", False, "Print every stage's resolved config, where each "
                  "non-default value came from (stage recipe, preset, method, flag) and where "
                  "each network's weights will come from; then exit without training.")
flags.DEFINE_string("config", None, "A stage's saved config.json (or its work directory): "
                    "run that stage with exactly that config, in --workdir's method folder. "
                    "No config flag or --preset may be given beside it.")
flags.mark_flag_as_required("workdir")
config_flags.define_config_flags()

COMMON_FLAGS = ("source_root", "target_root", "init_checkpoint", "steps", "seed")


def _method_of(stage_dir):
    """The method named by the method folder holding `stage_dir`, or None."""
    path = os.path.join(os.path.dirname(os.path.abspath(stage_dir)), methods.METHOD_FILE)
    return methods.read_method_file(path)["method"] if os.path.isfile(path) else None


def saved_config(path):
    """(method, preset, {stage: Config}) of `--config`: the stage its file holds, exactly."""
    stage_dir = path if os.path.isdir(path) else os.path.dirname(path)
    if os.path.isdir(path):
        path = os.path.join(path, workdirs.CONFIG_FILE)
    given = [name for name in (*config_lib.field_index(), "preset") if FLAGS[name].present]
    if given:
        raise errors.UsageError(f"--config={path} runs that config exactly; --{given[0]} "
                                "would change it: edit a copy of the file instead")

    cfg = config_lib.validate(workdirs.read_config_file(path))
    if FLAGS.stage not in ("all", cfg.stage):
        raise errors.UsageError(f"--stage={FLAGS.stage}, but --config={path} is of stage "
                                f"{cfg.stage}")
    method = FLAGS.method if FLAGS["method"].present else (_method_of(stage_dir) or FLAGS.method)
    if cfg.stage not in methods.get_method(method).stages:
        raise errors.UsageError(f"--config={path} is of stage {cfg.stage}, which --method={method} "
                                "does not have: give the method it was run in")
    return method, cfg.preset, {cfg.stage: cfg}


def resolved_configs():
    """(method, preset, {stage: Config}, oracle Config or None, overrides) of the flags."""
    only = None if FLAGS.stage == "all" else FLAGS.stage
    if only and FLAGS.reuse_stages_from:
        raise errors.UsageError("--reuse_stages_from applies to --stage=all")
    if FLAGS.config:
        return (*saved_config(FLAGS.config), None, {})
    overrides = config_flags.config_overrides(FLAGS)
    keep = FLAGS.keep_method_settings
    configs = methods.stage_configs(FLAGS.preset, FLAGS.method, overrides, only=only,
                                    keep_method_settings=keep)
    for contradiction in methods.contradictions(FLAGS.method, configs, overrides) if keep else ():
        print(f"not applied (--keep_method_settings): {contradiction}", flush=True)
    oracle = (methods.stage_configs(FLAGS.preset, methods.ORACLE_ROW, overrides)[methods.ORACLE_ROW]
              if FLAGS.oracle else None)
    return FLAGS.method, FLAGS.preset, configs, oracle, overrides


def main(argv):
    cli.reject_arguments(argv)
    method, preset, configs, oracle, overrides = resolved_configs()
    # After the configs resolve: a mistyped flag fails in a second, not after TF's start-up.
    cli.start_tensorflow()
    from udamobile.experiments import plan, runner

    if FLAGS.print_config:
        everything = {**configs, **({methods.ORACLE_ROW: oracle} if oracle else {})}
        dirs = runner.stage_dirs(FLAGS.workdir, method, everything)
        warnings = runner.plan_warnings(method, everything, dirs)
        print(plan.describe(method, everything, dirs, preset=preset, overrides=overrides,
                            keep_method_settings=FLAGS.keep_method_settings,
                            config_file=FLAGS.config)
              + "".join(f"\nwarning: {w}" for w in warnings))
        return
    runner.run(method, configs, FLAGS.workdir, whole=FLAGS.stage == "all" and not
               FLAGS.config, reuse_from=FLAGS.reuse_stages_from, oracle=oracle)


def run():
    cli.run("train.py", main, uses_tensorflow=False, common_flags=COMMON_FLAGS)


if __name__ == "__main__":
    run()
