"""What a command will train, checked and shown before its first stage starts.

`check(method, configs, dirs)` refuses, before anything trains, a command
whose stages could not do what it says, and returns the warnings of one
that would run but leave part of itself idle:

- a stage whose segmenter would never train within `--steps` (it starts
  at `segmenter_frozen_steps`) is refused, naming both values; another
  player that would never start (the feature game at
  `feature_adaptation_start`) is a warning, as is `--image_every` past
  the last step (no image summary);
- `--restore_checkpoint=best` resolves, for each stage, to the nearest
  earlier stage that trains the segmenter (a stage that only carries a
  frozen copy has no best checkpoint), or is refused;
- `--init_checkpoint` on a later stage run by name is refused when an
  earlier stage of the method is in the work directory: that stage is
  what the later one starts from (`start_weights`);
- a flag naming the folder a network comes from (`--teacher_dir`) is
  refused where an earlier stage of the method provides that network, and
  a field only some stage reads (`Stage.own_fields`) where no stage of the
  run reads it.

`describe(...)` renders the resolved config of each stage, every field, with
where each non-default value came from, and where each network's weights
will come from (`train.py --print_config`).
"""
import os

from udamobile import config as config_lib, errors
from udamobile.errors import UsageError
from udamobile.experiments import methods
from udamobile.training import workdirs
from udamobile.training.stages import get_stage

SEGMENTER = "segmenter"


def source_stage(method, stage_name, network, cfg):
    """The earlier stage of `method` that `network` of `stage_name` starts from, or None.

    The nearest earlier stage that builds it (or the network it is a copy of,
    `Stage.restored_from`); for the segmenter under `--restore_checkpoint=best`,
    the nearest that trains it, since only those keep a best checkpoint.
    """
    network = get_stage(stage_name).restored_from.get(network, network)
    best = network == SEGMENTER and cfg.run.restore_checkpoint == workdirs.BEST
    for earlier in methods.earlier_stages(method, stage_name):
        stage = get_stage(earlier)
        if network in stage.networks and (not best or stage.evaluates):
            return earlier
    return None


def checkpoint_taken(stage_name, network, cfg):
    """Which checkpoint `network` of `stage_name` is read from: `--restore_checkpoint`'s
    for a segmenter (or a copy of one, the distill stage's teacher), else the latest."""
    copied = get_stage(stage_name).restored_from.get(network, network)
    return cfg.run.restore_checkpoint if copied == SEGMENTER else workdirs.LATEST


def flag_source(stage_name, network, cfg):
    """(flag, folder) naming where `network` of `stage_name` comes from, or None."""
    flag = get_stage(stage_name).restore_flags.get(network)
    folder = flag and getattr(cfg.run, flag)
    return (flag, folder) if folder else None


def _stage_exists(folder):
    return os.path.isfile(workdirs.config_path(folder))


def _check_restores(method, stage_name, cfg, dirs):
    stage = get_stage(stage_name)
    earlier = methods.earlier_stages(method, stage_name)
    for network in stage.restores:
        named, provider = (flag_source(stage_name, network, cfg),
                           source_stage(method, stage_name, network, cfg))
        if named and provider:
            raise UsageError(
                f"--{named[0]}={named[1]}: stage {stage_name} of --method={method} takes its "
                f"{network} from stage {provider}; leave the flag out, or run "
                f"--method={stage_name} to take it from that folder")
    if cfg.run.init_checkpoint and SEGMENTER in stage.restores:
        present = [s for s in earlier if s in dirs and _stage_exists(dirs[s])]
        if present:
            raise errors.WorkdirError(
                f"--init_checkpoint={cfg.run.init_checkpoint} would start stage {stage_name}'s "
                f"segmenter, but stage {present[0]} of --method={method} is in "
                f"{dirs[present[0]]}, and stage {stage_name} starts from it: leave "
                "--init_checkpoint out (it initializes the method's first stage), or use a "
                "new --workdir to start this stage from the file")
        return
    if SEGMENTER in stage.restores and cfg.run.restore_checkpoint == workdirs.BEST and (
            source_stage(method, stage_name, SEGMENTER, cfg) is None and earlier):
        raise UsageError(
            f"--restore_checkpoint=best: no stage of --method={method} before {stage_name} "
            "trains a segmenter, so none keeps a best checkpoint; leave the flag out")


def idle_parts(stage_name, cfg):
    """(refusal or None, [warning]) of a stage that leaves players idle; from its
    declaration alone, so the table runner checks every row before the first."""
    stage = get_stage(stage_name)
    steps = cfg.optim.steps
    idle = stage.idle_updates(cfg)
    refusal = None
    if SEGMENTER in idle:
        start, flag = idle.pop(SEGMENTER)
        refusal = (f"--steps={steps} leaves stage {stage_name}'s segmenter untrained: it starts "
                   f"training at {flag}={start}; give more --steps or a lower --{flag}")
    warnings = [f"stage {stage_name}: the {name} update never runs within --steps={steps} "
                f"(it starts at {flag}={start})" for name, (start, flag) in idle.items()]
    if stage.draws_images and cfg.run.image_every > steps:
        warnings.append(f"stage {stage_name}: no image summary is written (--image_every="
                        f"{cfg.run.image_every} is past --steps={steps})")
    return refusal, warnings


def _check_own_fields(method, configs):
    """Refuses a field only some stage reads, set away from its default on a run where
    none does."""
    read = {name for stage in configs for name in get_stage(stage).own_fields}
    defaults = config_lib.flat_values(config_lib.Config())
    values = config_lib.flat_values(next(iter(configs.values())))
    for stage_name in config_lib.STAGES:
        for name in get_stage(stage_name).own_fields:
            value = values[name]
            if value != defaults[name] and name not in read:
                raise UsageError(f"--{name}={value} is read by stage {stage_name} only, which "
                                 f"--method={method} does not run; leave it out")


def check(method, configs, dirs):
    """Raises for a command that cannot run as it says (module docstring); returns
    the warnings of one that can."""
    _check_own_fields(method, configs)
    warnings = []
    for stage_name, cfg in configs.items():
        refusal, idle = idle_parts(stage_name, cfg)
        if refusal:
            raise UsageError(refusal)
        warnings += idle
        _check_restores(method, stage_name, cfg, dirs)
    return warnings


def _checkpoint_state(folder):
    from udamobile.training import checkpointing  # TensorFlow: the table runner never asks

    if not _stage_exists(folder):
        return "not trained yet"
    done, step = checkpointing.finished(folder)
    if step is None:
        return "started, no checkpoint yet"
    return f"finished at step {step}" if done else f"stopped at step {step}"


def start_weights(method, stage_name, cfg, dirs):
    """{network: where its weights will come from} of a stage about to start."""
    from udamobile.training import checkpointing  # TensorFlow: the table runner never asks

    stage = get_stage(stage_name)
    own = dirs.get(stage_name)
    if own and _stage_exists(own):
        done, step = checkpointing.finished(own)
        if step is not None:
            resumed = f"its own checkpoint in {own}, step {step}" + (" (finished)" if done else "")
            return dict.fromkeys(stage.networks, resumed)
    origins = {}
    for network in stage.networks:
        earlier = (source_stage(method, stage_name, network, cfg)
                   if network in stage.restores else None)
        init_file = getattr(cfg.run, stage.segmenter_init_flag)
        named = flag_source(stage_name, network, cfg)
        if network == SEGMENTER and init_file:
            origins[network] = f"file {init_file} (--{stage.segmenter_init_flag})"
        elif named:
            origins[network] = f"{named[1]} (--{named[0]})"
        elif earlier:
            which = checkpoint_taken(stage_name, network, cfg)
            origins[network] = (f"stage {earlier}, {which} checkpoint of {dirs[earlier]} "
                                f"({_checkpoint_state(dirs[earlier])})")
        elif network in stage.restores and not (
                network == SEGMENTER and cfg.run.allow_random_start):
            origins[network] = "nothing: the stage will refuse to start"
        else:
            origins[network] = "random initialization"
    return origins


def describe(method, configs, dirs, *, preset, overrides, keep_method_settings=False,
             config_file=None):
    """The text of `train.py --print_config`: each stage's fields and start weights;
    with `config_file`, the configs were read from it (`--config`), which is where
    every value came from."""
    blocks = []
    defaults = config_lib.flat_values(config_lib.Config())
    for stage_name, cfg in configs.items():
        # A stage beside the method's (the oracle) is the one stage of its own method.
        owner = method if stage_name in methods.get_method(method).stages else stage_name
        origins = ({name: f"--config {config_file}" for name, value in
                    config_lib.flat_values(cfg).items() if value != defaults[name]}
                   if config_file else methods.value_origins(
                       cfg, preset, owner, overrides,
                       keep_method_settings=keep_method_settings))
        lines = [f"stage {stage_name} of --method={owner} (preset {preset}), in "
                 f"{dirs[stage_name]}", "  start weights:"]
        lines += [f"    {network} <- {origin}" for network, origin in
                  start_weights(owner, stage_name, cfg, dirs).items()]
        for section in config_lib.SECTIONS:
            lines.append(f"  {section}:")
            values = {name: getattr(getattr(cfg, section), name)
                      for name, (owner, _) in config_lib.field_index().items()
                      if owner == section}
            width = max(map(len, values))
            lines += [f"    {name:<{width}} = {value!r}"
                      + (f"   [{origins[name]}]" if name in origins else "")
                      for name, value in values.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
