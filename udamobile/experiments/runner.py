"""Runs a method (`udamobile.experiments.methods`): its stages in order, then scores,
exports and draws.

A whole run (`train.py --stage=all`, the default) of method M in <workdir>:

    <workdir>/method.json    the method and the folder of each stage
    <workdir>/<stage>/       one work directory per stage, in the method's order,
                             each starting from the stages before it
    <workdir>/oracle/        with --oracle: the segmenter trained on the target's
                             train labels, the upper bound the table compares with
    <workdir>/results.json   every stage with a segmenter scored on the target's
                             labelled val split (the test set; nothing is
                             selected on it), or for a target without one its
                             label-free signals (`results`)
    <workdir>/export/        the last stage's segmenter as SavedModel and int8 TFLite
    <workdir>/figures/       translations (Fig. 2, when a stage learned them) and
                             segmentations (Fig. 3) of each stage's segmenter

and a table of each stage's IoU is printed at the end. `--stage=NAME` runs
one stage of the method, from the stages before it in the same <workdir>.

With `reuse_from` (`--reuse_stages_from`), a stage whose finished twin (same
config) is in that method work directory is taken from there instead of
being trained again: the table runner shares one source-only stage between
all its rows this way.
"""
import os

from data_pipelines import validation
from udamobile import errors, files
from udamobile.errors import UsageError
from udamobile.experiments import methods, plan, results
from udamobile.training import checkpointing, distribute, inputs, trainer, workdirs
from udamobile.training.stages import get_stage


def data_of_run(configs, whole):
    """[(name, root, split)] the stages in `configs` read, and for a `whole` run the
    target's test split it is scored on, if it has one; each once, in the order
    first read."""
    used = [split for cfg in configs.values()
            for split in inputs.datasets_used(cfg, get_stage(cfg.stage))]
    last = list(configs.values())[-1]
    if whole and inputs.has_test_split(last):
        used.append(inputs.test_split(last))
    return list(dict.fromkeys(used))


def announce_full_check(configs, whole):
    """Prints, once per run, the commands that decode every file the run reads:
    the start-up check only decodes a sample of each split."""
    cfg = list(configs.values())[-1]
    print("Start-up checks decode a sample of each split; to decode every file the run reads, "
          "first run:\n" + "".join(
              f"  {validation.full_check_command(*triple, **inputs.reading_options(cfg, triple))}\n"
              for triple in data_of_run(configs, whole)), end="", flush=True)


# --- the work directory of a method ---------------------------------------------

def _check_method_dir(workdir, method):
    if os.path.isfile(workdirs.config_path(workdir)):
        raise errors.WorkdirError(
            f"{workdir} is the work directory of one stage; --workdir takes a method's folder, "
            "which holds one sub-folder per stage")
    path = os.path.join(workdir, methods.METHOD_FILE)
    if os.path.isfile(path):
        held = methods.read_method_file(path)["method"]
        if held != method:
            raise errors.WorkdirError(
                f"{workdir} holds a run of --method={held}, not {method}; use another --workdir")


def _stage_folder(method_dir, stage):
    """Where the method folder `method_dir` holds `stage`: the folder its method.json
    names (a stage it took from another run), else its sub-folder."""
    path = os.path.join(method_dir, methods.METHOD_FILE)
    if os.path.isfile(path):
        held = methods.read_method_file(path)["stages"]
        if stage in held:
            return held[stage]
    return methods.stage_dir(method_dir, stage)


def reused_dir(reuse_from, stage, cfg):
    """The folder of `stage` in `reuse_from` if it is a finished twin of `cfg`, else None."""
    if not os.path.isdir(reuse_from):
        raise errors.WorkdirError(f"--reuse_stages_from={reuse_from} does not exist")
    folder = _stage_folder(reuse_from, stage)
    if not os.path.isfile(workdirs.config_path(folder)):
        return None
    differences = workdirs.differences(workdirs.read_config(folder), cfg)
    if differences:
        raise errors.WorkdirError(
            f"--reuse_stages_from: {folder} was trained with other settings ("
            + "; ".join(differences[:5]) + "); use the same flags, or leave the flag out")
    done, step = checkpointing.finished(folder)
    if not done:
        raise errors.WorkdirError(
            f"--reuse_stages_from: {folder} has not finished (step {step} of {cfg.optim.steps}); "
            "finish it first")
    return folder


def stage_sources(method, stage_name, dirs, cfg):
    """{network: checkpoint} the stage's restored networks start from.

    Each comes from the nearest earlier stage of the method that built it
    (`plan.source_stage`), which must have finished; `--restore_checkpoint=best`
    takes the best segmenter of the nearest that trained one (other networks:
    the latest checkpoint). A single stage run
    with --init_checkpoint takes its segmenter from that file instead, and
    with --allow_random_start one whose earlier stage was never run starts
    its segmenter at random.
    """
    sources = {}
    for name in get_stage(stage_name).restores:
        which = plan.checkpoint_taken(stage_name, name, cfg)
        named = plan.flag_source(stage_name, name, cfg)
        if named:
            sources[name] = checkpointing.resolve_checkpoint(trained_segmenter_dir(*named), which)
            continue
        if name == "segmenter" and cfg.run.init_checkpoint:
            continue  # plan.check refused it if an earlier stage is there
        earlier = plan.source_stage(method, stage_name, name, cfg)
        if earlier is None:
            continue  # the trainer says what is missing, or starts fresh
        folder = dirs[earlier]
        done, step = (checkpointing.finished(folder)
                      if os.path.isfile(workdirs.config_path(folder)) else (False, None))
        if step is None and name == "segmenter" and cfg.run.allow_random_start:
            continue  # the trainer starts it at random, as asked
        if not done:
            state = "has not been run" if step is None else f"stopped at step {step}"
            raise errors.WorkdirError(
                f"stage {stage_name} of --method={method} starts its {name} from stage "
                f"{earlier} ({folder}), which {state}: run --stage={earlier} (or "
                "--stage=all) to the end first")
        sources[name] = checkpointing.resolve_checkpoint(folder, which)
    return sources


def trained_segmenter_dir(flag, folder):
    """The stage work directory of a finished, trained segmenter that --`flag`=`folder`
    names: that folder, or of a method folder the last of its method's stages that
    trained one (never the oracle beside them)."""
    if os.path.isfile(os.path.join(folder, methods.METHOD_FILE)) and not os.path.isfile(
            workdirs.config_path(folder)):
        record = methods.read_method_file(os.path.join(folder, methods.METHOD_FILE))
        trained = [stage for stage in methods.get_method(record["method"]).stages
                   if stage in record["stages"] and get_stage(stage).evaluates]
        folder = record["stages"][trained[-1]] if trained else folder
    if not os.path.isfile(workdirs.config_path(folder)) or not get_stage(
            workdirs.read_config(folder).stage).evaluates:
        raise errors.WorkdirError(
            f"--{flag}={folder} holds no trained segmenter: expected the work directory of a "
            "stage that trained one (it holds config.json) or a method folder of train.py "
            "(method.json)")
    done, step = checkpointing.finished(folder)
    if not done:
        raise errors.WorkdirError(
            f"--{flag}={folder}: its stage has not finished ("
            + ("no checkpoint yet" if step is None else f"stopped at step {step}")
            + "); run it to the end first")
    return folder


def stage_dirs(workdir, method, configs):
    """{stage: its work directory} of a method folder: the method's stages, and any
    other stage in `configs` (the oracle beside them)."""
    return {stage: methods.stage_dir(workdir, stage)
            for stage in (*methods.get_method(method).stages, *configs)}


def plan_warnings(method, configs, dirs):
    """`plan.check` of the method's stages and of the oracle beside them."""
    oracle = methods.ORACLE_ROW
    if method == oracle or oracle not in configs:
        return plan.check(method, configs, dirs)
    own = {stage: cfg for stage, cfg in configs.items() if stage != oracle}
    return plan.check(method, own, dirs) + plan.check(oracle, {oracle: configs[oracle]}, dirs)


def run(method, configs, workdir, *, whole=True, reuse_from=None, oracle=None):
    """Trains the stages in `configs` ({stage: Config}, `methods.stage_configs`).

    A `whole` run (every stage of the method) also scores, exports and draws
    (module docstring, `results`) and returns {stage: scores on the target's
    test split, or label-free signals without one}; a single stage returns
    {stage: final scores on its evaluation split}. With `oracle` (the oracle
    stage's Config; a whole run only), the oracle is also trained, in
    <workdir>/oracle, and scored and drawn beside
    the method's stages, so the table shows how much of the gap between the
    source-only segmenter and it each stage closes; the method's last stage
    is still the one exported.
    """
    stages = methods.get_method(method).stages
    if oracle is not None and (not whole or methods.ORACLE_ROW in stages):
        raise UsageError("--oracle adds the oracle beside a whole run of a method that "
                         "does not train it: use --stage=all, and a method other than oracle")
    _check_method_dir(workdir, method)
    if oracle is not None:
        configs = {**configs, methods.ORACLE_ROW: oracle}
    dirs = stage_dirs(workdir, method, configs)
    for stage, cfg in configs.items():
        reused = reused_dir(reuse_from, stage, cfg) if reuse_from else None
        if reused:
            dirs[stage] = reused
    for warning in plan_warnings(method, configs, dirs):
        print(f"warning: {warning}", flush=True)
    announce_full_check(configs, whole)
    last = configs[stages[-1]] if whole else None
    if whole and inputs.has_test_split(last):  # scored at the end: a bad file should not wait
        inputs.check_data(last, [inputs.test_split(last)])
    os.makedirs(workdir, exist_ok=True)
    files.write_json(os.path.join(workdir, methods.METHOD_FILE),
                     methods.method_record(method, workdir, dirs))
    scores = {}
    for stage, cfg in configs.items():
        if dirs[stage] != methods.stage_dir(workdir, stage):
            print(f"stage {stage}: taken from {dirs[stage]}")
            continue
        # The oracle beside a method is its own method's stage.
        owner = stage if stage == methods.ORACLE_ROW else method
        sources = stage_sources(owner, stage, dirs, cfg)
        scores[stage] = trainer.train(cfg, dirs[stage], sources=sources)
    if not whole:
        return scores
    if not distribute.is_chief(distribute.make_strategy(last.run.strategy)):
        return scores  # the chief alone scores, exports and draws
    exported = [stage for stage in stages if get_stage(stage).evaluates][-1]
    return results.score_export_draw(workdir, dirs, last, exported_stage=exported)
