"""The starting points of every config: each stage's recipe, the presets, the strides table.

`config.get_config(preset, stage)` applies, over the field defaults (the
paper's adaptation stage), `STAGE_RECIPES[stage]`, then the preset's edits
(its base preset's first). Each preset's docstring says the command that
runs it, its cost on a named machine and its expected or measured result.
"""
import dataclasses
import typing

# Strides of the image discriminators D_S, D_T, hidden convs then the output
# conv; the feature discriminators D'_S, D'_T run at stride 1 throughout.
IMAGE_DISCRIMINATOR_STRIDES = {
    # The paper's "5 stride-2 conv layers", output conv included (Sec. 4).
    "paper": (2, 2, 2, 2, 2),
    # Four stride-2 convs and a stride-1 output conv, as the authors' code has it.
    "authors_code": (2, 2, 2, 2, 1),
    # CycleGAN's 70x70 PatchGAN.
    "patchgan70": (2, 2, 2, 1, 1),
    # The demo's 64x64 patches: two stride-2 convs leave 16x16 patch scores.
    "demo": (2, 2, 1, 1, 1),
}
FEATURE_DISCRIMINATOR_STRIDES = (1, 1, 1, 1, 1)

_SUPERVISED = dict(
    # Paper: 90K steps at batch 5; its LR is not stated, the authors' train_S.py uses 1e-4.
    steps=90_000, batch_size=5, segmenter_lr=1e-4)
_TRANSLATION = dict(
    # CycleGAN (Zhu et al. 2017): constant LR for the first half, then linear decay
    # to 0; the step budget is the paper's adaptation stage's. The loss weights of
    # the CycleGAN and CyCADA rows define those rows (udamobile/methods.py).
    steps=80_000, batch_size=1, gan_lr_decay_start=40_000)

STAGE_RECIPES = {
    "source_only": _SUPERVISED,
    "oracle": _SUPERVISED,
    # Fine-tuned on colour-matched source images with the source-only recipe,
    # as translated_source is on G_ST's translations.
    "colour_transfer": _SUPERVISED,
    # Three passes over Cityscapes train (2,975 images) at batch 5.
    "adabn": dict(steps=1785, batch_size=5),
    # The segmenter trained on G_ST(x_S) with the source-only recipe (as CyCADA
    # trains its task model on translated images like on source images).
    "translated_source": _SUPERVISED,
    "translation": _TRANSLATION,
    "semantic_translation": _TRANSLATION,
    # CyCADA's feature stage: batch 1, the paper's adaptation LRs; the step
    # budget is the paper's adaptation stage's.
    "feature_alignment": dict(steps=80_000, batch_size=1),
    "adaptation": {},
    # Three rounds of 10,000 steps on a source and a target patch (our choice;
    # CBST trains a few epochs per round), at the adaptation stage's LR.
    "self_training": dict(steps=30_000, batch_size=2),
}


@dataclasses.dataclass(frozen=True)
class Preset:
    """A starting point: edits to every stage, then to single stages, over a base preset."""
    doc: str
    base: typing.Optional[str] = None
    edits: dict = dataclasses.field(default_factory=dict)
    stage_edits: dict = dataclasses.field(default_factory=dict)


_AUTHORS_CODE = dict(
    patch_size=800, lambda_cycle=10.0, real_label=0.9, generator_output="linear",
    discriminator_strides=IMAGE_DISCRIMINATOR_STRIDES["authors_code"])
_AUTHORS_CODE_STAGES = {
    "adaptation": dict(feature_adaptation_start=20_000),
    "source_only": dict(last_layers_gradient_multiplier=10.0),
}
_DEMO_SUPERVISED = dict(steps=1500, batch_size=8, segmenter_lr=1e-3)
_DEMO_TRANSLATION = dict(steps=1500, batch_size=2, gan_lr_decay_start=750)

PRESETS = {
    "paper_gta5": Preset(
        "GTA5 -> Cityscapes with the values the paper states (Sec. 4); the authors' code "
        "fills in where it is silent. `python -m udamobile.experiments --table=1 "
        "--preset=paper_gta5 ...`; paper: 41.1 mIoU (full), 17.5 source only. Needs a GPU: "
        "about 43 s per adaptation step on a 2-core CPU."),
    "paper_synthia": Preset(
        "SYNTHIA -> Cityscapes with the values the paper states; 16-class mIoU. "
        "`python -m udamobile.experiments --table=2 --preset=paper_synthia ...`; paper: "
        "32.6 mIoU (full), 18.2 source only. Needs a GPU, as paper_gta5.",
        base="paper_gta5", edits=dict(source="synthia", resize_width=1280),
        # The paper's SYNTHIA LR, in every stage that starts from the source-only one:
        # self-training trains at the adaptation stage's LR in every preset.
        stage_edits={stage: dict(segmenter_lr=5e-6)
                     for stage in ("adaptation", "feature_alignment", "self_training")}),
    "authors_code_gta5": Preset(
        "GTA5 -> Cityscapes with the defaults of the authors' TF1 train_S.py / train_DA.py "
        "where they differ from the paper (docs/paper.md). `python train.py "
        "--preset=authors_code_gta5 --method=full ...`; expected near the paper's 41.1 "
        "(not measured here: it needs a GPU, as paper_gta5).",
        base="paper_gta5", edits=_AUTHORS_CODE,
        stage_edits={**_AUTHORS_CODE_STAGES,
                     "source_only": {**_AUTHORS_CODE_STAGES["source_only"],
                                     "resize_width": 1914}}),  # train_S.py keeps GTA5's width
    "authors_code_synthia": Preset(
        "SYNTHIA -> Cityscapes with the authors' code defaults. `python train.py "
        "--preset=authors_code_synthia --method=full ...`; expected near the paper's 32.6 "
        "(not measured here: it needs a GPU).",
        base="paper_synthia", edits=_AUTHORS_CODE, stage_edits=_AUTHORS_CODE_STAGES),
    "demo": Preset(
        "The built-in demo domains with narrow networks and 1500 steps per stage, on 64x64 "
        "patches; the adaptation and self-training stages train on 128x128 ones (batch 1 "
        "and 2) with the segmenter at 1e-3 (on 64x64 patches the translators lost the sky: "
        "seed 0 scored 12.2 -> 15.5 mIoU; docs/demo_study.md), and the paper's image "
        "discriminators. `python train.py --preset=demo --workdir=runs/demo` scored 9.2 "
        "-> 56.3 on demo_target val (seed 0) in 13.2 min on a 2-core Xeon; `--oracle` "
        "adds the oracle (60.7) and 4.6 min, over the demo's 15-minute budget on that "
        "machine. Table 4 (`--table=4`), with the baselines and three seeds, is in docs/results.md.",
        base="paper_gta5",
        edits=dict(
            source="demo_source", target="demo_target", resize_width=None, patch_size=64,
            batch_norm_momentum=0.9,
            width_multiplier=0.35, aspp_filters=32, low_level_filters=16, decoder_filters=32,
            generator_filters=16, generator_blocks=3, discriminator_filters=16,
            discriminator_strides=IMAGE_DISCRIMINATOR_STRIDES["demo"],
            checkpoint_every=250, log_every=25, image_every=250, eval_every=0,
            eval_max_images=100,
            # Keras's Adam epsilon, which every demo figure (Table 4) was measured with;
            # the paper presets run TF1's 1e-8.
            adam_epsilon=1e-7),
        stage_edits={
            "source_only": _DEMO_SUPERVISED, "oracle": _DEMO_SUPERVISED,
            "translated_source": _DEMO_SUPERVISED, "colour_transfer": _DEMO_SUPERVISED,
            # Three passes over demo_target train (2,000 images).
            "adabn": dict(steps=750, batch_size=8),
            "translation": _DEMO_TRANSLATION, "semantic_translation": _DEMO_TRANSLATION,
            "feature_alignment": dict(steps=1500, batch_size=2, segmenter_lr=1e-4),
            # Patches of half the image at batch 1 (the paper's batch): on 64x64 ones the
            # translators lost the sky, painting it as facades (docs/demo_study.md). The
            # segmenter trains at the source-only stage's LR: 1200 steps at the paper's
            # tenth of it left it near the source-only one.
            # The paper's image discriminators (five stride-2 convs, 94-pixel fields): with
            # the demo's (46 pixels) the translators could swap two classes' colours,
            # which the target's colour change makes as plausible as the right mapping;
            # at widths 128, seed 1: 36.9 -> 58.8 mIoU, car 0.4 -> 86.7 (docs/demo_study.md).
            "adaptation": dict(steps=1500, batch_size=1, patch_size=128, segmenter_lr=1e-3,
                               segmenter_frozen_steps=300, feature_adaptation_start=0,
                               discriminator_strides=IMAGE_DISCRIMINATOR_STRIDES["paper"]),
            # On the adaptation stage's patches: on 64x64 ones (G_ST, instance-normalized,
            # was trained on 128x128) the self-trained segmenter lost half the cars.
            # Source pixels weighed by their class's rarity (beyond CBST), over 1500 steps:
            # CBST alone, 750 steps, left poles, signs and persons at 0 IoU at seeds 0 and
            # 2, and added 1.8 and 0.6 mIoU there (docs/self_training.md).
            "self_training": dict(steps=1500, batch_size=2, patch_size=128, segmenter_lr=1e-3,
                                  class_weight_power=0.5)}),
}
