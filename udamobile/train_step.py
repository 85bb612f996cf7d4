"""One training step of each stage, as a tf.function over a batch dict.

Steps run under the state's tf.distribute strategy (one device by default):
each replica computes its share of the losses and its gradients
(`strategy.run`), then the updates are applied on every replica, and only
when every loss and gradient of every replica is finite, so a NaN never
reaches the weights. Each step returns the losses of the global batch and
`finite`; the trainer then stops or skips as configured.
"""
import tensorflow as tf

from udamobile import distribute, losses


def _finite(metrics, grads):
    """1.0 when every metric and gradient is finite, else 0.0 (one replica's view)."""
    tensors = list(metrics.values()) + [g for group in grads for g in group if g is not None]
    return tf.cast(tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors]),
                   tf.float32)


def _scaled(updates, objectives):
    """Each objective as its optimizer differentiates it; call inside the tape.

    Under mixed precision the optimizer scales its loss up (so that small
    float16 gradients do not vanish) and the gradients back down when it
    applies them; otherwise the loss is returned unchanged.
    """
    return [optimizer.scale_loss(loss) for (optimizer, _), loss in zip(updates, objectives)]


def _gradients(tape, updates, scaled):
    return [tape.gradient(loss, variables) for (_, variables), loss in zip(updates, scaled)]


def _finish(state, metrics, updates, grads, finite_flags):
    """Sums the replicas' loss shares and applies the updates if all is finite.

    updates: [(optimizer, variables)]; grads: one gradient list per update
    (per replica); finite_flags: each replica's 1.0/0.0 from `_finite`.
    """
    strategy = state.strategy
    mean = tf.distribute.ReduceOp.MEAN
    finite = tf.reduce_all([strategy.reduce(mean, f, axis=None) >= 1.0 for f in finite_flags])

    def apply_on_replica(grads):
        for (optimizer, variables), group in zip(updates, grads):
            optimizer.apply_gradients(zip(group, variables))

    def apply():
        strategy.run(apply_on_replica, args=(grads,))
        return tf.constant(True)

    finite = tf.cond(finite, apply, lambda: tf.constant(False))
    state.step.assign_add(1)
    totals = {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
              for name, value in metrics.items()}
    return {**totals, "finite": finite}


def make_source_only_step(state, cfg):
    """Stage 1: supervised cross-entropy (Eq. 5) + L2 on a labelled batch.

    batch: {"image": [B, P, P, 3] in [-1, 1], "label": [B, P, P] train ids}.
    """
    weight_decay = cfg.optim.weight_decay
    check_gradients = not cfg.run.mixed_precision  # loss scaling handles overflows
    updates = [(state.segmenter_optimizer, state.segmenter.trainable_variables)]

    def on_replica(batch):
        with tf.GradientTape() as tape:
            logits = state.segmenter(batch["image"], training=True)["logits"]
            ce = losses.cross_entropy(batch["label"], logits)
            l2 = losses.l2_regularization(state.regularized, weight_decay)
            scaled = _scaled(updates, [ce + l2])
        grads = _gradients(tape, updates, scaled)
        metrics = {"loss/ce": ce, "loss/l2": l2}
        return metrics, grads, _finite(metrics, grads if check_gradients else [])

    @tf.function
    def step(batch):
        metrics, grads, finite = state.strategy.run(on_replica, args=(batch,))
        return _finish(state, metrics, updates, grads, [finite])

    return step


def make_adaptation_step(state, cfg, *, update_segmenter, feature_adaptation):
    """Stage 2: one update of every player of Eq. 9 on an unpaired batch.

    batch: {"source_image", "source_label", "target_image"}.

    Plan of the step:
      1. Generator side, on each replica: translate both ways and back
         (G_ST(x_S), G_TS(x_T) and the cycles), segment the real images
         (targets of Eq. 4, real samples of Eq. 6-7) and the translated ones;
         the losses of the generators (Eq. 1-4, 6-7) and of the segmenter
         (Eq. 4, 6-7, 8), and their gradients.
      2. The image pools swap the global batch of new fakes for older ones.
      3. Discriminator side, on each replica: the image discriminators on
         real images and pooled fakes (Eq. 1-2), the feature discriminators
         on the encodings of real and translated images (Eq. 6-7).
      4. Apply all updates, all computed before any weight changed (each
         variable has one optimizer, so their order does not matter). The
         segmenter is updated only after its frozen phase, the feature
         discriminators only once feature-level adaptation has started:
         those are separate traced variants.
    """
    lam = cfg.loss
    real = lam.real_label
    use_sem = lam.lambda_sem > 0
    use_feat = feature_adaptation and lam.lambda_feat > 0
    weight_decay = cfg.optim.weight_decay
    check_gradients = not cfg.run.mixed_precision
    segmenter = state.segmenter
    strategy = state.strategy

    generator_updates = [(state.generator_optimizer, state.variables_of("g_st", "g_ts"))]
    if update_segmenter:
        generator_updates.append((state.segmenter_optimizer, state.variables_of("segmenter")))
    discriminator_updates = [(state.discriminator_optimizer, state.variables_of("d_s", "d_t"))]
    if use_feat:
        discriminator_updates.append((state.feature_optimizer, state.variables_of("fd_s", "fd_t")))

    def generator_side(batch):
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
            scaled = _scaled(generator_updates, [generator_loss, segmenter_loss])
        grads = _gradients(tape, generator_updates, scaled)
        metrics = {
            "loss/image_adversarial_t": adv_t, "loss/image_adversarial_s": adv_s,
            "loss/cycle": cycle, "loss/semantic": sem, "loss/feature_adversarial": feat_adv,
            "loss/task_ce": task, "loss/l2": l2,
            "loss/generators": generator_loss, "loss/segmenter": segmenter_loss,
        }
        samples = {"fake_t": fake_t, "fake_s": fake_s,
                   "fake_t_features": m_fake_t["features"], "fake_s_features": m_fake_s["features"],
                   "x_s_features": m_x_s["features"], "x_t_features": m_x_t["features"]}
        samples = tf.nest.map_structure(tf.stop_gradient, samples)
        return metrics, grads, _finite(metrics, grads if check_gradients else []), samples

    def discriminator_side(batch, samples, pooled_t, pooled_s):
        x_s, x_t = batch["source_image"], batch["target_image"]
        with tf.GradientTape(persistent=True) as tape:
            # Discriminator sides of Eq. 1-2, on the image pools' fakes.
            d_t_loss = losses.lsgan_discriminator_loss(
                state.d_t(x_t, training=True),
                state.d_t(distribute.replica_slice(pooled_t), training=True), real)
            d_s_loss = losses.lsgan_discriminator_loss(
                state.d_s(x_s, training=True),
                state.d_s(distribute.replica_slice(pooled_s), training=True), real)
            discriminator_loss = d_t_loss + d_s_loss
            feature_loss = tf.constant(0.0)
            if use_feat:  # discriminator sides of Eq. 6-7: real Me(x) vs Me(G(x))
                feature_loss = lam.lambda_feat * (
                    losses.lsgan_discriminator_loss(
                        state.fd_t(samples["x_t_features"], training=True),
                        state.fd_t(samples["fake_t_features"], training=True), real)
                    + losses.lsgan_discriminator_loss(
                        state.fd_s(samples["x_s_features"], training=True),
                        state.fd_s(samples["fake_s_features"], training=True), real))
            scaled = _scaled(discriminator_updates, [discriminator_loss, feature_loss])
        grads = _gradients(tape, discriminator_updates, scaled)
        metrics = {"loss/image_discriminators": discriminator_loss,
                   "loss/feature_discriminators": feature_loss}
        return metrics, grads, _finite(metrics, grads if check_gradients else [])

    @tf.function
    def step(batch):
        g_metrics, g_grads, g_finite, samples = strategy.run(generator_side, args=(batch,))
        # The pools see the global batch of fakes in replica order, as one device would.
        pooled_t = state.pool_t.query(strategy.gather(samples["fake_t"], axis=0))
        pooled_s = state.pool_s.query(strategy.gather(samples["fake_s"], axis=0))
        d_metrics, d_grads, d_finite = strategy.run(
            discriminator_side, args=(batch, samples, pooled_t, pooled_s))
        return _finish(state, {**g_metrics, **d_metrics},
                       generator_updates + discriminator_updates, g_grads + d_grads,
                       [g_finite, d_finite])

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
