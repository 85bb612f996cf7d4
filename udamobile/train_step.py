"""One training step of each stage, as a tf.function over a batch dict.

Each step returns a dict of scalar metrics, always including `finite`: the
updates are applied only when every loss and gradient is finite, so a NaN
never reaches the weights; the trainer then stops or skips as configured.
"""
import tensorflow as tf

from udamobile import losses


def _all_finite(tensors):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors if t is not None])


def _apply_if_finite(updates, metrics):
    """Applies [(optimizer, grads, vars)] when metrics and grads are all finite.

    Returns the boolean `finite`.
    """
    finite = _all_finite(list(metrics.values()) + [g for _, grads, _ in updates for g in grads])

    def apply():
        for optimizer, grads, variables in updates:
            optimizer.apply_gradients(zip(grads, variables))
        return tf.constant(True)

    return tf.cond(finite, apply, lambda: tf.constant(False))


def make_source_only_step(state, cfg):
    """Stage 1: supervised cross-entropy (Eq. 5) + L2 on a labelled batch.

    batch: {"image": [B, P, P, 3] in [-1, 1], "label": [B, P, P] train ids}.
    """
    weight_decay = cfg.optim.weight_decay

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            logits = state.segmenter(batch["image"], training=True)["logits"]
            ce = losses.cross_entropy(batch["label"], logits)
            l2 = losses.l2_regularization(state.regularized, weight_decay)
            total = ce + l2
        variables = state.segmenter.trainable_variables
        grads = tape.gradient(total, variables)
        metrics = {"loss/ce": ce, "loss/l2": l2}
        finite = _apply_if_finite([(state.segmenter_optimizer, grads, variables)], metrics)
        state.step.assign_add(1)
        return {**metrics, "finite": finite}

    return step


def make_adaptation_step(state, cfg, *, update_segmenter, feature_adaptation):
    """Stage 2: one update of every player of Eq. 9 on an unpaired batch.

    batch: {"source_image", "source_label", "target_image"}.

    Plan of the step:
      1. Translate both ways and back: G_ST(x_S), G_TS(x_T) and the cycles.
      2. Segment the real images (targets of Eq. 4, real samples of Eq. 6-7)
         and the translated ones.
      3. Generator-side losses (Eq. 1-4, 6-7) and the segmenter's (Eq. 4,
         6-7, 8); discriminator-side losses on pooled fakes (images) and on
         the current fakes' encodings (features).
      4. Apply all updates from the same forward pass (the generators first,
         as in CycleGAN; each variable has one optimizer, so the order does
         not change the result). The segmenter is updated only after its
         frozen phase, the feature discriminators only once feature-level
         adaptation has started: those are separate traced variants.
    """
    lam = cfg.loss
    real = lam.real_label
    use_sem = lam.lambda_sem > 0
    use_feat = feature_adaptation and lam.lambda_feat > 0
    weight_decay = cfg.optim.weight_decay
    segmenter = state.segmenter

    @tf.function
    def step(batch):
        x_s, y_s, x_t = batch["source_image"], batch["source_label"], batch["target_image"]
        # The real images only provide targets and real samples: no gradient.
        m_x_s = segmenter(x_s, training=False)
        m_x_t = segmenter(x_t, training=False)
        with tf.GradientTape(persistent=True) as tape:
            fake_t = state.g_st(x_s, training=True)          # G_ST(x_S)
            fake_s = state.g_ts(x_t, training=True)          # G_TS(x_T)
            cycle_s = state.g_ts(fake_t, training=True)      # G_TS(G_ST(x_S))
            cycle_t = state.g_st(fake_s, training=True)      # G_ST(G_TS(x_T))
            m_fake_t = segmenter(fake_t, training=True)
            m_fake_s = segmenter(fake_s, training=True)

            adv_t = losses.lsgan_generator_loss(state.d_t(fake_t, training=True), real)  # Eq. 1
            adv_s = losses.lsgan_generator_loss(state.d_s(fake_s, training=True), real)  # Eq. 2
            cycle = lam.lambda_cycle * (losses.cycle_consistency_loss(x_s, cycle_s)
                                        + losses.cycle_consistency_loss(x_t, cycle_t))  # Eq. 3
            sem = tf.constant(0.0)
            if use_sem:  # Eq. 4
                sem = lam.lambda_sem * (
                    losses.semantic_consistency_loss(m_fake_t["logits"], m_x_s["logits"])
                    + losses.semantic_consistency_loss(m_fake_s["logits"], m_x_t["logits"]))
            feat_adv = tf.constant(0.0)
            if use_feat:  # generator side of Eq. 6 (D'_T) and Eq. 7 (D'_S)
                feat_adv = lam.lambda_feat * (
                    losses.lsgan_generator_loss(state.fd_t(m_fake_t["features"], training=True), real)
                    + losses.lsgan_generator_loss(state.fd_s(m_fake_s["features"], training=True), real))
            task = lam.lambda_ce * losses.cross_entropy(y_s, m_fake_t["logits"])  # Eq. 8, L_ce^s
            l2 = losses.l2_regularization(state.regularized, weight_decay)
            generator_loss = adv_t + adv_s + cycle + sem + feat_adv
            segmenter_loss = task + sem + feat_adv + l2

            # Discriminator sides of Eq. 1-2, on the image pools' fakes.
            d_t_loss = losses.lsgan_discriminator_loss(
                state.d_t(x_t, training=True), state.d_t(state.pool_t.query(fake_t), training=True), real)
            d_s_loss = losses.lsgan_discriminator_loss(
                state.d_s(x_s, training=True), state.d_s(state.pool_s.query(fake_s), training=True), real)
            discriminator_loss = d_t_loss + d_s_loss
            feature_loss = tf.constant(0.0)
            if use_feat:  # discriminator sides of Eq. 6-7: real Me(x) vs Me(G(x))
                feature_loss = lam.lambda_feat * (
                    losses.lsgan_discriminator_loss(
                        state.fd_t(m_x_t["features"], training=True),
                        state.fd_t(tf.stop_gradient(m_fake_t["features"]), training=True), real)
                    + losses.lsgan_discriminator_loss(
                        state.fd_s(m_x_s["features"], training=True),
                        state.fd_s(tf.stop_gradient(m_fake_s["features"]), training=True), real))

        def update(optimizer, loss, *names):
            variables = state.variables_of(*names)
            return optimizer, tape.gradient(loss, variables), variables

        updates = [update(state.generator_optimizer, generator_loss, "g_st", "g_ts"),
                   update(state.discriminator_optimizer, discriminator_loss, "d_s", "d_t")]
        if update_segmenter:
            updates.append(update(state.segmenter_optimizer, segmenter_loss, "segmenter"))
        if use_feat:
            updates.append(update(state.feature_optimizer, feature_loss, "fd_s", "fd_t"))
        metrics = {
            "loss/image_adversarial_t": adv_t, "loss/image_adversarial_s": adv_s,
            "loss/cycle": cycle, "loss/semantic": sem, "loss/feature_adversarial": feat_adv,
            "loss/task_ce": task, "loss/l2": l2,
            "loss/generators": generator_loss, "loss/segmenter": segmenter_loss,
            "loss/image_discriminators": discriminator_loss,
            "loss/feature_discriminators": feature_loss,
        }
        finite = _apply_if_finite(updates, metrics)
        state.step.assign_add(1)
        return {**metrics, "finite": finite}

    return step


def adaptation_phase(step, cfg):
    """(update_segmenter, feature_adaptation) at a global step of stage 2."""
    return (step >= cfg.optim.segmenter_frozen_steps,
            step >= cfg.optim.feature_adaptation_start)


def translate_for_summary(state, batch):
    """The six images of the paper's Fig. 2 for the first example of a batch."""
    x_s, x_t = batch["source_image"][:1], batch["target_image"][:1]
    fake_t = state.g_st(x_s, training=False)
    fake_s = state.g_ts(x_t, training=False)
    return {"x_s": x_s, "g_st(x_s)": fake_t, "g_ts(g_st(x_s))": state.g_ts(fake_t, training=False),
            "x_t": x_t, "g_ts(x_t)": fake_s, "g_st(g_ts(x_t))": state.g_st(fake_s, training=False)}
