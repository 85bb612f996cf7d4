"""Self-training on class-balanced pseudo-labels of the target (CBST), beyond the paper.

    stage                 reads                                restores
    self_training         a translated source patch G_ST(x_S),  segmenter, G_ST (frozen),
                          y_S beside a target patch x_T with    from adaptation
                          its pseudo-label y^_T
                          (`udamobile.training.pseudo_labels`)
    colour_self_training  a colour-matched source patch, y_S    segmenter, from
                          (`baselines.matched_to_target`)      colour_transfer
                          beside x_T with y^_T

colour_self_training is the same recipe started from the colour-transfer
segmenter, the source side colour-matched to the target as that segmenter
was fine-tuned on: no GAN anywhere. It is the combination to try where
colour transfer beats the paper's method (docs/results.md, "The shift
suite").

The recipe is CBST's (Zou et al., ECCV 2018; docs/self_training.md). The
stage's steps are split into `self_training_rounds` rounds of equal length.
At the first step of round r the segmenter of that moment (the adapted one
for r = 0) labels every target train image, keeping per class the most
confident pixels up to a fraction p_r of that class's predicted pixels:

    p_r = min(pseudo_label_fraction + r * pseudo_label_fraction_step,
              pseudo_label_fraction_max)

CBST's schedule (p from 20%, 5% more each round, at most 50%) is the
default; the number of rounds (3) and their length are our choice. Then M
trains on

    lambda_ce CE(y_S, M(G_ST(x_S))) + CE(y^_T, M(x_T)) + L2

(colour_self_training: the colour-matched x_S in place of G_ST(x_S)), with
the ignored pixels (255) of y^_T left out of the mean. With
`class_weight_power` > 0 (beyond CBST) the source's cross-entropy weighs
each pixel by its class's weight (`losses.class_balanced_weights`, from the
class shares of the source's labels), so that the thin classes count. The
target's stays unweighted: CBST's thresholds already balance its classes,
and weighing a pseudo-label multiplies the segmenter's own mistakes (on the
demo, weighted pseudo-labels spread traffic signs over the sky). Each domain's
batch is its own forward pass, so batch norm normalizes each with its own
statistics while it trains.

Each round's labels are stored once, in <workdir>/pseudo_labels/round_<r>/,
with a checkpoint saved at the round's first step before labelling: a run
stopped anywhere resumes in the same round with the same labels, and one
stopped while labelling labels again from the same weights. A damaged round
(`round.json`, a label of another size or with values no class has) is
named with what to do (`pseudo_labels.damaged_round_remedy`). SIGINT or
SIGTERM stops a labelling pass after its batch of images under way, leaving
no round folder (the trainer saves the checkpoint if the round's first step
has none yet).
"""
import os

from absl import logging

from data_pipelines.classes import CLASS_NAMES
from udamobile.deferred import deferred
from udamobile.errors import DatasetError, UsageError
from udamobile.training import inputs
from udamobile.training.stages.base import Stage
from udamobile.training.stages.baselines import matched_to_target
from udamobile.training.stages.updates import SEGMENTER

images, losses, pseudo_labels, signals, steps = deferred(
    "data_pipelines.images", "udamobile.training.losses", "udamobile.training.pseudo_labels",
    "udamobile.evaluation.signals", "udamobile.training.stages.steps")

PSEUDO_LABEL_DIR = "pseudo_labels"


def round_starts(cfg):
    """The first step of each round: round r starts at r * steps // rounds."""
    rounds, total = cfg.optim.self_training_rounds, cfg.optim.steps
    return tuple(r * total // rounds for r in range(rounds))


def round_of(step, cfg):
    """The round (0-based) that step `step` belongs to."""
    return sum(start <= step for start in round_starts(cfg)) - 1


def round_folder(workdir, round_index):
    return os.path.join(workdir, PSEUDO_LABEL_DIR, f"round_{round_index}")


def class_weights(cfg):
    """The per-class weights of the stage's source cross-entropy, or None with
    `class_weight_power` 0; logged, since they shape what the stage learns."""
    power = cfg.loss.class_weight_power
    if power == 0:
        return None
    source = inputs.open_split(cfg, inputs.source_train(cfg))
    weights = losses.class_balanced_weights(
        signals.label_shares(source, signals.SOURCE_LABEL_IMAGES), power)
    logging.info("class weights (--class_weight_power=%g, from %d %s labels): %s", power,
                 min(signals.SOURCE_LABEL_IMAGES, len(source)), cfg.data.source,
                 ", ".join(f"{name} {w:.2f}" for name, w in zip(CLASS_NAMES, weights)
                           if w != 1))
    return weights


def label_round(cfg, segmenter, target, folder, round_index, run):
    """Labels every image of `target` for round `round_index` into `folder` (`run`: the
    RunContext, whose `check_stop` is called between batches of images)."""
    optim, data = cfg.optim, cfg.data
    fraction = pseudo_labels.round_fraction(
        round_index, initial=optim.pseudo_label_fraction, step=optim.pseudo_label_fraction_step,
        maximum=optim.pseudo_label_fraction_max)
    labeller = pseudo_labels.Labeller(segmenter, resize_width=data.resize_width,
                                      patch_size=inputs.patch_shape(cfg),
                                      whole_images=data.whole_images)
    pseudo_labels.label_round(labeller, target, folder, fraction=fraction,
                              num_classes=cfg.model.num_classes,
                              assignment=optim.pseudo_label_assignment, bad_files=run.bad_files,
                              check_stop=run.check_stop,
                              about={"round": round_index, "step": round_starts(cfg)[round_index]})


class SelfTrainingStage(Stage):
    name = "self_training"
    # Three rounds of 10,000 steps on a source and a target patch (our choice; CBST
    # trains a few epochs per round), at the adaptation stage's LR.
    recipe = dict(steps=30_000, batch_size=2)
    preset_edits = {
        "paper_synthia": dict(segmenter_lr=5e-6),  # the paper's SYNTHIA LR
        # On the adaptation stage's patches: on 64x64 ones (G_ST, instance-normalized,
        # was trained on 128x128) the self-trained segmenter lost half the cars.
        # Source pixels weighed by their class's rarity (beyond CBST), over 1500 steps:
        # CBST alone, 750 steps, left poles, signs and persons at 0 IoU at seeds 0 and
        # 2, and added 1.8 and 0.6 mIoU there (docs/self_training.md).
        "demo": dict(steps=1500, batch_size=2, patch_size=128, segmenter_lr=1e-3,
                     class_weight_power=0.5)}
    # Runs before the field existed labelled with the top class.
    written_before_fields = {"pseudo_label_assignment": "argmax"}
    networks = ("segmenter", "g_st")
    restores = ("segmenter", "g_st")
    frozen = ("g_st",)
    needs_trained_segmenter = True  # labels from a random segmenter teach nothing
    updates = (SEGMENTER,)
    segmenter_batch_norm_trains = True
    batch_keys = ("source_image", "source_label", "target_image", "target_label")
    progress_metrics = ("loss/source_ce", "loss/target_ce")

    def validate(self, cfg):
        optim = cfg.optim
        if optim.pseudo_label_fraction_max < optim.pseudo_label_fraction:
            raise UsageError(f"--pseudo_label_fraction_max={optim.pseudo_label_fraction_max} "
                             f"is below --pseudo_label_fraction={optim.pseudo_label_fraction}")
        if optim.self_training_rounds > optim.steps:
            raise UsageError(f"--self_training_rounds={optim.self_training_rounds} is more "
                             f"than --steps={optim.steps}: every round needs a step")
        if cfg.run.strategy == "multi_worker_mirrored":
            raise UsageError("--strategy=multi_worker_mirrored: the self_training stage labels "
                             "the target on one machine; use default or mirrored")

    def train_splits(self, cfg):
        return [inputs.source_train(cfg), inputs.target_train(cfg)]

    def stream_starts(self, cfg):
        return round_starts(cfg)

    def build_inputs(self, cfg, start_step, run):
        """A translated source patch beside a target patch of the round's pseudo-labels,
        read from the round's folder or labelled now (only at the round's first step:
        see the module docstring)."""
        round_index = round_of(start_step, cfg)
        start = round_starts(cfg)[round_index]
        folder = round_folder(run.workdir, round_index)
        target = inputs.open_split(cfg, inputs.target_train(cfg))
        if pseudo_labels.read_round(folder) is None:
            if start_step != start:
                raise DatasetError(
                    f"{folder}: the pseudo-labels of round {round_index} are missing, but the "
                    f"run resumes at step {start_step}, after the round's start ({start}); "
                    "they cannot be made again from the same weights. Restore the folder, or "
                    "remove the stage's work directory to run the stage again")
            label_round(cfg, run.state.networks["segmenter"], target, folder, round_index, run)
        return inputs.unpaired_patches(cfg, start_step, run.bad_files,
                                       pseudo_labelled=pseudo_labels.PseudoLabelled(
                                           target, folder, cfg.model.num_classes),
                                       source_image_transform=self.source_transform(cfg, run))

    def source_transform(self, cfg, run):
        """The transform of each whole source image in the stream, or None."""
        return None

    def source_input(self, state, image):
        """M's input for a source patch: G_ST's translation."""
        return state.networks["g_st"](image, training=False)

    def make_step(self, state, cfg, active):
        """batch: {"source_image", "target_image": [B, P, P, 3] in [-1, 1],
        "source_label", "target_label": [B, P, P] train ids}."""
        segmenter = state.networks["segmenter"]
        lambda_ce, weight_decay = cfg.loss.lambda_ce, cfg.optim.weight_decay
        weights = class_weights(cfg)

        def compute(batch):
            source = self.source_input(state, batch["source_image"])
            source_logits = segmenter(source, training=True)["logits"]
            target_logits = segmenter(batch["target_image"], training=True)["logits"]
            source_ce = losses.cross_entropy(batch["source_label"], source_logits,  # Eq. 8
                                             weights)
            target_ce = losses.cross_entropy(batch["target_label"], target_logits)
            l2 = losses.l2_regularization(state.regularized, weight_decay)
            return ({SEGMENTER.name: lambda_ce * source_ce + target_ce + l2},
                    {"loss/source_ce": source_ce, "loss/target_ce": target_ce, "loss/l2": l2},
                    {})

        return steps.one_sided_step(state, [SEGMENTER], compute, cfg)

    def summary_images(self, state, batch):
        image = batch["target_image"][:1]
        return {"target_image": images.to_pixels(image),
                "pseudo_label": steps.colour_labels(batch["target_label"][:1]),
                "prediction": steps.prediction_image(state.networks["segmenter"], image)}


class ColourSelfTrainingStage(SelfTrainingStage):
    """The same rounds from the colour-transfer segmenter, beside source images
    colour-matched to the target (their statistics kept in the stage's folder)."""
    name = "colour_self_training"
    networks = ("segmenter",)
    restores = ("segmenter",)
    frozen = ()

    def source_transform(self, cfg, run):
        return matched_to_target(cfg, run)

    def source_input(self, state, image):
        return image


SELF_TRAINING = SelfTrainingStage()
COLOUR_SELF_TRAINING = ColourSelfTrainingStage()
