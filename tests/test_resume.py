"""Resuming: after SIGTERM and kill -9 exactly where the run stopped, from the newest
intact checkpoint when the latest is damaged, never with other settings; a stale
lock and half-written saves are cleaned up at the start."""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from test_trainer import REPO, TINY_FLAGS
from udamobile import errors
from udamobile.evaluation import model_adapters
from udamobile.training import checkpointing, trainer, workdirs

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
    steps = 30  # room for a SIGTERM after step 5 and a kill 5 steps after the resume
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


def test_resuming_with_other_settings_is_refused_and_keeps_the_config(tiny_config, tmp_path, eagerly):
    workdir = str(tmp_path)
    trainer.train(tiny_config("source_only", steps=2, checkpoint_every=2), workdir)
    for changed, named in ((dict(steps=1), "--steps: 2 -> 1"),
                           (dict(steps=2, segmenter_lr=0.5), "--segmenter_lr: ")):
        with pytest.raises(errors.WorkdirError, match=named):
            trainer.train(tiny_config("source_only", checkpoint_every=2, **changed), workdir)
        assert workdirs.read_config(workdir).optim.steps == 2
    # What is logged and kept may change.
    trainer.train(tiny_config("source_only", steps=2, checkpoint_every=2, log_every=1), workdir)
    assert workdirs.read_config(workdir).run.log_every == 1


def _truncate_data_of(prefix):
    data = next(f for f in os.listdir(os.path.dirname(prefix))
                if f.startswith(os.path.basename(prefix) + ".data"))
    path = os.path.join(os.path.dirname(prefix), data)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    return path


def test_a_damaged_latest_checkpoint_is_named_and_resume_falls_back(tiny_config, tmp_path, eagerly):
    workdir = str(tmp_path)
    cfg = tiny_config("source_only", steps=4, checkpoint_every=2, eval_max_images=1)
    trainer.train(cfg, workdir)
    latest = checkpointing.resolve_checkpoint(workdir)
    damaged = _truncate_data_of(latest)
    with pytest.raises(errors.WorkdirError, match=f"{latest} is damaged"):
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


def test_a_stale_lock_and_unfinished_saves_are_cleaned_up_at_start(tiny_config, tmp_path, eagerly):
    ended = subprocess.Popen(["true"])
    ended.wait()  # its pid now names no process
    (tmp_path / ".lock").write_text(f"{ended.pid} {socket.gethostname()}\n")
    leftovers = [tmp_path / "checkpoints" / "ckpt-9_temp", tmp_path / ".config.json.partial-x1",
                 tmp_path / "pseudo_labels" / ".round_1.partial-x2"]  # a killed labelling
    for folder in leftovers:
        folder.mkdir(parents=True)
        (folder / "part-00000").write_bytes(b"half a save")
    trainer.train(tiny_config("source_only", steps=1, eval_max_images=1), str(tmp_path))
    assert not (tmp_path / ".lock").exists()
    assert not any(folder.exists() for folder in leftovers)
