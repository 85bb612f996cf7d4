"""The CycleGAN translators G_ST, G_TS and their discriminators: what the stages built
around them share, and the two stages that learn the translation alone.

    stage                 networks (restored*, frozen+)            losses
    translation           G_ST, G_TS, D_S, D_T                     Eq. 1-3 (CycleGAN)
    semantic_translation  G_ST, G_TS, D_S, D_T, M*+                Eq. 1-4 (CyCADA's first step)
    adaptation            G_ST, G_TS, D_S, D_T, M*, D'_S, D'_T     Eq. 1-9 (the paper;
                                                                   udamobile/training/stages/adaptation.py)

    update          variables    loss (equation numbers of the paper)
    generators      G_ST, G_TS   generator sides of Eq. 1-2 + lambda_cycle L_cycle (Eq. 3)
                                 (+ lambda_sem L_sem, Eq. 4, against the frozen M)
    discriminators  D_S, D_T     discriminator sides of Eq. 1-2 on pooled fakes

A step of every stage here follows one plan (`cycle_step`):
  1. generator side, on each replica: translate both ways and back, and the
     objectives of the generators (and segmenter) and their gradients;
  2. the image pools swap the global batch of new fakes for older ones;
  3. discriminator side, on each replica, on real images and pooled fakes;
  4. all updates applied, all computed before any weight changed (each
     variable has one optimizer, so their order does not matter).
"""
from udamobile.deferred import deferred
from udamobile.training import inputs
from udamobile.training.stages.base import Stage
from udamobile.training.stages.updates import DISCRIMINATORS, GENERATORS

tf, images, distribute, losses, steps = deferred(
    "tensorflow", "data_pipelines.images", "udamobile.training.distribute",
    "udamobile.training.losses", "udamobile.training.stages.steps")

TRANSLATORS = ("g_st", "g_ts", "d_s", "d_t")
# CycleGAN (Zhu et al. 2017): constant LR for the first half, then linear decay to
# 0; the step budget is the paper's adaptation stage's. The loss weights of the
# CycleGAN and CyCADA rows define those rows (udamobile/experiments/methods.py).
TRANSLATION_RECIPE = dict(steps=80_000, batch_size=1, gan_lr_decay_start=40_000)
DEMO_TRANSLATION = dict(steps=1500, batch_size=2, gan_lr_decay_start=750)


def translate(nets, batch, lam, real):
    """Generator side of Eq. 1-3 on one replica: (the generators' objective, metrics,
    {"fake_t": G_ST(x_S), "fake_s": G_TS(x_T)})."""
    x_s, x_t = batch["source_image"], batch["target_image"]
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
    return adv_t + adv_s + cycle, metrics, {"fake_t": fake_t, "fake_s": fake_s}


def segment(segmenter, batch, fakes, *, training):
    """M's outputs on the real images, which only give targets (Eq. 4) and real
    samples (Eq. 6-7), and on the translated ones, in `training` mode."""
    return {"x_s": segmenter(batch["source_image"], training=False),
            "x_t": segmenter(batch["target_image"], training=False),
            "fake_t": segmenter(fakes["fake_t"], training=training),
            "fake_s": segmenter(fakes["fake_s"], training=training)}


def semantic_consistency(outputs, weight):
    """Eq. 4 on both translations, times `weight` (0 when the term is off)."""
    if weight <= 0:
        return tf.constant(0.0)
    return weight * (
        losses.semantic_consistency_loss(outputs["fake_t"]["logits"], outputs["x_s"]["logits"])
        + losses.semantic_consistency_loss(outputs["fake_s"]["logits"], outputs["x_t"]["logits"]))


def image_discriminators(nets, batch, pooled_t, pooled_s, real):
    """Discriminator sides of Eq. 1-2: real images against this replica's pooled fakes."""
    d_t = losses.lsgan_discriminator_loss(
        nets["d_t"](batch["target_image"], training=True),
        nets["d_t"](distribute.replica_slice(pooled_t), training=True), real)
    d_s = losses.lsgan_discriminator_loss(
        nets["d_s"](batch["source_image"], training=True),
        nets["d_s"](distribute.replica_slice(pooled_s), training=True), real)
    return d_t + d_s


def cycle_step(state, cfg, updates, generator_side, discriminator_side):
    """The tf.function of the module docstring's plan. `updates`: (generator-side
    updates, discriminator-side updates) to apply; the sides: replica functions
    (`steps.replica_side`'s `compute`), the second of (batch, carried, pooled fakes)."""
    strategy, check = state.strategy, not cfg.run.mixed_precision
    generator_run = steps.replica_side(state, updates[0], generator_side, check_gradients=check)
    discriminator_run = steps.replica_side(state, updates[1], discriminator_side,
                                           check_gradients=check)

    @tf.function
    def step(batch):
        g_metrics, g_grads, g_finite, carried = strategy.run(generator_run, args=(batch,))  # 1
        # 2. The pools see the global batch of fakes in replica order, as one device would.
        pooled_t = state.pools["pool_t"].query(strategy.gather(carried["fake_t"], axis=0))
        pooled_s = state.pools["pool_s"].query(strategy.gather(carried["fake_s"], axis=0))
        d_metrics, d_grads, d_finite, _ = strategy.run(
            discriminator_run, args=(batch, carried, pooled_t, pooled_s))  # 3
        return steps.finish(state, {**g_metrics, **d_metrics}, updates[0] + updates[1],
                            g_grads + d_grads, [g_finite, d_finite])  # 4

    return step


class CycleStage(Stage):
    """What the stages around the translators share: their data, pools and pictures."""
    recipe = TRANSLATION_RECIPE
    preset_edits = {"demo": DEMO_TRANSLATION}
    networks = TRANSLATORS
    updates = (GENERATORS, DISCRIMINATORS)
    uses_pools = True
    batch_keys = ("source_image", "source_label", "target_image")
    progress_metrics = ("loss/cycle", "loss/generators")

    def train_splits(self, cfg):
        return [inputs.source_train(cfg), inputs.target_train(cfg)]

    def build_inputs(self, cfg, start_step, run):
        return inputs.unpaired_patches(cfg, start_step, run.bad_files)

    def discriminator_side(self, cfg, nets):
        """Step 3 of the image discriminators alone."""
        def side(batch, carried, pooled_t, pooled_s):
            loss = image_discriminators(nets, batch, pooled_t, pooled_s, cfg.loss.real_label)
            return {DISCRIMINATORS.name: loss}, {"loss/image_discriminators": loss}, {}
        return side

    def summary_images(self, state, batch):
        """The six images of the paper's Fig. 2 (and, with M, its predictions)."""
        g_st, g_ts = state.networks["g_st"], state.networks["g_ts"]
        x_s, x_t = batch["source_image"][:1], batch["target_image"][:1]
        fake_t, fake_s = g_st(x_s, training=False), g_ts(x_t, training=False)
        translated = {"x_s": x_s, "g_st(x_s)": fake_t,
                      "g_ts(g_st(x_s))": g_ts(fake_t, training=False),
                      "x_t": x_t, "g_ts(x_t)": fake_s,
                      "g_st(g_ts(x_t))": g_st(fake_s, training=False)}
        pictures = {name: images.to_pixels(image) for name, image in translated.items()}
        if "segmenter" in state.networks:
            for name in ("x_t", "g_st(x_s)"):
                pictures[f"prediction {name}"] = steps.prediction_image(
                    state.networks["segmenter"], translated[name])
        return pictures


class TranslationStage(CycleStage):
    """CycleGAN: the translators alone (Eq. 1-3)."""
    name = "translation"

    def make_step(self, state, cfg, active):
        """batch: {"source_image", "source_label", "target_image"}."""
        nets = state.networks

        def generator_side(batch):
            objective, metrics, fakes = translate(nets, batch, cfg.loss, cfg.loss.real_label)
            metrics["loss/generators"] = objective
            return {GENERATORS.name: objective}, metrics, fakes

        return cycle_step(state, cfg, ([GENERATORS], [DISCRIMINATORS]), generator_side,
                          self.discriminator_side(cfg, nets))


class SemanticTranslationStage(CycleStage):
    """CyCADA's first step: the translators kept semantically consistent (Eq. 4) by the
    fixed source-only segmenter."""
    name = "semantic_translation"
    networks = TRANSLATORS + ("segmenter",)
    restores = ("segmenter",)
    frozen = ("segmenter",)

    def make_step(self, state, cfg, active):
        """batch: {"source_image", "source_label", "target_image"}."""
        nets = state.networks

        def generator_side(batch):
            objective, metrics, fakes = translate(nets, batch, cfg.loss, cfg.loss.real_label)
            outputs = segment(nets["segmenter"], batch, fakes, training=False)
            sem = semantic_consistency(outputs, cfg.loss.lambda_sem)  # Eq. 4
            objective += sem
            metrics.update({"loss/semantic": sem, "loss/generators": objective})
            return {GENERATORS.name: objective}, metrics, fakes

        return cycle_step(state, cfg, ([GENERATORS], [DISCRIMINATORS]), generator_side,
                          self.discriminator_side(cfg, nets))


TRANSLATION = TranslationStage()
SEMANTIC_TRANSLATION = SemanticTranslationStage()
