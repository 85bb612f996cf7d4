"""The paper's framework: translators, segmenter and both discriminator pairs trained
together (Eq. 1-9), on a labelled source patch beside an unlabelled target patch.

    networks: G_ST, G_TS, D_S, D_T (new), M (restored), D'_S, D'_T (new)

Who updates what (each variable belongs to exactly one optimizer):

    update                  variables    loss (equation numbers of the paper)
    generators              G_ST, G_TS   generator sides of Eq. 1-2 + lambda_cycle L_cycle
                                         (Eq. 3) + lambda_sem L_sem (Eq. 4) + lambda_feat
                                         generator side of Eq. 6-7
    segmenter               M (Me, Md)   lambda_ce L_ce^s (Eq. 8) + lambda_sem L_sem (Eq. 4)
                                         + lambda_feat generator side of Eq. 6-7 (through
                                         Me) + L2
    discriminators          D_S, D_T     discriminator sides of Eq. 1-2 on pooled fakes
    feature_discriminators  D'_S, D'_T   lambda_feat discriminator sides of Eq. 6-7

The task loss L_ce^s trains M only: the paper describes it as the loss "used
to train supervisedly M on source adapted data", and the authors' code keeps
it out of the generators' objective. M's batch norm is frozen (batch size 1,
as in the authors' code); M starts training at `segmenter_frozen_steps` and
the feature game at `feature_adaptation_start`. The field defaults of the
config are this stage's settings in the paper (Sec. 4).
"""
from udamobile.deferred import deferred
from udamobile.experiments.presets import IMAGE_DISCRIMINATOR_STRIDES
from udamobile.training.stages.cycle import (TRANSLATORS, CycleStage, cycle_step,
                                             image_discriminators, segment,
                                             semantic_consistency, translate)
from udamobile.training.stages.updates import (DISCRIMINATORS, FEATURE_DISCRIMINATORS, GENERATORS,
                                               SEGMENTER)

tf, losses = deferred("tensorflow", "udamobile.training.losses")

# The authors' train_DA.py starts the feature game with the segmenter, at step 20,000.
AUTHORS_CODE = dict(feature_adaptation_start=20_000)


def feature_adversarial(nets, outputs, real):
    """Generator side of Eq. 6 (D'_T) and Eq. 7 (D'_S) on the translated images' encodings."""
    return (losses.lsgan_generator_loss(nets["fd_t"](outputs["fake_t"]["features"],
                                                     training=True), real)
            + losses.lsgan_generator_loss(nets["fd_s"](outputs["fake_s"]["features"],
                                                       training=True), real))


def feature_discriminators(nets, carried, real):
    """Discriminator sides of Eq. 6-7: Me(x) real against Me(G(x)) fake, each domain."""
    return (losses.lsgan_discriminator_loss(nets["fd_t"](carried["x_t_features"], training=True),
                                            nets["fd_t"](carried["fake_t_features"],
                                                         training=True), real)
            + losses.lsgan_discriminator_loss(nets["fd_s"](carried["x_s_features"],
                                                           training=True),
                                              nets["fd_s"](carried["fake_s_features"],
                                                           training=True), real))


class AdaptationStage(CycleStage):
    name = "adaptation"
    recipe = {}
    preset_edits = {
        "paper_synthia": dict(segmenter_lr=5e-6),  # the paper's SYNTHIA LR
        "authors_code_gta5": AUTHORS_CODE, "authors_code_synthia": AUTHORS_CODE,
        # Patches of half the image at batch 1 (the paper's batch): on 64x64 ones the
        # translators lost the sky, painting it as facades (docs/demo_study.md). The
        # segmenter trains at the source-only stage's LR: 1200 steps at the paper's
        # tenth of it left it near the source-only one.
        # The paper's image discriminators (five stride-2 convs, 94-pixel fields): with
        # the demo's (46 pixels) the translators could swap two classes' colours,
        # which the target's colour change makes as plausible as the right mapping;
        # at widths 128, seed 1: 36.9 -> 58.8 mIoU, car 0.4 -> 86.7 (docs/demo_study.md).
        "demo": dict(steps=1500, batch_size=1, patch_size=128, segmenter_lr=1e-3,
                     segmenter_frozen_steps=300, feature_adaptation_start=0,
                     discriminator_strides=IMAGE_DISCRIMINATOR_STRIDES["paper"])}
    networks = TRANSLATORS + ("segmenter", "fd_s", "fd_t")
    restores = ("segmenter",)
    updates = (GENERATORS, SEGMENTER, DISCRIMINATORS, FEATURE_DISCRIMINATORS)
    progress_metrics = CycleStage.progress_metrics + ("loss/task_ce",)

    def update_starts(self, cfg):
        starts = {GENERATORS.name: (0, None), DISCRIMINATORS.name: (0, None),
                  SEGMENTER.name: (cfg.optim.segmenter_frozen_steps, "segmenter_frozen_steps")}
        if cfg.loss.lambda_feat > 0:
            starts[FEATURE_DISCRIMINATORS.name] = (cfg.optim.feature_adaptation_start,
                                                   "feature_adaptation_start")
        return starts

    def make_step(self, state, cfg, active):
        """batch: {"source_image", "source_label", "target_image"}; steps 1-4 of the
        plan in udamobile/training/stages/cycle.py."""
        lam, real, nets = cfg.loss, cfg.loss.real_label, state.networks
        use_feat = FEATURE_DISCRIMINATORS.name in active

        def generator_side(batch):  # 1
            objective, metrics, carried = translate(nets, batch, lam, real)
            outputs = segment(nets["segmenter"], batch, carried, training=True)
            sem = semantic_consistency(outputs, lam.lambda_sem)  # Eq. 4
            feat_adv = (lam.lambda_feat * feature_adversarial(nets, outputs, real) if use_feat
                        else tf.constant(0.0))  # Eq. 6-7, generator side
            task = lam.lambda_ce * losses.cross_entropy(batch["source_label"],
                                                        outputs["fake_t"]["logits"])  # Eq. 8
            l2 = losses.l2_regularization(state.regularized, cfg.optim.weight_decay)
            objective = objective + sem + feat_adv
            segmenter_objective = task + sem + feat_adv + l2
            metrics.update({"loss/semantic": sem, "loss/feature_adversarial": feat_adv,
                            "loss/task_ce": task, "loss/l2": l2,
                            "loss/segmenter": segmenter_objective, "loss/generators": objective})
            carried.update({f"{name}_features": outputs[name]["features"] for name in outputs})
            return ({GENERATORS.name: objective, SEGMENTER.name: segmenter_objective}, metrics,
                    carried)

        def discriminator_side(batch, carried, pooled_t, pooled_s):  # 3
            images = image_discriminators(nets, batch, pooled_t, pooled_s, real)
            objectives = {DISCRIMINATORS.name: images}
            features = tf.constant(0.0)
            if use_feat:
                features = objectives[FEATURE_DISCRIMINATORS.name] = (
                    lam.lambda_feat * feature_discriminators(nets, carried, real))
            return objectives, {"loss/image_discriminators": images,
                                "loss/feature_discriminators": features}, {}

        updates = ([u for u in (GENERATORS, SEGMENTER) if u.name in active],
                   [u for u in (DISCRIMINATORS, FEATURE_DISCRIMINATORS) if u.name in active])
        return cycle_step(state, cfg, updates, generator_side, discriminator_side)


ADAPTATION = AdaptationStage()
