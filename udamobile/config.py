"""Every setting of a training run, in one frozen config, and the presets.

A `Config` describes ONE run: either stage 1 (`source_only`, supervised
training of the segmenter) or stage 2 (`adaptation`, the whole framework of
the paper). It is written to `<workdir>/config.json` and read back by
evaluation and export.

Presets (`get_config(preset, stage)`) derive from the paper's values by a few
edits:

- `paper_gta5`, `paper_synthia`: values stated in the paper (Sec. 4). Where the
  paper is silent (resize width, source-only learning rate) the authors' code
  fills in, and the field's help says so.
- `authors_code_gta5`, `authors_code_synthia`: the defaults of the authors'
  TF1 `train_DA.py` / `train_S.py` (REFERENCE.md section 2).
- `demo`: the built-in demo domains with narrow networks and small patches, so
  that both stages run on a laptop-class CPU in minutes.

Field names are unique across sections, so each one is also a flag of
`train.py` (`--lambda_sem=0`, `--patch_size=512`, ...).
"""
import dataclasses
import json
import typing

STAGES = ("source_only", "adaptation")
STRATEGIES = ("default", "mirrored", "multi_worker_mirrored")


def _field(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Widths and depths of the six networks."""
    num_classes: int = _field(19, "Classes predicted by the segmenter.")
    width_multiplier: float = _field(1.0, "MobileNetV2 width multiplier (alpha).")
    output_stride: int = _field(16, "Segmenter output stride: 8, 16 or 32.")
    aspp_rates: tuple[int, ...] = _field((6, 12, 18), "ASPP atrous rates.")
    aspp_filters: int = _field(256, "Filters of each ASPP branch.")
    low_level_filters: int = _field(48, "Decoder projection of the stride-4 features.")
    decoder_filters: int = _field(256, "Filters of the two decoder 3x3 convs.")
    separable: bool = _field(True, "Separable ASPP/decoder convs (TF-DeepLab, authors' code).")
    dropout_rate: float = _field(0.1, "Dropout after the ASPP projection.")
    batch_norm_momentum: typing.Optional[float] = _field(
        None, "Segmenter batch-norm moving-average momentum; none: TF-slim/TF-DeepLab's "
        "0.999/0.9997, which need tens of thousands of steps to settle.")
    generator_filters: int = _field(64, "ngf of the ResNet generators G_ST, G_TS.")
    generator_blocks: int = _field(9, "Residual blocks of each generator.")
    generator_output: str = _field(
        "tanh", "Generator output activation: tanh (CycleGAN, paper) or linear (authors' code).")
    discriminator_filters: int = _field(64, "Filters of the first conv of every discriminator.")
    discriminator_strides: tuple[int, ...] = _field(
        (2, 2, 2, 2, 2),
        "Strides of the image discriminators D_S, D_T: the paper's '5 stride-2 convs'; "
        "authors' code 2,2,2,2,1; 70x70 PatchGAN 2,2,2,1,1.")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which datasets, and how patches are cut from them."""
    source: str = _field("gta5", "Labelled source dataset: gta5, synthia, cityscapes, demo_source.")
    source_root: typing.Optional[str] = _field(None, "Folder of the source dataset.")
    target: str = _field("cityscapes", "Unlabelled target dataset: cityscapes, demo_target.")
    target_root: typing.Optional[str] = _field(None, "Folder of the target dataset.")
    patch_size: int = _field(600, "Side of the square random training patches.")
    resize_width: typing.Optional[int] = _field(
        1536, "Width images are resized to before cropping (aspect kept). "
        "The paper says 'a predefined width'; 1536 (GTA5) / 1280 (SYNTHIA) are the authors'.")
    flip: bool = _field(True, "Random horizontal flips.")
    synthia_classes: int = _field(16, "SYNTHIA label protocol: 16 or 13 classes.")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimizers and schedules of the run's stage."""
    steps: int = _field(80_000, "Training steps.")
    batch_size: int = _field(1, "Global batch size.")
    segmenter_lr: float = _field(1e-5, "Initial segmenter learning rate (Adam).")
    segmenter_beta1: float = _field(0.9, "Adam beta1 of the segmenter.")
    lr_power: float = _field(0.9, "Power of the polynomial decay of the segmenter LR to 0.")
    lr_decay_start: int = _field(
        0, "Step at which the segmenter LR starts its polynomial decay (constant before).")
    weight_decay: float = _field(4e-5, "L2 weight decay of the segmenter's conv kernels.")
    gan_lr: float = _field(2e-4, "Learning rate of the generators and image discriminators.")
    gan_beta1: float = _field(0.5, "Adam beta1 of generators and all discriminators.")
    feature_discriminator_lr: float = _field(2e-4, "Learning rate of D'_S, D'_T.")
    segmenter_frozen_steps: int = _field(
        20_000, "Adaptation: the segmenter is not updated before this step.")
    feature_adaptation_start: int = _field(
        0, "Adaptation: step at which the feature-level adversarial game (Eq. 6-7) starts.")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of the terms of Eq. 8 and the LSGAN details."""
    lambda_cycle: float = _field(20.0, "Weight of the cycle-consistency loss (Eq. 3, both directions).")
    lambda_sem: float = _field(0.1, "Weight of the semantic-consistency loss (Eq. 4).")
    lambda_feat: float = _field(1e-4, "Weight of the feature-level adversarial losses (Eq. 6-7).")
    lambda_ce: float = _field(1.0, "Weight of the cross-entropy on translated source images (Eq. 8).")
    real_label: float = _field(1.0, "LSGAN target for real samples (authors' code: 0.9).")
    pool_size: int = _field(50, "Past fakes kept per image discriminator (CycleGAN image pool).")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Bookkeeping: seeds, checkpoints, logs, periodic evaluation."""
    seed: int = _field(0, "Seed of data order, crops, flips and initialization.")
    init_checkpoint: typing.Optional[str] = _field(
        None, "Start the segmenter from this local file or folder: a Keras MobileNetV2 "
        "ImageNet .h5, a TF-slim/TF-DeepLab MobileNetV2 checkpoint (folder, prefix or "
        ".tar.gz), or a work directory of ours. Ignored when resuming.")
    init_allow_partial: bool = _field(
        False, "Let --init_checkpoint skip variables whose shapes differ (listed at start-up).")
    checkpoint_every: int = _field(1000, "Steps between checkpoints.")
    keep_checkpoints: int = _field(3, "Checkpoints kept.")
    log_every: int = _field(100, "Steps between scalar summaries.")
    image_every: int = _field(1000, "Steps between image summaries.")
    eval_every: int = _field(2000, "Steps between evaluations (0: only at the end).")
    eval_dataset: typing.Optional[str] = _field(
        None, "Dataset of periodic evaluation (default: the source's held-out split).")
    eval_root: typing.Optional[str] = _field(None, "Folder of eval_dataset.")
    eval_split: typing.Optional[str] = _field(None, "Split of eval_dataset.")
    eval_max_images: int = _field(0, "Images used by periodic evaluation (0: all).")
    eval_input_width: typing.Optional[int] = _field(None, "Downscale evaluation inputs to this width.")
    on_nonfinite: str = _field("stop", "When a loss is NaN/Inf: stop (default) or skip the step.")
    deterministic: bool = _field(
        False, "Enable TF op determinism: the same seed gives the same run, resumed or not "
        "(slower on GPUs).")
    strategy: str = _field(
        "default", "Devices of the steps: default (one device), mirrored (every local GPU) "
        "or multi_worker_mirrored (machines listed in TF_CONFIG). --batch_size is the "
        "global batch, split evenly between the replicas.")
    mixed_precision: bool = _field(
        False, "Compute in float16 with dynamic loss scaling (mixed_float16), weights in "
        "float32: for GPUs with tensor cores; slower on CPUs.")


@dataclasses.dataclass(frozen=True)
class Config:
    preset: str = "paper_gta5"
    stage: str = "adaptation"
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
            raise ValueError(f"unknown config field {name!r}")
        by_section.setdefault(index[name][0], {})[name] = value
    replaced = {s: dataclasses.replace(getattr(cfg, s), **v) for s, v in by_section.items()}
    return dataclasses.replace(cfg, **replaced)


# --- presets: the paper's values, then a few edits each ---------------------

_SOURCE_ONLY = dict(
    # Paper: 90K steps at batch 5; its LR is not stated, the authors' train_S.py uses 1e-4.
    steps=90_000, batch_size=5, segmenter_lr=1e-4, lr_decay_start=0,
    segmenter_frozen_steps=0)

_SYNTHIA = dict(source="synthia", resize_width=1280)

_AUTHORS_CODE = dict(
    patch_size=800, lambda_cycle=10.0, real_label=0.9, generator_output="linear",
    discriminator_strides=(2, 2, 2, 2, 1))
_AUTHORS_CODE_ADAPTATION = dict(lr_decay_start=20_000, feature_adaptation_start=20_000)

_DEMO = dict(
    source="demo_source", target="demo_target", resize_width=None, patch_size=64,
    batch_norm_momentum=0.9,
    width_multiplier=0.35, aspp_filters=32, low_level_filters=16, decoder_filters=32,
    generator_filters=16, generator_blocks=3, discriminator_filters=16,
    discriminator_strides=(2, 2, 1, 1, 1),
    checkpoint_every=250, log_every=25, image_every=250, eval_every=0, eval_max_images=100)
_DEMO_SOURCE_ONLY = dict(steps=1500, batch_size=8, segmenter_lr=1e-3)
_DEMO_ADAPTATION = dict(
    steps=1500, batch_size=2, segmenter_lr=1e-4, segmenter_frozen_steps=300,
    feature_adaptation_start=0)

PRESETS = ("paper_gta5", "paper_synthia", "authors_code_gta5", "authors_code_synthia", "demo")


def _preset_edits(preset, stage):
    edits = {}
    if stage == "source_only":
        edits.update(_SOURCE_ONLY)
    if preset.endswith("_synthia"):
        edits.update(_SYNTHIA)
        if stage == "adaptation":
            edits["segmenter_lr"] = 5e-6
    if preset.startswith("authors_code"):
        edits.update(_AUTHORS_CODE)
        if stage == "adaptation":
            edits.update(_AUTHORS_CODE_ADAPTATION)
        elif preset.endswith("_gta5"):
            edits["resize_width"] = 1914  # train_S.py keeps GTA5 at full width
    if preset == "demo":
        edits.update(_DEMO)
        edits.update(_DEMO_SOURCE_ONLY if stage == "source_only" else _DEMO_ADAPTATION)
    return edits


def get_config(preset="paper_gta5", stage="adaptation"):
    """The config of `preset` for `stage` ('source_only' or 'adaptation')."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    cfg = Config(preset=preset, stage=stage)
    return override(cfg, **_preset_edits(preset, stage))


# --- validation and (de)serialization ----------------------------------------

_CHOICES = {
    "generator_output": ("tanh", "linear"),
    "on_nonfinite": ("stop", "skip"),
    "strategy": STRATEGIES,
    "output_stride": (8, 16, 32),
    "synthia_classes": (16, 13),
}
_NON_NEGATIVE = ("lr_decay_start", "segmenter_frozen_steps", "feature_adaptation_start",
                 "eval_every", "eval_max_images", "pool_size", "lambda_cycle", "lambda_sem",
                 "lambda_feat", "lambda_ce", "weight_decay", "dropout_rate")
_POSITIVE = ("steps", "batch_size", "patch_size", "num_classes", "width_multiplier",
             "aspp_filters", "low_level_filters", "decoder_filters", "generator_filters",
             "generator_blocks", "discriminator_filters", "segmenter_lr", "gan_lr",
             "feature_discriminator_lr", "checkpoint_every", "keep_checkpoints", "log_every",
             "image_every")


def validate(cfg):
    """Raises ValueError naming the first field whose value is out of range."""
    values = flat_values(cfg)
    for name, choices in _CHOICES.items():
        if values[name] not in choices:
            raise ValueError(f"{name}={values[name]!r} is not one of {choices}")
    for name in _NON_NEGATIVE:
        if values[name] < 0:
            raise ValueError(f"{name}={values[name]} must be >= 0")
    for name in _POSITIVE:
        if values[name] <= 0:
            raise ValueError(f"{name}={values[name]} must be > 0")
    if not 0 < values["real_label"] <= 1:
        raise ValueError(f"real_label={values['real_label']} must be in (0, 1]")
    if not (0 <= values["segmenter_beta1"] < 1 and 0 <= values["gan_beta1"] < 1):
        raise ValueError("segmenter_beta1 and gan_beta1 must be in [0, 1)")
    if values["resize_width"] is not None and values["resize_width"] <= 0:
        raise ValueError(f"resize_width={values['resize_width']} must be > 0")
    if len(values["discriminator_strides"]) < 2 or any(
            s not in (1, 2) for s in values["discriminator_strides"]):
        raise ValueError(f"discriminator_strides={values['discriminator_strides']} must be "
                         "at least two strides, each 1 or 2")
    return cfg


def flat_values(cfg):
    """{field name: value} over all sections."""
    return {name: getattr(getattr(cfg, section), name)
            for name, (section, _) in field_index().items()}


def to_json(cfg):
    return json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True)


def from_json(text):
    """Inverse of `to_json`; tuples come back as tuples."""
    raw = json.loads(text)
    values = {}
    for section in SECTIONS:
        for name, value in raw.get(section, {}).items():
            values[name] = tuple(value) if isinstance(value, list) else value
    cfg = Config(preset=raw.get("preset", "paper_gta5"), stage=raw.get("stage", "adaptation"))
    return override(cfg, **values)
