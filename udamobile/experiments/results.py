"""What a whole run leaves beside its stages (`runner.run`): results, export, figures.

    <workdir>/results.json   each stage's scores on the target's labelled val
                             split; for a target without one (a folder target
                             without --target_val_root), each stage's label-free
                             signals on the target's train images instead
    <workdir>/export/        the last stage's segmenter as SavedModel and int8 TFLite
    <workdir>/figures/       translations (Fig. 2, when a stage learned them) and
                             segmentations (Fig. 3) of each stage's segmenter

and a table of them is printed: each stage's IoU, or each stage's signals
with a line saying that no target labels were given.
"""
import os

import cv2

import data_pipelines
from data_pipelines.images import to_pixels, to_unit_range
from export.artifacts import export_workdir
from udamobile import config as config_lib, files
from udamobile.evaluation import figures, model_adapters, report, scoring, signals
from udamobile.experiments import methods
from udamobile.nets import networks
from udamobile.training import checkpointing, inputs
from udamobile.training.stages import get_stage

EXPORT_FORMATS = ("saved_model", "tflite_int8")
MAX_EXPORT_WIDTH = 1024  # Cityscapes at half resolution, the paper's board-sized input
FIGURE_EXAMPLES = 3


def export_size(dataset):
    """The TFLite input size: the size of the dataset's first image, at most
    MAX_EXPORT_WIDTH wide."""
    height, width = dataset.read_image(0).shape[:2]
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


def _scores(cfg, models, test_set, bad_files):
    """({stage: scores on `test_set`}, the heading of their table)."""
    scores = {stage: scoring.evaluate(model, test_set, protocol=config_lib.protocol(cfg),
                                      bad_files=bad_files)
              for stage, model in models.items()}
    heading = f"Scores on {test_set.name}/{test_set.split} ({len(test_set)} images), IoU %:"
    return scores, f"{heading}\n{results_table(scores)}"


def _signals(cfg, models, bad_files):
    """({stage: label-free signals on the target's train images}, their table): the
    only measure there is without target labels. With --label_free_images=0
    (none during training) they are taken on the field's default count."""
    count = cfg.run.label_free_images or config_lib.RunConfig.label_free_images
    measure = signals.LabelFree(cfg, [inputs.target_train(cfg), inputs.source_train(cfg)],
                                bad_files, count=count)
    by_stage = {stage: measure(model.model) for stage, model in models.items()}
    target = measure.target
    heading = (f"No target labels were given (--target_val_root names a folder of labelled "
               f"target images): no IoU.\nLabel-free signals of each stage's segmenter on "
               f"{target.name}/{target.split} at {cfg.data.target_root} "
               f"({list(by_stage.values())[0]['images']} images; indications, not scores: "
               "udamobile/evaluation/signals.py):")
    return by_stage, f"{heading}\n{report.signals_table(by_stage)}"


def score_export_draw(workdir, dirs, cfg, *, exported_stage):
    """Scores every stage of `dirs` ({stage: work directory}) that has a segmenter on
    the target's test split (without one: takes their label-free signals), writes
    results.json, exports `exported_stage`'s segmenter and draws the figures;
    prints what it found and wrote. Returns what results.json holds."""
    models = {stage: model_adapters.keras_from_workdir(folder)
              for stage, folder in dirs.items() if get_stage(stage).evaluates}
    bad_files = data_pipelines.BadFiles(cfg.run.max_bad_files)  # each bad file logged once
    labelled = inputs.has_test_split(cfg)
    shown = inputs.open_split(cfg, inputs.test_split(cfg) if labelled else inputs.target_train(cfg))
    found, table = (_scores(cfg, models, shown, bad_files) if labelled
                    else _signals(cfg, models, bad_files))
    results_path = os.path.join(workdir, methods.RESULTS_FILE)
    files.write_json(results_path, found)
    height, width = export_size(shown)
    exported = export_workdir(dirs[exported_stage], os.path.join(workdir, "export"),
                              formats=EXPORT_FORMATS, height=height, width=width,
                              report_set=shown if labelled else None)
    pictures = _write_figures(os.path.join(workdir, "figures"), cfg, dirs, models, shown)
    print(f"\n{table}\n\nWritten to {workdir}:\n"
          + "".join(f"  {d}  (work directory)\n" for d in dirs.values())
          + f"  {results_path}\n"
          + "".join(f"  {path}\n" for path in (*exported.values(), *pictures.values())))
    return found


# --- figures ----------------------------------------------------------------------

def _resized(image, height, width):
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _translation_figure(cfg, workdir, target, count):
    """Fig. 2 from the generators of the stage in `workdir`, on source train images
    and the images of `target`."""
    translation = {name: networks.build_network(name, cfg.model) for name in ("g_st", "g_ts")}
    checkpointing.restore_into(checkpointing.resolve_checkpoint(workdir), **translation)
    g_st, g_ts = translation["g_st"], translation["g_ts"]
    source = inputs.open_split(cfg, inputs.source_train(cfg))
    count = min(count, len(source))

    def run(generator, images):
        return [to_pixels(generator(to_unit_range(i[None]), training=False)[0]) for i in images]

    height, width = export_size(target)
    xs = [_resized(source.read_image(i), height, width) for i in range(count)]
    xt = [_resized(target.read_image(i), height, width) for i in range(count)]
    fake_t, fake_s = run(g_st, xs), run(g_ts, xt)
    return figures.translation_figure(xs, fake_t, run(g_ts, fake_t), xt, fake_s, run(g_st, fake_s))


def _write_figures(folder, cfg, dirs, models, shown):
    """Fig. 2 from the last stage that learned translations, Fig. 3 from every segmenter,
    on the first images of `shown` (with their labels if it has them)."""
    os.makedirs(folder, exist_ok=True)
    count = min(FIGURE_EXAMPLES, len(shown))
    paths = {}
    translators = [s for s in dirs if {"g_st", "g_ts"} <= set(get_stage(s).networks)]
    if translators:
        paths["translations"] = os.path.join(folder, "translations.png")
        figures.write_png(paths["translations"], _translation_figure(
            cfg, dirs[translators[-1]], shown, count))
    images = [shown.read_image(i) for i in range(count)]
    labels = [shown.read_label(i) for i in range(count)] if shown.has_labels else None
    predictions = {stage.replace("_", " "): [model.predict(image[None], image.shape[:2])
                                             for image in images]
                   for stage, model in models.items()}
    paths["segmentations"] = os.path.join(folder, "segmentations.png")
    figures.write_png(paths["segmentations"],
                      figures.segmentation_figure(images, labels, predictions))
    return paths
