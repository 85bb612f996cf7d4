"""The training loop end to end on the built-in demo domains, at tiny sizes.

Pins the work-directory contract, resuming after SIGTERM and kill -9, and
the stop on a non-finite loss.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from udamobile import checkpointing, pipeline, trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_FLAGS = [
    "--preset=demo", "--stage=source_only", "--patch_size=32", "--width_multiplier=0.35",
    "--aspp_filters=8", "--low_level_filters=4", "--decoder_filters=8", "--batch_size=2",
    "--eval_max_images=2", "--log_every=5", "--image_every=1000"]


@pytest.mark.slow
def test_the_whole_job_trains_both_stages_scores_exports_and_draws(tiny_config, tmp_path, capsys):
    configs = {stage: tiny_config(stage) for stage in ("source_only", "adaptation")}
    scores = pipeline.run(configs, str(tmp_path))
    for stage in ("source_only", "adaptation"):
        workdir = tmp_path / stage
        assert checkpointing.read_config(str(workdir)).model == configs[stage].model
        assert checkpointing.checkpoint_step(checkpointing.resolve_checkpoint(str(workdir))) == 6
        assert any(name.startswith("events") for name in os.listdir(workdir / "logs"))
        final = json.loads((workdir / "eval" / "final.json").read_text())
        assert final["dataset"]["name"] == "demo_source" and final["dataset"]["split"] == "heldout"
        assert scores[stage]["dataset"] == {"name": "demo_target", "split": "val", "num_images": 200}
    # Stage 2 started from stage 1's work directory.
    assert checkpointing.read_config(str(tmp_path / "adaptation")).run.init_checkpoint == str(
        tmp_path / "source_only")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["adaptation"]["miou"] == pytest.approx(scores["adaptation"]["miou"])
    out = capsys.readouterr().out
    assert "gain" in out and "demo_target/val" in out
    assert (tmp_path / "export" / "saved_model" / "saved_model.pb").exists()
    assert (tmp_path / "export" / "segmenter_128x256_int8.tflite").exists()
    for figure in ("translations.png", "segmentations.png"):
        assert (tmp_path / "figures" / figure).stat().st_size > 10_000


def _train(workdir, steps, *extra):
    return subprocess.Popen(
        [sys.executable, os.path.join(REPO, "train.py"), f"--workdir={workdir}",
         f"--steps={steps}", "--checkpoint_every=5", *TINY_FLAGS, *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_checkpoint(workdir, process, timeout=300):
    deadline = time.time() + timeout
    folder = os.path.join(workdir, "checkpoints")
    while time.time() < deadline:
        if tf.train.latest_checkpoint(folder):
            return
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.2)
    raise AssertionError("no checkpoint written")


@pytest.mark.slow
def test_sigterm_checkpoints_and_kill_9_resumes(tmp_path):
    workdir = str(tmp_path / "run")
    process = _train(workdir, 400)
    _wait_for_checkpoint(workdir, process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode != 0 and "SIGTERM" in output and "resume" in output
    interrupted = checkpointing.checkpoint_step(tf.train.latest_checkpoint(f"{workdir}/checkpoints"))
    assert 5 <= interrupted < 400

    process = _train(workdir, 400)
    deadline = time.time() + 300
    while checkpointing.checkpoint_step(
            tf.train.latest_checkpoint(f"{workdir}/checkpoints")) < interrupted + 5:
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.2)
    process.kill()  # SIGKILL: no chance to save anything
    process.wait()
    killed = checkpointing.checkpoint_step(tf.train.latest_checkpoint(f"{workdir}/checkpoints"))

    process = _train(workdir, killed + 3)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output
    assert f"at step {killed}" in output  # "Resumed from ... at step N"
    assert checkpointing.checkpoint_step(
        tf.train.latest_checkpoint(f"{workdir}/checkpoints")) == killed + 3


def test_a_nan_loss_stops_the_run_naming_step_and_term(tiny_config, tmp_path, monkeypatch):
    cfg = tiny_config("source_only")

    def nan_stream(cfg, start_step=0):
        image = np.full((2, 32, 32, 3), np.nan, np.float32)
        label = np.zeros((2, 32, 32), np.int32)
        return tf.data.Dataset.from_tensors({"image": image, "label": label}).repeat()

    monkeypatch.setattr(trainer, "make_training_stream", nan_stream)
    with pytest.raises(trainer.NonFiniteLossError, match=r"step 0: non-finite loss/ce"):
        trainer.train(cfg, str(tmp_path))
    skipping = trainer.train(
        tiny_config("source_only", on_nonfinite="skip", steps=2), str(tmp_path / "skip"))
    assert skipping["step"] == 2


def test_cli_rejects_out_of_range_flags_by_name(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), f"--workdir={tmp_path}",
         "--preset=demo", "--output_stride=12"],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    assert "output_stride=12" in result.stderr and "Traceback" not in result.stderr
