"""Presets, overrides and the JSON round trip of the one config object."""
import json

import pytest

from udamobile import config as config_lib, config_flags
from udamobile.errors import UsageError
from udamobile.experiments import methods
from udamobile.experiments.presets import IMAGE_DISCRIMINATOR_STRIDES
from udamobile.training import inputs, workdirs


def test_paper_preset_holds_the_values_stated_in_the_paper():
    cfg = config_lib.get_config("paper_gta5", "adaptation")
    assert (cfg.loss.lambda_cycle, cfg.loss.lambda_sem, cfg.loss.lambda_feat, cfg.loss.lambda_ce) == (
        20.0, 0.1, 1e-4, 1.0)
    assert (cfg.optim.segmenter_lr, cfg.optim.gan_lr, cfg.optim.gan_beta1) == (1e-5, 2e-4, 0.5)
    assert (cfg.optim.steps, cfg.optim.batch_size, cfg.optim.segmenter_frozen_steps) == (80_000, 1, 20_000)
    assert cfg.data.patch_size == 600 and cfg.model.output_stride == 16
    assert cfg.model.aspp_rates == (6, 12, 18) and cfg.model.generator_output == "tanh"
    assert config_lib.get_config("paper_synthia", "adaptation").optim.segmenter_lr == 5e-6
    stage1 = config_lib.get_config("paper_gta5", "source_only")
    assert (stage1.optim.steps, stage1.optim.batch_size, stage1.optim.weight_decay) == (90_000, 5, 4e-5)


def test_authors_code_preset_differs_from_the_paper_only_where_the_code_does():
    paper = config_lib.flat_values(config_lib.get_config("paper_gta5", "adaptation"))
    authors = config_lib.flat_values(config_lib.get_config("authors_code_gta5", "adaptation"))
    changed = {k: authors[k] for k in paper if paper[k] != authors[k]}
    assert changed == {
        "patch_size": 800, "lambda_cycle": 10.0, "real_label": 0.9, "generator_output": "linear",
        "discriminator_strides": (2, 2, 2, 2, 1), "feature_adaptation_start": 20_000}
    stage1 = {k: v for k, v in config_lib.flat_values(
        config_lib.get_config("authors_code_gta5", "source_only")).items()
        if v != config_lib.flat_values(config_lib.get_config("paper_gta5", "source_only"))[k]}
    assert stage1["last_layers_gradient_multiplier"] == 10.0 and stage1["resize_width"] == 1914


@pytest.mark.parametrize("preset", config_lib.PRESETS)
def test_no_preset_flips_images(preset):
    assert not any(config_lib.get_config(preset, stage).data.flip for stage in config_lib.STAGES)


def test_a_presets_stage_edit_wins_over_its_edit_for_every_stage():
    # The demo's adaptation and self-training train on patches of half the image
    # (docs/demo_study.md), its supervised stages on the preset's 64x64 ones.
    adaptation = config_lib.get_config("demo", "adaptation")
    assert (adaptation.data.patch_size, adaptation.optim.batch_size) == (128, 1)
    assert adaptation.optim.segmenter_lr == 1e-3
    assert config_lib.get_config("demo", "source_only").data.patch_size == 64
    assert config_lib.get_config("demo", "self_training").data.patch_size == 128
    # On those patches its image discriminators are the paper's, five stride-2 convs.
    assert adaptation.model.discriminator_strides == (2, 2, 2, 2, 2)
    assert config_lib.get_config("demo", "translation").model.discriminator_strides == (
        2, 2, 1, 1, 1)


def test_baseline_rows_fill_in_the_original_papers_values():
    translation = methods.stage_config("paper_gta5", "cyclegan", "translation", {})
    # CycleGAN: lambda 10, Adam 2e-4 / 0.5, constant then linear decay over the second
    # half, its 70x70 PatchGAN.
    assert (translation.loss.lambda_cycle, translation.optim.gan_lr) == (10.0, 2e-4)
    assert translation.optim.gan_lr_decay_start == translation.optim.steps // 2
    assert translation.model.discriminator_strides == IMAGE_DISCRIMINATOR_STRIDES["patchgan70"]
    # CyCADA: lambda_sem 1 in its translation, lambda_feat 0.1 in its feature stage.
    cycada = methods.stage_configs("paper_gta5", "cycada", {})
    assert cycada["semantic_translation"].loss.lambda_sem == 1.0
    assert cycada["feature_alignment"].loss.lambda_feat == 0.1
    assert config_lib.get_config("paper_gta5", "adaptation").optim.gan_lr_decay_start is None


def test_the_paper_presets_run_tf1s_adam_epsilon_and_synthias_lr_in_every_later_stage():
    for preset in ("paper_gta5", "paper_synthia", "authors_code_gta5", "authors_code_synthia"):
        assert config_lib.get_config(preset, "adaptation").optim.adam_epsilon == 1e-8
    assert config_lib.get_config("demo", "adaptation").optim.adam_epsilon == 1e-7
    for preset in ("paper_synthia", "authors_code_synthia"):
        for stage in ("adaptation", "feature_alignment", "self_training"):
            assert config_lib.get_config(preset, stage).optim.segmenter_lr == 5e-6
    # A config.json written before a field existed reads back what that run trained with.
    for stage, assignment in (("self_training", "argmax"), ("adaptation", "normalised")):
        old = json.loads(workdirs.to_json(config_lib.get_config("paper_gta5", stage)))
        del old["optim"]["adam_epsilon"], old["optim"]["pseudo_label_assignment"]
        read = workdirs.from_json(json.dumps(old))
        assert (read.optim.adam_epsilon, read.optim.pseudo_label_assignment) == (
            1e-7, assignment)


def test_override_replaces_flat_names_and_rejects_unknown_ones():
    cfg = config_lib.override(config_lib.get_config(), lambda_sem=0.0, patch_size=256)
    assert cfg.loss.lambda_sem == 0.0 and cfg.data.patch_size == 256
    with pytest.raises(ValueError, match="lambda_typo"):
        config_lib.override(cfg, lambda_typo=1)


@pytest.mark.parametrize("preset", config_lib.PRESETS)
@pytest.mark.parametrize("stage", config_lib.STAGES)
def test_every_preset_is_valid_and_survives_json(preset, stage):
    cfg = config_lib.validate(config_lib.get_config(preset, stage))
    assert workdirs.from_json(workdirs.to_json(cfg)) == cfg


@pytest.mark.parametrize("name, value, message", [
    ("output_stride", 12, "output_stride"), ("steps", 0, "steps"), ("lambda_sem", -1.0, "lambda_sem"),
    ("real_label", 1.5, "real_label"), ("discriminator_strides", (2, 3), "discriminator_strides"),
    ("on_nonfinite", "ignore", "on_nonfinite"), ("seed", -1, "seed"), ("synthia_classes", 19, "synthia_classes"),
    # The network builders trust these: the config is their one check.
    ("width_multiplier", -1.0, "width_multiplier"), ("num_classes", 0, "num_classes"),
    ("num_classes", 5, "num_classes"),
    ("aspp_rates", (-6, 12), "aspp_rates"),
    ("dropout_rate", 1.5, "dropout_rate"), ("batch_norm_momentum", 1.0, "batch_norm_momentum"),
    ("discriminator_strides", (2,), "discriminator_strides"),
    ("generator_output", "relu", "generator_output")])
def test_out_of_range_values_are_named(name, value, message):
    with pytest.raises(ValueError, match=message):
        config_lib.validate(config_lib.override(config_lib.get_config(), **{name: value}))


def test_unknown_preset_or_stage_lists_the_choices():
    with pytest.raises(ValueError, match="paper_gta5"):
        config_lib.get_config("paper")
    with pytest.raises(ValueError, match="source_only"):
        config_lib.get_config("paper_gta5", "stage1")


def test_methods_list_their_stages_and_give_init_checkpoint_to_the_first_only():
    from udamobile.experiments import methods

    assert methods.get_method("cycada").stages == (
        "source_only", "semantic_translation", "translated_source", "feature_alignment")
    configs = methods.stage_configs("demo", "full", {"init_checkpoint": "/m/ckpt",
                                                     "init_allow_partial": True})
    assert configs["source_only"].run.init_checkpoint == "/m/ckpt"
    assert configs["adaptation"].run.init_checkpoint is None
    assert not configs["adaptation"].run.init_allow_partial
    # One later stage run by name: the user asks for that file.
    alone = methods.stage_configs("demo", "full", {"init_checkpoint": "/m/ckpt"}, only="adaptation")
    assert alone["adaptation"].run.init_checkpoint == "/m/ckpt"
    cyclegan = methods.stage_configs("paper_gta5", "cyclegan", {})
    assert cyclegan["translation"].data.whole_images and not cyclegan["source_only"].data.whole_images
    with pytest.raises(ValueError, match="--method='pix2pix'"):
        methods.get_method("pix2pix")
    with pytest.raises(ValueError, match="not a stage of --method=cyclegan"):
        methods.stage_configs("demo", "cyclegan", {}, only="adaptation")


# --- every field as a flag -----------------------------------------------------

def _parsed_config_flags(*args):
    from absl import flags

    flag_values = flags.FlagValues()
    config_flags.define_config_flags(flag_values)
    flag_values(["train.py", *args])
    return flag_values


def test_flags_left_unset_keep_the_presets_values_and_set_ones_are_coerced():
    overrides = config_flags.config_overrides(_parsed_config_flags(
        "--patch_size=512", "--aspp_rates=6,12", "--noseparable", "--resize_width=0",
        "--lambda_sem=0"))
    assert overrides == {"patch_size": 512, "aspp_rates": (6, 12), "separable": False,
                         "resize_width": None, "lambda_sem": 0.0}


def test_a_list_flag_of_non_integers_is_named():
    with pytest.raises(UsageError, match="--aspp_rates takes comma-separated integers"):
        config_flags.config_overrides(_parsed_config_flags("--aspp_rates=6,twelve"))


def test_overrides_survive_the_round_trip_through_flags():
    overrides = {"patch_size": 512, "aspp_rates": (6, 12), "separable": False,
                 "resize_width": None, "init_checkpoint": None, "lambda_sem": 0.5}
    words = config_flags.as_flags(overrides)
    assert config_flags.config_overrides(_parsed_config_flags(*words)) == overrides


def test_demo_city_is_a_target_scored_on_its_val_split():
    cfg = config_lib.override(config_lib.get_config("demo", "adaptation"), target="demo_city")
    config_lib.validate(cfg)
    assert inputs.test_split(cfg) == ("demo_city", None, "val")
