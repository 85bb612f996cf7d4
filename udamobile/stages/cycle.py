"""Stages built around the CycleGAN translators G_ST, G_TS and their discriminators.

    stage                 networks (restored*, frozen+)            losses
    translation           G_ST, G_TS, D_S, D_T                     Eq. 1-3 (CycleGAN)
    semantic_translation  G_ST, G_TS, D_S, D_T, M*+                Eq. 1-4 (CyCADA's first step)
    adaptation            G_ST, G_TS, D_S, D_T, M*, D'_S, D'_T     Eq. 1-9 (the paper)

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
it out of the generators' objective. In the adaptation stage M's batch norm
is frozen (batch size 1, as in the authors' code); M starts training at
`segmenter_frozen_steps` and the feature game at `feature_adaptation_start`.
"""
import tensorflow as tf

from data_pipelines.images import to_pixels
from udamobile import distribute, losses
from udamobile.stages.base import Stage, Update, finish, prediction_image, replica_side

GENERATORS = Update("generators", ("g_st", "g_ts"))
SEGMENTER = Update("segmenter", ("segmenter",))
DISCRIMINATORS = Update("discriminators", ("d_s", "d_t"))
FEATURE_DISCRIMINATORS = Update("feature_discriminators", ("fd_s", "fd_t"))
TRANSLATORS = ("g_st", "g_ts", "d_s", "d_t")


class CycleStage(Stage):
    reads = "unpaired"
    uses_pools = True
    progress_metrics = ("loss/cycle", "loss/generators")

    def __init__(self, name, *, segmenter):
        """segmenter: None (CycleGAN), "frozen" (CyCADA's Eq. 4) or "trained" (the paper)."""
        self.name = name
        self.segmenter = segmenter
        self.networks = TRANSLATORS
        self.updates = (GENERATORS, DISCRIMINATORS)
        if segmenter == "frozen":
            self.networks += ("segmenter",)
            self.frozen = ("segmenter",)
        elif segmenter == "trained":
            self.networks += ("segmenter", "fd_s", "fd_t")
            self.updates = (GENERATORS, SEGMENTER, DISCRIMINATORS, FEATURE_DISCRIMINATORS)
            self.progress_metrics += ("loss/task_ce",)
        self.restores = ("segmenter",) if segmenter else ()

    def update_starts(self, cfg):
        starts = {GENERATORS.name: (0, None), DISCRIMINATORS.name: (0, None)}
        if self.segmenter == "trained":
            starts[SEGMENTER.name] = (cfg.optim.segmenter_frozen_steps, "segmenter_frozen_steps")
            if cfg.loss.lambda_feat > 0:
                starts[FEATURE_DISCRIMINATORS.name] = (cfg.optim.feature_adaptation_start,
                                                       "feature_adaptation_start")
        return starts

    def make_step(self, state, cfg, active):
        """One update of every active player on an unpaired batch.

        batch: {"source_image", "source_label", "target_image"}.

        Plan of the step:
          1. Generator side, on each replica: translate both ways and back
             (G_ST(x_S), G_TS(x_T) and the cycles); with a segmenter, segment
             the real images (targets of Eq. 4, real samples of Eq. 6-7) and
             the translated ones; the objectives of the generators and the
             segmenter, and their gradients.
          2. The image pools swap the global batch of new fakes for older ones.
          3. Discriminator side, on each replica: the image discriminators on
             real images and pooled fakes (Eq. 1-2), the feature
             discriminators on the encodings of real and translated images.
          4. Apply all updates, all computed before any weight changed (each
             variable has one optimizer, so their order does not matter).
        """
        lam, real = cfg.loss, cfg.loss.real_label
        nets = state.networks
        segmenter = nets.get("segmenter")
        use_sem = segmenter is not None and lam.lambda_sem > 0
        use_feat = FEATURE_DISCRIMINATORS.name in active
        train_segmenter = SEGMENTER.name in active
        check_gradients = not cfg.run.mixed_precision
        strategy = state.strategy
        generator_updates = [u for u in (GENERATORS, SEGMENTER) if u.name in active]
        discriminator_updates = [u for u in (DISCRIMINATORS, FEATURE_DISCRIMINATORS)
                                 if u.name in active]

        def generator_side(batch):
            x_s, y_s, x_t = batch["source_image"], batch["source_label"], batch["target_image"]
            fake_t = nets["g_st"](x_s, training=True)          # G_ST(x_S)
            fake_s = nets["g_ts"](x_t, training=True)          # G_TS(x_T)
            cycle_s = nets["g_ts"](fake_t, training=True)      # G_TS(G_ST(x_S))
            cycle_t = nets["g_st"](fake_s, training=True)      # G_ST(G_TS(x_T))
            adv_t = losses.lsgan_generator_loss(nets["d_t"](fake_t, training=True), real)  # Eq. 1
            adv_s = losses.lsgan_generator_loss(nets["d_s"](fake_s, training=True), real)  # Eq. 2
            cycle = lam.lambda_cycle * (losses.cycle_consistency_loss(x_s, cycle_s)
                                        + losses.cycle_consistency_loss(x_t, cycle_t))  # Eq. 3
            metrics = {"loss/image_adversarial_t": adv_t, "loss/image_adversarial_s": adv_s,
                       "loss/cycle": cycle}
            objectives = {GENERATORS.name: adv_t + adv_s + cycle}
            carried = {"fake_t": fake_t, "fake_s": fake_s}
            if segmenter is None:
                metrics["loss/generators"] = objectives[GENERATORS.name]
                return objectives, metrics, carried
            # The real images only provide targets and real samples: no gradient.
            m_x_s = segmenter(x_s, training=False)
            m_x_t = segmenter(x_t, training=False)
            in_training = self.segmenter == "trained"
            m_fake_t = segmenter(fake_t, training=in_training)
            m_fake_s = segmenter(fake_s, training=in_training)
            sem = tf.constant(0.0)
            if use_sem:  # Eq. 4
                sem = lam.lambda_sem * (
                    losses.semantic_consistency_loss(m_fake_t["logits"], m_x_s["logits"])
                    + losses.semantic_consistency_loss(m_fake_s["logits"], m_x_t["logits"]))
            objectives[GENERATORS.name] += sem
            metrics["loss/semantic"] = sem
            if self.segmenter == "trained":
                feat_adv = tf.constant(0.0)
                if use_feat:  # generator side of Eq. 6 (D'_T) and Eq. 7 (D'_S)
                    feat_adv = lam.lambda_feat * (
                        losses.lsgan_generator_loss(nets["fd_t"](m_fake_t["features"], training=True),
                                                    real)
                        + losses.lsgan_generator_loss(
                            nets["fd_s"](m_fake_s["features"], training=True), real))
                task = lam.lambda_ce * losses.cross_entropy(y_s, m_fake_t["logits"])  # Eq. 8
                l2 = losses.l2_regularization(state.regularized, cfg.optim.weight_decay)
                objectives[GENERATORS.name] += feat_adv
                objectives[SEGMENTER.name] = task + sem + feat_adv + l2
                metrics.update({"loss/feature_adversarial": feat_adv, "loss/task_ce": task,
                                "loss/l2": l2, "loss/segmenter": objectives[SEGMENTER.name]})
                carried.update({"fake_t_features": m_fake_t["features"],
                                "fake_s_features": m_fake_s["features"],
                                "x_s_features": m_x_s["features"],
                                "x_t_features": m_x_t["features"]})
            metrics["loss/generators"] = objectives[GENERATORS.name]
            if not train_segmenter:
                objectives.pop(SEGMENTER.name, None)
            return objectives, metrics, carried

        def discriminator_side(batch, carried, pooled_t, pooled_s):
            x_s, x_t = batch["source_image"], batch["target_image"]
            # Discriminator sides of Eq. 1-2, on the image pools' fakes.
            d_t_loss = losses.lsgan_discriminator_loss(
                nets["d_t"](x_t, training=True),
                nets["d_t"](distribute.replica_slice(pooled_t), training=True), real)
            d_s_loss = losses.lsgan_discriminator_loss(
                nets["d_s"](x_s, training=True),
                nets["d_s"](distribute.replica_slice(pooled_s), training=True), real)
            objectives = {DISCRIMINATORS.name: d_t_loss + d_s_loss}
            metrics = {"loss/image_discriminators": objectives[DISCRIMINATORS.name]}
            if self.segmenter == "trained":
                feature_loss = tf.constant(0.0)
                if use_feat:  # discriminator sides of Eq. 6-7: real Me(x) vs Me(G(x))
                    feature_loss = lam.lambda_feat * (
                        losses.lsgan_discriminator_loss(
                            nets["fd_t"](carried["x_t_features"], training=True),
                            nets["fd_t"](carried["fake_t_features"], training=True), real)
                        + losses.lsgan_discriminator_loss(
                            nets["fd_s"](carried["x_s_features"], training=True),
                            nets["fd_s"](carried["fake_s_features"], training=True), real))
                    objectives[FEATURE_DISCRIMINATORS.name] = feature_loss
                metrics["loss/feature_discriminators"] = feature_loss
            return objectives, metrics, {}

        generator_run = replica_side(state, generator_updates, generator_side,
                                     check_gradients=check_gradients)
        discriminator_run = replica_side(state, discriminator_updates, discriminator_side,
                                         check_gradients=check_gradients)

        @tf.function
        def step(batch):
            g_metrics, g_grads, g_finite, carried = strategy.run(generator_run, args=(batch,))
            # The pools see the global batch of fakes in replica order, as one device would.
            pooled_t = state.pools["pool_t"].query(strategy.gather(carried["fake_t"], axis=0))
            pooled_s = state.pools["pool_s"].query(strategy.gather(carried["fake_s"], axis=0))
            d_metrics, d_grads, d_finite, _ = strategy.run(
                discriminator_run, args=(batch, carried, pooled_t, pooled_s))
            return finish(state, {**g_metrics, **d_metrics},
                          generator_updates + discriminator_updates, g_grads + d_grads,
                          [g_finite, d_finite])

        return step

    def summary_images(self, state, batch):
        """The six images of the paper's Fig. 2 (and, with M, its predictions)."""
        g_st, g_ts = state.networks["g_st"], state.networks["g_ts"]
        x_s, x_t = batch["source_image"][:1], batch["target_image"][:1]
        fake_t, fake_s = g_st(x_s, training=False), g_ts(x_t, training=False)
        translated = {"x_s": x_s, "g_st(x_s)": fake_t, "g_ts(g_st(x_s))": g_ts(fake_t, training=False),
                      "x_t": x_t, "g_ts(x_t)": fake_s, "g_st(g_ts(x_t))": g_st(fake_s, training=False)}
        pictures = {name: to_pixels(image) for name, image in translated.items()}
        if "segmenter" in state.networks:
            for name in ("x_t", "g_st(x_s)"):
                pictures[f"prediction {name}"] = prediction_image(state.networks["segmenter"],
                                                                  translated[name])
        return pictures


TRANSLATION = CycleStage("translation", segmenter=None)
SEMANTIC_TRANSLATION = CycleStage("semantic_translation", segmenter="frozen")
ADAPTATION = CycleStage("adaptation", segmenter="trained")
