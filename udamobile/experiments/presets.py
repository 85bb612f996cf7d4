"""The presets, the starting points of every config, and the discriminators' strides.

`config.get_config(preset, stage)` applies, over the field defaults (the
paper's adaptation stage), the stage's recipe, then each preset of the
chain (its base preset's first): its edits to every stage, then its edits
to that stage, which the stage declares (`preset_edits`, udamobile/training/stages/).
Each preset's docstring says the command that runs it, its cost on a named
machine and its expected or measured result.
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

@dataclasses.dataclass(frozen=True)
class Preset:
    """A starting point: edits to every stage over a base preset (each stage declares
    its own edits under the preset's name)."""
    doc: str
    base: typing.Optional[str] = None
    edits: dict = dataclasses.field(default_factory=dict)


_AUTHORS_CODE = dict(
    patch_size=800, lambda_cycle=10.0, real_label=0.9, generator_output="linear",
    discriminator_strides=IMAGE_DISCRIMINATOR_STRIDES["authors_code"])

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
        base="paper_gta5", edits=dict(source="synthia", resize_width=1280)),
    "authors_code_gta5": Preset(
        "GTA5 -> Cityscapes with the defaults of the authors' TF1 train_S.py / train_DA.py "
        "where they differ from the paper (docs/paper.md). `python train.py "
        "--preset=authors_code_gta5 --method=full ...`; expected near the paper's 41.1 "
        "(not measured here: it needs a GPU, as paper_gta5).",
        base="paper_gta5", edits=_AUTHORS_CODE),
    "authors_code_synthia": Preset(
        "SYNTHIA -> Cityscapes with the authors' code defaults. `python train.py "
        "--preset=authors_code_synthia --method=full ...`; expected near the paper's 32.6 "
        "(not measured here: it needs a GPU).",
        base="paper_synthia", edits=_AUTHORS_CODE),
    "demo": Preset(
        "The built-in demo domains with narrow networks and 1500 steps per stage, on 64x64 "
        "patches; the adaptation and self-training stages train on 128x128 ones (batch 1 "
        "and 2) with the segmenter at 1e-3 (on 64x64 patches the translators lost the sky: "
        "seed 0 scored 12.2 -> 15.5 mIoU; docs/demo_study.md), and the paper's image "
        "discriminators. `python train.py --preset=demo --workdir=runs/demo` scored 9.2 "
        "-> 56.3 on demo_target val (seed 0) in 13.2 min on a 2-core Xeon; `--oracle` "
        "adds the oracle of 4500 steps (70.8; 7.3 min alone), over the demo's 15-minute "
        "budget on that machine. Table 4 (`--table=4`), with the baselines and three "
        "seeds, is in docs/results.md.",
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
            adam_epsilon=1e-7)),
}
