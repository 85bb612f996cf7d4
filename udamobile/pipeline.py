"""Runs one stage, or both in sequence, as `train.py` asks.

Both stages: stage 1 trains in <workdir>/source_only, stage 2 in
<workdir>/adaptation starting from stage 1's segmenter, and a summary of
both evaluations is printed and written to <workdir>/results.json.
"""
import dataclasses
import json
import os

from absl import logging

import data_pipelines
from udamobile import checkpointing, classes, trainer

USER_ERRORS = (data_pipelines.DatasetError, checkpointing.WorkdirError,
               trainer.NonFiniteLossError, trainer.Interrupted)


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


def run(configs, workdir):
    """Trains the stages in `configs` ({stage: Config}); returns their final scores."""
    if len(configs) == 1:
        (stage, cfg), = configs.items()
        return {stage: trainer.train(cfg, workdir)}
    stage1_dir = os.path.join(workdir, "source_only")
    stage2_dir = os.path.join(workdir, "adaptation")
    scores = {"source_only": trainer.train(configs["source_only"], stage1_dir)}
    scores["adaptation"] = trainer.train(_with_init(configs["adaptation"], stage1_dir), stage2_dir)
    table = results_table(scores["source_only"], scores["adaptation"])
    checkpointing.write_text_atomically(os.path.join(workdir, "results.json"),
                                        json.dumps(scores, indent=2) + "\n")
    logging.info("Results on %s:\n%s", scores["adaptation"].get("dataset"), table)
    print(f"\nEvaluation on {scores['adaptation'].get('dataset')} "
          f"({len(classes.CLASS_NAMES)}-class label space, IoU %):\n{table}\n"
          f"Written to {workdir}: source_only/, adaptation/, results.json")
    return scores
