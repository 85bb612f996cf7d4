"""A command means exactly what it says: precedence of flags over a method's
defining settings, start weights that cannot surprise, shrunk runs, the
resolved config shown before a run, a saved config run again, and --help.

Most go through the programs, as a user types them."""
import os
import re
import subprocess
import sys

import pytest

from conftest import TINY
from udamobile import config as config_lib
from udamobile.errors import UsageError
from udamobile.experiments import methods, table_rows, tables
from udamobile.training import workdirs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = {
    "train.py": [os.path.join(REPO, "train.py")],
    "evaluate.py": [os.path.join(REPO, "evaluate.py")],
    "python -m udamobile.predict": ["-m", "udamobile.predict"],
    "python -m export": ["-m", "export"],
    "python -m data_pipelines.check": ["-m", "data_pipelines.check"],
    "python -m udamobile.experiments": ["-m", "udamobile.experiments"],
}


def run(program, *args):
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, *PROGRAMS[program], *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_table_keeps_each_rows_defining_settings_and_says_which_flags_it_kept_off():
    result = run("python -m udamobile.experiments", "--table=3", "--lambda_sem=0.2",
                 "--workdir=/tmp/never-made", "--dry_run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "flags not applied where they would change what defines a row" in out
    for row in ("full_no_sem", "full_no_sem_no_feat"):
        assert (f"row {row}: --lambda_sem=0.2 (--method={row} sets lambda_sem=0.0 on its "
                "adaptation stage)") in out
        command = next(line for line in out.splitlines()
                       if line.startswith("udamobile-train") and f"--method={row} " in line)
        assert "--keep_method_settings" in command
    full = next(line for line in out.splitlines()
                if line.startswith("udamobile-train") and "--method=full " in line)
    assert "--lambda_sem=0.2" in full and "--keep_method_settings" not in full
    # What the rows then train: the flag off the ablation's adaptation stage, on the
    # stage it shares with every row (so that the source-only stage stays shared).
    configs = methods.stage_configs("paper_gta5", "full_no_sem", {"lambda_sem": 0.2},
                                    keep_method_settings=True)
    assert configs["adaptation"].loss.lambda_sem == 0.0
    assert configs["source_only"] == methods.stage_configs(
        "paper_gta5", "full", {"lambda_sem": 0.2})["source_only"]


@pytest.mark.parametrize("method, flag, kept", [
    ("cycada", "--lambda_feat=1e-4", "lambda_feat=0.1"),
    ("cyclegan", "--nowhole_images", "whole_images=True"),
    ("cyclegan", "--lambda_cycle=20", "lambda_cycle=10.0"),
])
def test_a_flag_contradicting_a_rows_defining_setting_is_named_with_both_values(
        method, flag, kept):
    overrides = {"lambda_feat": 1e-4, "whole_images": False, "lambda_cycle": 20.0}
    name = flag.lstrip("-").split("=")[0].removeprefix("no")
    with pytest.raises(UsageError, match=kept):
        methods.stage_configs("paper_gta5", method, {name: overrides[name]})


def test_a_contradicting_flag_on_one_row_exits_2_naming_both_values(tmp_path):
    result = run("train.py", "--method=full_no_sem", "--lambda_sem=0.2",
                 f"--workdir={tmp_path}/run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--lambda_sem=0.2" in result.stderr and "lambda_sem=0.0" in result.stderr
    assert not os.path.exists(tmp_path / "run")


def test_a_later_stage_with_init_checkpoint_beside_an_earlier_stage_is_refused(tmp_path):
    workdir = tmp_path / "full"
    (workdir / "source_only").mkdir(parents=True)
    source_only = methods.stage_configs("demo", "full", {})["source_only"]
    (workdir / "source_only" / workdirs.CONFIG_FILE).write_text(workdirs.to_json(source_only))
    weights = tmp_path / "imagenet.h5"
    weights.write_bytes(b"not read: the command is refused first")
    result = run("train.py", "--preset=demo", "--method=full", "--stage=adaptation",
                 f"--init_checkpoint={weights}", f"--workdir={workdir}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert str(weights) in result.stderr and str(workdir / "source_only") in result.stderr
    assert not (workdir / "adaptation").exists()


def test_print_config_shows_every_value_its_origin_and_the_start_weights(tmp_path):
    result = run("train.py", "--preset=paper_gta5", "--method=cycada", "--seed=3",
                 "--restore_checkpoint=best", f"--workdir={tmp_path}/cycada", "--print_config")
    assert result.returncode == 0, result.stderr
    blocks = {block.removeprefix("stage ").split()[0]: block
              for block in result.stdout.split("\n\nstage ")}
    assert list(blocks) == ["source_only", "semantic_translation", "translated_source",
                            "feature_alignment"]
    def field(stage, name):
        return next(line.split(None, 2)[2] for line in blocks[stage].splitlines()
                    if line.split()[:1] == [name])

    assert field("semantic_translation", "lambda_sem") == "1.0   [method cycada]"
    assert field("feature_alignment", "lambda_feat") == "0.1   [method cycada]"
    assert field("source_only", "seed") == "3   [flag]"
    assert field("source_only", "steps") == "90000   [stage recipe source_only]"
    assert field("source_only", "lambda_sem") == "0.1"  # the default: no origin shown
    # The CyCADA row's third stage takes its segmenter's best checkpoint from the stage
    # that trained it (semantic_translation only carries a frozen copy).
    assert (f"segmenter <- stage source_only, best checkpoint of {tmp_path}/cycada/source_only"
            in blocks["translated_source"])
    assert "segmenter <- random initialization" in blocks["source_only"]
    assert not (tmp_path / "cycada").exists()  # nothing ran


def test_best_with_no_earlier_trained_segmenter_is_refused_before_anything_runs(tmp_path):
    from udamobile.experiments import plan

    configs = methods.stage_configs("demo", "cyclegan", {"restore_checkpoint": "best"})
    dirs = {stage: str(tmp_path / stage) for stage in configs}
    assert plan.source_stage("cyclegan", "translated_source", "segmenter",
                             configs["translated_source"]) == "source_only"
    assert plan.check("cyclegan", configs, dirs) == []


def test_a_shrunk_run_that_would_train_no_segmenter_is_refused(tmp_path):
    result = run("train.py", "--preset=demo", "--steps=20", f"--workdir={tmp_path}/demo")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--steps=20" in result.stderr and "segmenter_frozen_steps=300" in result.stderr
    assert not (tmp_path / "demo").exists()


def test_a_shrunk_run_warns_of_a_feature_game_or_images_that_never_come(tmp_path):
    from udamobile.experiments import runner

    configs = methods.stage_configs("demo", "full", {
        **TINY, "steps": 6, "feature_adaptation_start": 6, "image_every": 10})
    dirs = runner.stage_dirs(str(tmp_path), "full", configs)
    warnings = runner.plan_warnings("full", configs, dirs)
    assert ("stage adaptation: the feature_discriminators update never runs within --steps=6 "
            "(it starts at feature_adaptation_start=6)") in warnings
    assert any("no image summary" in w and "--image_every=10" in w for w in warnings)
    # The ablation without the feature game does not warn of it.
    ablation = methods.stage_configs("demo", "full_no_feat", {
        **TINY, "steps": 6, "feature_adaptation_start": 6}, keep_method_settings=True)
    assert not any("feature" in w for w in runner.plan_warnings(
        "full_no_feat", ablation, dirs))


def test_the_oracle_method_and_the_oracle_beside_a_method_are_planned(tmp_path):
    # The oracle's plan was once checked without its own stage, and every
    # --method=oracle run (each table's oracle row) failed with a StopIteration.
    for flags in (["--method=oracle"], ["--method=source_only", "--oracle"]):
        result = run("train.py", "--preset=demo", *flags, f"--workdir={tmp_path}/run",
                     "--print_config")
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert re.search(r"steps += 4500   \[preset demo, stage oracle\]", result.stdout)
    assert not (tmp_path / "run").exists()


def test_a_saved_config_runs_again_exactly(tmp_path):
    cfg = methods.stage_configs("demo", "source_only", {**TINY, "steps": 2, "seed": 5})
    saved = tmp_path / "config.json"
    saved.write_text(workdirs.to_json(cfg["source_only"]))
    refused = run("train.py", f"--config={saved}", "--steps=3", f"--workdir={tmp_path}/a")
    assert refused.returncode == 2 and "--steps" in refused.stderr
    # What the run would train, shown without running it: the saved values, each one.
    result = run("train.py", f"--config={saved}", "--method=source_only",
                 f"--workdir={tmp_path}/again", "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    printed = {line.split()[0]: line.split("=", 1)[1].split("   [")[0].strip()
               for line in result.stdout.splitlines() if line.startswith("    ") and " = " in line}
    assert printed == {name: repr(value) for name, value in
                       config_lib.flat_values(cfg["source_only"]).items()}
    assert f"   [--config {saved}]" in result.stdout  # where the non-default values came from
    assert not (tmp_path / "again").exists()


@pytest.mark.parametrize("program", PROGRAMS)
def test_help_prints_the_docstring_and_the_common_flags_and_exits_0(program):
    result = run(program, "--help")
    assert result.returncode == 0, result.stderr
    assert "Flags used most:" in result.stdout and "--helpfull" in result.stdout
    assert result.stdout.splitlines()[0].strip()  # the docstring's first line


def test_helpfull_says_where_the_config_flags_defaults_come_from():
    result = run("train.py", "--helpfull")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--lambda_sem:" in text and "Default: the preset's value for each stage" in text


def test_the_table_runner_says_which_flags_it_kept_off_a_row_once():
    rows = tables.TABLES[1].rows
    unapplied = table_rows.unapplied_flags(rows, {"lambda_feat": 0.5, "steps": 9})
    assert {row: [c.field for c in found] for row, found in unapplied.items()} == {
        "cycada": ["lambda_feat"], "full_no_sem_no_feat": ["lambda_feat"],
        "full_no_feat": ["lambda_feat"]}
