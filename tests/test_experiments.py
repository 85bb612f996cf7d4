"""The table runner: the rows' commands, resuming, refusing mixed tables, and a
real run of two rows of Table 1 on GTA5- and Cityscapes-format files."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import dataset_files
from udamobile import config as config_lib, errors
from udamobile.experiments import methods, table_rows, tables
from udamobile.training import workdirs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The paper's preset at test size: every network, two steps per stage.
TINY_FLAGS = [
    "--patch_size=32", "--resize_width=64", "--width_multiplier=0.35", "--aspp_filters=8",
    "--low_level_filters=4", "--decoder_filters=8", "--generator_filters=4",
    "--generator_blocks=1", "--discriminator_filters=4", "--discriminator_strides=2,2,1",
    "--batch_size=1", "--eval_max_images=2", "--label_free_images=1", "--log_every=1",
    "--image_every=1000",
    "--segmenter_frozen_steps=1", "--feature_adaptation_start=0", "--steps=2"]
LABEL_IDS = (7, 8, 11, 21, 23, 26, 0)  # road, sidewalk, building, vegetation, sky, car, unlabelled


def _labels(count, shape, seed):
    rng = np.random.default_rng(seed)
    return [np.kron(rng.choice(LABEL_IDS, (shape[0] // 8, shape[1] // 8)),
                    np.ones((8, 8), int)).astype(np.uint8) for _ in range(count)]


@pytest.fixture
def real_format_roots(tmp_path):
    """Small GTA5 and Cityscapes (train, val) folders in their on-disk formats."""
    gta5, cityscapes = tmp_path / "GTA5", tmp_path / "cityscapes"
    dataset_files.write_gta5(gta5, _labels(6, (64, 112), 0))
    dataset_files.write_cityscapes(cityscapes, "train", _labels(3, (64, 128), 1))
    dataset_files.write_cityscapes(cityscapes, "val", _labels(2, (64, 128), 2))
    return [f"--source_root={gta5}", f"--target_root={cityscapes}"]


def _runner(*args):
    return subprocess.run([sys.executable, "-m", "udamobile.experiments", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=900)


def test_dry_run_prints_each_rows_command_sharing_the_source_only_stage(tmp_path, capsys):
    tables.run_table(1, preset=None, workdir=str(tmp_path), dry_run=True,
                     overrides={"source_root": "/d/GTA5", "steps": 30000, "flip": True})
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 8
    assert [line.split("--method=")[1].split()[0] for line in lines] == list(
        tables.TABLES[1].rows)
    for line in lines:
        assert line.startswith("udamobile-train --preset=paper_gta5 ")
        assert "--preset=paper_gta5" in line and "--source_root=/d/GTA5 --steps=30000 --flip" in line
    reuse = f"--reuse_stages_from={tmp_path / 'source_only'}"
    assert reuse not in lines[0] and reuse not in lines[-1]  # source only, oracle
    assert all(reuse in line for line in lines[1:-1])
    tables.run_table(2, preset="demo", workdir=str(tmp_path), overrides={}, dry_run=True)
    assert len(capsys.readouterr().out.strip().splitlines()) == 5


def test_a_finished_row_trained_with_settings_the_command_no_longer_gives_is_refused(
        tmp_path):
    # A finished row as run_rows leaves it; its one stage trained on 64x64 patches.
    configs = methods.stage_configs("demo", "source_only", {})
    command = table_rows.row_command("source_only", preset="demo", workdir=str(tmp_path),
                                     flags=[])
    folder = tmp_path / "source_only"
    stage = folder / "source_only"
    stage.mkdir(parents=True)
    (stage / workdirs.CONFIG_FILE).write_text(workdirs.to_json(configs["source_only"]))
    (folder / methods.METHOD_FILE).write_text(json.dumps(
        {"method": "source_only", "stages": {"source_only": str(stage)}}))
    (folder / methods.RESULTS_FILE).write_text("{}")
    (folder / table_rows.ROW_FILE).write_text(json.dumps({"command": command}))
    assert table_rows.finished_row(str(tmp_path), "source_only", command, configs)
    # The same command after the preset moved the stage to 128x128 patches.
    changed = {"source_only": config_lib.override(configs["source_only"], patch_size=128)}
    with pytest.raises(errors.ExperimentError, match=r"patch_size=64 there, 128 here"):
        table_rows.finished_row(str(tmp_path), "source_only", command, changed)


@pytest.mark.parametrize("written_before", [False, True])
def test_a_copied_table_folder_runs_on_from_its_own_finished_rows(tmp_path, written_before):
    # The full row of a table at original/, its source_only stage taken from the
    # source_only row; method.json as written now (relative) or before (absolute).
    original, copy = tmp_path / "original", tmp_path / "copy"
    configs = methods.stage_configs("demo", "full", {})
    shared = original / "source_only" / "source_only"
    row = original / "full"
    dirs = {"source_only": shared, "adaptation": row / "adaptation"}
    for stage, folder in dirs.items():
        folder.mkdir(parents=True)
        (folder / workdirs.CONFIG_FILE).write_text(workdirs.to_json(configs[stage]))
    record = (methods.method_record("full", row, dirs) if not written_before else
              {"method": "full", "stages": {s: str(d) for s, d in dirs.items()}})
    (row / methods.METHOD_FILE).write_text(json.dumps(record))
    (row / methods.RESULTS_FILE).write_text("{}")
    (row / table_rows.ROW_FILE).write_text(json.dumps({"command": table_rows.row_command(
        "full", preset="demo", workdir=str(original), flags=[], reuse="source_only")}))
    shutil.copytree(original, copy)
    command = table_rows.row_command("full", preset="demo", workdir=str(copy), flags=[],
                                     reuse="source_only")
    assert table_rows.finished_row(str(copy), "full", command, configs)
    held = methods.read_method_file(str(copy / "full" / methods.METHOD_FILE))["stages"]
    assert held == {"source_only": str(copy / "source_only" / "source_only"),
                    "adaptation": str(copy / "full" / "adaptation")}
    # Another command in the copy is refused without asking to remove finished rows.
    other = table_rows.row_command("full", preset="demo", workdir=str(copy), flags=["--seed=1"],
                                   reuse="source_only")
    with pytest.raises(errors.ExperimentError) as refused:
        table_rows.finished_row(str(copy), "full", other, configs)
    assert "use another --workdir for this command (the finished rows here are kept)" in str(
        refused.value) and "remove" not in str(refused.value)


def test_a_row_whose_segmenter_would_never_train_is_refused_before_the_first_row(tmp_path):
    # --steps=20: the full row's adaptation stage starts its segmenter at step 300.
    result = _runner("--table=4", "--rows=source_only,full", "--steps=20",
                     f"--workdir={tmp_path / 'table'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].endswith(
        "row full: --steps=20 leaves stage adaptation's segmenter untrained: it starts "
        "training at segmenter_frozen_steps=300; give more --steps or a lower "
        "--segmenter_frozen_steps")
    assert not (tmp_path / "table").exists()  # not even the source_only row ran


@pytest.mark.parametrize("flags, message", [
    ([], "--target=folder has none: give --target_val_root (a folder of labelled target "
         "images), or --rank_by=mean_entropy to rank the rows without labels"),
    (["--rank_by=mean_entropy", "--rows=source_only,oracle"],
     "row oracle trains on the target's labels, and --target=folder has none: pick the "
     "other rows with --rows"),
    (["--rank_by=mean_entropy", "--label_free_images=0"],
     "--rank_by=mean_entropy ranks the rows by the label-free signals they log, and "
     "--label_free_images=0 logs none")])
def test_a_table_to_a_target_without_labels_is_refused_before_the_first_row(
        tmp_path, flags, message):
    (tmp_path / "camera").mkdir()
    result = _runner("--table=4", "--target=folder", f"--target_root={tmp_path / 'camera'}",
                     f"--workdir={tmp_path / 'table'}",
                     *(flags if any(f.startswith("--rows=") for f in flags)
                       else ["--rows=source_only", *flags]))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert message in result.stderr
    assert not (tmp_path / "table").exists()


def test_an_unknown_table_or_row_is_a_usage_error_naming_the_flag(tmp_path):
    result = _runner("--table=6", f"--workdir={tmp_path}")
    assert result.returncode != 0 and "--table=6" in result.stderr
    result = _runner("--table=3", "--rows=full,oracle", f"--workdir={tmp_path}", "--dry_run")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--rows=oracle: not a row of table 3" in result.stderr


@pytest.mark.slow
def test_two_rows_of_table_1_run_resume_and_print_beside_the_paper(tmp_path, real_format_roots):
    workdir = tmp_path / "table1"
    args = ["--table=1", "--preset=paper_gta5", "--rows=source_only,full",
            f"--workdir={workdir}", *real_format_roots, *TINY_FLAGS]
    first = _runner(*args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    table = json.loads((workdir / "table1.json").read_text())
    assert list(table["rows"]) == ["source_only", "full"] and table["protocol"] == 19
    full = table["rows"]["full"]
    assert full["paper"]["miou"] == 41.1 and full["ours"]["dataset"]["name"] == "cityscapes"
    # The full method's stages, its source-only one taken from the source_only row.
    method = methods.read_method_file(str(workdir / "full" / "method.json"))
    assert method["stages"]["source_only"] == str(workdir / "source_only" / "source_only")
    assert sorted(os.listdir(workdir / "full")) == [
        "adaptation", "export", "figures", "method.json", "results.json", "row.json"]
    assert "full (paper)" in first.stdout and "41.1" in first.stdout

    # Everything done, here and in a copy of the folder: nothing is trained again.
    # The copy's rows are also ranked by the label-free signals their stages logged.
    shutil.copytree(workdir, tmp_path / "copy")
    for folder, rank in ((workdir, []), (tmp_path / "copy", ["--rank_by=mean_entropy"])):
        again = _runner(*[arg for arg in args if not arg.startswith("--workdir=")],
                        f"--workdir={folder}", *rank)
        assert again.returncode == 0 and "row full: done" in again.stdout, again.stderr[-2000:]
        assert "source_only  1/2" not in again.stderr + again.stdout
    ranked = json.loads((tmp_path / "copy" / "table1.json").read_text())["label_free_ranking"]
    assert sorted(ranked["order"]) == ["full", "source_only"] and ranked["criterion"] == (
        "mean_entropy")
    assert ("label-free ranking by mean_entropy on 1 image of cityscapes/train "
            "(lowest first; no target label read):") in again.stdout
    assert f"label-free pick: {tables.TITLES[ranked['pick']]}, " in again.stdout
    assert "label_free_ranking" not in table  # off unless asked for

    other = _runner(*args[:-1], "--steps=3")
    assert other.returncode != 0 and "Traceback" not in other.stderr
    assert "row source_only" in other.stderr and "was run as" in other.stderr
