"""Seconds per training step, and the share of it spent waiting for data.

    python benchmarks/train_step.py [--paper_steps=3] [--demo_steps=30]

For each stage at two sets of shapes, measured in one run on this machine:
- paper: full-width networks, 600x600 patches from full-size GTA5-format
  PNGs (1914x1052, written to a temporary folder; they serve as the target
  images too), batch 5 (source only) and 1 (adaptation);
- demo: the `demo` preset on the built-in domains, in float32 and with
  --mixed_precision (mixed_float16 with loss scaling).
Each step's time is split into waiting for the next batch (the pipeline runs
ahead in parallel, so this is what data costs the loop) and the step itself.
"""
import tempfile
import time

import numpy as np
from absl import app, flags

from common import machine, write_full_size_gta5
from udamobile import config as config_lib
from udamobile.training.stages import get_stage
from udamobile.training.stages.base import RunContext
from udamobile.training.state import TrainingState

FLAGS = flags.FLAGS
flags.DEFINE_integer("paper_steps", 3, "Timed steps at the paper's shapes (after tracing).")
flags.DEFINE_integer("demo_steps", 30, "Timed steps at the demo's shapes (after tracing).")
flags.DEFINE_integer("pairs", 8, "Full-size GTA5-format pairs written for the paper shapes.")
flags.DEFINE_list("stages", ["source_only", "adaptation"],
                  "Stages to time, of: " + ", ".join(config_lib.STAGES) + ".")


def time_steps(cfg, steps):
    """(seconds per step, share waiting for data) over `steps` steps after one traced step,
    with every player of the stage updating."""
    stage = get_stage(cfg.stage)
    state = TrainingState(cfg, stage)
    step = stage.make_step(state, cfg, frozenset(u.name for u in stage.updates))
    with tempfile.TemporaryDirectory() as workdir:  # what a stage keeps (colour statistics)
        context = RunContext(workdir=workdir, chief=True, bad_files=None, state=state)
        stream = iter(stage.build_inputs(cfg, 0, context))
    step(next(stream))  # tracing
    waiting, computing = [], []
    for _ in range(steps):
        started = time.perf_counter()
        batch = next(stream)
        fetched = time.perf_counter()
        float(step(batch)["finite"])
        waiting.append(fetched - started)
        computing.append(time.perf_counter() - fetched)
    total = np.sum(waiting) + np.sum(computing)
    return total / steps, float(np.sum(waiting) / total)


def main(argv):
    del argv
    print(f"machine: {machine()}")
    rows = []
    with tempfile.TemporaryDirectory() as root:
        write_full_size_gta5(root, FLAGS.pairs)
        for stage in FLAGS.stages:
            cfg = config_lib.override(
                config_lib.get_config("paper_gta5", stage), source_root=root, target="gta5",
                target_root=root)
            rows.append(("paper", stage, cfg, *time_steps(cfg, FLAGS.paper_steps)))
    for stage in FLAGS.stages:
        for mixed in (False, True):
            cfg = config_lib.override(config_lib.get_config("demo", stage), mixed_precision=mixed)
            rows.append(("demo", stage, cfg, *time_steps(cfg, FLAGS.demo_steps)))

    print(f"\n{'shapes':<7}{'stage':<13}{'precision':>10}{'batch':>6}{'patch':>7}{'s/step':>9}"
          f"{'data share':>12}")
    for shapes, stage, cfg, seconds, share in rows:
        precision = "mixed16" if cfg.run.mixed_precision else "float32"
        print(f"{shapes:<7}{stage:<13}{precision:>10}{cfg.optim.batch_size:>6}"
              f"{cfg.data.patch_size:>7}{seconds:>9.3f}{100 * share:>11.1f}%")
    paper = {stage: s for shapes, stage, _, s, _ in rows if shapes == "paper"}
    demo = {(stage, cfg.run.mixed_precision): s for shapes, stage, cfg, s, _ in rows
            if shapes == "demo"}
    first = FLAGS.stages[0]
    print(f"\nstep / {first} step: " + ", ".join(
        f"{stage} paper {paper[stage] / paper[first]:.1f}x demo "
        f"{demo[stage, False] / demo[first, False]:.1f}x" for stage in FLAGS.stages[1:]))
    print("mixed_float16 / float32 step at demo shapes on this machine: " + ", ".join(
        f"{stage} {demo[stage, True] / demo[stage, False]:.2f}x" for stage in FLAGS.stages))
    print("paper schedule on this machine: " + ", ".join(
        f"{stage} {paper[stage] * config_lib.get_config('paper_gta5', stage).optim.steps / 3600:.0f} h"
        for stage in FLAGS.stages))


if __name__ == "__main__":
    app.run(main)
