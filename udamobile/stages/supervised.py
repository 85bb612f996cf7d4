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

from data_pipelines.images import to_pixels
from udamobile import losses
from udamobile.stages.base import Stage, Update, colour_labels, one_sided_step, prediction_image

SEGMENTER = Update("segmenter", ("segmenter",))


def decoder_gradient_multipliers(segmenter, multiplier):
    """One factor per trainable variable of `segmenter`: `multiplier` on Md, 1 on Me."""
    decoder = {id(v) for v in segmenter.get_layer("decoder").trainable_variables}
    return [multiplier if id(v) in decoder else 1.0 for v in segmenter.trainable_variables]


class SupervisedStage(Stage):
    updates = (SEGMENTER,)
    segmenter_batch_norm_trains = True
    progress_metrics = ("loss/ce",)

    def __init__(self, name, *, reads, translate):
        self.name = name
        self.reads = reads
        self.translate = translate
        self.networks = ("segmenter", "g_st") if translate else ("segmenter",)
        self.restores = self.networks if translate else ()
        self.frozen = ("g_st",) if translate else ()

    def segmenter_input(self, state, image):
        return state.networks["g_st"](image, training=False) if self.translate else image

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

        return one_sided_step(state, [SEGMENTER], compute, cfg, multipliers)

    def summary_images(self, state, batch):
        image = batch["image"][:1]
        pictures = {"image": to_pixels(image), "label": colour_labels(batch["label"][:1])}
        if self.translate:
            image = self.segmenter_input(state, image)
            pictures["g_st(image)"] = to_pixels(image)
        pictures["prediction"] = prediction_image(state.networks["segmenter"], image)
        return pictures


SOURCE_ONLY = SupervisedStage("source_only", reads="source", translate=False)
ORACLE = SupervisedStage("oracle", reads="target", translate=False)
TRANSLATED_SOURCE = SupervisedStage("translated_source", reads="source", translate=True)
