"""The Python API (udamobile/api.py): docs/api.md's worked example runs as written,
and `import udamobile` stays cheap."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def api_example():
    """The ```python block of docs/api.md's worked example."""
    with open(os.path.join(REPO, "docs", "api.md"), encoding="utf-8") as f:
        text = f.read()
    return re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)


def test_importing_udamobile_loads_no_tensorflow_and_prints_nothing():
    result = subprocess.run(
        [sys.executable, "-c", "import sys, udamobile; print(sorted(m for m in ('tensorflow', "
         "'keras', 'udamobile.config') if m in sys.modules))"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("[]\n", "")


@pytest.mark.slow
def test_the_worked_example_of_docs_api_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    names = {}
    exec(compile(api_example(), "docs/api.md", "exec"), names)

    assert set(names["scores"]) == {"source_only"}
    assert 0 <= names["results"]["miou"] <= 1 and "mIoU" in names["results"]["table"]
    assert os.path.isfile(names["files"]["tflite_int8"])
    for kind in ("labels", "overlays"):
        assert len(os.listdir(tmp_path / "runs" / "api_demo" / "predictions" / kind)) == 4
    labels = names["labels"]
    assert labels.shape == (128, 256) and labels.dtype == np.int32
    assert "images segmented" in capsys.readouterr().out
