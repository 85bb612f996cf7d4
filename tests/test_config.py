"""Presets, overrides and the JSON round trip of the one config object."""
import pytest

from udamobile import config as config_lib


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
        "discriminator_strides": (2, 2, 2, 2, 1), "lr_decay_start": 20_000,
        "feature_adaptation_start": 20_000}


def test_override_replaces_flat_names_and_rejects_unknown_ones():
    cfg = config_lib.override(config_lib.get_config(), lambda_sem=0.0, patch_size=256)
    assert cfg.loss.lambda_sem == 0.0 and cfg.data.patch_size == 256
    with pytest.raises(ValueError, match="lambda_typo"):
        config_lib.override(cfg, lambda_typo=1)


@pytest.mark.parametrize("preset", config_lib.PRESETS)
@pytest.mark.parametrize("stage", config_lib.STAGES)
def test_every_preset_is_valid_and_survives_json(preset, stage):
    cfg = config_lib.validate(config_lib.get_config(preset, stage))
    assert config_lib.from_json(config_lib.to_json(cfg)) == cfg


@pytest.mark.parametrize("name, value, message", [
    ("output_stride", 12, "output_stride"), ("steps", 0, "steps"), ("lambda_sem", -1.0, "lambda_sem"),
    ("real_label", 1.5, "real_label"), ("discriminator_strides", (2, 3), "discriminator_strides"),
    ("on_nonfinite", "ignore", "on_nonfinite"), ("synthia_classes", 19, "synthia_classes")])
def test_out_of_range_values_are_named(name, value, message):
    with pytest.raises(ValueError, match=message):
        config_lib.validate(config_lib.override(config_lib.get_config(), **{name: value}))


def test_unknown_preset_or_stage_lists_the_choices():
    with pytest.raises(ValueError, match="paper_gta5"):
        config_lib.get_config("paper")
    with pytest.raises(ValueError, match="source_only"):
        config_lib.get_config("paper_gta5", "stage1")
