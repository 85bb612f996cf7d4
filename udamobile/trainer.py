"""The training loop of any stage: data, steps, summaries, checkpoints, evaluation.

`train(cfg, workdir, sources=...)` runs the stage `cfg.stage` (an object of
`udamobile.stages`); nothing here depends on which stage it is. It resumes
from the latest checkpoint of `workdir` when there is one, so a killed run
(even `kill -9`) continues where its last checkpoint stopped: step, weights,
optimizer slots, learning rates (a function of the step) and image pools
are restored. On SIGINT/SIGTERM it saves a checkpoint before exiting, after
the step under way or, while a stage makes its stream (self-training's
labelling), after the batch of images under way.

A new stage starts its networks from `sources` ({network: checkpoint}, the
method's earlier stages) and its segmenter, if no source gives it, from
`--init_checkpoint`. Every network the stage declares in `restores` must get
its weights from one of them; only the segmenter may start at random, and
only with `--allow_random_start`.

Periodic evaluation scores the segmenter on the source's held-out split by
default; the best score's segmenter is kept in `checkpoints/best/`.

Under `--strategy=multi_worker_mirrored` the work directory must be on a
filesystem every worker sees: all of them resume from its checkpoints, only
the chief writes there; the others save to a local scratch folder.
"""
import contextlib
import math
import os
import signal
import tempfile
import time

import tensorflow as tf
from absl import logging

import data_pipelines
from data_pipelines import validation
from data_pipelines.datasets import is_built_in
from udamobile import (checkpointing, config as config_lib, distribute, evaluation, files,
                       pretrained, signals)
from udamobile.model_adapters import KerasSegmenter, ModelIdentity
from udamobile.progress import Progress
from udamobile.stages import get_stage
from udamobile.state import TrainingState, patch_shape


class NonFiniteLossError(data_pipelines.UserError):
    """A loss or gradient became NaN or infinite (with on_nonfinite=stop)."""


class Interrupted(data_pipelines.UserError):
    """SIGINT or SIGTERM arrived; a checkpoint was saved first."""


class StartError(data_pipelines.UserError):
    """A stage whose networks have nothing to start from."""


def _datasets_read(cfg, stage):
    """[(name, root, split)] of the training data of `stage`."""
    data = cfg.data
    splits = {"source": (data.source, data.source_root, "train"),
              "target": (data.target, data.target_root, "train")}
    read = {"source": ["source"], "target": ["target"], "target_images": ["target"],
            "unpaired": ["source", "target"], "pseudo_labelled": ["source", "target"]}[stage.reads]
    return [splits[role] for role in dict.fromkeys(read + list(stage.also_reads))]


def _signal_splits(cfg):
    """[(name, root, split)] the label-free signals read: the target's train images
    and the source's train labels; none when they are off, or when the target has
    no folder (a source-only stage run without --target_root)."""
    data = cfg.data
    if not cfg.run.label_free_images or not (
            is_built_in(data.target) or data.target_root):
        return []
    return [(data.target, data.target_root, "train"), (data.source, data.source_root, "train")]


def datasets_used(cfg):
    """[(name, root, split)] a stage reads, each once: its training data, and if it
    has a segmenter the split it evaluates on and those of the label-free signals."""
    stage = get_stage(cfg.stage)
    used = _datasets_read(cfg, stage)
    if stage.evaluates:
        used.append(evaluation_split(cfg))
        used += _signal_splits(cfg)
    return list(dict.fromkeys(used))


def check_data(cfg, datasets):
    """Decodes a sample of each of `datasets` ([(name, root, split)]); raises on any problem.

    Catches a wrong folder or label format at start-up rather than hours in.
    Returns {(name, root, split): DatasetReport}.
    """
    reports = {}
    for name, root, split in datasets:
        report = data_pipelines.check_dataset(name, root, split,
                                              synthia_classes=cfg.data.synthia_classes)
        logging.info("%s", report)
        if not report.ok:
            command = validation.full_check_command(name, root, split, cfg.data.synthia_classes)
            raise data_pipelines.DatasetError(
                f"dataset check failed: {report.summary()} (the report above lists them; "
                f"{command} decodes every file)")
        reports[name, root, split] = report
    return reports


def upscaling_note(image_size, resize_width, patch_size):
    """What a patch larger than the image resized to `resize_width` costs, or None.

    Such a patch would be mostly padding; the pipelines widen the resize
    instead (`data_pipelines.crop_fitting_size`), so the images are
    upscaled: a patch then holds no padding but less of the scene.
    """
    height, width = image_size
    wanted = width if resize_width is None else resize_width
    fitted = [int(v) for v in data_pipelines.crop_fitting_size(
        tf.constant([height, width]), resize_width, patch_size)]
    if fitted[1] <= wanted:
        return None
    return (f"a {patch_size[1]}x{patch_size[0]} patch does not fit a {width}x{height} image "
            f"resized to width {wanted}: it is resized to {fitted[1]}x{fitted[0]} instead, "
            f"{fitted[1] / wanted:.1f}x wider, so that patches hold no padding")


def warn_of_upscaling(cfg, stage, reports):
    """Logs `upscaling_note` for the most common image size of each training split."""
    if cfg.data.whole_images:
        return  # whole images are rescaled to the patch size, as meant
    for name, root, split in _datasets_read(cfg, stage):
        sizes = reports[name, root, split].image_sizes
        note = sizes and upscaling_note(sizes.most_common(1)[0][0], cfg.data.resize_width,
                                        patch_shape(cfg))
        if note:
            logging.warning("%s/%s: --patch_size=%d: %s", name, split, cfg.data.patch_size, note)


def make_training_stream(cfg, start_step=0, bad_files=None, **options):
    """The endless tf.data stream of the config's stage, from batch `start_step`.

    The stream is a pure function of the seed and the position, so a resumed
    run sees exactly the batches an uninterrupted one would have (unless
    files were skipped: see `data_pipelines.supervised_patches`). Files that
    cannot be read are recorded in `bad_files` (data_pipelines.BadFiles).
    `options`: the stage's `stream_options` (an image transform, or the
    pseudo-labelled "target" that replaces the target's train split).
    """
    stage = get_stage(cfg.stage)
    data = cfg.data
    opened = [data_pipelines.open_dataset(name, root, split,
                                          synthia_classes=data.synthia_classes)
              for name, root, split in _datasets_read(cfg, stage)]
    common = dict(patch_size=patch_shape(cfg), whole_images=data.whole_images,
                  batch_size=cfg.optim.batch_size, flip=data.flip, seed=cfg.run.seed,
                  start_batch=start_step, bad_files=bad_files, **options)
    if stage.reads in ("unpaired", "pseudo_labelled"):
        labelled = stage.reads == "pseudo_labelled"
        source, target = opened[0], common.pop("target") if labelled else opened[1]
        return data_pipelines.unpaired_patches(
            source, target, resize_width_source=data.resize_width,
            resize_width_target=data.resize_width, target_labels=labelled, **common)
    patches = (data_pipelines.unlabelled_patches if stage.reads == "target_images"
               else data_pipelines.supervised_patches)
    return patches(opened[0], resize_width=data.resize_width, **common)


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


# The labelled split each target dataset is scored on: the test set, never for choosing.
TEST_SPLITS = {"cityscapes": "val", "demo_target": "val", "demo_city": "val"}


def evaluation_split(cfg):
    """(name, root, split) of periodic evaluation: the source's held-out split by default."""
    run = cfg.run
    name = run.eval_dataset or cfg.data.source
    root = run.eval_root if run.eval_dataset else cfg.data.source_root
    return name, root, run.eval_split or TEST_SPLITS.get(name, "heldout")


def evaluation_dataset(cfg):
    """The dataset of periodic evaluation (`evaluation_split`)."""
    name, root, split = evaluation_split(cfg)
    if TEST_SPLITS.get(name) == split and cfg.run.eval_every > 0:
        logging.warning(
            "Periodic evaluation on %s/val, the target's test split: choosing a "
            "checkpoint by it selects on the test set (as the authors' code did).", name)
    return data_pipelines.open_dataset(name, root, split, synthia_classes=cfg.data.synthia_classes)


class _LabelFree:
    """The label-free signals of a stage's evaluations (`udamobile.signals`)."""

    def __init__(self, cfg, bad_files):
        self.cfg, self.bad_files = cfg, bad_files
        opened = [data_pipelines.open_dataset(name, root, split,
                                              synthia_classes=cfg.data.synthia_classes)
                  for name, root, split in _signal_splits(cfg)]
        self.target, self.source = opened
        self.source_share = None  # read at the first evaluation, then kept

    def __call__(self, segmenter):
        if self.source_share is None:
            self.source_share = signals.label_shares(self.source, signals.SOURCE_LABEL_IMAGES,
                                                     self.bad_files)
        return signals.label_free_signals(
            segmenter, self.target, count=self.cfg.run.label_free_images,
            source_share=self.source_share, input_width=self.cfg.run.eval_input_width,
            bad_files=self.bad_files)


def _start(state, cfg, workdir, sources, chief):
    """Restores `sources`, then `--init_checkpoint`; checks nothing needed starts at random.

    Returns {network: where it came from: a checkpoint and its step, a file, or
    random initialization}, printed and written to sources.json.
    """
    stage = state.stage
    origins = {}
    for path in sorted(set(sources.values())):
        names = sorted(n for n, p in sources.items() if p == path)
        checkpointing.restore_into(path, **{n: state.networks[n] for n in names})
        origins.update(dict.fromkeys(names, checkpointing.describe_checkpoint(path)))
    if cfg.run.init_checkpoint:
        if "segmenter" not in state.networks:
            raise StartError(f"--init_checkpoint initializes a segmenter; stage {stage.name} "
                             "has none")
        report = pretrained.initialize_segmenter(state.networks["segmenter"],
                                                 cfg.run.init_checkpoint,
                                                 allow_partial=cfg.run.init_allow_partial)
        origins["segmenter"] = report.source
    for name in stage.restores:
        if name in origins:
            continue
        if name == "segmenter" and stage.needs_trained_segmenter:
            raise StartError(f"stage {stage.name} needs a trained segmenter (the adapted one of "
                             "an earlier stage, or --init_checkpoint), not a random one: run "
                             "the stages before it first")
        if name == "segmenter" and cfg.run.allow_random_start:
            origins[name] = "random initialization (--allow_random_start)"
            continue
        hint = (" Give --init_checkpoint, or --allow_random_start if that is meant."
                if name == "segmenter" else "")
        raise StartError(f"stage {stage.name} starts its {name} from an earlier stage, but no "
                         f"earlier stage provides one.{hint}")
    for name in stage.networks:
        origins.setdefault(name, "random initialization")
    print(f"stage {stage.name} starts from:\n"
          + "".join(f"  {name} <- {origin}\n" for name, origin in origins.items()),
          end="", flush=True)
    if chief:
        files.write_json(os.path.join(workdir, "sources.json"), origins)
    return origins


def _initialize(state, cfg, workdir, sources, chief):
    """Resumes from the work directory (returns True), else starts (see `_start`)."""
    latest = checkpointing.latest_intact_checkpoint(workdir, repair_state=chief)
    if latest:
        # The manager's files also hold its save counter, which the state does not track:
        # every object of ours must match, and that counter alone is left over.
        state.checkpoint().read(latest).assert_existing_objects_matched().expect_partial()
        print(f"stage {state.stage.name} resumes from {latest} at step {int(state.step)} "
              f"(where it started from: {os.path.join(workdir, 'sources.json')})", flush=True)
        return True
    _start(state, cfg, workdir, sources, chief)
    return False


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
    warn_of_upscaling(cfg, stage, check_data(cfg, datasets_used(cfg)))
    with checkpointing.workdir_lock(workdir) if chief else contextlib.nullcontext():
        return _train(cfg, stage, strategy, chief, workdir, sources)


def _train(cfg, stage, strategy, chief, workdir, sources):
    """`train` from the work directory's preparation on, with the lock held."""
    checkpointing.prepare_workdir(cfg, workdir, chief)
    state = TrainingState(cfg, stage, strategy)
    resumed = _initialize(state, cfg, workdir, sources or {}, chief)
    # Every worker takes part in saving; only the chief's checkpoints are
    # kept, the others go to a local folder removed when the process ends.
    scratch = None if chief else tempfile.TemporaryDirectory(prefix="udamobile-worker-")
    manager = tf.train.CheckpointManager(
        state.checkpoint(), checkpointing.checkpoint_dir(workdir) if chief else scratch.name,
        max_to_keep=cfg.run.keep_checkpoints if chief else 1, step_counter=state.step)
    start = int(state.step)
    eval_data = evaluation_dataset(cfg) if stage.evaluates else None
    best = checkpointing.BestCheckpoint(state, workdir) if stage.evaluates and chief else None
    bad_files = data_pipelines.BadFiles(cfg.run.max_bad_files)
    label_free = _LabelFree(cfg, bad_files) if best and _signal_splits(cfg) else None
    if best and cfg.run.label_free_images and not label_free:
        logging.info("No label-free signals: --target_root is not given")
    writer = (checkpointing.summary_writer(os.path.join(workdir, "logs")) if chief
              else tf.summary.create_noop_writer())

    def stream_from(step):
        options = stage.stream_options(cfg, workdir, chief=chief, bad_files=bad_files,
                                       state=state, step=step, check_stop=stop_if_interrupted)
        return iter(distribute_stream(make_training_stream(cfg, step, bad_files, **options),
                                      strategy))

    restarts = set(stage.stream_starts(cfg)) - {start}
    steps = {}

    def step_function(step):
        active = stage.active_updates(step, cfg)
        if active not in steps:
            steps[active] = stage.make_step(state, cfg, active)
        return steps[active]

    # The step of the last checkpoint, tracked here rather than read from the
    # folders, so that every worker takes the same decisions.
    saved_step = start if resumed else None

    def save():
        nonlocal saved_step
        checkpointing.save(manager, int(state.step))
        saved_step = int(state.step)

    def stop_if_interrupted():
        """After SIGINT/SIGTERM, saves a checkpoint (if this step has none) and raises
        Interrupted: after each step, and between the image batches of a labelling."""
        if interrupt.received:
            if saved_step != int(state.step):
                save()
            raise Interrupted(f"{interrupt.received} at step {int(state.step)}: checkpoint "
                              f"saved in {workdir}; run the same command to resume")

    def evaluate(name):
        model = KerasSegmenter(state.networks["segmenter"], ModelIdentity(
            "keras", os.path.abspath(workdir), step=int(state.step), preset=cfg.preset,
            stage=cfg.stage))
        scores = evaluation.evaluate(model, eval_data, protocol=config_lib.protocol(cfg),
                                     input_width=cfg.run.eval_input_width,
                                     max_images=cfg.run.eval_max_images, bad_files=bad_files)
        scores.update(step=int(state.step))
        if label_free:
            scores["label_free"] = label_free(state.networks["segmenter"])
        files.write_json(os.path.join(workdir, "eval", f"{name}.json"), scores)
        best.offer(scores)
        with writer.as_default():
            tf.summary.scalar("eval/miou", scores["miou"], step=int(state.step))
            for tag, value in signals.scalars(scores.get("label_free")).items():
                tf.summary.scalar(tag, value, step=int(state.step))
        return scores

    interrupt = _SignalFlag()
    stream = None
    try:
        skipped = 0
        with interrupt, writer.as_default(), \
                Progress(cfg.optim.steps - start, cfg.stage, unit="step") as progress:
            stream = stream_from(start)
            for step in range(start, cfg.optim.steps):
                if step in restarts:
                    # Saved first, so that a run stopped while the stream is
                    # being made again restarts it from the same weights.
                    if saved_step != step:
                        save()
                    stream = stream_from(step)
                started = time.perf_counter()
                batch = _next_batch(stream, bad_files)
                values = {k: float(v) for k, v in step_function(step)(batch).items()}
                seconds = time.perf_counter() - started
                if not values["finite"]:
                    if cfg.run.on_nonfinite == "stop":
                        raise NonFiniteLossError(
                            f"step {step}: non-finite {_nonfinite_terms(values)}; the update was "
                            f"not applied and the last checkpoint in {workdir} is intact")
                    skipped += 1
                    logging.warning("step %d skipped: non-finite %s", step,
                                    _nonfinite_terms(values))
                done = step + 1
                progress.update(**{k.split("/")[-1]: v for k, v in values.items()
                                   if k in stage.progress_metrics})
                if done % cfg.run.log_every == 0 or done == cfg.optim.steps:
                    for name, value in values.items():
                        tf.summary.scalar(name, value, step=done)
                    for name, rate in state.learning_rates().items():
                        tf.summary.scalar(f"learning_rate/{name}", rate, step=done)
                    tf.summary.scalar("step_seconds", seconds, step=done)
                    tf.summary.scalar("skipped_steps", skipped, step=done)
                    tf.summary.scalar("data/bad_files", len(bad_files), step=done)
                if chief and done % cfg.run.image_every == 0:
                    for name, image in stage.summary_images(
                            state, first_replica(batch, strategy)).items():
                        tf.summary.image(name, image, step=done)
                if done % cfg.run.checkpoint_every == 0:
                    save()
                if (best and cfg.run.eval_every and done % cfg.run.eval_every == 0
                        and done < cfg.optim.steps):
                    evaluate(f"step_{done}")
                stop_if_interrupted()
        if saved_step != int(state.step):
            save()
        if len(bad_files):
            logging.warning("%d bad file(s) skipped (each logged when met)", len(bad_files))
        return evaluate("final") if best else None
    except data_pipelines.BadFilesError as error:
        if saved_step != int(state.step):
            save()
        raise data_pipelines.BadFilesError(
            f"{error}. Stopped at step {int(state.step)}, checkpoint saved in {workdir}: fix or "
            "remove the bad files (python -m data_pipelines.check --all lists them) or raise "
            "--max_bad_files, and run the same command to resume") from None
    finally:
        # An iterator still alive at interpreter shutdown can abort or hang the
        # process (data_pipelines.pipelines); the error's traceback would keep it.
        del stream


def _next_batch(stream, bad_files):
    """The next batch; raises BadFilesError once bad files are past their limit."""
    try:
        batch = next(stream)
    except (StopIteration, tf.errors.OutOfRangeError):
        bad_files.check()  # the endless stream ends only past the bad-file limit
        raise
    bad_files.check()
    return batch
