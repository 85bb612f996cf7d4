"""The training loop of any stage: data, steps, summaries, checkpoints, evaluation.

`train(cfg, workdir, sources=...)` runs the stage `cfg.stage` (a declaration
of `udamobile.training.stages`); nothing here depends on which stage it is. It
resumes from the latest checkpoint of `workdir` when there is one, so a
killed run (even `kill -9`) continues where its last checkpoint stopped:
step, weights, optimizer slots, learning rates (a function of the step) and
image pools are restored (`udamobile.training.restore`). On SIGINT/SIGTERM it saves
a checkpoint before exiting, after the step under way or, while a stage
makes its stream (self-training's labelling), after the batch of images
under way.

The loop (`train_and_evaluate`) reads top to bottom: each step takes the
next batch of the stage's stream, runs its step function, logs, and saves
or evaluates on schedule; `StageRun` holds what the phases share.

Periodic evaluation scores the segmenter on the source's held-out split by
default; the best score's segmenter is kept in `checkpoints/best/`.

Under `--strategy=multi_worker_mirrored` the work directory must be on a
filesystem every worker sees: all of them resume from its checkpoints, only
the chief writes there; the others save to a local scratch folder.
"""
import contextlib
import math
import os
import tempfile
import time

import tensorflow as tf
from absl import logging

import data_pipelines
from udamobile import config as config_lib, errors, files
from udamobile.evaluation import scoring, signals
from udamobile.evaluation.model_adapters import KerasSegmenter, ModelIdentity
from udamobile.progress import Progress
from udamobile.training import (checkpointing, distribute, inputs, interrupts, restore,
                                workdirs)
from udamobile.training.stages import get_stage
from udamobile.training.stages.base import RunContext
from udamobile.training.state import TrainingState
from udamobile.training.summaries import Summaries


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


def _nonfinite_terms(values):
    bad = [name for name, v in values.items() if name != "finite" and not math.isfinite(v)]
    return ", ".join(bad) if bad else "a gradient (all losses finite)"


def train(cfg, workdir, *, sources=None):
    """Runs (or resumes) the stage described by `cfg` in `workdir`.

    Args:
      cfg: a Config; `cfg.stage` names the stage.
      workdir: the stage's work directory.
      sources: {network name: checkpoint path} the stage's networks start
        from (ignored when resuming).

    Returns the final evaluation scores (metrics.protocol_scores), also
    written to <workdir>/eval/final.json; None for a stage without a
    segmenter and on a worker other than the chief.
    """
    config_lib.validate(cfg)
    stage = get_stage(cfg.stage)
    strategy = distribute.make_strategy(cfg.run.strategy)
    distribute.check_global_batch(cfg.optim.batch_size, strategy, cfg.run.strategy)
    chief = distribute.is_chief(strategy)
    tf.keras.utils.set_random_seed(cfg.run.seed)
    if cfg.run.deterministic:
        tf.config.experimental.enable_op_determinism()
    reports = inputs.check_data(cfg, inputs.datasets_used(cfg, stage))
    inputs.warn_of_upscaling(cfg, stage, reports)
    with workdirs.workdir_lock(workdir) if chief else contextlib.nullcontext():
        checkpointing.prepare_workdir(cfg, workdir, chief)
        run = StageRun(cfg, stage, strategy, chief, workdir, sources or {})
        try:
            return train_and_evaluate(run)
        except errors.BadFilesError as error:
            run.save_if_unsaved()
            raise errors.BadFilesError(
                f"{error}. Stopped at step {run.step}, checkpoint saved in {workdir}: fix or "
                "remove the bad files (python -m data_pipelines.check --all lists them) or "
                "raise --max_bad_files, and run the same command to resume") from None
        finally:
            run.close()


def train_and_evaluate(run):
    """The loop: from the run's first step to the config's last, then the final score."""
    cfg, stage = run.cfg, run.stage
    restarts = set(stage.stream_starts(cfg)) - {run.start}
    with run.interrupt, Progress(cfg.optim.steps - run.start, cfg.stage,
                                 unit="step") as progress:
        run.stream = run.stream_from(run.start)
        for step in range(run.start, cfg.optim.steps):
            if step in restarts:
                # Saved first, so that a run stopped while the stream is being
                # made again restarts it from the same weights.
                run.save_if_unsaved()
                run.stream = run.stream_from(step)
            started = time.perf_counter()
            batch = run.next_batch()
            values = run.step_once(step, batch)
            seconds = time.perf_counter() - started
            done = step + 1
            progress.update(**{k.split("/")[-1]: v for k, v in values.items()
                               if k in stage.progress_metrics})
            run.log(done, values, seconds, batch)
            if done % cfg.run.checkpoint_every == 0:
                run.save()
            if run.best and cfg.run.eval_every and done % cfg.run.eval_every == 0 and (
                    done < cfg.optim.steps):
                run.evaluate(f"step_{done}")
            run.stop_if_interrupted()
    run.save_if_unsaved()
    if len(run.bad_files):
        logging.warning("%d bad file(s) skipped (each logged when met)", len(run.bad_files))
    return run.evaluate("final") if run.best else None


class StageRun:
    """What the phases of one stage's loop share: the state and where it is saved,
    the data, the scores and the summaries. Built at the run's first or resumed step."""

    def __init__(self, cfg, stage, strategy, chief, workdir, sources):
        self.cfg, self.stage, self.strategy, self.chief, self.workdir = (
            cfg, stage, strategy, chief, workdir)
        self.state = TrainingState(cfg, stage, strategy,
                                   stage.network_models(cfg, workdir, sources, chief))
        resumed = restore.resume_or_start(self.state, cfg, workdir, sources, chief)
        # Every worker takes part in saving; only the chief's checkpoints are
        # kept, the others go to a local folder removed when the process ends.
        self.scratch = None if chief else tempfile.TemporaryDirectory(prefix="udamobile-worker-")
        self.manager = tf.train.CheckpointManager(
            self.state.checkpoint(),
            workdirs.checkpoint_dir(workdir) if chief else self.scratch.name,
            max_to_keep=cfg.run.keep_checkpoints if chief else 1, step_counter=self.state.step)
        self.start = self.step
        # The step of the last checkpoint, tracked here rather than read from the
        # folders, so that every worker takes the same decisions.
        self.saved_step = self.start if resumed else None
        self.bad_files = data_pipelines.BadFiles(cfg.run.max_bad_files)
        self.eval_data = inputs.evaluation_dataset(cfg) if stage.evaluates else None
        self.best = (checkpointing.BestCheckpoint(self.state, workdir)
                     if stage.evaluates and chief else None)
        splits = inputs.signal_splits(cfg)
        self.label_free = signals.LabelFree(cfg, splits, self.bad_files) if (
            self.best and splits) else None
        if self.best and cfg.run.label_free_images and not splits:
            logging.info("No label-free signals: --target_root is not given")
        self.summaries = Summaries(os.path.join(workdir, "logs"), chief=chief)
        self.steps, self.stream, self.skipped = {}, None, 0
        self.interrupt = interrupts.SignalFlag()

    @property
    def step(self):
        return int(self.state.step)

    def stream_from(self, step):
        """The stage's stream from `step`, split between the replicas."""
        context = RunContext(workdir=self.workdir, chief=self.chief, bad_files=self.bad_files,
                             state=self.state, check_stop=self.stop_if_interrupted)
        return iter(distribute_stream(self.stage.build_inputs(self.cfg, step, context),
                                      self.strategy))

    def next_batch(self):
        """The next batch; raises BadFilesError once bad files are past their limit."""
        try:
            batch = next(self.stream)
        except (StopIteration, tf.errors.OutOfRangeError):
            self.bad_files.check()  # the endless stream ends only past the bad-file limit
            raise
        self.bad_files.check()
        return batch

    def step_once(self, step, batch):
        """Runs global step `step` on `batch` (its step function traced once per set of
        active updates); {metric: float}. A non-finite step stops or is skipped."""
        active = self.stage.active_updates(step, self.cfg)
        if active not in self.steps:
            self.steps[active] = self.stage.make_step(self.state, self.cfg, active)
        values = {k: float(v) for k, v in self.steps[active](batch).items()}
        if not values["finite"]:
            if self.cfg.run.on_nonfinite == "stop":
                raise errors.NonFiniteLossError(
                    f"step {step}: non-finite {_nonfinite_terms(values)}; the update was not "
                    f"applied and the last checkpoint in {self.workdir} is intact")
            self.skipped += 1
            logging.warning("step %d skipped: non-finite %s", step, _nonfinite_terms(values))
        return values

    def log(self, done, values, seconds, batch):
        """Scalars every `log_every` steps and at the last, images every `image_every`."""
        run = self.cfg.run
        if done % run.log_every == 0 or done == self.cfg.optim.steps:
            self.summaries.scalars(done, {
                **values, "step_seconds": seconds, "skipped_steps": self.skipped,
                "data/bad_files": len(self.bad_files),
                **{f"learning_rate/{name}": rate
                   for name, rate in self.state.learning_rates().items()}})
        if self.summaries.active and done % run.image_every == 0:
            self.summaries.images(done, self.stage.summary_images(
                self.state, first_replica(batch, self.strategy)))

    def save(self):
        checkpointing.save(self.manager, self.step)
        self.saved_step = self.step

    def stop_if_interrupted(self):
        """After SIGINT/SIGTERM, saves a checkpoint (if this step has none) and raises
        errors.Interrupted: after each step, and between the image batches of a labelling."""
        if self.interrupt.received:
            self.save_if_unsaved()
            raise errors.Interrupted(
                f"{self.interrupt.received} at step {self.step}: checkpoint saved "
                f"in {self.workdir}; run the same command to resume")

    def save_if_unsaved(self):
        if self.saved_step != self.step:
            self.save()

    def evaluate(self, name):
        """Scores the segmenter (and the label-free signals), keeps the best; the scores."""
        cfg, step = self.cfg, self.step
        model = KerasSegmenter(self.state.networks["segmenter"], ModelIdentity(
            "keras", os.path.abspath(self.workdir), step=step, preset=cfg.preset,
            stage=cfg.stage))
        scores = scoring.evaluate(model, self.eval_data, protocol=config_lib.protocol(cfg),
                                  input_width=cfg.run.eval_input_width,
                                  max_images=cfg.run.eval_max_images, bad_files=self.bad_files)
        scores.update(step=step)
        if self.label_free:
            scores["label_free"] = self.label_free(self.state.networks["segmenter"])
        files.write_json(workdirs.eval_file(self.workdir, name), scores)
        self.best.offer(scores)
        self.summaries.scalars(step, {"eval/miou": scores["miou"],
                                      **signals.scalars(scores.get("label_free"))})
        return scores

    def close(self):
        # An iterator still alive at interpreter shutdown can abort or hang the
        # process (data_pipelines.pipelines); an error's traceback would keep it.
        self.stream = None
        self.summaries.close()
