"""Runs one stage, or the whole job, as `train.py` asks.

The whole job (`--stage=all`, the default):

    <workdir>/source_only/   stage 1: the segmenter trained on the source
    <workdir>/adaptation/    stage 2: the framework, starting from stage 1
    <workdir>/results.json   both segmenters scored on the target's labelled
                             val split (the test set; no model selection on it)
    <workdir>/export/        the adapted segmenter as SavedModel and int8 TFLite
    <workdir>/figures/       translations (Fig. 2) and segmentations (Fig. 3)

and a table of source-only vs adapted IoU is printed at the end.
"""
import dataclasses
import json
import os

import numpy as np

import data_pipelines
from export.workdir import ExportError, export_workdir
from udamobile import (checkpointing, distribute, evaluation, figures, networks, pretrained,
                       trainer)

USER_ERRORS = (data_pipelines.DatasetError, checkpointing.WorkdirError, evaluation.EvaluationError,
               ExportError, pretrained.PretrainedError, trainer.NonFiniteLossError,
               trainer.Interrupted, distribute.StrategyError)
TEST_SPLITS = {"cityscapes": "val", "demo_target": "val"}
EXPORT_FORMATS = ("saved_model", "tflite_int8")
MAX_EXPORT_WIDTH = 1024  # Cityscapes at half resolution, the paper's board-sized input
FIGURE_EXAMPLES = 3


def _with_init(cfg, init_checkpoint):
    if cfg.run.init_checkpoint:
        return cfg
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, init_checkpoint=init_checkpoint))


def results_table(source_only, adapted):
    """A plain-text table: per-class IoU of both runs, mIoU and gain (in %)."""
    lines = [f"{'class':<15}{'source only':>12}{'adapted':>10}"]
    for name in adapted["iou"]:
        cells = [source_only["iou"].get(name), adapted["iou"].get(name)]
        lines.append(f"{name:<15}" + "".join(
            f"{'-' if v is None else f'{100 * v:.1f}':>{w}}" for v, w in zip(cells, (12, 10))))
    gain = 100 * (adapted["miou"] - source_only["miou"])
    lines.append(f"{'mIoU':<15}{100 * source_only['miou']:>12.1f}{100 * adapted['miou']:>10.1f}"
                 f"   gain {gain:+.1f}")
    return "\n".join(lines)


def target_test_set(cfg):
    """The target's labelled val split (demo_target/val, cityscapes/val)."""
    name = cfg.data.target
    if name not in TEST_SPLITS:
        raise data_pipelines.DatasetError(f"target {name} has no labelled val split to score on")
    return data_pipelines.open_dataset(name, cfg.data.target_root, TEST_SPLITS[name])


def export_size(test_set):
    """The TFLite input size: the test images' size, at most MAX_EXPORT_WIDTH wide."""
    height, width = test_set.read_image(0).shape[:2]
    scale = min(1.0, MAX_EXPORT_WIDTH / width)
    return int(round(height * scale)), int(round(width * scale))


def _write_figures(folder, cfg, adaptation_dir, models, test_set):
    """Fig. 2 from the adapted generators, Fig. 3 from both segmenters."""
    os.makedirs(folder, exist_ok=True)
    translation = networks.build_translation_networks(cfg.model)
    path = checkpointing.resolve_checkpoint(adaptation_dir)
    checkpointing.restore_into(path, g_st=translation["g_st"], g_ts=translation["g_ts"])
    g_st, g_ts = translation["g_st"], translation["g_ts"]
    source = data_pipelines.open_dataset(cfg.data.source, cfg.data.source_root, "train",
                                         synthia_classes=cfg.data.synthia_classes)
    count = min(FIGURE_EXAMPLES, len(source), len(test_set))

    def run(generator, images):
        return [evaluation.to_pixels(generator(evaluation.to_unit_range(i[None]), training=False)[0])
                for i in images]

    height, width = export_size(test_set)
    xs = [_resized(source.read_image(i), height, width) for i in range(count)]
    xt = [_resized(test_set.read_image(i), height, width) for i in range(count)]
    fake_t, fake_s = run(g_st, xs), run(g_ts, xt)
    paths = {"translations": os.path.join(folder, "translations.png"),
             "segmentations": os.path.join(folder, "segmentations.png")}
    figures.write_png(paths["translations"], figures.translation_figure(
        xs, fake_t, run(g_ts, fake_t), xt, fake_s, run(g_st, fake_s)))
    labels = [test_set.read_label(i) for i in range(count)]
    images = [test_set.read_image(i) for i in range(count)]
    predictions = {name: [model.predict(image[None], label.shape)
                          for image, label in zip(images, labels)]
                   for name, model in models.items()}
    figures.write_png(paths["segmentations"], figures.segmentation_figure(
        images, labels, predictions["source_only"], predictions["adaptation"]))
    return paths


def _resized(image, height, width):
    import cv2  # only the figures resize images here

    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def run(configs, workdir):
    """Trains the stages in `configs` ({stage: Config}); returns their scores."""
    if len(configs) == 1:
        (stage, cfg), = configs.items()
        return {stage: trainer.train(cfg, workdir)}
    dirs = {stage: os.path.join(workdir, stage) for stage in configs}
    trainer.train(configs["source_only"], dirs["source_only"])
    adaptation_cfg = _with_init(configs["adaptation"], dirs["source_only"])
    trainer.train(adaptation_cfg, dirs["adaptation"])
    if not distribute.is_chief(distribute.make_strategy(adaptation_cfg.run.strategy)):
        return {}  # the chief scores, exports and draws

    test_set = target_test_set(adaptation_cfg)
    models = {stage: evaluation.keras_from_workdir(d) for stage, d in dirs.items()}
    scores = {stage: evaluation.evaluate(model, test_set, protocol=trainer.protocol(adaptation_cfg))
              for stage, model in models.items()}
    checkpointing.write_text_atomically(os.path.join(workdir, "results.json"),
                                        json.dumps(scores, indent=2, default=_json_default) + "\n")
    height, width = export_size(test_set)
    exported = export_workdir(dirs["adaptation"], os.path.join(workdir, "export"),
                              formats=EXPORT_FORMATS, height=height, width=width)
    pictures = _write_figures(os.path.join(workdir, "figures"), adaptation_cfg,
                              dirs["adaptation"], models, test_set)
    table = results_table(scores["source_only"], scores["adaptation"])
    print(f"\nScores on {test_set.name}/{test_set.split} ({len(test_set)} images), IoU %:\n"
          f"{table}\n\nWritten to {workdir}:\n"
          f"  {dirs['source_only']}, {dirs['adaptation']}  (work directories)\n"
          f"  {os.path.join(workdir, 'results.json')}\n"
          + "".join(f"  {path}\n" for path in (*exported.values(), *pictures.values())))
    return scores


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
