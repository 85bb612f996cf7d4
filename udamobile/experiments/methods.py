"""Methods: the rows of the paper's tables, each an ordered list of stages.

    method       stages, in order (each starts from the ones before)
    source_only  source_only
    oracle       oracle (the segmenter trained on the target's train labels)
    colour_transfer
                 source_only, colour_transfer (fine-tuned on source images
                 matched to the target's colour statistics; beyond the paper)
    adabn        source_only, adabn (batch-norm statistics re-estimated on
                 the target; beyond the paper)
    cyclegan     source_only, translation, translated_source
    cycada       source_only, semantic_translation, translated_source, feature_alignment
    full         source_only, adaptation (the paper)
    full_no_sem, full_no_feat, full_no_sem_no_feat
                 the same with lambda_sem and/or lambda_feat 0 in the
                 adaptation stage (Table 3's ablations)
    full_self_training
                 source_only, adaptation, self_training (CBST's class-balanced
                 pseudo-labels on the adapted segmenter; beyond the paper)
    colour_self_training
                 source_only, colour_transfer, colour_self_training (the same
                 self-training from the colour-transfer segmenter, beside
                 colour-matched source images; no GAN; beyond the paper)
    full_distilled, full_self_training_distilled
                 the same, then distill: a smaller student learns the adapted
                 segmenter's predictions on the target (beyond the paper)
    any other stage's name
                 that stage alone (`translation`: a CycleGAN translator); a stage
                 that adapts a segmenter starts it from --init_checkpoint

A method's work directory holds one sub-folder per stage, named after it,
plus `method.json`. A stage builds the networks its stage object declares
and restores each network it takes from an earlier stage (`Stage.restores`)
from the latest earlier stage of the method that built it; only the first
stage is initialized by `--init_checkpoint`.

A method's `defining_settings` ({stage: edits}) are what makes the row the
row (full_no_sem's lambda_sem=0, CyCADA's lambda_feat=0.1). Settings apply
in the order field defaults, stage recipe, preset, method, flags; a flag
that contradicts a defining setting is a usage error naming both values,
unless the command asks to keep the method's settings
(`--keep_method_settings`, which the table runner passes): then the method's
value stays on its stages, the flag applies to the others, and what was not
applied is listed (`contradictions`).

This module holds the table and resolves configs and folders; it imports no
TensorFlow (train.py defines its flags from it). Like `config`, it raises
UsageError for a flag value that does not fit.
"""
import dataclasses
import os

from udamobile import config as config_lib, errors
from udamobile.errors import UsageError
from udamobile.experiments.presets import IMAGE_DISCRIMINATOR_STRIDES


@dataclasses.dataclass(frozen=True)
class Method:
    doc: str
    stages: tuple
    defining_settings: dict = dataclasses.field(default_factory=dict)


def _ablation(**edits):
    """The paper's method with some terms off. Table 3's ablations change the
    adaptation stage only, so their source-only stage is every method's
    (and the table runner shares it)."""
    off = " and ".join(f"{name}=0" for name in edits)
    return Method(f"The paper's framework with {off} (an ablation of Table 3).",
                  ("source_only", "adaptation"), defining_settings={"adaptation": edits})


METHODS = {
    "source_only": Method("The segmenter trained on the labelled source only.", ("source_only",)),
    "oracle": Method("The segmenter trained on the target's train labels: the upper bound.",
                     ("oracle",)),
    "colour_transfer": Method(
        "A baseline beyond the paper: the source-only segmenter fine-tuned on source images "
        "whose Lab colour statistics are matched to the target's average (Reinhard et al. "
        "2001).", ("source_only", "colour_transfer")),
    "adabn": Method(
        "A baseline beyond the paper: the source-only segmenter with its batch-norm "
        "statistics re-estimated on unlabelled target images (AdaBN, Li et al. 2016); no "
        "weight is trained.", ("source_only", "adabn")),
    "cyclegan": Method(
        "CycleGAN translation (Eq. 1-3, no segmenter), then the source-only segmenter "
        "fine-tuned on G_ST(x_S) with y_S; both on whole rescaled images, as the paper "
        "trains its CycleGAN baseline, with the cited CycleGAN's cycle weight (10 per "
        "direction) and 70x70 PatchGAN discriminators.",
        ("source_only", "translation", "translated_source"),
        defining_settings={"translation": dict(
            whole_images=True, lambda_cycle=10.0,
            discriminator_strides=IMAGE_DISCRIMINATOR_STRIDES["patchgan70"]),
            "translated_source": dict(whole_images=True)}),
    "cycada": Method(
        "CyCADA's three steps: translation with semantic consistency (Eq. 4, CyCADA's "
        "weight 1) against the fixed source-only segmenter, the segmenter trained on "
        "translated source, then feature-level adversarial alignment of its encoder "
        "(CyCADA's weight 0.1), task loss kept.",
        ("source_only", "semantic_translation", "translated_source", "feature_alignment"),
        defining_settings={"semantic_translation": dict(lambda_sem=1.0, lambda_cycle=10.0),
                           "feature_alignment": dict(lambda_feat=0.1)}),
    "full": Method("The paper's framework, all networks trained together (Eq. 9).",
                   ("source_only", "adaptation")),
    "full_no_sem": _ablation(lambda_sem=0.0),
    "full_no_feat": _ablation(lambda_feat=0.0),
    "full_no_sem_no_feat": _ablation(lambda_sem=0.0, lambda_feat=0.0),
    "full_self_training": Method(
        "Beyond the paper: the paper's framework, then rounds of self-training on the "
        "adapted segmenter's class-balanced pseudo-labels of the target (CBST, Zou et al. "
        "2018) beside the translated source.", ("source_only", "adaptation", "self_training")),
    "colour_self_training": Method(
        "Beyond the paper: the colour_transfer row, then the self-training rounds of "
        "full_self_training from its segmenter, with colour-matched source images in place "
        "of G_ST's translations: adaptation without a GAN.",
        ("source_only", "colour_transfer", "colour_self_training")),
    "full_distilled": Method(
        "Beyond the paper: the paper's framework, then a smaller student (--student) "
        "distilled from the adapted segmenter on target images, with the source's labels "
        "beside them (docs/distillation.md).", ("source_only", "adaptation", "distill")),
    "full_self_training_distilled": Method(
        "Beyond the paper: full_self_training, then a smaller student (--student) distilled "
        "from the self-trained segmenter (docs/distillation.md).",
        ("source_only", "adaptation", "self_training", "distill")),
}
# Every other stage is a method of its own, which runs it alone.
METHODS.update({stage: Method(f"The {stage} stage alone (udamobile/training/stages/); a stage that "
                              "adapts a segmenter starts it from --init_checkpoint.", (stage,))
                for stage in config_lib.STAGES if stage not in METHODS})
# The rows the share of the gap each result closes is measured between (each the
# method, and the stage, of its name), and the paper's method, train.py's default.
SOURCE_ONLY_ROW, ORACLE_ROW, PAPER_ROW = "source_only", "oracle", "full"
METHOD_FILE = "method.json"
RESULTS_FILE = "results.json"  # a whole run's scores of its stages, beside method.json


def get_method(name):
    if name not in METHODS:
        raise UsageError(f"--method={name!r} is not one of {', '.join(METHODS)}")
    return METHODS[name]


@dataclasses.dataclass(frozen=True)
class Contradiction:
    """A flag that contradicts a setting defining `method` on `stage`."""
    method: str
    stage: str
    field: str
    flag_value: object
    method_value: object

    def __str__(self):
        return (f"--{self.field}={self.flag_value} (--method={self.method} sets "
                f"{self.field}={self.method_value} on its {self.stage} stage)")


def contradictions(method, stages, overrides):
    """[Contradiction] of the flags `overrides` against `method`'s defining settings
    on `stages`; a flag equal to the method's value is none."""
    edits = get_method(method).defining_settings
    return [Contradiction(method, stage, name, overrides[name], value)
            for stage in stages for name, value in edits.get(stage, {}).items()
            if name in overrides and overrides[name] != value]


def stage_layers(preset, method, stage, overrides, *, keep_method_settings=False):
    """The config layers of `stage` of `method` (`config.config_layers`), then the
    method's edits, then the flags `overrides` (less those its edits keep)."""
    edits = get_method(method).defining_settings.get(stage, {})
    if keep_method_settings:
        overrides = {k: v for k, v in overrides.items() if k not in edits}
    layers = [*config_lib.config_layers(preset, stage), (f"method {method}", edits),
              ("flag", overrides)]
    fixed = config_lib.get_stage(stage).fixed_edits(
        config_lib.apply_layers(config_lib.Config(preset=preset, stage=stage), layers)[0])
    return layers + [fixed] if fixed else layers


def cancelled_flags(run, configs, overrides):
    """'--flag=value (why)' of each flag in `overrides` that every stage of `run` sets
    after the flags (`Stage.fixed_edits`): a flag that would change nothing."""
    fixed = {stage: config_lib.get_stage(stage).fixed_edits(configs[stage]) for stage in run}
    return [f"--{name}={value} ({fixed[run[0]][0]} sets {name} on stage {run[0]} after the "
            "flags)" for name, value in overrides.items()
            if all(fixed[stage] and name in fixed[stage][1] for stage in run)]


def stage_config(preset, method, stage, overrides, *, keep_method_settings=False):
    """The validated Config of `stage` of `method`: preset, method edits, then `overrides`."""
    layers = stage_layers(preset, method, stage, overrides,
                          keep_method_settings=keep_method_settings)
    cfg = config_lib.Config(preset=preset, stage=stage)
    return config_lib.validate(config_lib.apply_layers(cfg, layers)[0])


def value_origins(cfg, preset, method, overrides, *, keep_method_settings=False):
    """{field: where its value came from} of the fields of `cfg` (a stage of
    `method`) that differ from the field defaults."""
    layers = stage_layers(preset, method, cfg.stage, overrides,
                          keep_method_settings=keep_method_settings)
    _, origins = config_lib.apply_layers(config_lib.Config(preset=preset, stage=cfg.stage),
                                         layers)
    defaults = config_lib.flat_values(config_lib.Config())
    return {name: origins[name] for name, value in config_lib.flat_values(cfg).items()
            if value != defaults[name]}


def stage_configs(preset, method, overrides, *, only=None, keep_method_settings=False):
    """{stage: Config} of the stages of `method` to run: all, or `only` one.

    A flag that contradicts the method's defining settings on those stages
    raises UsageError naming both values, unless `keep_method_settings`
    (module docstring). `--init_checkpoint` belongs to the first stage: every
    later stage of a whole run starts from the stages before it, so its config
    drops the flag. A single later stage run by name keeps it: there the user
    asks to start that stage's segmenter from the named file, which the runner
    allows only where no earlier stage of the method is in the work directory.
    """
    stages = get_method(method).stages
    if only is not None and only not in stages:
        raise UsageError(f"--stage={only} is not a stage of --method={method}; its stages are "
                         f"{', '.join(stages)} (or all)")
    run = stages if only is None else (only,)
    contradicting = contradictions(method, run, overrides)
    if contradicting and not keep_method_settings:
        raise UsageError(
            "; ".join(map(str, contradicting)) + ": leave the flag out, choose another "
            "method, or give --keep_method_settings to keep the method's value there")
    configs = {}
    for index, stage in enumerate(run):
        values = dict(overrides)
        if only is None and index > 0:
            values.pop("init_checkpoint", None)
            values.pop("init_allow_partial", None)
        configs[stage] = stage_config(preset, method, stage, values,
                                      keep_method_settings=keep_method_settings)
    cancelled = cancelled_flags(run, configs, overrides)
    if cancelled:
        raise UsageError("; ".join(cancelled) + ": the flag would change nothing; leave it "
                         "out, or choose another row there")
    return configs


def earlier_stages(method, stage):
    """The stages of `method` before `stage`, nearest first."""
    stages = get_method(method).stages
    return tuple(reversed(stages[:stages.index(stage)]))


def stage_dir(workdir, stage):
    return os.path.join(workdir, stage)


def method_record(method, workdir, dirs):
    """The content of a method folder's method.json: the method, and the folder of each
    stage relative to `workdir`, so that a copied or moved folder (a whole table's,
    say) keeps pointing into itself rather than at the original's stages."""
    return {"method": method, "stages": {
        stage: os.path.relpath(os.path.abspath(folder), os.path.abspath(workdir))
        for stage, folder in dirs.items()}}


def read_method_file(path):
    """{"method", "stages": {stage: absolute folder}} of a method folder's method.json."""
    from udamobile import files  # keeps this module free of numpy for the flag definitions

    record = files.read_json(path, keys=("method", "stages"), remedy=(
        "remove it: the same train.py command writes it again"))
    folder = os.path.dirname(os.path.abspath(path))
    stages = record["stages"]
    moved_from = _written_in(folder, stages)
    record["stages"] = {stage: os.path.normpath(os.path.join(folder, held)) if not
                        os.path.isabs(held) else _moved(held, moved_from, folder)
                        for stage, held in stages.items()}
    return record


def read_results_file(path):
    """{stage: scores (scoring.evaluate's)} of a method folder's results.json (runner.py)."""
    from udamobile import files

    results = files.read_json(path, remedy=(
        "remove it: the same train.py command scores the finished stages again"))
    if not results:
        raise errors.StateFileError(f"{path} holds no scores; remove it: the same train.py "
                                    "command scores the finished stages again")
    return results


def _written_in(folder, stages):
    """Where a method.json of absolute folders (written before they were stored
    relative) was written, when its method folder has moved to `folder` since: the
    parent of a stage folder it names that is now a sub-folder of `folder`; else None."""
    written = {os.path.dirname(held) for stage, held in stages.items()
               if os.path.isabs(held) and os.path.basename(held) == stage
               and os.path.isdir(os.path.join(folder, stage))}
    return written.pop() if len(written) == 1 and folder not in written else None


def _moved(held, moved_from, folder):
    """An absolute stage folder of an older method.json, moved with the method folder:
    the folders that were beside it (its table's rows) are looked for beside it now."""
    if moved_from is None:
        return held
    table = os.path.dirname(moved_from)
    if os.path.commonpath([held, table]) != table:
        return held  # taken from outside the table: it did not move
    return os.path.join(os.path.dirname(folder), os.path.relpath(held, table))
