"""The work directory of a run, and restoring the segmenter from it.

    <workdir>/config.json    the resolved Config of the run
    <workdir>/checkpoints/   tf.train.CheckpointManager files
    <workdir>/logs/          TensorBoard summaries
    <workdir>/eval/          JSON results of evaluations

Checkpoints hold named sub-objects (`segmenter`, `g_st`, `g_ts`, `d_s`, ...,
optimizers, image pools, `step`), so the segmenter alone can be read back
from a stage-2 checkpoint without building the adaptation machinery.

TF writes a checkpoint's files first and then, atomically, the `checkpoint`
state file that names the latest one: a run killed mid-save still resumes
from the previous complete checkpoint.
"""
import os
import tempfile

import tensorflow as tf

from udamobile import config as config_lib


class WorkdirError(ValueError):
    """A work directory (or checkpoint) that cannot be used as asked."""


def config_path(workdir):
    return os.path.join(workdir, "config.json")


def checkpoint_dir(workdir):
    return os.path.join(workdir, "checkpoints")


def write_text_atomically(path, text):
    """Writes `path` through a temporary sibling and a rename: never half-written."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_config(workdir, cfg):
    write_text_atomically(config_path(workdir), config_lib.to_json(cfg) + "\n")


def read_config(workdir):
    """The Config a work directory was trained with."""
    if not os.path.isdir(workdir):
        raise WorkdirError(f"work directory {workdir} does not exist")
    path = config_path(workdir)
    if not os.path.isfile(path):
        raise WorkdirError(f"{workdir} is not a udamobile work directory: {path} is missing")
    try:
        with open(path, encoding="utf-8") as f:
            return config_lib.from_json(f.read())
    except (ValueError, KeyError) as e:
        raise WorkdirError(f"{path} is not a valid udamobile config: {e}") from e


def resolve_checkpoint(workdir, checkpoint=None):
    """Path prefix of the named checkpoint (e.g. 'ckpt-12'), or of the latest."""
    folder = checkpoint_dir(workdir)
    if checkpoint:
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
