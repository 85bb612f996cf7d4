"""The training loop end to end on the built-in demo domains, at tiny sizes.

Pins the work-directory contract, the stop on a non-finite loss and the
CLI's refusals (resuming: test_resume.py).
"""
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY, as_flags
from program_runs import error_line
from udamobile.errors import UsageError
from test_pretrained import slim_checkpoint_values, write_tf1_checkpoint
from udamobile import errors
from udamobile.evaluation import model_adapters
from udamobile.experiments import methods, runner
from udamobile.training import checkpointing, inputs, trainer, workdirs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_FLAGS = [
    "--preset=demo", "--method=full", "--stage=source_only", "--patch_size=32",
    "--width_multiplier=0.35", "--aspp_filters=8", "--low_level_filters=4",
    "--decoder_filters=8", "--batch_size=2", "--eval_max_images=2", "--label_free_images=2",
    "--log_every=5",
    "--image_every=1000"]


@pytest.mark.slow
def test_the_whole_job_starts_each_stage_from_the_one_before_scores_exports_and_draws(tmp_path):
    # The paper's job and a student distilled from it, through train.py: stage 1 from
    # a Pascal VOC model-zoo checkpoint (21 classes, 2 ASPP branches: a partial load),
    # each later stage from the ones before.
    pascal = write_tf1_checkpoint(tmp_path / "model.ckpt-30000", slim_checkpoint_values(
        classes=21, aspp=8, low_level=4, decoder=8))
    run = tmp_path / "full"
    # --oracle: the oracle is trained beside the method, scored and drawn with it.
    result = subprocess.run(
        [sys.executable, "train.py", "--preset=demo", "--method=full_distilled", "--oracle",
         f"--workdir={run}", f"--init_checkpoint={pascal}", "--init_allow_partial",
         *as_flags(TINY)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    source_only, adaptation, distill = (run / stage for stage in
                                        ("source_only", "adaptation", "distill"))
    assert pascal in json.loads((source_only / "sources.json").read_text())["segmenter"]
    assert workdirs.read_config(str(adaptation)).run.init_checkpoint is None
    origin = json.loads((adaptation / "sources.json").read_text())["segmenter"]
    assert origin == (f"stage source_only: {checkpointing.resolve_checkpoint(str(source_only))} "
                      "(step 6)")
    # The student starts at random; its teacher is the adapted segmenter, named relative
    # to the method folder.
    assert json.loads((distill / "sources.json").read_text()) == {
        "teacher": f"stage adaptation: {checkpointing.resolve_checkpoint(str(adaptation))} "
                   "(step 6)", "segmenter": "random initialization"}
    assert json.loads((distill / "teacher.json").read_text())["workdir"] == "../adaptation"
    for workdir in (source_only, adaptation, distill):
        assert checkpointing.checkpoint_step(checkpointing.resolve_checkpoint(str(workdir))) == 6
        assert any(name.startswith("events") for name in os.listdir(workdir / "logs"))
        final = json.loads((workdir / "eval" / "final.json").read_text())
        assert final["dataset"]["name"] == "demo_source" and final["dataset"]["split"] == "heldout"
    results = json.loads((run / "results.json").read_text())
    for stage in ("source_only", "adaptation", "distill", "oracle"):
        assert results[stage]["dataset"] == {"name": "demo_target", "split": "val",
                                             "num_images": 200}
    assert methods.read_method_file(str(run / "method.json"))["stages"]["oracle"] == str(
        run / "oracle")
    out = result.stdout
    assert "gain of distill over source_only" in out and "demo_target/val" in out
    # (n/a at these sizes when the 6-step oracle scores no better than source-only)
    assert "share of the source-only -> oracle gap closed: source_only" in out
    # The student is exported; the report scores it on the test split beside its teacher.
    export = run / "export"
    assert (export / "saved_model" / "saved_model.pb").exists()
    assert (export / "segmenter_128x256_int8.tflite").exists()
    rows = json.loads((export / "export_report.json").read_text())["rows"]
    assert [row["artifact"] for row in rows] == ["teacher", "keras", "saved_model",
                                                 "tflite_int8"]
    assert rows[0]["path"] == str(adaptation)
    assert rows[0]["miou"] == pytest.approx(results["adaptation"]["miou"], abs=1e-4)
    assert rows[1]["miou"] == pytest.approx(results["distill"]["miou"], abs=1e-4)
    header = (export / "export_report.txt").read_text().splitlines()[1]
    assert header.split()[-2:] == ["vs", "teacher"]
    assert "Export report on demo_target/val (200 images" in out
    for figure in ("translations.png", "segmentations.png"):
        assert (run / "figures" / figure).stat().st_size > 10_000
    # --teacher_dir=<a method folder> takes its last stage that trained a segmenter, not
    # the oracle beside it.
    assert runner.trained_segmenter_dir("teacher_dir", str(run)) == str(distill)
    # A teacher of other classes is refused before any student trains.
    other = tmp_path / "other_classes"
    shutil.copytree(adaptation, other)
    config = json.loads((other / "config.json").read_text())
    config["model"]["num_classes"] = 16
    (other / "config.json").write_text(json.dumps(config))
    # So is a teacher adapted to another target than the student's images.
    for teacher, target, message in (
            (other, "demo_target", "predicts 16 classes, the student 19: distil a teacher of "
             "the same classes"),
            (adaptation, "demo_city", "was adapted to --target=demo_target, this stage reads "
             "--target=demo_city: give the teacher's target, or another teacher")):
        refused = subprocess.run(
            [sys.executable, "train.py", "--preset=demo", "--method=distill",
             f"--teacher_dir={teacher}", f"--target={target}", f"--workdir={tmp_path}/{target}",
             "--steps=6"], cwd=REPO, capture_output=True, text=True, timeout=900)
        assert error_line(refused, "train.py") == f"train.py: the teacher in {teacher} {message}"


def test_the_oracle_goes_beside_a_whole_run_of_another_method_only(tmp_path):
    oracle = methods.stage_configs("demo", "oracle", TINY)["oracle"]
    for method, whole in (("full", False), ("oracle", True)):
        configs = methods.stage_configs("demo", method, TINY, only=None if whole else "adaptation")
        with pytest.raises(UsageError, match="--oracle"):
            runner.run(method, configs, str(tmp_path / method), whole=whole, oracle=oracle)
    assert not os.listdir(tmp_path)  # refused before anything was written


def test_a_nan_loss_stops_the_run_naming_step_and_term(tiny_config, tmp_path, monkeypatch, eagerly):
    cfg = tiny_config("source_only")

    def nan_stream(cfg, split, start_step, bad_files):
        image = np.full((2, 32, 32, 3), np.nan, np.float32)
        label = np.zeros((2, 32, 32), np.int32)
        return tf.data.Dataset.from_tensors({"image": image, "label": label}).repeat()

    monkeypatch.setattr(inputs, "labelled_patches", nan_stream)
    with pytest.raises(errors.NonFiniteLossError, match=r"step 0: non-finite loss/ce"):
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


def test_the_best_evaluation_is_kept_and_restorable_by_name(tiny_config, tmp_path, eagerly):
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


def test_an_adaptation_stage_without_segmenter_weights_stops_unless_meant(
        tiny_config, tmp_path, eagerly):
    with pytest.raises(errors.StartError, match="--init_checkpoint, or --allow_random_start"):
        trainer.train(tiny_config("adaptation"), str(tmp_path / "refused"))
    assert not (tmp_path / "refused" / "checkpoints").exists() or not os.listdir(
        tmp_path / "refused" / "checkpoints")
    # The refused run saved no checkpoint, so its config.json does not block
    # the corrected command, even with other networks.
    meant = tiny_config("adaptation", allow_random_start=True, steps=1, eval_max_images=1,
                        aspp_filters=16)
    trainer.train(meant, str(tmp_path / "refused"))
    assert "random" in json.loads((tmp_path / "refused" / "sources.json").read_text())["segmenter"]
    assert workdirs.read_config(str(tmp_path / "refused")).model.aspp_filters == 16


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
    (tmp_path / methods.METHOD_FILE).write_text(json.dumps(
        {"method": "cyclegan", "stages": {}}))
    result = _cli(f"--workdir={tmp_path}", "--preset=demo", "--method=full")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "holds a run of --method=cyclegan" in result.stderr


def test_a_patch_larger_than_the_resized_image_is_named_with_the_upscaling():
    # 64x32 images at width 64: a 48-pixel patch needs rows 48, width 96.
    assert inputs.upscaling_note((32, 64), 64, (48, 48)) == (
        "a 48x48 patch does not fit a 64x32 image resized to width 64: it is resized to 96x48 "
        "instead, 1.5x wider, so that patches hold no padding")
    assert inputs.upscaling_note((32, 64), 64, (32, 32)) is None
    assert inputs.upscaling_note((1052, 1914), None, (600, 600)) is None
