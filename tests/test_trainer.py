"""The training loop end to end on the built-in demo domains, at tiny sizes.

Pins the work-directory contract, resuming after SIGTERM and kill -9, and
the stop on a non-finite loss.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY
from test_pretrained import slim_checkpoint_values, write_tf1_checkpoint
from udamobile import checkpointing, method_runner, methods, model_adapters, trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_FLAGS = [
    "--preset=demo", "--method=full", "--stage=source_only", "--patch_size=32",
    "--width_multiplier=0.35", "--aspp_filters=8", "--low_level_filters=4",
    "--decoder_filters=8", "--batch_size=2", "--eval_max_images=2", "--label_free_images=2",
    "--log_every=5",
    "--image_every=1000"]


@pytest.mark.slow
def test_the_whole_job_starts_each_stage_from_the_one_before_scores_exports_and_draws(
        tmp_path, capsys):
    # The paper's job: stage 1 from a Pascal VOC model-zoo checkpoint (21
    # classes, 2 ASPP branches: a partial load), stage 2 from stage 1's result.
    pascal = write_tf1_checkpoint(tmp_path / "model.ckpt-30000", slim_checkpoint_values(
        classes=21, aspp=8, low_level=4, decoder=8))
    configs = methods.stage_configs("demo", "full", {
        **TINY, "init_checkpoint": pascal, "init_allow_partial": True})
    scores = method_runner.run("full", configs, str(tmp_path / "full"))
    source_only, adaptation = (tmp_path / "full" / stage for stage in ("source_only", "adaptation"))
    assert pascal in json.loads((source_only / "sources.json").read_text())["segmenter"]
    assert checkpointing.read_config(str(adaptation)).run.init_checkpoint is None
    origin = json.loads((adaptation / "sources.json").read_text())["segmenter"]
    assert origin == f"{checkpointing.resolve_checkpoint(str(source_only))} (step 6)"
    for workdir in (source_only, adaptation):
        assert checkpointing.checkpoint_step(checkpointing.resolve_checkpoint(str(workdir))) == 6
        assert any(name.startswith("events") for name in os.listdir(workdir / "logs"))
        final = json.loads((workdir / "eval" / "final.json").read_text())
        assert final["dataset"]["name"] == "demo_source" and final["dataset"]["split"] == "heldout"
    for stage in ("source_only", "adaptation"):
        assert scores[stage]["dataset"] == {"name": "demo_target", "split": "val", "num_images": 200}
    results = json.loads((tmp_path / "full" / "results.json").read_text())
    assert results["adaptation"]["miou"] == pytest.approx(scores["adaptation"]["miou"])
    out = capsys.readouterr().out
    assert "gain" in out and "demo_target/val" in out
    export = tmp_path / "full" / "export"
    assert (export / "saved_model" / "saved_model.pb").exists()
    assert (export / "segmenter_128x256_int8.tflite").exists()
    # The export report scores what was exported on the test split, and says so.
    rows = json.loads((export / "export_report.json").read_text())["rows"]
    assert [row["artifact"] for row in rows] == ["keras", "saved_model", "tflite_int8"]
    assert rows[0]["miou"] == pytest.approx(scores["adaptation"]["miou"], abs=1e-4)
    assert "Export report on demo_target/val (200 images" in out
    for figure in ("translations.png", "segmentations.png"):
        assert (tmp_path / "full" / "figures" / figure).stat().st_size > 10_000


def _train(workdir, steps, *extra):
    return subprocess.Popen(
        [sys.executable, os.path.join(REPO, "train.py"), f"--workdir={workdir}",
         f"--steps={steps}", "--checkpoint_every=5", "--deterministic", *TINY_FLAGS, *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _latest_step(workdir):
    latest = tf.train.latest_checkpoint(os.path.join(workdir, "source_only", "checkpoints"))
    return checkpointing.checkpoint_step(latest) if latest else -1


def _wait_for_step(workdir, process, step, timeout=300):
    deadline = time.time() + timeout
    while _latest_step(workdir) < step:
        assert time.time() < deadline, "no checkpoint written in time"
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.1)


def _variables(workdir):
    reader = tf.train.load_checkpoint(
        tf.train.latest_checkpoint(os.path.join(workdir, "source_only", "checkpoints")))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith("segmenter/")}


@pytest.mark.slow
def test_sigterm_and_kill_9_resume_exactly_where_the_run_stopped(tmp_path):
    steps = 60
    reference = str(tmp_path / "uninterrupted")
    assert _train(reference, steps).wait(timeout=300) == 0

    workdir = str(tmp_path / "interrupted")
    process = _train(workdir, steps)
    _wait_for_step(workdir, process, 5)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode != 0 and "SIGTERM" in output and "resume" in output
    interrupted = _latest_step(workdir)
    assert 5 <= interrupted < steps

    process = _train(workdir, steps)
    _wait_for_step(workdir, process, interrupted + 5)
    process.kill()  # SIGKILL: no chance to save anything
    process.wait()
    killed = _latest_step(workdir)
    assert killed < steps

    process = _train(workdir, steps)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output
    assert f"at step {killed}" in output  # "Resumed from ... at step N"
    # Same batches, same optimizer state, same random state: the same weights.
    expected, got = _variables(reference), _variables(workdir)
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_nan_loss_stops_the_run_naming_step_and_term(tiny_config, tmp_path, monkeypatch):
    cfg = tiny_config("source_only")

    def nan_stream(cfg, start_step=0, bad_files=None):
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


def test_the_best_evaluation_is_kept_and_restorable_by_name(tiny_config, tmp_path):
    cfg = tiny_config("source_only", steps=4, eval_every=2, checkpoint_every=4)
    trainer.train(cfg, str(tmp_path))
    best = json.loads((tmp_path / "eval" / "best.json").read_text())
    assert best["step"] in (2, 4) and best["dataset"]["split"] == "heldout"
    path = checkpointing.resolve_checkpoint(str(tmp_path), "best")
    assert path == best["checkpoint"] and checkpointing.checkpoint_step(path) == best["step"]
    model = model_adapters.keras_from_workdir(str(tmp_path), checkpoint="best")
    assert model.identity.step == best["step"]
    # The kept one is the better of the two evaluations.
    scores = [json.loads((tmp_path / "eval" / name).read_text())["miou"]
              for name in ("step_2.json", "final.json")]
    assert best["miou"] == pytest.approx(max(scores))


def test_an_adaptation_stage_without_segmenter_weights_stops_unless_meant(tiny_config, tmp_path):
    with pytest.raises(trainer.StartError, match="--init_checkpoint, or --allow_random_start"):
        trainer.train(tiny_config("adaptation"), str(tmp_path / "refused"))
    assert not (tmp_path / "refused" / "checkpoints").exists() or not os.listdir(
        tmp_path / "refused" / "checkpoints")
    # The refused run saved no checkpoint, so its config.json does not block
    # the corrected command, even with other networks.
    meant = tiny_config("adaptation", allow_random_start=True, steps=1, eval_max_images=1,
                        aspp_filters=16)
    trainer.train(meant, str(tmp_path / "refused"))
    assert "random" in json.loads((tmp_path / "refused" / "sources.json").read_text())["segmenter"]
    assert checkpointing.read_config(str(tmp_path / "refused")).model.aspp_filters == 16


def test_resuming_with_other_settings_is_refused_and_keeps_the_config(tiny_config, tmp_path):
    workdir = str(tmp_path)
    trainer.train(tiny_config("source_only", steps=2, checkpoint_every=2), workdir)
    for changed, named in ((dict(steps=1), "--steps: 2 -> 1"),
                           (dict(steps=2, segmenter_lr=0.5), "--segmenter_lr: ")):
        with pytest.raises(checkpointing.WorkdirError, match=named):
            trainer.train(tiny_config("source_only", checkpoint_every=2, **changed), workdir)
        assert checkpointing.read_config(workdir).optim.steps == 2
    # What is logged and kept may change.
    trainer.train(tiny_config("source_only", steps=2, checkpoint_every=2, log_every=1), workdir)
    assert checkpointing.read_config(workdir).run.log_every == 1


def _truncate_data_of(prefix):
    data = next(f for f in os.listdir(os.path.dirname(prefix))
                if f.startswith(os.path.basename(prefix) + ".data"))
    path = os.path.join(os.path.dirname(prefix), data)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    return path


def test_a_damaged_latest_checkpoint_is_named_and_resume_falls_back(tiny_config, tmp_path):
    workdir = str(tmp_path)
    cfg = tiny_config("source_only", steps=4, checkpoint_every=2, eval_max_images=1)
    trainer.train(cfg, workdir)
    latest = checkpointing.resolve_checkpoint(workdir)
    damaged = _truncate_data_of(latest)
    with pytest.raises(checkpointing.WorkdirError, match=f"{latest} is damaged"):
        model_adapters.keras_from_workdir(workdir)
    result = subprocess.run([sys.executable, "evaluate.py", f"--model={workdir}",
                             "--dataset=demo_target"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1 and f"evaluate.py: checkpoint {latest} is damaged" in result.stderr
    assert os.path.getsize(damaged) > 0
    # Resume takes the newest intact checkpoint (step 2) and trains steps 3-4 again.
    assert checkpointing.latest_intact_checkpoint(workdir).endswith("ckpt-2")
    trainer.train(cfg, workdir)
    assert checkpointing.damage(checkpointing.resolve_checkpoint(workdir)) is None
    assert checkpointing.checkpoint_step(checkpointing.resolve_checkpoint(workdir)) == 4


def test_a_stale_lock_and_unfinished_saves_are_cleaned_up_at_start(tiny_config, tmp_path):
    ended = subprocess.Popen(["true"])
    ended.wait()  # its pid now names no process
    (tmp_path / ".lock").write_text(f"{ended.pid} {socket.gethostname()}\n")
    leftovers = [tmp_path / "checkpoints" / "ckpt-9_temp", tmp_path / ".config.json.partial-x1"]
    for folder in leftovers:
        folder.mkdir(parents=True)
        (folder / "part-00000").write_bytes(b"half a save")
    trainer.train(tiny_config("source_only", steps=1, eval_max_images=1), str(tmp_path))
    assert not (tmp_path / ".lock").exists()
    assert not any(folder.exists() for folder in leftovers)


def _cli(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--method=pix2pix"], "--method"),
    (["--method=cyclegan", "--stage=adaptation"],
     "--stage=adaptation is not a stage of --method=cyclegan"),
    (["--method=full", "--stage=adaptation"], "run --stage=source_only"),
], ids=["unknown method", "stage of another method", "previous stage missing"])
def test_cli_names_the_flag_of_a_bad_method_or_stage(tmp_path, args, message):
    result = _cli(f"--workdir={tmp_path}", "--preset=demo", *args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_refuses_a_work_directory_in_use_naming_the_pid(tmp_path):
    stage_dir = tmp_path / "source_only"
    stage_dir.mkdir()
    (stage_dir / ".lock").write_text(f"{os.getpid()} {socket.gethostname()}\n")
    result = _cli(f"--workdir={tmp_path}", *TINY_FLAGS, "--steps=1")
    assert result.returncode == 1, result.stderr
    assert f"in use by another run (pid {os.getpid()}" in result.stderr
    assert (stage_dir / ".lock").read_text().split()[0] == str(os.getpid())


def test_cli_refuses_a_workdir_that_holds_another_method(tmp_path):
    (tmp_path / methods.METHOD_FILE).write_text(json.dumps({"method": "cyclegan"}))
    result = _cli(f"--workdir={tmp_path}", "--preset=demo", "--method=full")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "holds a run of --method=cyclegan" in result.stderr


def test_a_patch_larger_than_the_resized_image_is_named_with_the_upscaling():
    # 64x32 images at width 64: a 48-pixel patch needs rows 48, width 96.
    assert trainer.upscaling_note((32, 64), 64, (48, 48)) == (
        "a 48x48 patch does not fit a 64x32 image resized to width 64: it is resized to 96x48 "
        "instead, 1.5x wider, so that patches hold no padding")
    assert trainer.upscaling_note((32, 64), 64, (32, 32)) is None
    assert trainer.upscaling_note((1052, 1914), None, (600, 600)) is None
