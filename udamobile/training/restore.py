"""How a stage's networks start: resumed from its own checkpoints, or from the
method's earlier stages and `--init_checkpoint`.

A new stage starts its networks from `sources` ({network: checkpoint}, the
method's earlier stages, or the folder a flag names: `Stage.restore_flags`; a
network is read from the checkpoint's object of the name `Stage.restored_from`
gives, by default its own) and its segmenter, if no source gives it, from
`--init_checkpoint` (the stage's `segmenter_init_flag`). Every network the
stage declares in `restores` must get its weights from one of them; only the
segmenter may start at random, and only with `--allow_random_start`.
Where each network came from is printed and written to the stage's
sources.json.
"""
import os

from udamobile import errors, files
from udamobile.nets import pretrained
from udamobile.training import checkpointing


def start(state, cfg, workdir, sources, chief):
    """Restores `sources`, then `--init_checkpoint`; checks nothing needed starts at random.

    Returns {network: where it came from: a checkpoint and its step, a file, or
    random initialization}, printed and written to sources.json.
    """
    stage = state.stage
    origins = {}
    for path in sorted(set(sources.values())):
        names = sorted(n for n, p in sources.items() if p == path)
        checkpointing.restore_into(
            path, **{stage.restored_from.get(n, n): state.networks[n] for n in names})
        origins.update(dict.fromkeys(names, checkpointing.describe_checkpoint(path)))
    init_file = getattr(cfg.run, stage.segmenter_init_flag)
    if init_file:
        if "segmenter" not in state.networks:
            raise errors.StartError(
                f"--{stage.segmenter_init_flag} initializes a segmenter; stage {stage.name} "
                "has none")
        report = pretrained.initialize_segmenter(state.networks["segmenter"], init_file,
                                                 allow_partial=cfg.run.init_allow_partial)
        origins["segmenter"] = report.source
    for name in stage.restores:
        if name in origins:
            continue
        if name == "segmenter" and stage.needs_trained_segmenter:
            raise errors.StartError(
                f"stage {stage.name} needs a trained segmenter (the adapted one of "
                "an earlier stage, or --init_checkpoint), not a random one: run "
                "the stages before it first")
        if name == "segmenter" and cfg.run.allow_random_start:
            origins[name] = "random initialization (--allow_random_start)"
            continue
        hint = (" Give --init_checkpoint, or --allow_random_start if that is meant."
                if name == "segmenter" else "")
        raise errors.StartError(
            f"stage {stage.name} starts its {name} from an earlier stage, but no "
            f"earlier stage provides one.{hint}")
    for name in stage.networks:
        origins.setdefault(name, "random initialization")
    print(f"stage {stage.name} starts from:\n"
          + "".join(f"  {name} <- {origin}\n" for name, origin in origins.items()),
          end="", flush=True)
    if chief:
        files.write_json(os.path.join(workdir, "sources.json"), origins)
    return origins


def resume_or_start(state, cfg, workdir, sources, chief):
    """Resumes from the work directory (returns True), else starts (see `start`)."""
    latest = checkpointing.latest_intact_checkpoint(workdir, repair_state=chief)
    if latest:
        # The manager's files also hold its save counter, which the state does not track:
        # every object of ours must match, and that counter alone is left over.
        state.checkpoint().read(latest).assert_existing_objects_matched().expect_partial()
        print(f"stage {state.stage.name} resumes from {latest} at step {int(state.step)} "
              f"(where it started from: {os.path.join(workdir, 'sources.json')})", flush=True)
        return True
    start(state, cfg, workdir, sources, chief)
    return False

