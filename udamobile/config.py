"""Every setting of one training stage, in one frozen config, checked field by field.

A `Config` describes ONE stage of a method (see `udamobile.experiments.methods`): the
stage (`source_only`, `translation`, `adaptation`, ...), the networks, data,
optimizers, loss weights and bookkeeping. It is written to
`<stage workdir>/config.json` and read back by evaluation and export, from any
working directory: its files and folders are absolute (`config_flags.absolute_paths`).

`get_config(preset, stage)` builds it in layers, each a few edits
(`config_layers`, which also say where each value came from):

1. the field defaults below: the paper's adaptation stage (Sec. 4);
2. the stage's recipe (udamobile/training/stages/): what other stages change;
3. each preset of the chain (`PRESETS`, udamobile/experiments/presets.py): its edits to
   every stage, then the stage's own edits under the preset's name;
4. (in `udamobile.experiments.methods`) the method's defining settings, then the flags.

Each field carries its help text and its constraint, so `validate`, the one owner of
these checks, needs no list of names; each field name is unique across sections, so
each is a flag of `train.py` (`--lambda_sem=0`, `--patch_size=512`, ...).
"""
import dataclasses
import typing

from data_pipelines.classes import NUM_CLASSES
from data_pipelines.datasets import DATASET_NAMES, SYNTHIA_PROTOCOLS
from udamobile import checks
from udamobile.errors import UsageError
from udamobile.experiments.presets import IMAGE_DISCRIMINATOR_STRIDES, PRESETS
from udamobile.nets.students import DEFAULT_STUDENT, STUDENTS
from udamobile.training import inputs
from udamobile.training.stages import STAGES, get_stage
from udamobile.training.stages.adaptation import ADAPTATION

STRATEGIES = ("default", "mirrored", "multi_worker_mirrored")


def _field(default, help_text, check=None, path=False):
    return dataclasses.field(default=default, metadata={"help": help_text, "check": check,
                                                        "path": path})


# --- the sections -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Widths and depths of the six networks."""
    num_classes: int = _field(
        NUM_CLASSES, "Classes predicted by the segmenter: the 19 Cityscapes train ids, which "
        "every dataset is read as (SYNTHIA's 16 and 13 are subsets of them).",
        checks.one_of(NUM_CLASSES))
    width_multiplier: float = _field(1.0, "MobileNetV2 width multiplier (alpha).", checks.positive)
    output_stride: int = _field(16, "Segmenter output stride: 8, 16 or 32.",
                                checks.one_of(8, 16, 32))
    aspp_rates: tuple[int, ...] = _field(
        (6, 12, 18), "ASPP atrous rates; none: ASPP of image pooling and a 1x1 conv only.",
        checks.each_positive)
    aspp_filters: int = _field(256, "Filters of each ASPP branch.", checks.positive)
    low_level_filters: int = _field(48, "Decoder projection of the stride-4 features.",
                                    checks.positive)
    decoder_filters: int = _field(256, "Filters of the two decoder 3x3 convs.", checks.positive)
    separable: bool = _field(True, "Separable ASPP/decoder convs (TF-DeepLab, authors' code).")
    early_downsampling: bool = _field(
        False, "Beyond the paper: MobileNetV2's block 0 halves the resolution instead of "
        "block 1, for the students' latency on boards (udamobile/nets/segmenter.py).")
    dropout_rate: float = _field(0.1, "Dropout after the ASPP projection.",
                                 checks.within(0, 1, high_open=True))
    batch_norm_momentum: typing.Optional[float] = _field(
        None, "Segmenter batch-norm moving-average momentum; none: TF-slim/TF-DeepLab's "
        "0.999/0.9997, which need tens of thousands of steps to settle.",
        checks.optional(checks.within(0, 1, high_open=True)))
    student: str = _field(
        DEFAULT_STUDENT, "Distill stage: the student's architecture, a row of "
        "udamobile/nets/students.py, which sets that stage's segmenter fields after the flags "
        "(docs/deployment.md compares the rows).", checks.one_of(*STUDENTS))
    generator_filters: int = _field(64, "ngf of the ResNet generators G_ST, G_TS.", checks.positive)
    generator_blocks: int = _field(9, "Residual blocks of each generator.", checks.non_negative)
    generator_output: str = _field(
        "tanh", "Generator output activation: tanh (CycleGAN, paper) or linear (authors' code).",
        checks.one_of("tanh", "linear"))
    discriminator_filters: int = _field(64, "Filters of the first conv of every discriminator.",
                                        checks.positive)
    discriminator_strides: tuple[int, ...] = _field(
        IMAGE_DISCRIMINATOR_STRIDES["paper"],
        "Strides of the image discriminators D_S, D_T: the paper's '5 stride-2 convs'; "
        "authors' code 2,2,2,2,1; 70x70 PatchGAN 2,2,2,1,1.", checks.strides)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which datasets, and how patches are cut from them."""
    source: str = _field("gta5", "Labelled source dataset: gta5, synthia, cityscapes, folder "
                         "(yours, docs/datasets.md), demo_source.", checks.one_of(*DATASET_NAMES))
    source_root: typing.Optional[str] = _field(None, "Folder of the source dataset.", path=True)
    label_map: typing.Optional[str] = _field(
        None, "--source=folder: JSON file mapping its label files' ids to train ids, "
        '{"<your id>": <train id 0-18 or 255>} (others read as 255); none: train ids.', path=True)
    target: str = _field("cityscapes", "Target dataset (train images unlabelled but for the "
                         "oracle): cityscapes, folder (your camera's images), demo_target, "
                         "demo_fog, ... (docs/datasets.md).", checks.one_of(*DATASET_NAMES))
    target_root: typing.Optional[str] = _field(None, "Folder of the target dataset.", path=True)
    target_val_root: typing.Optional[str] = _field(
        None, "--target=folder: folder of its labelled val split a whole run is scored on; "
        "none: the run reports label-free signals instead.", path=True)
    patch_size: int = _field(600, "Side of the square random training patches.", checks.positive)
    resize_width: typing.Optional[int] = _field(
        1536, "Width images are resized to before cropping (aspect kept), widened where a patch "
        "would not fit. The paper says 'a predefined width'; 1536 (GTA5) / 1280 (SYNTHIA) are "
        "the authors'.", checks.optional(checks.positive))
    whole_images: bool = _field(
        False, "Train on whole images rescaled to patch_size x 2 patch_size instead of random "
        "patches (the paper's CycleGAN baseline).")
    flip: bool = _field(False, "Random horizontal flips (neither the paper nor the authors flip).")
    synthia_classes: int = _field(16, "SYNTHIA label protocol: 16 or 13 classes.",
                                  checks.one_of(*SYNTHIA_PROTOCOLS))


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimizers and schedules of the stage."""
    steps: int = _field(80_000, "Training steps.", checks.positive)
    batch_size: int = _field(1, "Global batch size.", checks.positive)
    segmenter_lr: float = _field(
        1e-5, "Initial segmenter learning rate (Adam); it decays from the step the segmenter "
        "starts training.", checks.positive)
    segmenter_beta1: float = _field(0.9, "Adam beta1 of the segmenter.",
                                    checks.within(0, 1, high_open=True))
    lr_power: float = _field(0.9, "Power of the polynomial decay of the segmenter LR to 0.",
                             checks.non_negative)
    weight_decay: float = _field(4e-5, "L2 weight decay of the segmenter's conv kernels.",
                                 checks.non_negative)
    last_layers_gradient_multiplier: float = _field(
        1.0, "Supervised stages: multiply the gradients of the decoder Md (ASPP, decoder, "
        "logits) by this before Adam (authors' code: 10; see README).", checks.positive)
    gan_lr: float = _field(2e-4, "Learning rate of the generators and image discriminators.",
                           checks.positive)
    gan_lr_decay_start: typing.Optional[int] = _field(
        None, "Step from which the generator and image-discriminator LRs decay linearly to 0 "
        "at the last step (CycleGAN: half-way); none: constant (the paper).",
        checks.optional(checks.non_negative))
    gan_beta1: float = _field(0.5, "Adam beta1 of generators and all discriminators.",
                              checks.within(0, 1, high_open=True))
    adam_epsilon: float = _field(
        1e-8, "Epsilon of every Adam optimizer: TF1's tf.train.AdamOptimizer default, which "
        "the authors' code runs (Keras's is 1e-7; docs/paper.md).", checks.positive)
    feature_discriminator_lr: float = _field(2e-4, "Learning rate of D'_S, D'_T.", checks.positive)
    segmenter_frozen_steps: int = _field(
        20_000, "Adaptation stage: the segmenter is not updated before this step.",
        checks.non_negative)
    feature_adaptation_start: int = _field(
        0, "Adaptation and feature-alignment stages: step at which the feature-level "
        "adversarial game starts.", checks.non_negative)
    self_training_rounds: int = _field(
        3, "Self-training stage: rounds of equal length, each on the pseudo-labels made by "
        "the segmenter at its start (beyond the paper; CBST).", checks.positive)
    pseudo_label_fraction: float = _field(
        0.2, "Self-training: the fraction p of each class's predicted pixels kept as "
        "pseudo-labels in the first round, the most confident (CBST: 20%).",
        checks.within(0, 1, low_open=True))
    pseudo_label_fraction_step: float = _field(
        0.05, "Self-training: how much p grows each round (CBST: 5%).", checks.within(0, 1))
    pseudo_label_fraction_max: float = _field(
        0.5, "Self-training: the largest p (CBST: 50%).", checks.within(0, 1, low_open=True))
    pseudo_label_assignment: str = _field(
        "normalised", "Self-training: how a pixel's pseudo-label follows from the class "
        "thresholds k_c. normalised (CBST): argmax_c p_c / k_c, kept where that ratio is at "
        "least 1, so a confident rare class can take a pixel whose top class is common; "
        "argmax: the top class, kept where its p reaches its k (this package's first recipe).",
        checks.one_of("normalised", "argmax"))


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of the terms of Eq. 8 and the LSGAN details."""
    lambda_cycle: float = _field(
        20.0, "Weight of the cycle-consistency loss (Eq. 3), on each direction.",
        checks.non_negative)
    lambda_sem: float = _field(0.1, "Weight of the semantic-consistency loss (Eq. 4).",
                               checks.non_negative)
    lambda_feat: float = _field(1e-4, "Weight of the feature-level adversarial losses (Eq. 6-7).",
                                checks.non_negative)
    lambda_ce: float = _field(
        1.0, "Weight of the cross-entropy on translated source images (Eq. 8).",
        checks.non_negative)
    class_weight_power: float = _field(
        0.0, "Self-training stage: weigh each pixel of the source's cross-entropy by "
        "(m / f_c)^power, f_c its class's share of the source's labelled pixels and m the "
        "median share (the pseudo-labelled target's stays unweighted); 0: all pixels alike "
        "(CBST). Beyond CBST: it lets the thin classes (poles, signs, persons) count.",
        checks.non_negative)
    distill_targets: str = _field(
        "soft", "Distill stage: what the student learns from the teacher on target images. "
        "soft: the KL divergence to the teacher's class probabilities at "
        "--distill_temperature (Hinton et al. 2015); hard: the cross-entropy to its top class.",
        checks.one_of("soft", "hard"))
    distill_temperature: float = _field(
        1.0, "Distill stage, soft targets: the softmax temperature T of teacher and student "
        "(the loss is scaled by T^2).", checks.positive)
    real_label: float = _field(1.0, "LSGAN target for real samples (authors' code: 0.9).",
                               checks.within(0, 1, low_open=True))
    pool_size: int = _field(50, "Past fakes kept per image discriminator (CycleGAN image pool).",
                            checks.non_negative)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Bookkeeping: seeds, initialization, checkpoints, logs, periodic evaluation."""
    seed: int = _field(0, "Seed of data order, crops, flips and initialization.",
                       checks.within(0, 2 ** 31 - 1))
    init_checkpoint: typing.Optional[str] = _field(
        None, "Start the segmenter of the method's first stage from this local file or folder: "
        "a Keras MobileNetV2 ImageNet .h5, a TF-slim/TF-DeepLab MobileNetV2 checkpoint "
        "(folder, prefix or .tar.gz), or a stage work directory of ours. Later stages start "
        "from the stages before; on a later stage run by name it is refused when an earlier "
        "stage of the method is in the work directory. Ignored when resuming.", path=True)
    teacher_dir: typing.Optional[str] = _field(
        None, "Distill stage run alone (--method=distill): the teacher, a stage work directory "
        "or method folder of train.py holding a trained segmenter (of a method folder: its "
        "last stage that trained one). A method with a distill stage takes its own.",
        path=True)
    student_init_checkpoint: typing.Optional[str] = _field(
        None, "Distill stage: start the student's backbone from this local MobileNetV2 "
        "ImageNet file of the student's width (as --init_checkpoint reads); none: random.",
        path=True)
    init_allow_partial: bool = _field(
        False, "Let --init_checkpoint skip variables whose shapes differ (listed at start-up).")
    restore_checkpoint: str = _field(
        "latest", "Which checkpoint of an earlier stage a stage starts from: latest, or best "
        "(the segmenter of its best periodic evaluation).", checks.one_of("latest", "best"))
    allow_random_start: bool = _field(
        False, "Let a stage that adapts a trained segmenter start from random segmenter "
        "weights when no earlier stage or --init_checkpoint provides them.")
    checkpoint_every: int = _field(1000, "Steps between checkpoints.", checks.positive)
    keep_checkpoints: int = _field(3, "Latest checkpoints kept (the best one is kept apart).",
                                   checks.positive)
    log_every: int = _field(100, "Steps between scalar summaries.", checks.positive)
    image_every: int = _field(1000, "Steps between image summaries.", checks.positive)
    eval_every: int = _field(2000, "Steps between evaluations (0: only at the end).",
                             checks.non_negative)
    eval_dataset: typing.Optional[str] = _field(
        None, "Dataset of periodic evaluation (default: the source's held-out split).")
    eval_root: typing.Optional[str] = _field(None, "Folder of eval_dataset.", path=True)
    eval_split: typing.Optional[str] = _field(None, "Split of eval_dataset.")
    eval_max_images: int = _field(0, "Images used by periodic evaluation (0: all).",
                                  checks.non_negative)
    eval_input_width: typing.Optional[int] = _field(
        None, "Downscale evaluation inputs to this width.", checks.optional(checks.positive))
    label_free_images: int = _field(
        100, "Unlabelled target train images on which each evaluation also computes the "
        "label-free signals (prediction entropy, confident pixels per class, predicted class "
        "shares against the source's; udamobile/evaluation/signals.py). 0: none.",
        checks.non_negative)
    max_bad_files: int = _field(
        10, "Files that cannot be read (truncated, corrupt, a label of another size or "
        "encoding) met during training or evaluation: each is logged once, skipped and counted "
        "(TensorBoard data/bad_files); one more stops the run, naming the last, with a "
        "checkpoint saved. 0: stop at the first. 10 lets a multi-day run on 25,000 images pass "
        "a few broken downloads (0.04%), yet stops long before a broken folder changes what "
        "is trained.", checks.non_negative)
    on_nonfinite: str = _field("stop", "When a loss is NaN/Inf: stop (default) or skip the step.",
                               checks.one_of("stop", "skip"))
    deterministic: bool = _field(
        False, "Enable TF op determinism: the same seed gives the same run, resumed or not "
        "(slower on GPUs).")
    strategy: str = _field(
        "default", "Devices of the steps: default (one device), mirrored (every local GPU) "
        "or multi_worker_mirrored (machines listed in TF_CONFIG). --batch_size is the "
        "global batch, split evenly between the replicas.", checks.one_of(*STRATEGIES))
    mixed_precision: bool = _field(
        False, "Compute in float16 with dynamic loss scaling (mixed_float16), weights in "
        "float32: for GPUs with tensor cores; slower on CPUs.")


@dataclasses.dataclass(frozen=True)
class Config:
    preset: str = "paper_gta5"
    stage: str = ADAPTATION.name  # the stage whose settings the field defaults are
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    run: RunConfig = RunConfig()


SECTIONS = ("model", "data", "optim", "loss", "run")


def field_index():
    """{field name: (section, dataclasses.Field)} over all sections."""
    index = {}
    for section in SECTIONS:
        for f in dataclasses.fields(Config.__dataclass_fields__[section].type):
            assert f.name not in index, f"field name {f.name} is not unique"
            index[f.name] = (section, f)
    return index


def override(cfg, **values):
    """`cfg` with the named fields (flat names, any section) replaced."""
    index = field_index()
    by_section = {}
    for name, value in values.items():
        if name not in index:
            raise UsageError(f"unknown config field {name!r}")
        by_section.setdefault(index[name][0], {})[name] = value
    replaced = {s: dataclasses.replace(getattr(cfg, s), **v) for s, v in by_section.items()}
    return dataclasses.replace(cfg, **replaced)


def _preset_chain(preset):
    chain = []
    while preset is not None:
        chain.insert(0, (preset, PRESETS[preset]))
        preset = PRESETS[preset].base
    return chain


def config_layers(preset, stage):
    """[(origin, {field: value})]: the edits that make the config of `stage` in
    `preset` from the field defaults, in the order they apply (module docstring)."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    if stage not in STAGES:
        raise UsageError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    declared = get_stage(stage)
    layers = [(f"stage recipe {stage}", declared.recipe)]
    for name, layer in _preset_chain(preset):
        layers.append((f"preset {name}", layer.edits))
        # A stage's edit of a field wins over the same preset's edit for every stage.
        layers.append((f"preset {name}, stage {stage}", declared.preset_edits.get(name, {})))
    return layers


def apply_layers(cfg, layers):
    """(`cfg` with each layer's edits applied in order, {field: origin of the last
    layer that set it})."""
    origins = {}
    for origin, edits in layers:
        cfg = override(cfg, **edits)
        origins.update(dict.fromkeys(edits, origin))
    return cfg, origins


def get_config(preset=Config.preset, stage=Config.stage):
    """The config of `stage` in `preset`, before any method edit or flag."""
    return apply_layers(Config(preset=preset, stage=stage), config_layers(preset, stage))[0]


# --- validation and (de)serialization ------------------------------------------

def field_check(name):
    """The check of the config field `name`: other programs' flags of the same meaning
    take the training config's limits."""
    return field_index()[name][1].metadata["check"]


def validate(cfg):
    """Raises UsageError naming the first field whose value breaks its constraint."""
    if cfg.stage not in STAGES:
        raise UsageError(f"stage={cfg.stage!r} must be one of {STAGES}")
    checks.check_flags({name: (getattr(getattr(cfg, section), name), field.metadata["check"])
                        for name, (section, field) in field_index().items()
                        if field.metadata["check"]})
    inputs.check_roles(cfg)
    get_stage(cfg.stage).validate(cfg)
    return cfg


def protocol(cfg):
    """mIoU protocol of a run: 16 or 13 classes for SYNTHIA, else 19."""
    return cfg.data.synthia_classes if cfg.data.source == "synthia" else 19


def flat_values(cfg):
    """{field name: value} over all sections."""
    return {name: getattr(getattr(cfg, section), name)
            for name, (section, _) in field_index().items()}
