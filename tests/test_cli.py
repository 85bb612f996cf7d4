"""Every program's bad-input paths, through the program: exit status, the one-line message.

A bad flag value exits with status 2, any other user error with status 1;
either is one line `<program>: <message>` naming the flag or file, and it
is the first line the program prints (TensorFlow's start-up lines hidden).
"""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROGRAMS = {
    "train.py": [sys.executable, os.path.join(REPO, "train.py")],
    "evaluate.py": [sys.executable, os.path.join(REPO, "evaluate.py")],
    "udamobile-predict": [sys.executable, os.path.join(REPO, "predict.py")],
    "python -m export": [sys.executable, "-m", "export"],
    "python -m data_pipelines.check": [sys.executable, "-m", "data_pipelines.check"],
    "python -m udamobile.experiments": [sys.executable, "-m", "udamobile.experiments"],
}


def run_program(program, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = REPO
    return subprocess.run([*PROGRAMS[program], *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def not_a_model(tmp_path):
    path = tmp_path / "notes.tflite"
    path.write_text("meeting notes, not a model\n")
    return str(path)


# (program, arguments, expected status, text its message must hold); {tmp} is
# the test's folder, {missing} a path inside it that does not exist, {file}
# a text file that is not a model. The table runner's rows are train.py
# runs: a row's own message names the cause, the runner's names the row.
CASES = [
    ("train.py", ["--workdir={tmp}/run", "--preset=paper_gta5", "--source_root={missing}",
                  "--target_root={missing}"], 1, "{missing}"),
    ("train.py", ["--workdir={tmp}/run", "--steps=many"], 2, "--steps"),
    ("train.py", ["--workdir={tmp}/run", "--preset=demo", "--patch_size=-3"], 2, "--patch_size"),
    ("train.py", ["--workdir={tmp}/run", "--preset=demo", "--method=source_only",
                  "--init_checkpoint={file}"], 1, "{file}"),
    ("evaluate.py", ["--model={missing}", "--dataset=demo_target"], 1, "{missing}"),
    ("evaluate.py", ["--model={tmp}", "--protocol=20"], 2, "--protocol"),
    ("evaluate.py", ["--model={file}", "--dataset=demo_target"], 1, "{file}"),
    ("evaluate.py", ["--model={tmp}", "--dataset=demo_target", "--max_images=-1"], 2,
     "--max_images"),
    ("udamobile-predict", ["--model={tmp}", "--input={missing}", "--output_dir={tmp}/out"], 1,
     "{missing}"),
    ("udamobile-predict", ["--model={tmp}", "--input={tmp}", "--output_dir={tmp}/out",
                           "--batch_size=0"], 2, "--batch_size"),
    ("python -m export", ["--workdir={missing}", "--output_dir={tmp}/out"], 1, "{missing}"),
    ("python -m export", ["--workdir={tmp}", "--output_dir={tmp}/out", "--formats=onnx"], 2,
     "--formats"),
    ("python -m export", ["--workdir={file}", "--output_dir={tmp}/out"], 1, "{file}"),
    # A filesystem error: a folder asked for under a file.
    ("train.py", ["--workdir={file}/run", "--preset=demo", "--method=source_only",
                  "--steps=1"], 1, "{file}/run: Not a directory"),
    ("python -m data_pipelines.check", ["--dataset=gta5", "--root={missing}"], 1, "{missing}"),
    ("python -m data_pipelines.check", ["--dataset=kitti"], 2, "--dataset"),
    ("python -m udamobile.experiments", ["--table=1", "--workdir={tmp}/table",
                                         "--rows=source_only", "--source_root={missing}",
                                         "--target_root={missing}"], 1, "row source_only"),
    ("python -m udamobile.experiments", ["--table=7", "--workdir={tmp}/table"], 2, "--table"),
]


@pytest.mark.parametrize("program, args, status, expected", CASES,
                         ids=[f"{c[0].split()[-1]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_clear_line(tmp_path, not_a_model, program, args, status, expected):
    values = {"tmp": str(tmp_path), "missing": str(tmp_path / "missing"), "file": not_a_model}
    result = run_program(program, *(a.format(**values) for a in args), cwd=tmp_path)
    assert result.returncode == status, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{program}: ")]
    assert len(errors) == 1, result.stderr
    assert expected.format(**values) in errors[0]
    if any("{missing}" in a for a in args):
        assert values["missing"] in result.stderr
    assert "Traceback" not in result.stderr
    output = (result.stdout + result.stderr).splitlines()
    assert "absl::InitializeLog" not in output[0] and "oneDNN" not in result.stderr


def test_verbosity_shows_tensorflow_start_up(tmp_path):
    quiet = run_program("evaluate.py", f"--model={tmp_path}/missing", "--dataset=demo_target",
                        cwd=tmp_path)
    loud = run_program("evaluate.py", f"--model={tmp_path}/missing", "--dataset=demo_target",
                       "--verbosity=1", cwd=tmp_path)
    assert "cuda" not in quiet.stderr.lower()
    assert "cuda" in loud.stderr.lower()
