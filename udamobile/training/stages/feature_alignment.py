"""CyCADA's last step: feature-level adversarial alignment of the segmenter's encoder.

    networks: M (restored, batch norm frozen), G_ST (restored, frozen), D'_T (new)
    data: a labelled source patch beside an unlabelled target patch

The feature discriminator D'_T (the paper's stride-1 PatchGAN on the
320-channel encoder output) learns to tell Me(G_ST(x_S)), the encoding of
translated source images, from Me(x_T), the encoding of real target images.
The segmenter learns to make its target encodings pass as translated-source
ones, while it keeps the task loss on G_ST(x_S) with y_S. As in CyCADA
(Hoffman et al. 2018, ADDA-style, weights shared between domains) the target
side is the one aligned; the losses are LSGAN, as everywhere here, and the
generator side is weighted by lambda_feat (CyCADA: 0.1).

    update                  variables   loss
    segmenter               M           lambda_ce L_ce(M(G_ST(x_S)), y_S)
                                        + lambda_feat (D'_T(Me(x_T)) - real)^2 + L2
    feature_discriminators  D'_T        lambda_feat LSGAN: Me(G_ST(x_S)) real, Me(x_T) fake
"""
from udamobile.deferred import deferred
from udamobile.training import inputs
from udamobile.training.stages.base import Stage
from udamobile.training.stages.updates import SEGMENTER, Update, feature_discriminator_rate

tf, images, losses, steps = deferred("tensorflow", "data_pipelines.images",
                                     "udamobile.training.losses",
                                     "udamobile.training.stages.steps")

FEATURE_DISCRIMINATOR = Update("feature_discriminators", ("fd_t",), feature_discriminator_rate)


class FeatureAlignmentStage(Stage):
    name = "feature_alignment"
    # CyCADA's feature stage: batch 1, the paper's adaptation LRs; the step budget is
    # the paper's adaptation stage's.
    recipe = dict(steps=80_000, batch_size=1)
    preset_edits = {"paper_synthia": dict(segmenter_lr=5e-6),  # the paper's SYNTHIA LR
                    "demo": dict(steps=1500, batch_size=2, segmenter_lr=1e-4)}
    networks = ("segmenter", "g_st", "fd_t")
    restores = ("segmenter", "g_st")
    frozen = ("g_st",)
    updates = (SEGMENTER, FEATURE_DISCRIMINATOR)
    batch_keys = ("source_image", "source_label", "target_image")
    progress_metrics = ("loss/task_ce", "loss/feature_adversarial")

    def train_splits(self, cfg):
        return [inputs.source_train(cfg), inputs.target_train(cfg)]

    def build_inputs(self, cfg, start_step, run):
        return inputs.unpaired_patches(cfg, start_step, run.bad_files)

    def update_starts(self, cfg):
        starts = {SEGMENTER.name: (0, None)}
        if cfg.loss.lambda_feat > 0:
            starts[FEATURE_DISCRIMINATOR.name] = (cfg.optim.feature_adaptation_start,
                                                  "feature_adaptation_start")
        return starts

    def make_step(self, state, cfg, active):
        """batch: {"source_image", "source_label", "target_image"}."""
        lam, real = cfg.loss, cfg.loss.real_label
        segmenter, g_st, fd_t = (state.networks[n] for n in self.networks)
        use_feat = FEATURE_DISCRIMINATOR.name in active
        check_gradients = not cfg.run.mixed_precision

        def segmenter_side(batch):
            translated = g_st(batch["source_image"], training=False)
            m_translated = segmenter(translated, training=True)
            m_target = segmenter(batch["target_image"], training=True)
            task = lam.lambda_ce * losses.cross_entropy(batch["source_label"],
                                                        m_translated["logits"])
            feat_adv = tf.constant(0.0)
            if use_feat:
                feat_adv = lam.lambda_feat * losses.lsgan_generator_loss(
                    fd_t(m_target["features"], training=True), real)
            l2 = losses.l2_regularization(state.regularized, cfg.optim.weight_decay)
            metrics = {"loss/task_ce": task, "loss/feature_adversarial": feat_adv, "loss/l2": l2}
            carried = {"translated_features": m_translated["features"],
                       "target_features": m_target["features"]}
            return {SEGMENTER.name: task + feat_adv + l2}, metrics, carried

        def discriminator_side(carried):
            loss = lam.lambda_feat * losses.lsgan_discriminator_loss(
                fd_t(carried["translated_features"], training=True),
                fd_t(carried["target_features"], training=True), real)
            return {FEATURE_DISCRIMINATOR.name: loss}, {"loss/feature_discriminators": loss}, {}

        updates_1 = [SEGMENTER]
        updates_2 = [FEATURE_DISCRIMINATOR] if use_feat else []
        first = steps.replica_side(state, updates_1, segmenter_side,
                                   check_gradients=check_gradients)
        second = steps.replica_side(state, updates_2, discriminator_side,
                                    check_gradients=check_gradients)

        @tf.function
        def step(batch):
            metrics, grads, finite, carried = state.strategy.run(first, args=(batch,))
            if not use_feat:
                return steps.finish(state, metrics, updates_1, grads, [finite])
            d_metrics, d_grads, d_finite, _ = state.strategy.run(second, args=(carried,))
            return steps.finish(state, {**metrics, **d_metrics}, updates_1 + updates_2,
                                grads + d_grads, [finite, d_finite])

        return step

    def summary_images(self, state, batch):
        translated = state.networks["g_st"](batch["source_image"][:1], training=False)
        target = batch["target_image"][:1]
        segmenter = state.networks["segmenter"]
        return {"g_st(x_s)": images.to_pixels(translated), "x_t": images.to_pixels(target),
                "prediction g_st(x_s)": steps.prediction_image(segmenter, translated),
                "prediction x_t": steps.prediction_image(segmenter, target)}


FEATURE_ALIGNMENT = FeatureAlignmentStage()
