"""Trains the segmenter: stage 1 (source only), stage 2 (adaptation), or both.

    python train.py --preset=paper_gta5 --stage=source_only \
        --source_root=/data/GTA5 --workdir=runs/gta5_source_only
    python train.py --preset=paper_gta5 --stage=adaptation \
        --source_root=/data/GTA5 --target_root=/data/cityscapes \
        --init_checkpoint=runs/gta5_source_only --workdir=runs/gta5_adapted

With --stage=all, stage 1 runs in <workdir>/source_only and stage 2 in
<workdir>/adaptation, starting from stage 1. Every field of the config is a
flag (see --helpfull); a flag left unset keeps the preset's value. The
resolved config is written to <workdir>/config.json.
"""
import sys
import typing

from absl import app, flags, logging

from udamobile import config as config_lib

FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "paper_gta5", config_lib.PRESETS, "Preset the config starts from.")
flags.DEFINE_enum("stage", "all", ("all",) + config_lib.STAGES,
                  "source_only, adaptation, or all (both, adaptation starting from source_only).")
flags.DEFINE_string("workdir", None, "Work directory (config, checkpoints, logs, eval).")
flags.mark_flag_as_required("workdir")


def _define_config_flags():
    """One flag per config field, defaulting to None (= keep the preset's value)."""
    for name, (section, field) in config_lib.field_index().items():
        help_text = f"[{section}] {field.metadata['help']}"
        kind = field.type
        if typing.get_origin(kind) is typing.Union:  # Optional[X]
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
            help_text += " 0 or empty: none."
        if kind is bool:
            flags.DEFINE_boolean(name, None, help_text)
        elif kind is int:
            flags.DEFINE_integer(name, None, help_text)
        elif kind is float:
            flags.DEFINE_float(name, None, help_text)
        elif kind is str:
            flags.DEFINE_string(name, None, help_text)
        else:  # tuple[int, ...]
            flags.DEFINE_list(name, None, help_text + " Comma-separated integers.")


_define_config_flags()


def _flag_overrides():
    overrides = {}
    for name, (_, field) in config_lib.field_index().items():
        value = FLAGS[name].value
        if value is None:
            continue
        if isinstance(value, list):
            try:
                value = tuple(int(v) for v in value)
            except ValueError:
                raise app.UsageError(f"--{name} takes comma-separated integers, got {value}")
        elif value in (0, "") and typing.get_origin(field.type) is typing.Union:
            value = None
        overrides[name] = value
    return overrides


def resolve_config(stage):
    try:
        cfg = config_lib.override(config_lib.get_config(FLAGS.preset, stage), **_flag_overrides())
        return config_lib.validate(cfg)
    except ValueError as e:
        raise app.UsageError(str(e))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from udamobile import pipeline  # after flag parsing: importing TF is slow

    stages = config_lib.STAGES if FLAGS.stage == "all" else (FLAGS.stage,)
    configs = {stage: resolve_config(stage) for stage in stages}
    try:
        pipeline.run(configs, FLAGS.workdir)
    except pipeline.USER_ERRORS as e:
        logging.error("%s", e)
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
