"""A stage's work directory: where things are, who trains in it, and its config.json.

    <workdir>/config.json         the resolved Config of the stage (`to_json`), and
                                  the provenance of the run that wrote it
    <workdir>/sources.json        where its networks started from (first start)
    <workdir>/checkpoints/        tf.train.CheckpointManager files: the latest few
    <workdir>/checkpoints/best/   the segmenter of the best periodic evaluation
    <workdir>/logs/               TensorBoard summaries
    <workdir>/eval/               JSON results of evaluations; best.json
    <workdir>/.lock               pid and host of the run training in it (workdir_lock)

This module imports no TensorFlow: the table runner reads the configs of
finished stages through it.
"""
import contextlib
import dataclasses
import json
import os
import socket

from absl import logging

from udamobile import config as config_lib, config_flags, errors, files, provenance
from udamobile.training import stages

BEST, LATEST = "best", "latest"  # the checkpoints a stage is named by, beside ckpt-N


CONFIG_FILE = "config.json"  # each stage's resolved Config, in its work directory
# config.json's record of the code that wrote it (udamobile.provenance): what a
# reader of the folder wants to know, but never a setting. `from_record` reads
# the config's sections alone, so a new version or commit is no config change
# (resume, `differences`, --config) and a file written without it still reads.
PROVENANCE_KEY = "provenance"


def fields_read_by_other_stages(stage):
    """The `own_fields` of the stages other than `stage`. A stage's config holds them at
    their defaults, and a new default trains nothing differently there."""
    own = set(stages.get_stage(stage).own_fields)
    return {name for other in stages.REGISTRY.values() for name in other.own_fields} - own


def changed_fields(trained, asked):
    """The names of the fields of its stage where Config `trained` (a work directory's)
    and `asked` (the command's) differ. Files and folders are compared absolute: a
    config.json written before they were saved so holds them relative to where it was
    trained. Fields only other stages read are left out: a source-only stage trained
    when `--student` had another default is still the same stage."""
    a, b = (config_flags.absolute_paths(config_lib.flat_values(cfg)) for cfg in (trained, asked))
    unread = fields_read_by_other_stages(asked.stage)
    return [name for name in a if a[name] != b[name] and name not in unread]


def differences(trained, asked):
    """'name=value there, value here' for each of the `changed_fields`."""
    a, b = config_lib.flat_values(trained), config_lib.flat_values(asked)
    return [f"{k}={a[k]!r} there, {b[k]!r} here" for k in changed_fields(trained, asked)]


def record(cfg):
    """config.json's object of `cfg` (without provenance)."""
    return dataclasses.asdict(cfg)


def to_json(cfg, written_by=None):
    """config.json's text of `cfg`, with `written_by` (a provenance.record()) if given."""
    raw = record(cfg)
    if written_by is not None:
        raw[PROVENANCE_KEY] = written_by
    # allow_nan=False: validation rejects non-finite values, so none can be written.
    return json.dumps(raw, indent=2, sort_keys=True, allow_nan=False)


# Fields added since a config.json could be written: {field: the value a run that
# wrote none was trained with}; a stage may declare others of its own
# (`written_before_fields`). Other fields take today's default, so that an older
# finished stage still matches its twin when a later stage starts from it.
WRITTEN_BEFORE_THE_FIELD = {"adam_epsilon": 1e-7}


def from_json(text):
    """Inverse of `to_json` (`from_record` of its JSON)."""
    return from_record(json.loads(text))


def from_record(raw):
    """The Config of a config.json's object; tuples come back as tuples. A field it
    lacks (written before the field existed) takes `WRITTEN_BEFORE_THE_FIELD`'s value."""
    stage = raw.get("stage", config_lib.Config.stage)
    older = {**WRITTEN_BEFORE_THE_FIELD,
             **(stages.get_stage(stage).written_before_fields if stage in stages.STAGES else {})}
    values = {name: value for name, value in older.items()
              if name not in raw.get(config_lib.field_index()[name][0], {})}
    for section in config_lib.SECTIONS:
        for name, value in raw.get(section, {}).items():
            values[name] = tuple(value) if isinstance(value, list) else value
    cfg = config_lib.Config(preset=raw.get("preset", config_lib.Config.preset), stage=stage)
    return config_lib.override(cfg, **values)


def config_path(workdir):
    return os.path.join(workdir, CONFIG_FILE)


def workdir_of_checkpoint(path):
    """The work directory holding checkpoint `path` (in its checkpoints/ or
    checkpoints/best/): the nearest folder above it with a config.json; None if none."""
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.isfile(config_path(folder)):
        if folder == os.path.dirname(folder):
            return None
        folder = os.path.dirname(folder)
    return folder


def checkpoint_dir(workdir):
    return os.path.join(workdir, "checkpoints")


def eval_file(workdir, name):
    """<workdir>/eval/<name>.json: an evaluation's scores ("final": the stage's last)."""
    return os.path.join(workdir, "eval", f"{name}.json")


def best_checkpoint_dir(workdir):
    return os.path.join(checkpoint_dir(workdir), BEST)


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _read_lock(path):
    """(pid, host) written in a lock file, or None if it is unreadable or half-written."""
    try:
        with open(path, encoding="utf-8") as f:
            pid, host = f.read().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def workdir_lock(workdir):
    """Holds <workdir>/.lock while a run trains there; a second run is refused.

    The lock names the pid and host of its run. A lock whose process is gone
    (on this host) is stale and taken over; one held on another host is
    refused, since its process cannot be checked from here.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, ".lock")
    here = socket.gethostname()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = _read_lock(path)
            if holder and (holder[1] != here or _process_alive(holder[0])):
                raise errors.WorkdirError(
                    f"{workdir} is in use by another run (pid {holder[0]} on {holder[1]}, "
                    f"see {path}); wait for it to end or use another --workdir") from None
            logging.warning("Taking over the stale lock %s (%s)", path,
                            f"pid {holder[0]} has ended" if holder else "unreadable")
            os.remove(path)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {here}\n")
        break
    try:
        yield
    finally:
        if _read_lock(path) == (os.getpid(), here):
            os.remove(path)


def write_config(workdir, cfg):
    """Writes config.json: `cfg` and the provenance of this run (a resumed run's, since
    the file is written at every start)."""
    files.write_text(config_path(workdir), to_json(cfg, provenance.record()) + "\n")


def read_config(workdir):
    """The Config a work directory was trained with."""
    if not os.path.isdir(workdir):
        problem = "is a file, not" if os.path.exists(workdir) else "does not exist; expected"
        raise errors.WorkdirError(f"{workdir} {problem} a training work directory")
    path = config_path(workdir)
    if not os.path.isfile(path):
        stages = sorted(name for name in os.listdir(workdir)
                        if os.path.isfile(config_path(os.path.join(workdir, name))))
        hint = (f"; it is a method's folder: name one of its stages' work directories, "
                f"{', '.join(os.path.join(workdir, s) for s in stages)}" if stages else "")
        raise errors.WorkdirError(f"{workdir} is not a udamobile work directory: {path} is "
                                  f"missing{hint}")
    return read_config_file(path)


def read_config_file(path):
    """The Config in a config.json file (`to_json`)."""
    if not os.path.isfile(path):
        raise errors.WorkdirError(f"{path} does not exist; expected a stage's config.json")
    record = files.read_json(path, keys=("stage",), remedy=(
        "it is the config the stage was trained with: restore it, or run the stage again in a "
        "new --workdir"))
    try:
        return from_record(record)
    except (ValueError, KeyError, TypeError) as e:
        raise errors.WorkdirError(f"{path} is not a valid udamobile config: {e}") from e
