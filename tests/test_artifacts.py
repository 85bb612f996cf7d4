"""Artifacts that say which code made them: provenance in config.json, --version, and
the model card's sections when a method folder has scores or nothing has.

The export folder itself (its labels, palette, card and metadata) is checked on
the export of tests/test_export.py, which trains the model once for all of them.
"""
import json
import os
import re
import subprocess
import sys

import pytest

from export import card
from udamobile import config as config_lib, provenance
from udamobile.training import workdirs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_provenance_names_the_version_and_the_commit_of_this_checkout():
    if provenance.commit() is None:
        pytest.skip("the tests run outside a git checkout")
    written_by = provenance.record()
    assert written_by["udamobile_version"] == provenance.version() == "0.1.0"
    assert re.fullmatch(r"[0-9a-f]{40}", written_by["commit"])
    assert provenance.describe(written_by).startswith(
        f"udamobile 0.1.0 (commit {written_by['commit'][:8]}")
    outside = {**written_by, "commit": None, "modified": None}
    assert provenance.describe(outside) == "udamobile 0.1.0"


@pytest.mark.parametrize("program", [["-m", "data_pipelines.check"],
                                     ["-m", "udamobile.experiments"]])
def test_version_flag_prints_version_and_commit_without_tensorflow(program):
    code = ("import runpy, sys; sys.argv = ['x', '--version']\n"
            "try:\n"
            f"    runpy.run_module({program[1]!r}, run_name='__main__')\n"
            "finally:\n"
            "    print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [provenance.describe(), "False"]


def test_config_json_records_provenance_that_resume_and_reruns_do_not_compare(tmp_path):
    import tensorflow as tf

    from udamobile.training import checkpointing

    cfg = config_lib.get_config("demo", "source_only")
    workdir = str(tmp_path)
    workdirs.write_config(workdir, cfg)
    path = workdirs.config_path(workdir)
    record = json.load(open(path))
    assert record["provenance"]["udamobile_version"] == provenance.version()
    # Written by another version, with a checkpoint: resuming it is no change of settings.
    record["provenance"] = {"udamobile_version": "0.0.9", "commit": "0" * 40,
                            "modified": False, "date": "2025-01-01T00:00:00+00:00"}
    open(path, "w").write(json.dumps(record))
    tf.train.CheckpointManager(tf.train.Checkpoint(step=tf.Variable(1)),
                               workdirs.checkpoint_dir(workdir), max_to_keep=1).save(1)
    assert workdirs.differences(workdirs.read_config(workdir), cfg) == []
    checkpointing.prepare_workdir(cfg, workdir)
    assert json.load(open(path))["provenance"]["udamobile_version"] == provenance.version()
    # A config.json written before provenance existed still reads.
    open(path, "w").write(workdirs.to_json(cfg))
    assert workdirs.read_config(workdir) == cfg


def _manifest():
    return {"workdir": "/runs/demo/adaptation", "checkpoint": "ckpt-3", "step": 30,
            "tflite_input": "uint8 RGB [1, 64, 128, 3]",
            "tflite_output": "uint8 labels [1, 64, 128]",
            "artifacts": {"tflite_int8": "segmenter_64x128_int8.tflite"},
            "provenance": provenance.record()}


def test_model_card_of_a_method_folder_shows_its_stages_scores():
    cfg = config_lib.get_config("demo", "adaptation")
    method = {"method": "full", "stages": {"source_only": "/runs/demo/source_only",
                                           "adaptation": "/runs/demo/adaptation"}}
    results = {"source_only": {"iou": {"road": 0.5, "sky": None}, "miou": 0.5},
               "adaptation": {"iou": {"road": 0.75, "sky": 0.25}, "miou": 0.5}}
    text = card.model_card(cfg, _manifest(), machine="a test machine", method=method,
                           results=results)
    assert "`source_only` -> `adaptation`" in text and "`full`" in text
    assert re.search(r"road +50\.0 +75\.0", text) and re.search(r"sky +n/a +25\.0", text)
    assert "## Export report" not in text  # no report was made
    assert "segmenter_64x128_int8.tflite" in text and "saved_model" not in text
    assert "Trained on demo_source images adapted to demo_target" in text
    assert "a test machine" in text
    assert "not of the step exported" not in text  # results.json names no other step
    results["adaptation"]["model"] = {"kind": "keras", "step": 20}
    stale = card.model_card(cfg, _manifest(), machine="a test machine", method=method,
                            results=results)
    assert "These scores are of `adaptation` at step 20, not of the step exported (30)" in stale


def test_model_card_without_target_labels_says_no_score_is_known():
    cfg = config_lib.get_config("demo", "source_only")
    text = card.model_card(cfg, _manifest(), machine="a test machine")
    assert "No scores: no labelled target split" in text and "```text" not in text
    assert "stages run" not in text  # a stage trained alone
