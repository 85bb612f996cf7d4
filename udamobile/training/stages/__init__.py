"""The training stages: one declaration each (`base.Stage`), in its module.

Adding a stage: a module declaring its Stage object, and its line below
("module.OBJECT", in the order the stages are listed to users). Everything
else (the config's stage names and recipes, the flags, the methods' checks)
is read from the declarations.
"""
import importlib

DECLARATIONS = (
    "supervised.SOURCE_ONLY",
    "supervised.ORACLE",
    "baselines.COLOUR_TRANSFER",
    "baselines.ADABN",
    "cycle.TRANSLATION",
    "cycle.SEMANTIC_TRANSLATION",
    "supervised.TRANSLATED_SOURCE",
    "feature_alignment.FEATURE_ALIGNMENT",
    "adaptation.ADAPTATION",
    "self_training.SELF_TRAINING",
    "self_training.COLOUR_SELF_TRAINING",
    "distill.DISTILL",
)


def _declared(line):
    module, name = line.rsplit(".", 1)
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


REGISTRY = {stage.name: stage for stage in map(_declared, DECLARATIONS)}
STAGES = tuple(REGISTRY)


def get_stage(name):
    """The Stage object named `name` (a config's `stage`)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown stage {name!r}; expected one of {', '.join(REGISTRY)}")
    return REGISTRY[name]
