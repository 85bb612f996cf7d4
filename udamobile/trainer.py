"""The training loop of both stages: data, steps, summaries, checkpoints, evaluation.

`train(cfg, workdir)` is all `train.py` calls. It resumes from the latest
checkpoint of `workdir` when there is one, so a killed run (even `kill -9`)
continues where its last checkpoint stopped: step, weights, optimizer slots,
learning rates (a function of the step) and image pools are restored. On
SIGINT/SIGTERM it saves a checkpoint before exiting.

Under `--strategy=multi_worker_mirrored` the work directory must be on a
filesystem every worker sees: all of them resume from its checkpoints, only
the chief writes there; the others save to a local scratch folder.
"""
import json
import math
import os
import signal
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import logging

import data_pipelines
from udamobile import (checkpointing, classes, config as config_lib, distribute, evaluation,
                       pretrained, train_step)
from udamobile.progress import Progress
from udamobile.state import TrainingState


class NonFiniteLossError(RuntimeError):
    """A loss or gradient became NaN or infinite (with on_nonfinite=stop)."""


class Interrupted(RuntimeError):
    """SIGINT or SIGTERM arrived; a checkpoint was saved first."""


def check_training_data(cfg):
    """Decodes a sample of every dataset the run reads; raises on any problem.

    Catches a wrong folder or label format at start-up rather than hours in.
    """
    data = cfg.data
    needed = [(data.source, data.source_root, "train")]
    if cfg.stage == "adaptation":
        needed.append((data.target, data.target_root, "train"))
    for name, root, split in needed:
        report = data_pipelines.check_dataset(name, root, split,
                                              synthia_classes=data.synthia_classes)
        logging.info("%s", report)
        if not report.ok:
            raise data_pipelines.DatasetError(f"dataset check failed:\n{report}")


def make_training_stream(cfg, start_step=0):
    """The endless tf.data stream of the run's stage, from batch `start_step`.

    The stream is a pure function of the seed and the position, so a resumed
    run sees exactly the batches an uninterrupted one would have.
    """
    data = cfg.data
    seed = cfg.run.seed
    source = data_pipelines.open_dataset(data.source, data.source_root, "train",
                                         synthia_classes=data.synthia_classes)
    if cfg.stage == "source_only":
        return data_pipelines.supervised_patches(
            source, patch_size=data.patch_size, resize_width=data.resize_width,
            batch_size=cfg.optim.batch_size, flip=data.flip, seed=seed, start_batch=start_step)
    target = data_pipelines.open_dataset(data.target, data.target_root, "train")
    return data_pipelines.unpaired_patches(
        source, target, patch_size=data.patch_size, resize_width_source=data.resize_width,
        resize_width_target=data.resize_width, batch_size=cfg.optim.batch_size,
        flip=data.flip, seed=seed, start_batch=start_step)


def distribute_stream(dataset, strategy):
    """Splits each global batch of `dataset` between the strategy's replicas."""
    if strategy.num_replicas_in_sync == 1 and not isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return dataset
    options = tf.data.Options()
    # The streams are generated from the seed, not read from sharded files:
    # every worker builds the same global batches and keeps its replicas' part.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def first_replica(batch, strategy):
    """The first replica's part of a (distributed) batch, as plain tensors."""
    return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], batch)


def evaluation_dataset(cfg):
    """The dataset of periodic evaluation: the source's held-out split by default."""
    run = cfg.run
    name = run.eval_dataset or cfg.data.source
    root = run.eval_root if run.eval_dataset else cfg.data.source_root
    default_split = {"cityscapes": "val", "demo_target": "val"}.get(name, "heldout")
    split = run.eval_split or default_split
    if name in ("cityscapes", "demo_target") and split == "val" and run.eval_every > 0:
        logging.warning(
            "Periodic evaluation on %s/val, the target's test split: choosing a "
            "checkpoint by it selects on the test set (as the authors' code did).", name)
    return data_pipelines.open_dataset(name, root, split, synthia_classes=cfg.data.synthia_classes)


def protocol(cfg):
    """mIoU protocol of a run: 16 or 13 classes for SYNTHIA, else 19."""
    return cfg.data.synthia_classes if cfg.data.source == "synthia" else 19


def _prepare_workdir(cfg, workdir, chief=True):
    """Writes config.json; a resumed run must keep its stage and networks."""
    if os.path.exists(checkpointing.config_path(workdir)):
        previous = checkpointing.read_config(workdir)
        if (previous.stage, previous.model) != (cfg.stage, cfg.model):
            raise checkpointing.WorkdirError(
                f"{workdir} holds a {previous.stage} run with other networks; "
                "use a new --workdir (or the same flags) to resume")
    if not chief:
        return
    for sub in ("checkpoints", "logs", "eval"):
        os.makedirs(os.path.join(workdir, sub), exist_ok=True)
    checkpointing.write_config(workdir, cfg)


def _initialize(state, cfg, workdir):
    """Resumes from the work directory (returns True), else starts from --init_checkpoint."""
    latest = tf.train.latest_checkpoint(checkpointing.checkpoint_dir(workdir))
    if latest:
        state.checkpoint().read(latest).assert_existing_objects_matched()
        logging.info("Resumed from %s at step %d", latest, int(state.step))
        return True
    if cfg.run.init_checkpoint:  # initialize_segmenter logs its report
        pretrained.initialize_segmenter(state.segmenter, cfg.run.init_checkpoint,
                                        allow_partial=cfg.run.init_allow_partial)
    return False


def _colour_labels(labels):
    return classes.colorize(np.asarray(labels))


def _write_images(state, cfg, batch, step):
    if cfg.stage == "source_only":
        logits = state.segmenter(batch["image"][:1], training=False)["logits"]
        pictures = {"image": evaluation.to_pixels(batch["image"][:1]),
                    "label": _colour_labels(batch["label"][:1]),
                    "prediction": _colour_labels(tf.argmax(logits, -1))}
    else:
        translated = train_step.translate_for_summary(state, batch)
        pictures = {name: evaluation.to_pixels(image) for name, image in translated.items()}
        for name in ("x_t", "g_st(x_s)"):
            logits = state.segmenter(translated[name], training=False)["logits"]
            pictures[f"prediction {name}"] = _colour_labels(tf.argmax(logits, -1))
        pictures["label x_s"] = _colour_labels(batch["source_label"][:1])
    for name, image in pictures.items():
        tf.summary.image(name, image, step=step)


def _nonfinite_terms(values):
    bad = [name for name, v in values.items() if name != "finite" and not math.isfinite(v)]
    return ", ".join(bad) if bad else "a gradient (all losses finite)"


class _SignalFlag:
    """Records SIGINT/SIGTERM so the loop can checkpoint before leaving."""

    def __init__(self):
        self.received = None

    def __enter__(self):
        self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc_info):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def train(cfg, workdir):
    """Runs (or resumes) the run described by `cfg` in `workdir`.

    Returns the final evaluation scores (metrics.protocol_scores) and writes
    them to <workdir>/eval/final.json; None on a worker other than the chief.
    """
    config_lib.validate(cfg)
    strategy = distribute.make_strategy(cfg.run.strategy)
    distribute.check_global_batch(cfg.optim.batch_size, strategy, cfg.run.strategy)
    chief = distribute.is_chief(strategy)
    tf.keras.utils.set_random_seed(cfg.run.seed)
    if cfg.run.deterministic:
        tf.config.experimental.enable_op_determinism()
    check_training_data(cfg)
    _prepare_workdir(cfg, workdir, chief)
    state = TrainingState(cfg, strategy)
    resumed = _initialize(state, cfg, workdir)
    # Every worker takes part in saving; only the chief's checkpoints are
    # kept, the others go to a local folder removed when the process ends.
    scratch = None if chief else tempfile.TemporaryDirectory(prefix="udamobile-worker-")
    manager = tf.train.CheckpointManager(
        state.checkpoint(), checkpointing.checkpoint_dir(workdir) if chief else scratch.name,
        max_to_keep=cfg.run.keep_checkpoints if chief else 1, step_counter=state.step)
    start = int(state.step)
    eval_data = evaluation_dataset(cfg)
    stream = iter(distribute_stream(make_training_stream(cfg, start), strategy))
    writer = (tf.summary.create_file_writer(os.path.join(workdir, "logs")) if chief
              else tf.summary.create_noop_writer())
    steps = {}

    def step_function(step):
        key = (train_step.adaptation_phase(step, cfg) if cfg.stage == "adaptation" else None)
        if key not in steps:
            steps[key] = (train_step.make_source_only_step(state, cfg) if key is None else
                          train_step.make_adaptation_step(
                              state, cfg, update_segmenter=key[0], feature_adaptation=key[1]))
        return steps[key]

    # The step of the last checkpoint, tracked here rather than read from the
    # folders, so that every worker takes the same decisions.
    saved_step = start if resumed else None

    def save():
        nonlocal saved_step
        manager.save(checkpoint_number=int(state.step))
        saved_step = int(state.step)

    def evaluate(name):
        model = evaluation.KerasSegmenter(state.segmenter, {"kind": "keras", "workdir": workdir})
        scores = evaluation.evaluate(model, eval_data, protocol=protocol(cfg),
                                     input_width=cfg.run.eval_input_width,
                                     max_images=cfg.run.eval_max_images)
        scores.update(step=int(state.step))
        checkpointing.write_text_atomically(
            os.path.join(workdir, "eval", f"{name}.json"), json.dumps(scores, indent=2) + "\n")
        with writer.as_default():
            tf.summary.scalar("eval/miou", scores["miou"], step=int(state.step))
        return scores

    skipped = 0
    with _SignalFlag() as interrupt, writer.as_default(), \
            Progress(cfg.optim.steps - start, cfg.stage, unit="step") as progress:
        for step in range(start, cfg.optim.steps):
            started = time.perf_counter()
            batch = next(stream)
            values = {k: float(v) for k, v in step_function(step)(batch).items()}
            seconds = time.perf_counter() - started
            if not values["finite"]:
                if cfg.run.on_nonfinite == "stop":
                    raise NonFiniteLossError(
                        f"step {step}: non-finite {_nonfinite_terms(values)}; the update was not "
                        f"applied and the last checkpoint in {workdir} is intact")
                skipped += 1
                logging.warning("step %d skipped: non-finite %s", step, _nonfinite_terms(values))
            done = step + 1
            progress.update(**{k.split("/")[-1]: v for k, v in values.items()
                               if k in ("loss/ce", "loss/task_ce", "loss/cycle", "loss/generators")})
            if done % cfg.run.log_every == 0 or done == cfg.optim.steps:
                for name, value in values.items():
                    tf.summary.scalar(name, value, step=done)
                for name, rate in state.learning_rates().items():
                    tf.summary.scalar(f"learning_rate/{name}", rate, step=done)
                tf.summary.scalar("step_seconds", seconds, step=done)
                tf.summary.scalar("skipped_steps", skipped, step=done)
            if chief and done % cfg.run.image_every == 0:
                _write_images(state, cfg, first_replica(batch, strategy), done)
            if done % cfg.run.checkpoint_every == 0:
                save()
            if (chief and cfg.run.eval_every and done % cfg.run.eval_every == 0
                    and done < cfg.optim.steps):
                evaluate(f"step_{done}")
            if interrupt.received:
                save()
                raise Interrupted(f"{interrupt.received} at step {done}: checkpoint saved in "
                                  f"{workdir}; run the same command to resume")
    if saved_step != int(state.step):
        save()
    if not chief:
        return None
    return evaluate("final")
