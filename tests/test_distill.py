"""The distill stage: the students' specs, its step, its loss and its teacher (a whole
full_distilled run: test_trainer.py; the student from an ImageNet file: test_pretrained.py)."""
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY, as_flags
from program_runs import error_line
from udamobile import config as config_lib
from udamobile.errors import UsageError
from udamobile.experiments import methods
from udamobile.nets import networks
from udamobile.nets.students import DEFAULT_STUDENT, STUDENTS
from udamobile.training import inputs, losses
from udamobile.training.stages import get_stage
from udamobile.training.stages.base import RunContext
from udamobile.training.state import TrainingState

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A distill stage run alone takes no segmenter flag: its student is --student's row.
DISTILL_FLAGS = as_flags({name: value for name, value in TINY.items()
                          if name not in STUDENTS[DEFAULT_STUDENT]})


def _student_config(student):
    return dataclasses.replace(config_lib.ModelConfig(), **STUDENTS[student])


@pytest.mark.parametrize("student", sorted(STUDENTS))
def test_every_student_builds_at_the_stride_it_says(student):
    model_cfg = _student_config(student)
    model = networks.build_segmenter_from_config(model_cfg)
    out = model(tf.zeros([1, 64, 96, 3]), training=False)
    assert out["logits"].shape == (1, 64, 96, 19)
    stride = model_cfg.output_stride
    assert out["features"].shape[1:3] == (64 // stride, 96 // stride)
    # Every student is smaller than the paper's segmenter (2,763,843 parameters).
    assert model.count_params() < 1_000_000


def test_the_default_student_exports_to_float32_and_float16():
    # Its int8 file: the whole full_distilled run of test_trainer.py exports and scores it.
    from ai_edge_litert.interpreter import Interpreter

    from export.tflite import convert

    model = networks.build_segmenter_from_config(_student_config(DEFAULT_STUDENT))
    images = list(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), np.uint8))
    for quantization in ("float32", "float16"):
        interpreter = Interpreter(model_content=convert(
            model, height=32, width=32, quantization=quantization, output="labels",
            representative_images=images))
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images[0][None])
        interpreter.invoke()
        labels = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        assert labels.shape == (1, 32, 32) and labels.max() < 19, quantization


def test_distillation_loss_is_zero_when_student_and_teacher_agree_and_positive_otherwise():
    logits = tf.random.stateless_normal([2, 4, 4, 19], seed=(1, 2))
    assert float(losses.distillation_loss(logits, logits)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.distillation_loss(logits, logits, temperature=3.0)) == pytest.approx(
        0.0, abs=1e-5)
    other = tf.random.stateless_normal([2, 4, 4, 19], seed=(3, 4))
    assert float(losses.distillation_loss(logits, other)) > 0.1
    # T^2 KL on two classes, by hand: teacher (0.5, 0.5), student softmax(0, log 3) = (.25, .75)
    teacher, student = tf.zeros([1, 1, 1, 2]), tf.constant([[[[0.0, np.log(3.0)]]]])
    expected = 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)
    assert float(losses.distillation_loss(teacher, student)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("targets", ["soft", "hard"])
def test_a_step_trains_the_student_and_never_the_teacher(tiny_config, eagerly, targets):
    cfg = config_lib.override(tiny_config("distill"), distill_targets=targets, lambda_ce=0.5, **{
        **STUDENTS[DEFAULT_STUDENT], "decoder_filters": 8, "aspp_filters": 8})
    stage = get_stage("distill")
    state = TrainingState(cfg, stage, models={"teacher": tiny_config("adaptation").model})
    teacher, student = state.networks["teacher"], state.networks["segmenter"]
    assert teacher.trainable_variables == [] and state.optimizers.keys() == {"segmenter"}
    before = {"teacher": [v.numpy().copy() for v in teacher.weights],
              "student": [v.numpy().copy() for v in student.trainable_variables]}
    rng = np.random.default_rng(0)
    batch = {"source_image": tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)), tf.float32),
             "target_image": tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)), tf.float32),
             "source_label": tf.constant(rng.integers(0, 19, (2, 32, 32)), tf.int32)}
    values = stage.make_step(state, cfg, frozenset({"segmenter"}))(batch)
    assert float(values["loss/distill"]) > 0 and float(values["loss/source_ce"]) > 0
    for old, variable in zip(before["teacher"], teacher.weights):
        np.testing.assert_array_equal(old, variable.numpy(), err_msg=variable.path)
    assert any(not np.array_equal(old, v.numpy())
               for old, v in zip(before["student"], student.trainable_variables))


def test_without_the_source_term_the_students_batch_norms_see_target_images_only(
        tiny_config, eagerly):
    cfg = config_lib.override(tiny_config("distill"), lambda_ce=0.0, **{  # no dropout's draws
        **STUDENTS[DEFAULT_STUDENT], "decoder_filters": 8, "aspp_filters": 8, "dropout_rate": 0})
    stage = get_stage("distill")
    state = TrainingState(cfg, stage, models={"teacher": tiny_config("adaptation").model})
    student = state.networks["segmenter"]
    step = stage.make_step(state, cfg, frozenset({"segmenter"}))
    start = student.get_weights()
    rng = np.random.default_rng(0)
    target = tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)), tf.float32)
    statistics = []
    for source in (-1.0, 1.0):  # two source batches, nothing alike
        student.set_weights(start)
        values = step({"source_image": tf.fill((2, 32, 32, 3), source), "target_image": target,
                       "source_label": tf.zeros((2, 32, 32), tf.int32)})
        assert "loss/source_ce" not in values
        statistics.append([v.numpy() for v in student.non_trainable_variables])
    for first, second in zip(*statistics):
        np.testing.assert_array_equal(first, second)
    assert any(not np.array_equal(after, before) for after, before in zip(
        statistics[0], [w for w, v in zip(start, student.weights) if not v.trainable]))


def test_without_the_source_term_no_source_patch_is_read_and_the_targets_are_the_same(
        tiny_config, tmp_path):
    stage = get_stage("distill")
    context = RunContext(workdir=str(tmp_path), chief=True, bad_files=None, state=None)
    alone_cfg = tiny_config("distill", lambda_ce=0.0)
    paired_cfg = config_lib.override(alone_cfg, lambda_ce=0.5)
    assert stage.train_splits(alone_cfg) == [inputs.target_train(alone_cfg)]
    assert stage.train_splits(paired_cfg) == [inputs.source_train(paired_cfg),
                                              inputs.target_train(paired_cfg)]
    alone, paired = (next(iter(stage.build_inputs(cfg, 3, context)))
                     for cfg in (alone_cfg, paired_cfg))
    assert set(alone) == {"target_image"}
    assert set(paired) == {"source_image", "source_label", "target_image"}
    np.testing.assert_array_equal(alone["target_image"], paired["target_image"])


def test_the_students_spec_follows_the_flags_and_a_flag_it_cancels_is_refused():
    configs = methods.stage_configs("demo", "full_distilled", {"aspp_filters": 128})
    assert configs["adaptation"].model.aspp_filters == 128  # the teacher's stages take it
    assert configs["distill"].model.aspp_filters == STUDENTS[DEFAULT_STUDENT]["aspp_filters"]
    other = methods.stage_configs("demo", "full_distilled", {"student": "mnv2_035_os32_pool128"})
    assert other["distill"].model.output_stride == 32
    with pytest.raises(UsageError, match=r"--width_multiplier=0.5 \(--student=.* sets "
                                         r"width_multiplier on stage distill after the flags\)"):
        methods.stage_configs("demo", "distill", {"width_multiplier": 0.5})


def _train(*args):
    return subprocess.run([sys.executable, "train.py", "--preset=demo", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("args, message", [
    (["--method=full", "--teacher_dir={tmp}"],
     "--teacher_dir={tmp} is read by stage distill only, which --method=full does not run"),
    (["--method=full", "--student=mnv2_050_pool128"],
     "--student=mnv2_050_pool128 is read by stage distill only, which --method=full does "
     "not run"),
    (["--method=full_distilled", "--teacher_dir={tmp}"],
     "--teacher_dir={tmp}: stage distill of --method=full_distilled takes its teacher from "
     "stage adaptation"),
    (["--method=distill", "--teacher_dir={tmp}"],
     "--teacher_dir={tmp} holds no trained segmenter: expected the work directory of a stage"),
    (["--method=distill"], "stage distill has no teacher"),
], ids=["no distill stage", "a student without it", "its own teacher", "no segmenter there",
        "no teacher"])
def test_a_teacher_that_cannot_be_is_named_in_one_line(tmp_path, args, message):
    args = [arg.format(tmp=tmp_path) for arg in args]
    result = _train(*args, f"--workdir={tmp_path}/run", *DISTILL_FLAGS)
    assert result.returncode != 0
    assert message.format(tmp=tmp_path) in error_line(result, "train.py")
