"""The work directory of a stage, and restoring networks from it.

    <workdir>/config.json         the resolved Config of the stage
    <workdir>/sources.json        where its networks started from (first start)
    <workdir>/checkpoints/        tf.train.CheckpointManager files: the latest few
    <workdir>/checkpoints/best/   the segmenter of the best periodic evaluation
    <workdir>/logs/               TensorBoard summaries
    <workdir>/eval/               JSON results of evaluations; best.json (BestCheckpoint)

Checkpoints hold named sub-objects (`segmenter`, `g_st`, `g_ts`, `d_s`, ...,
optimizers, image pools, `step`), so one network can be read back from a
checkpoint without building the rest of its stage. A checkpoint is named by
its prefix (`ckpt-12`), `latest` or `best`.

TF writes a checkpoint's files first and then, atomically, the `checkpoint`
state file that names the latest one: a run killed mid-save still resumes
from the previous complete checkpoint.
"""
import json
import math
import os

import tensorflow as tf

from data_pipelines import UserError
from udamobile import config as config_lib, files

BEST = "best"
LATEST = "latest"


class WorkdirError(UserError):
    """A work directory (or checkpoint) that cannot be used as asked."""


def config_path(workdir):
    return os.path.join(workdir, "config.json")


def checkpoint_dir(workdir):
    return os.path.join(workdir, "checkpoints")


def best_checkpoint_dir(workdir):
    return os.path.join(checkpoint_dir(workdir), BEST)


def write_config(workdir, cfg):
    files.write_text(config_path(workdir), config_lib.to_json(cfg) + "\n")


def read_config(workdir):
    """The Config a work directory was trained with."""
    if not os.path.isdir(workdir):
        problem = "is a file, not" if os.path.exists(workdir) else "does not exist; expected"
        raise WorkdirError(f"{workdir} {problem} a training work directory")
    path = config_path(workdir)
    if not os.path.isfile(path):
        stages = sorted(name for name in os.listdir(workdir)
                        if os.path.isfile(config_path(os.path.join(workdir, name))))
        hint = (f"; it is a method's folder: name one of its stages' work directories, "
                f"{', '.join(os.path.join(workdir, s) for s in stages)}" if stages else "")
        raise WorkdirError(f"{workdir} is not a udamobile work directory: {path} is "
                           f"missing{hint}")
    try:
        with open(path, encoding="utf-8") as f:
            return config_lib.from_json(f.read())
    except (ValueError, KeyError) as e:
        raise WorkdirError(f"{path} is not a valid udamobile config: {e}") from e


def resolve_checkpoint(workdir, checkpoint=None):
    """Path prefix of the named checkpoint ('ckpt-12', 'best'), or of the latest."""
    folder = checkpoint_dir(workdir)
    if checkpoint == BEST:
        best = tf.train.latest_checkpoint(best_checkpoint_dir(workdir))
        if best is None:
            raise WorkdirError(f"{workdir} has no best checkpoint in {best_checkpoint_dir(workdir)} "
                               "(no evaluation has run yet, or the stage has no segmenter)")
        return best
    if checkpoint and checkpoint != LATEST:
        path = checkpoint if os.path.isabs(checkpoint) else os.path.join(folder, checkpoint)
        if not tf.io.gfile.exists(path + ".index"):
            raise WorkdirError(f"checkpoint {path} not found (no {path}.index)")
        return path
    latest = tf.train.latest_checkpoint(folder)
    if latest is None:
        raise WorkdirError(f"{workdir} has no checkpoint in {folder}: has the run saved one yet?")
    return latest


def checkpoint_step(path):
    """The training step stored in a checkpoint."""
    return int(tf.train.load_variable(path, "step/.ATTRIBUTES/VARIABLE_VALUE"))


def restore_into(path, **objects):
    """Restores the named sub-objects of a checkpoint, checking nothing is missing.

    Every variable of `objects` must be found in the checkpoint with its
    shape; otherwise a WorkdirError names what did not match (a checkpoint
    of another architecture or width).
    """
    try:
        status = tf.train.Checkpoint(**objects).read(path)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise WorkdirError(
            f"checkpoint {path} does not match the model built from its config "
            f"(another architecture or width?): {str(e)[:500]}") from e
    return status.expect_partial()


def finished(workdir):
    """(whether the stage in `workdir` ran all its steps, its latest step or None)."""
    latest = tf.train.latest_checkpoint(checkpoint_dir(workdir))
    if latest is None:
        return False, None
    step = checkpoint_step(latest)
    return step >= read_config(workdir).optim.steps, step


def restore_segmenter(workdir, checkpoint=None):
    """The segmenter of a work directory with its trained weights.

    Returns (keras.Model, info) with info = {"checkpoint", "step", "config"}.
    """
    from udamobile import networks  # keeps this module importable without building models

    cfg = read_config(workdir)
    path = resolve_checkpoint(workdir, checkpoint)
    segmenter = networks.build_segmenter_from_config(cfg.model)
    restore_into(path, segmenter=segmenter)
    return segmenter, {"checkpoint": path, "step": checkpoint_step(path), "config": cfg}


class BestCheckpoint:
    """Keeps the segmenter of the best evaluation in checkpoints/best/, its score in eval/best.json."""

    def __init__(self, state, workdir):
        self.path = os.path.join(workdir, "eval", "best.json")
        checkpoint = tf.train.Checkpoint(step=state.step, segmenter=state.networks["segmenter"])
        self.manager = tf.train.CheckpointManager(
            checkpoint, best_checkpoint_dir(workdir), max_to_keep=1,
            step_counter=state.step)
        self.best = None
        if os.path.isfile(self.path) and self.manager.latest_checkpoint:
            with open(self.path, encoding="utf-8") as f:
                self.best = json.load(f)["miou"]

    def offer(self, scores):
        miou = scores["miou"]
        if not math.isfinite(miou) or (self.best is not None and miou <= self.best):
            return False
        path = self.manager.save(checkpoint_number=scores["step"])
        self.best = miou
        files.write_json(self.path, {"step": scores["step"], "miou": miou, "checkpoint": path,
                                     "dataset": scores["dataset"]})
        return True
