"""The baselines a practitioner tries before any GAN: colour transfer and AdaBN.

    stage            reads                          does                         restores
    colour_transfer  labelled source patches, each  fine-tunes M on source       segmenter
                     image's Lab statistics moved   images that look like the
                     to the target's average        target in colour (Eq. 5 + L2)
    adabn            unlabelled target patches      re-estimates M's batch-norm  segmenter
                                                    statistics; no weight learns

Both start from the source-only segmenter, and both leave a plain segmenter
that is scored and exported like any other: nothing changes at inference.

Colour transfer works on the training side (source images matched to the
target's statistics, Reinhard-style: `data_pipelines.colour`) rather than
on target images at test time. The test-time form would put a per-image
Lab conversion in every deployed graph (SavedModel and TFLite), or leave
an exported segmenter that expects converted images; trained this way the
row is the CycleGAN row's recipe (`translated_source`) with the learned
translation replaced by a colour-statistics one, so the two rows isolate
what the GAN adds. The target statistics are the average per-image Lab
mean and std of `COLOUR_STATISTICS_IMAGES` target train images, spread over
the split; they are computed once and kept in the work directory, so a
resumed run matches the same colours.

AdaBN (Li et al. 2016, "Revisiting batch normalization for practical domain
adaptation") replaces every batch norm's moving statistics by the target's.
Here each batch's statistics (the segmenter run in training mode, as its
source statistics were gathered, dropout included) enter a cumulative
average over the stage's steps, so after n steps each statistic is the mean
of n batches' values, with equal weights: the population statistics the
method asks for, not a moving average that forgets. `steps` x `batch_size`
patches make the passes over the target train split (the demo: 3 passes).
"""
import os

from udamobile import files

from udamobile.deferred import deferred
from udamobile.training import inputs
from udamobile.training.stages.base import Stage
from udamobile.training.stages.supervised import SupervisedStage

tf, colour, segmenter_lib = deferred("tensorflow", "data_pipelines.colour",
                                     "udamobile.nets.segmenter")

COLOUR_STATISTICS_IMAGES = 500
COLOUR_STATISTICS_FILE = "target_colour_statistics.json"


def target_colour_statistics(cfg, workdir, *, chief, bad_files=None):
    """The target's average Lab statistics, from the work directory or computed (and kept)."""
    path = os.path.join(workdir, COLOUR_STATISTICS_FILE)
    if os.path.isfile(path):
        return files.read_json(path, keys=("mean", "std"), remedy=(
            "remove it: the stage computes the statistics again from the target's images"))
    target = inputs.open_split(cfg, inputs.target_train(cfg))
    statistics = colour.average_lab_statistics(target, COLOUR_STATISTICS_IMAGES, bad_files)
    statistics["dataset"] = f"{target.name}/{target.split}"
    if chief:
        files.write_json(path, statistics)
    return statistics


def matched_to(statistics):
    """The image transform that moves an image's Lab statistics to `statistics`'."""
    mean = tf.constant(statistics["mean"], tf.float32)
    std = tf.constant(statistics["std"], tf.float32)
    return lambda image: colour.match_colour_statistics(image, mean, std)


def matched_to_target(cfg, run):
    """The transform to the target's statistics, kept in the run's folder (`run`: a
    RunContext)."""
    return matched_to(target_colour_statistics(cfg, run.workdir, chief=run.chief,
                                               bad_files=run.bad_files))


class ColourTransferStage(SupervisedStage):
    """Fine-tuned on colour-matched source images with the source-only recipe, as
    translated_source is on G_ST's translations."""
    name = "colour_transfer"
    restores = ("segmenter",)

    def train_splits(self, cfg):
        # The target's train images give the colour statistics.
        return [inputs.source_train(cfg), inputs.target_train(cfg)]

    def build_inputs(self, cfg, start_step, run):
        return inputs.labelled_patches(cfg, inputs.source_train(cfg), start_step, run.bad_files,
                                       image_transform=matched_to_target(cfg, run))


class AdaBNStage(Stage):
    name = "adabn"
    # Three passes over Cityscapes train (2,975 images) at batch 5; the demo's over
    # demo_target train (2,000 images) at batch 8.
    recipe = dict(steps=1785, batch_size=5)
    preset_edits = {"demo": dict(steps=750, batch_size=8)}
    networks = ("segmenter",)
    restores = ("segmenter",)
    segmenter_batch_norm_trains = True
    batch_keys = ("image",)

    def train_splits(self, cfg):
        return [inputs.target_train(cfg)]

    def build_inputs(self, cfg, start_step, run):
        return inputs.image_patches(cfg, inputs.target_train(cfg), start_step, run.bad_files)

    def make_step(self, state, cfg, active):
        """batch: {"image": [B, P, P, 3] in [-1, 1]}; updates only the moving statistics."""
        model = state.networks["segmenter"]
        norms = segmenter_lib.batch_norms(model)
        # Momentum 0: a training-mode call leaves the batch's own statistics in
        # the moving variables (Keras reads the momentum when the step is traced).
        for layer in norms:
            layer.momentum = 0.0
        statistics = [v for layer in norms for v in (layer.moving_mean, layer.moving_variance)]

        def on_replica(image):
            before = [tf.identity(v) for v in statistics]
            with tf.control_dependencies(before):
                model(image, training=True)
            # n batches averaged so far: mean_{n+1} = mean_n + (batch - mean_n) / (n + 1).
            weight = 1.0 / tf.cast(state.step + 1, tf.float32)
            for variable, old in zip(statistics, before):
                variable.assign(old + (variable - old) * weight)

        @tf.function
        def step(batch):
            state.strategy.run(on_replica, args=(batch["image"],))
            state.step.assign_add(1)
            return {"finite": tf.constant(True)}

        return step


COLOUR_TRANSFER = ColourTransferStage()
ADABN = AdaBNStage()
