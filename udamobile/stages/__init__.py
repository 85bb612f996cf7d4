"""The training stages, by name: one object each (see `base.Stage`).

Adding a stage: a module with its Stage object, and one entry here (and its
name in `config.STAGES`, with its recipe in `config.STAGE_RECIPES`).
"""
from udamobile.config import STAGES
from udamobile.stages.base import Stage, Update
from udamobile.stages.baselines import AdaBNStage, ColourTransferStage
from udamobile.stages.cycle import ADAPTATION, SEMANTIC_TRANSLATION, TRANSLATION
from udamobile.stages.feature_alignment import FEATURE_ALIGNMENT
from udamobile.stages.self_training import SELF_TRAINING
from udamobile.stages.supervised import ORACLE, SOURCE_ONLY, TRANSLATED_SOURCE

REGISTRY = {stage.name: stage for stage in (
    SOURCE_ONLY, ORACLE, ColourTransferStage(), AdaBNStage(), TRANSLATION, SEMANTIC_TRANSLATION,
    TRANSLATED_SOURCE, FEATURE_ALIGNMENT, ADAPTATION, SELF_TRAINING)}
assert tuple(REGISTRY) == STAGES, "config.STAGES must list the registered stages in order"


def get_stage(name):
    """The Stage object named `name` (a config's `stage`)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown stage {name!r}; expected one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


__all__ = ["REGISTRY", "Stage", "Update", "get_stage"]
