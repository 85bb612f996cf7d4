"""Supervised stages: the segmenter trained on labelled images (Eq. 5 + L2).

    stage              reads                      input of M           restores
    source_only        labelled source patches    x_S                  -
    oracle             labelled target patches    x_T                  -
    translated_source  labelled source patches    G_ST(x_S), G_ST      segmenter, G_ST
                                                  frozen

Batch norm trains (batches of 5 in the paper). The first stage of a method
starts its segmenter from `--init_checkpoint` (or at random); the translated
source stage starts from the method's earlier stages (CycleGAN and CyCADA
train M on translated source images with the source labels).

With `last_layers_gradient_multiplier` the decoder's gradients are scaled
before Adam, as the authors' train_S.py does (README: under Adam a constant
gradient scale changes the step only through Adam's epsilon).
"""
from udamobile.deferred import deferred
from udamobile.training import inputs
from udamobile.training.stages.base import Stage
from udamobile.training.stages.updates import SEGMENTER

images, losses, steps = deferred("data_pipelines.images", "udamobile.training.losses",
                                 "udamobile.training.stages.steps")

# Paper: 90K steps at batch 5; its LR is not stated, the authors' train_S.py uses 1e-4.
RECIPE = dict(steps=90_000, batch_size=5, segmenter_lr=1e-4)
# The demo preset's: 1500 steps of 8 patches at ten times that LR.
DEMO = dict(steps=1500, batch_size=8, segmenter_lr=1e-3)


def decoder_gradient_multipliers(segmenter, multiplier):
    """One factor per trainable variable of `segmenter`: `multiplier` on Md, 1 on Me."""
    decoder = {id(v) for v in segmenter.get_layer("decoder").trainable_variables}
    return [multiplier if id(v) in decoder else 1.0 for v in segmenter.trainable_variables]


class SupervisedStage(Stage):
    """M trained on the labelled patches of `labelled_split` (the source's train split)."""
    recipe = RECIPE
    preset_edits = {"demo": DEMO}
    networks = ("segmenter",)
    updates = (SEGMENTER,)
    segmenter_batch_norm_trains = True
    batch_keys = ("image", "label")
    progress_metrics = ("loss/ce",)

    def labelled_split(self, cfg):
        return inputs.source_train(cfg)

    def train_splits(self, cfg):
        return [self.labelled_split(cfg)]

    def build_inputs(self, cfg, start_step, run):
        return inputs.labelled_patches(cfg, self.labelled_split(cfg), start_step, run.bad_files)

    def segmenter_input(self, state, image):
        return image

    def make_step(self, state, cfg, active):
        """batch: {"image": [B, P, P, 3] in [-1, 1], "label": [B, P, P] train ids}."""
        segmenter = state.networks["segmenter"]
        weight_decay = cfg.optim.weight_decay
        multiplier = cfg.optim.last_layers_gradient_multiplier
        multipliers = ({SEGMENTER.name: decoder_gradient_multipliers(segmenter, multiplier)}
                       if multiplier != 1 else None)

        def compute(batch):
            image = self.segmenter_input(state, batch["image"])
            logits = segmenter(image, training=True)["logits"]
            ce = losses.cross_entropy(batch["label"], logits)  # Eq. 5
            l2 = losses.l2_regularization(state.regularized, weight_decay)
            return {SEGMENTER.name: ce + l2}, {"loss/ce": ce, "loss/l2": l2}, {}

        return steps.one_sided_step(state, [SEGMENTER], compute, cfg, multipliers)

    def summary_images(self, state, batch):
        image = batch["image"][:1]
        return {"image": images.to_pixels(image),
                "label": steps.colour_labels(batch["label"][:1]),
                "prediction": steps.prediction_image(state.networks["segmenter"],
                                                     self.segmenter_input(state, image))}


class SourceOnlyStage(SupervisedStage):
    name = "source_only"
    preset_edits = {
        **SupervisedStage.preset_edits,
        # The authors' train_S.py: the decoder's gradients times 10, and GTA5 at its
        # own width (SYNTHIA keeps the preset's 1280).
        "authors_code_gta5": dict(last_layers_gradient_multiplier=10.0, resize_width=1914),
        "authors_code_synthia": dict(last_layers_gradient_multiplier=10.0)}


class OracleStage(SupervisedStage):
    name = "oracle"
    # The demo's bound on the other rows trains their longest segmenter's steps
    # (source-only, adaptation and self-training: 3 x 1500). At 1500 it scored
    # below colour transfer, which trains 3000 (docs/results.md, "The shift suite").
    preset_edits = {"demo": dict(DEMO, steps=4500)}

    def labelled_split(self, cfg):
        return inputs.target_train(cfg)


class TranslatedSourceStage(SupervisedStage):
    """M trained on G_ST(x_S) with the source-only recipe (as CyCADA trains its task
    model on translated images like on source images)."""
    name = "translated_source"
    networks = ("segmenter", "g_st")
    restores = ("segmenter", "g_st")
    frozen = ("g_st",)

    def segmenter_input(self, state, image):
        return state.networks["g_st"](image, training=False)

    def summary_images(self, state, batch):
        translated = self.segmenter_input(state, batch["image"][:1])
        return {**super().summary_images(state, batch),
                "g_st(image)": images.to_pixels(translated)}


SOURCE_ONLY = SourceOnlyStage()
ORACLE = OracleStage()
TRANSLATED_SOURCE = TranslatedSourceStage()
