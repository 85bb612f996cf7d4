"""Runs a method (`udamobile.experiments.methods`): its stages in order, then scores,
exports and draws.

A whole run (`train.py --stage=all`, the default) of method M in <workdir>:

    <workdir>/method.json    the method and the folder of each stage
    <workdir>/<stage>/       one work directory per stage, in the method's order,
                             each starting from the stages before it
    <workdir>/oracle/        with --oracle: the segmenter trained on the target's
                             train labels, the upper bound the table compares with
    <workdir>/results.json   every stage with a segmenter scored on the target's
                             labelled val split (the test set; nothing is
                             selected on it)
    <workdir>/export/        the last stage's segmenter as SavedModel and int8 TFLite
    <workdir>/figures/       translations (Fig. 2, when a stage learned them) and
                             segmentations (Fig. 3) of each stage's segmenter

and a table of each stage's IoU is printed at the end. `--stage=NAME` runs
one stage of the method, from the stages before it in the same <workdir>.

With `reuse_from` (`--reuse_stages_from`), a stage whose finished twin (same
config) is in that method work directory is taken from there instead of
being trained again: the table runner shares one source-only stage between
all its rows this way.
"""
import os

import cv2

import data_pipelines
from data_pipelines import validation
from data_pipelines.images import to_pixels, to_unit_range
from export.artifacts import export_workdir
from udamobile import config as config_lib, errors, files
from udamobile.errors import UsageError
from udamobile.evaluation import figures, model_adapters, report, scoring
from udamobile.experiments import methods, plan
from udamobile.nets import networks
from udamobile.training import checkpointing, distribute, inputs, trainer, workdirs
from udamobile.training.stages import get_stage

EXPORT_FORMATS = ("saved_model", "tflite_int8")
MAX_EXPORT_WIDTH = 1024  # Cityscapes at half resolution, the paper's board-sized input
FIGURE_EXAMPLES = 3


def target_test_set(cfg):
    """The target's labelled val split, opened."""
    return inputs.open_split(cfg, inputs.test_split(cfg))


def data_of_run(configs, whole):
    """[(name, root, split)] the stages in `configs` read, and for a `whole` run the
    target's test split it is scored on; each once, in the order first read."""
    used = [split for cfg in configs.values()
            for split in inputs.datasets_used(cfg, get_stage(cfg.stage))]
    if whole:
        used.append(inputs.test_split(list(configs.values())[-1]))
    return list(dict.fromkeys(used))


def announce_full_check(configs, whole):
    """Prints, once per run, the commands that decode every file the run reads:
    the start-up check only decodes a sample of each split."""
    cfg = list(configs.values())[-1]
    print("Start-up checks decode a sample of each split; to decode every file the run reads, "
          "first run:\n" + "".join(
              f"  {validation.full_check_command(*triple, cfg.data.synthia_classes)}\n"
              for triple in data_of_run(configs, whole)), end="", flush=True)


def export_size(test_set):
    """The TFLite input size: the test images' size, at most MAX_EXPORT_WIDTH wide."""
    height, width = test_set.read_image(0).shape[:2]
    scale = min(1.0, MAX_EXPORT_WIDTH / width)
    return int(round(height * scale)), int(round(width * scale))


def results_table(scores):
    """Per-class IoU (%) of each stage ({stage: scores}) and, with several, the gain of
    the method's last stage over its first; with the oracle's too, the share of the
    source-only -> oracle gap each stage closes."""
    rows, columns = report.iou_columns({stage.replace("_", " "): s for stage, s in scores.items()})
    text = report.text_table(rows, columns)
    stages = [stage for stage in scores if stage != methods.ORACLE_ROW]
    if len(stages) > 1:
        first, last = stages[0], stages[-1]
        text += (f"\ngain of {last} over {first}: "
                 f"{100 * (scores[last]['miou'] - scores[first]['miou']):+.1f} mIoU")
    gaps = report.gap_fractions(scores, methods.SOURCE_ONLY_ROW, methods.ORACLE_ROW)
    if gaps:
        text += ("\nshare of the source-only -> oracle gap closed: "
                 + ", ".join(f"{stage} {report.gap_percent(gaps[stage])}" for stage in stages))
    return text


# --- the work directory of a method ---------------------------------------------

def _check_method_dir(workdir, method):
    if os.path.isfile(workdirs.config_path(workdir)):
        raise errors.WorkdirError(
            f"{workdir} is the work directory of one stage; --workdir takes a method's folder, "
            "which holds one sub-folder per stage")
    path = os.path.join(workdir, methods.METHOD_FILE)
    if os.path.isfile(path):
        held = methods.read_method_file(path)["method"]
        if held != method:
            raise errors.WorkdirError(
                f"{workdir} holds a run of --method={held}, not {method}; use another --workdir")


def _stage_folder(method_dir, stage):
    """Where the method folder `method_dir` holds `stage`: the folder its method.json
    names (a stage it took from another run), else its sub-folder."""
    path = os.path.join(method_dir, methods.METHOD_FILE)
    if os.path.isfile(path):
        held = methods.read_method_file(path)["stages"]
        if stage in held:
            return held[stage]
    return methods.stage_dir(method_dir, stage)


def reused_dir(reuse_from, stage, cfg):
    """The folder of `stage` in `reuse_from` if it is a finished twin of `cfg`, else None."""
    if not os.path.isdir(reuse_from):
        raise errors.WorkdirError(f"--reuse_stages_from={reuse_from} does not exist")
    folder = _stage_folder(reuse_from, stage)
    if not os.path.isfile(workdirs.config_path(folder)):
        return None
    differences = workdirs.differences(workdirs.read_config(folder), cfg)
    if differences:
        raise errors.WorkdirError(
            f"--reuse_stages_from: {folder} was trained with other settings ("
            + "; ".join(differences[:5]) + "); use the same flags, or leave the flag out")
    done, step = checkpointing.finished(folder)
    if not done:
        raise errors.WorkdirError(
            f"--reuse_stages_from: {folder} has not finished (step {step} of {cfg.optim.steps}); "
            "finish it first")
    return folder


def stage_sources(method, stage_name, dirs, cfg):
    """{network: checkpoint} the stage's restored networks start from.

    Each comes from the nearest earlier stage of the method that built it
    (`plan.source_stage`), which must have finished; `--restore_checkpoint=best`
    takes the best segmenter of the nearest that trained one (other networks:
    the latest checkpoint). A single stage run
    with --init_checkpoint takes its segmenter from that file instead, and
    with --allow_random_start one whose earlier stage was never run starts
    its segmenter at random.
    """
    sources = {}
    for name in get_stage(stage_name).restores:
        if name == "segmenter" and cfg.run.init_checkpoint:
            continue  # plan.check refused it if an earlier stage is there
        earlier = plan.source_stage(method, stage_name, name, cfg)
        if earlier is None:
            continue  # the trainer says what is missing, or starts fresh
        folder = dirs[earlier]
        done, step = (checkpointing.finished(folder)
                      if os.path.isfile(workdirs.config_path(folder)) else (False, None))
        if step is None and name == "segmenter" and cfg.run.allow_random_start:
            continue  # the trainer starts it at random, as asked
        if not done:
            state = "has not been run" if step is None else f"stopped at step {step}"
            raise errors.WorkdirError(
                f"stage {stage_name} of --method={method} starts its {name} from stage "
                f"{earlier} ({folder}), which {state}: run --stage={earlier} (or "
                "--stage=all) to the end first")
        which = cfg.run.restore_checkpoint if name == "segmenter" else checkpointing.LATEST
        sources[name] = checkpointing.resolve_checkpoint(folder, which)
    return sources


def stage_dirs(workdir, method, configs):
    """{stage: its work directory} of a method folder: the method's stages, and any
    other stage in `configs` (the oracle beside them)."""
    return {stage: methods.stage_dir(workdir, stage)
            for stage in (*methods.get_method(method).stages, *configs)}


def plan_warnings(method, configs, dirs):
    """`plan.check` of the method's stages and of the oracle beside them."""
    oracle = methods.ORACLE_ROW
    own = {stage: cfg for stage, cfg in configs.items() if stage != oracle}
    warnings = plan.check(method, own, dirs)
    if oracle in configs and method != oracle:
        warnings += plan.check(oracle, {oracle: configs[oracle]}, dirs)
    return warnings


def run(method, configs, workdir, *, whole=True, reuse_from=None, oracle=None):
    """Trains the stages in `configs` ({stage: Config}, `methods.stage_configs`).

    A `whole` run (every stage of the method) also scores, exports and draws
    (module docstring) and returns {stage: scores on the target's test
    split}; a single stage returns {stage: final scores on its evaluation
    split}. With `oracle` (the oracle stage's Config; a whole run only), the
    oracle is also trained, in <workdir>/oracle, and scored and drawn beside
    the method's stages, so the table shows how much of the gap between the
    source-only segmenter and it each stage closes; the method's last stage
    is still the one exported.
    """
    stages = methods.get_method(method).stages
    if oracle is not None and (not whole or methods.ORACLE_ROW in stages):
        raise UsageError("--oracle adds the oracle beside a whole run of a method that "
                         "does not train it: use --stage=all, and a method other than oracle")
    _check_method_dir(workdir, method)
    if oracle is not None:
        configs = {**configs, methods.ORACLE_ROW: oracle}
    dirs = stage_dirs(workdir, method, configs)
    for stage, cfg in configs.items():
        reused = reused_dir(reuse_from, stage, cfg) if reuse_from else None
        if reused:
            dirs[stage] = reused
    for warning in plan_warnings(method, configs, dirs):
        print(f"warning: {warning}", flush=True)
    announce_full_check(configs, whole)
    if whole:  # scored on at the end: a bad file there should not wait for it
        last = configs[stages[-1]]
        inputs.check_data(last, [inputs.test_split(last)])
    os.makedirs(workdir, exist_ok=True)
    files.write_json(os.path.join(workdir, methods.METHOD_FILE),
                     methods.method_record(method, workdir, dirs))
    scores = {}
    for stage, cfg in configs.items():
        if dirs[stage] != methods.stage_dir(workdir, stage):
            print(f"stage {stage}: taken from {dirs[stage]}")
            continue
        # The oracle beside a method is its own method's stage.
        owner = stage if stage == methods.ORACLE_ROW else method
        sources = stage_sources(owner, stage, dirs, cfg)
        scores[stage] = trainer.train(cfg, dirs[stage], sources=sources)
    if not whole:
        return scores
    last = configs[stages[-1]]
    if not distribute.is_chief(distribute.make_strategy(last.run.strategy)):
        return scores  # the chief alone scores, exports and draws
    exported = [stage for stage in stages if get_stage(stage).evaluates][-1]
    return _score_export_draw(workdir, dirs, last, exported_stage=exported)


def _score_export_draw(workdir, dirs, cfg, *, exported_stage):
    test_set = target_test_set(cfg)
    scored = [stage for stage in dirs if get_stage(stage).evaluates]
    models = {stage: model_adapters.keras_from_workdir(dirs[stage]) for stage in scored}
    bad_files = data_pipelines.BadFiles(cfg.run.max_bad_files)  # each bad file logged once
    scores = {stage: scoring.evaluate(model, test_set, protocol=config_lib.protocol(cfg),
                                      bad_files=bad_files)
              for stage, model in models.items()}
    files.write_json(os.path.join(workdir, methods.RESULTS_FILE), scores)
    height, width = export_size(test_set)
    exported = export_workdir(dirs[exported_stage], os.path.join(workdir, "export"),
                              formats=EXPORT_FORMATS, height=height, width=width,
                              report_set=test_set)
    pictures = _write_figures(os.path.join(workdir, "figures"), cfg, dirs, models, test_set)
    print(f"\nScores on {test_set.name}/{test_set.split} ({len(test_set)} images), IoU %:\n"
          f"{results_table(scores)}\n\nWritten to {workdir}:\n"
          + "".join(f"  {d}  (work directory)\n" for d in dirs.values())
          + f"  {os.path.join(workdir, methods.RESULTS_FILE)}\n"
          + "".join(f"  {path}\n" for path in (*exported.values(), *pictures.values())))
    return scores


# --- figures ----------------------------------------------------------------------

def _resized(image, height, width):
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _translation_figure(cfg, workdir, test_set, count):
    """Fig. 2 from the generators of the stage in `workdir`."""
    translation = {name: networks.build_network(name, cfg.model) for name in ("g_st", "g_ts")}
    checkpointing.restore_into(checkpointing.resolve_checkpoint(workdir), **translation)
    g_st, g_ts = translation["g_st"], translation["g_ts"]
    source = data_pipelines.open_dataset(cfg.data.source, cfg.data.source_root, "train",
                                         synthia_classes=cfg.data.synthia_classes)
    count = min(count, len(source))

    def run(generator, images):
        return [to_pixels(generator(to_unit_range(i[None]), training=False)[0]) for i in images]

    height, width = export_size(test_set)
    xs = [_resized(source.read_image(i), height, width) for i in range(count)]
    xt = [_resized(test_set.read_image(i), height, width) for i in range(count)]
    fake_t, fake_s = run(g_st, xs), run(g_ts, xt)
    return figures.translation_figure(xs, fake_t, run(g_ts, fake_t), xt, fake_s, run(g_st, fake_s))


def _write_figures(folder, cfg, dirs, models, test_set):
    """Fig. 2 from the last stage that learned translations, Fig. 3 from every segmenter."""
    os.makedirs(folder, exist_ok=True)
    count = min(FIGURE_EXAMPLES, len(test_set))
    paths = {}
    translators = [s for s in dirs if {"g_st", "g_ts"} <= set(get_stage(s).networks)]
    if translators:
        paths["translations"] = os.path.join(folder, "translations.png")
        figures.write_png(paths["translations"], _translation_figure(
            cfg, dirs[translators[-1]], test_set, count))
    labels = [test_set.read_label(i) for i in range(count)]
    images = [test_set.read_image(i) for i in range(count)]
    predictions = {stage.replace("_", " "): [model.predict(image[None], label.shape)
                                             for image, label in zip(images, labels)]
                   for stage, model in models.items()}
    paths["segmentations"] = os.path.join(folder, "segmentations.png")
    figures.write_png(paths["segmentations"],
                      figures.segmentation_figure(images, labels, predictions))
    return paths
