"""The shape of the library a newcomer relies on: stages declared in one place each,
no import circle, short modules and functions (docs/architecture.md)."""
import ast
import os
import re
import shutil
import subprocess
import sys

import pytest

import import_graph
from udamobile.experiments import methods
from udamobile.training import stages

REPO = import_graph.REPO
# The two modules that are long by nature: the demo domains' generator and the
# reader of TF-slim and Keras pretrained weights.
# config.py is the table of every flag, one field and its help text each: it grows
# with each stage's own fields (the distill stage's five took it past 350).
LONG_ALLOWED = {"data_pipelines/demo.py": 550, "udamobile/nets/pretrained.py": 550,
                "udamobile/config.py": 400}
MODULE_LINES, FUNCTION_LINES = 350, 60
# Where a stage's or method's name may be written: the declarations, the method
# lists (the tables' rows) and the paper's column captions.
DECLARATIONS = ("udamobile/training/stages/", "udamobile/experiments/methods.py",
                "udamobile/experiments/table_rows.py",
                "udamobile/experiments/tables.py", "udamobile/evaluation/paper_tables.py")


def test_the_library_imports_no_module_round_a_circle():
    graph = import_graph.import_graph(deferred=False)
    # The registry's lines are arrows: a stage importing the config when it loads
    # is a circle (config -> stages -> the stage -> config).
    assert {f"udamobile.training.stages.{line.rsplit('.', 1)[0]}"
            for line in stages.DECLARATIONS} <= graph["udamobile.training.stages"]
    assert import_graph.circle(graph) is None


def test_the_stage_declarations_import_first_and_without_tensorflow():
    # The config reads the declarations, and the distill stage uses the config's
    # work-directory helpers: imported before the config, the stages once failed
    # half-initialized.
    code = "import sys, udamobile.training.stages; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    assert (result.returncode, result.stdout) == (0, "False\n"), result.stderr[-2000:]


def test_no_library_module_or_function_is_too_long():
    too_long = []
    for module, path in import_graph.library_modules().items():
        relative = os.path.relpath(path, REPO)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if text.count("\n") > LONG_ALLOWED.get(relative, MODULE_LINES):
            too_long.append(f"{relative}: {text.count(chr(10))} lines")
        too_long += [f"{relative}: {node.name}() {node.end_lineno - node.lineno + 1} lines"
                     for node in ast.walk(ast.parse(text))
                     if isinstance(node, ast.FunctionDef)
                     and node.end_lineno - node.lineno + 1 > FUNCTION_LINES]
    assert too_long == []


def test_stage_and_method_names_are_written_only_where_they_are_declared():
    names = set(stages.REGISTRY) | set(methods.METHODS)
    quoted = re.compile(r"[\"'](" + "|".join(sorted(names)) + r")[\"']")
    found = []
    for path in import_graph.library_modules().values():
        relative = os.path.relpath(path, REPO)
        if relative.startswith(DECLARATIONS):
            continue
        with open(path, encoding="utf-8") as f:
            found += [f"{relative}:{number}: {line.strip()}" for number, line in enumerate(f, 1)
                      if quoted.search(line) and not re.match(r"\s*flags\.DEFINE_\w+\(", line)]
    assert found == []


TOY_STAGE = '''"""A toy stage: the segmenter trained from scratch on labelled source patches."""
from udamobile.deferred import deferred
from udamobile.training import inputs
from udamobile.training.stages.base import Stage
from udamobile.training.stages.updates import SEGMENTER

losses, steps = deferred("udamobile.training.losses", "udamobile.training.stages.steps")


class ToyStage(Stage):
    name = "toy"
    recipe = dict(steps=3, batch_size=2)
    networks = ("segmenter",)
    updates = (SEGMENTER,)
    segmenter_batch_norm_trains = True
    batch_keys = ("image", "label")

    def train_splits(self, cfg):
        return [inputs.source_train(cfg)]

    def build_inputs(self, cfg, start_step, run):
        return inputs.labelled_patches(cfg, inputs.source_train(cfg), start_step, run.bad_files)

    def make_step(self, state, cfg, active):
        segmenter = state.networks["segmenter"]

        def compute(batch):
            ce = losses.cross_entropy(batch["label"], segmenter(batch["image"], training=True)["logits"])
            return {SEGMENTER.name: ce}, {"loss/ce": ce}, {}

        return steps.one_sided_step(state, [SEGMENTER], compute, cfg)


TOY = ToyStage()
'''


@pytest.mark.slow
def test_a_new_stage_is_one_module_and_one_registry_line(tmp_path):
    copy = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if os.path.isfile(os.path.join(REPO, name)):
            os.makedirs(copy / os.path.dirname(name), exist_ok=True)
            shutil.copy(os.path.join(REPO, name), copy / name)
    folder = copy / "udamobile" / "training" / "stages"
    (folder / "toy.py").write_text(TOY_STAGE)
    registry = (folder / "__init__.py").read_text()
    last = '    "self_training.SELF_TRAINING",\n'
    assert last in registry
    (folder / "__init__.py").write_text(registry.replace(last, last + '    "toy.TOY",\n'))

    result = subprocess.run(
        [sys.executable, "train.py", "--preset=demo", "--method=toy", "--stage=toy",
         f"--workdir={tmp_path / 'run'}", "--patch_size=32", "--aspp_filters=8",
         "--low_level_filters=4", "--decoder_filters=8", "--eval_max_images=1",
         "--label_free_images=1", "--allow_random_start"],
        cwd=copy, env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True,
        timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    stage = tmp_path / "run" / "toy"
    assert '"stage": "toy"' in (stage / "config.json").read_text()
    assert (stage / "checkpoints" / "ckpt-3.index").is_file()
    assert "toy  3/3" in result.stdout
