"""The checkpoints of a stage's work directory (`udamobile.training.workdirs`), and
restoring networks from them.

Checkpoints hold named sub-objects (`segmenter`, `g_st`, `g_ts`, `d_s`, ...,
optimizers, image pools, `step`), so one network can be read back from a
checkpoint without building the rest of its stage. A checkpoint is named by
its prefix (`ckpt-12`), `latest` or `best`.

TF writes a checkpoint's files first and then, atomically, the `checkpoint`
state file that names the latest one: a run killed mid-save still resumes
from the previous complete checkpoint. A state file that is missing, empty
or garbled while checkpoints are on disk is never read as "no checkpoint"
(which would train the stage again from step 0 over them): the checkpoints
are found from their files (`newest_checkpoint`), and a resumed run writes
the state file anew.
"""
import math
import os
import re

import tensorflow as tf
from absl import logging

from udamobile import config as config_lib, errors, files
from udamobile.training import workdirs

BEST, LATEST = workdirs.BEST, workdirs.LATEST


# Fields a resumed run may change: they decide what is logged, kept or scored at
# the end (target_val_root: labels of one's own camera, added after a run without
# them, score its finished stages), not what is trained. Any other difference
# would train the rest of the run with settings its checkpoint was not trained with.
RESUMABLE_CHANGES = ("checkpoint_every", "keep_checkpoints", "log_every", "image_every",
                     "on_nonfinite", "max_bad_files", "target_val_root")


def _config_changes(previous, cfg):
    """["--name: old -> new", ...] of the fields where `cfg` differs from `previous`."""
    old, new = config_lib.flat_values(previous), config_lib.flat_values(cfg)
    changes = [f"--stage: {previous.stage} -> {cfg.stage}"] if previous.stage != cfg.stage else []
    return changes + [f"--{name}: {old[name]!r} -> {new[name]!r}"
                      for name in workdirs.changed_fields(previous, cfg)
                      if name not in RESUMABLE_CHANGES]


def remove_failed_saves(workdir):
    """Removes what saves that never finished left (a full disk, kill -9); returns the paths.

    TensorFlow writes a checkpoint into `<prefix>_temp/` and renames it when
    complete; files.atomic_output stages into `.<name>.partial-*`.
    """
    saves = (workdirs.checkpoint_dir(workdir), workdirs.best_checkpoint_dir(workdir))
    leftovers = set()
    for folder, subfolders, names in os.walk(workdir):
        leftovers.update(os.path.join(folder, name) for name in (*subfolders, *names)
                         if ".partial-" in name or (folder in saves and name.endswith("_temp")))
        subfolders[:] = [name for name in subfolders
                         if os.path.join(folder, name) not in leftovers]
    leftovers = sorted(leftovers)
    for path in leftovers:
        logging.warning("Removing %s, left by a save that did not finish", path)
        files.remove(path)
    return leftovers


def prepare_workdir(cfg, workdir, chief=True):
    """Writes config.json; a resumed run must keep the settings it was trained with.

    A config.json without a checkpoint is what a run that failed before its
    first save leaves behind: it is replaced, so the corrected command runs.
    The leftovers of unfinished saves are removed first.
    """
    if chief:
        remove_failed_saves(workdir)
    resuming = newest_checkpoint(workdirs.checkpoint_dir(workdir))
    if resuming and os.path.exists(workdirs.config_path(workdir)):
        changes = _config_changes(workdirs.read_config(workdir), cfg)
        if changes:
            raise errors.WorkdirError(
                f"{workdir} holds a run trained with other settings ({'; '.join(changes)}); "
                "resume it with its own flags (see its config.json), or use a new --workdir")
    if not chief:
        return
    for sub in ("checkpoints", "logs", "eval"):
        os.makedirs(os.path.join(workdir, sub), exist_ok=True)
    workdirs.write_config(workdir, cfg)


def resolve_checkpoint(workdir, checkpoint=None):
    """Path prefix of the named checkpoint ('ckpt-12', 'best'), or of the latest."""
    folder = workdirs.checkpoint_dir(workdir)
    if checkpoint == BEST:
        best = tf.train.latest_checkpoint(workdirs.best_checkpoint_dir(workdir))
        if best is None:
            raise errors.WorkdirError(
                f"{workdir} has no best checkpoint in {workdirs.best_checkpoint_dir(workdir)} "
                "(no evaluation has run yet, or the stage has no segmenter)")
        return best
    if checkpoint and checkpoint != LATEST:
        path = checkpoint if os.path.isabs(checkpoint) else os.path.join(folder, checkpoint)
        if not tf.io.gfile.exists(path + ".index"):
            raise errors.WorkdirError(f"checkpoint {path} not found (no {path}.index)")
        return path
    latest = newest_checkpoint(folder)
    if latest is None:
        raise errors.WorkdirError(
            f"{workdir} has no checkpoint in {folder}: has the run saved one yet?")
    return latest


def save(manager, step):
    """`manager.save(step)`; a failure is one OSError naming the folder, and the checkpoints
    saved before stay intact (TensorFlow names the new one only once it is complete)."""
    with files.tensorflow_writes(manager.directory, f"saving checkpoint {step}"):
        return manager.save(checkpoint_number=step)


def summary_writer(logdir):
    """tf.summary.create_file_writer(logdir); a filesystem error is one OSError naming it."""
    with files.tensorflow_writes(logdir, "creating the TensorBoard log"):
        return tf.summary.create_file_writer(logdir)


STATE_FILE = "checkpoint"  # tf.train.CheckpointManager's state file
_CHECKPOINT_INDEX = re.compile(r"^(ckpt-(\d+))\.index$")


def checkpoints_on_disk(folder):
    """Prefixes of the checkpoints whose index file is in `folder`, newest first."""
    found = [(int(m.group(2)), os.path.join(folder, m.group(1)))
             for m in map(_CHECKPOINT_INDEX.match, os.listdir(folder) if os.path.isdir(folder)
                          else ()) if m]
    return [path for _, path in sorted(found, reverse=True)]


def _listed_checkpoints(folder):
    """The checkpoints the state file of `folder` lists, newest first; None when it
    is missing or cannot be read (TensorFlow reads a garbled one as none, an
    empty one as an error)."""
    if not os.path.isfile(os.path.join(folder, STATE_FILE)):
        return None
    try:
        state = tf.train.get_checkpoint_state(folder)
    except (ValueError, tf.errors.OpError):
        return None
    return list(reversed(state.all_model_checkpoint_paths)) if state else None


def checkpoint_candidates(folder):
    """(checkpoints of `folder`, newest first, whether they were found from the files
    on disk because the state file is missing or damaged)."""
    listed = _listed_checkpoints(folder)
    if listed:
        return listed, False
    on_disk = checkpoints_on_disk(folder)
    if on_disk:
        problem = ("is missing" if not os.path.exists(os.path.join(folder, STATE_FILE))
                   else "cannot be read")
        logging.warning("%s %s; the checkpoints are taken from their files: %s",
                        os.path.join(folder, STATE_FILE), problem,
                        ", ".join(os.path.basename(p) for p in on_disk))
    return on_disk, bool(on_disk)


def newest_checkpoint(folder):
    """The newest checkpoint of `folder` (`checkpoint_candidates`), or None."""
    candidates, _ = checkpoint_candidates(folder)
    return candidates[0] if candidates else None


def checkpoint_step(path):
    """The training step stored in a checkpoint."""
    return int(tf.train.load_variable(path, "step/.ATTRIBUTES/VARIABLE_VALUE"))


def describe_checkpoint(path):
    """'stage <name>: <path> (step N)', the stage read from the config.json of the work
    directory holding checkpoint `path` (its checkpoints/ or checkpoints/best/)."""
    folder = workdirs.workdir_of_checkpoint(path)
    stage = f"stage {workdirs.read_config(folder).stage}: " if folder else ""
    return f"{stage}{path} (step {checkpoint_step(path)})"


def damage(path):
    """Why the checkpoint at `path` cannot be read whole (truncated, corrupt), or None.

    Reads every tensor: a truncated data file passes TensorFlow's own
    checks until the variable that lies past the cut is restored, and a
    variable created after the restore (an optimizer slot can be) would only
    meet it at the first step.
    """
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (IndexError, ValueError, tf.errors.OpError) as e:
        return str(e).splitlines()[0][:300]
    return None


def _write_state(folder, checkpoints):
    """The state file of `folder` naming `checkpoints` (oldest first, the last the
    latest) relative to it, as tf.train.CheckpointManager writes it."""
    names = [os.path.basename(path) for path in checkpoints]
    files.write_text(os.path.join(folder, STATE_FILE),
                     f'model_checkpoint_path: "{names[-1]}"\n'
                     + "".join(f'all_model_checkpoint_paths: "{n}"\n' for n in names))


def latest_intact_checkpoint(workdir, *, repair_state=False):
    """The newest checkpoint of `workdir` that reads whole, or None if it has none.

    A damaged newer one is skipped with a warning naming it; raises
    errors.WorkdirError when every checkpoint is damaged. With `repair_state`, a
    state file that was missing or damaged is written anew naming the intact
    checkpoints, so that the run's CheckpointManager continues from them.
    """
    folder = workdirs.checkpoint_dir(workdir)
    candidates, recovered = checkpoint_candidates(folder)
    for index, path in enumerate(candidates):
        problem = damage(path)
        if problem is None:
            if recovered and repair_state:
                _write_state(folder, list(reversed(candidates[index:])))
                logging.warning("%s written anew; resuming from %s",
                                os.path.join(folder, STATE_FILE), path)
            return path
        logging.warning("Checkpoint %s is damaged (%s); trying the one before it", path, problem)
    if candidates:
        raise errors.WorkdirError(f"every checkpoint in {folder} is damaged, the "
                                  f"newest, {candidates[0]}, by: {damage(candidates[0])}")
    return None


def restore_into(path, **objects):
    """Restores the named sub-objects of a checkpoint, checking nothing is missing.

    Every variable of `objects` must be found in the checkpoint with its
    shape; otherwise a errors.WorkdirError names what did not match (a checkpoint
    of another architecture or width). A damaged checkpoint is named too:
    the objects are built, so reading restores (and checks) their tensors
    at once, and only theirs.
    """
    try:
        status = tf.train.Checkpoint(**objects).read(path)
        status.assert_existing_objects_matched()
    except (IndexError, tf.errors.OpError) as e:
        # CheckpointManager's rotation (a running train.py) deletes the index file first.
        if not tf.io.gfile.exists(path + ".index"):
            raise errors.CheckpointRemoved(f"checkpoint {path} was removed while reading (rotated "
                                           "away by a running train.py?)") from e
        raise errors.WorkdirError(f"checkpoint {path} is damaged and cannot be read: "
                                  f"{str(e).splitlines()[0][:300]}") from e
    except (AssertionError, ValueError) as e:
        raise errors.WorkdirError(
            f"checkpoint {path} does not match the model built from its config "
            f"(another architecture or width?): {str(e)[:500]}") from e
    return status.expect_partial()


def finished(workdir):
    """(whether the stage in `workdir` ran all its steps, its latest step or None)."""
    latest = newest_checkpoint(workdirs.checkpoint_dir(workdir))
    if latest is None:
        return False, None
    step = checkpoint_step(latest)
    return step >= workdirs.read_config(workdir).optim.steps, step


def restore_segmenter(workdir, checkpoint=None):
    """(the segmenter of a work directory with its trained weights, info {"checkpoint",
    "step", "config"}). A latest or best checkpoint rotated away while it is read (by
    a running train.py) is not damaged: the newest one then is read instead, once."""
    from udamobile.nets import networks  # keeps this module importable without building models

    cfg = workdirs.read_config(workdir)
    segmenter = networks.build_segmenter_from_config(cfg.model)
    step = tf.Variable(0, dtype=tf.int64)
    path = resolve_checkpoint(workdir, checkpoint)
    try:
        restore_into(path, segmenter=segmenter, step=step)
    except errors.CheckpointRemoved as removed:
        if checkpoint not in (None, LATEST, BEST):
            raise
        logging.warning("%s; reading the newest one instead", removed)
        path = resolve_checkpoint(workdir, checkpoint)
        restore_into(path, segmenter=segmenter, step=step)
    return segmenter, {"checkpoint": path, "step": int(step.numpy()), "config": cfg}


class BestCheckpoint:
    """Keeps the segmenter of the best evaluation in checkpoints/best/, its score in
    eval/best.json."""

    def __init__(self, state, workdir):
        self.path = workdirs.eval_file(workdir, "best")
        checkpoint = tf.train.Checkpoint(step=state.step, segmenter=state.networks["segmenter"])
        self.manager = tf.train.CheckpointManager(
            checkpoint, workdirs.best_checkpoint_dir(workdir), max_to_keep=1,
            step_counter=state.step)
        self.best = None
        if os.path.isfile(self.path) and self.manager.latest_checkpoint:
            self.best = files.read_json(self.path, keys=("miou",), remedy=(
                "remove it: the next evaluation writes it again"))["miou"]

    def offer(self, scores):
        miou = scores["miou"]
        if not math.isfinite(miou) or (self.best is not None and miou <= self.best):
            return False
        path = save(self.manager, scores["step"])
        self.best = miou
        files.write_json(self.path, {"step": scores["step"], "miou": miou, "checkpoint": path,
                                     "dataset": scores["dataset"]})
        return True
