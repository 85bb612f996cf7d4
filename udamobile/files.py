"""Every file the package writes goes through here: all at once, or not at all.

An artifact (a file or a directory) is written under a temporary hidden
sibling name in the same folder (so the final rename never crosses a file
system) and renamed into place only once it is complete. A failure or an
interruption (an exception, Ctrl-C) removes the temporary sibling; a killed
process can leave one behind, named `.<name>.partial-*`, but never a
half-written artifact at `path`.

JSON is written by `write_json`, which turns NaN and infinities (an
undefined IoU, say) into null: `json.dumps` would write `NaN`, which is not
JSON. The state files the package reads back (method.json, row.json,
results.json, eval/best.json, round.json, ...) are read by `read_json`, which
names a damaged file, what it should hold and how to make it again.
"""
import contextlib
import json
import math
import os
import shutil
import tempfile

import numpy as np

from data_pipelines.base import UserError


class StateFileError(UserError):
    """A state file the package wrote that cannot be read back as it should."""


def remove(path):
    """Removes a file, link or directory tree at `path`, if there is one."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _move_into_place(temporary, path):
    """Renames `temporary` to `path`, replacing whatever `path` held."""
    if not os.path.isdir(path):
        os.replace(temporary, path)
        return
    # A directory cannot be replaced by a rename: move the old one aside
    # first, so `path` is at every moment either the old or the new artifact
    # (or, between the two renames, absent - never partial).
    retired = tempfile.mkdtemp(dir=os.path.dirname(path),
                               prefix=f".{os.path.basename(path)}.retired-")
    os.replace(path, os.path.join(retired, "old"))
    os.replace(temporary, path)
    shutil.rmtree(retired)


@contextlib.contextmanager
def atomic_output(path):
    """Yields a temporary path to write the artifact to; moves it to `path` on success.

    Works for a file or a directory: the caller creates whichever it wants at
    the yielded path (which does not exist yet).
    """
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    staging = tempfile.mkdtemp(dir=folder, prefix=f".{os.path.basename(path)}.partial-")
    temporary = os.path.join(staging, os.path.basename(path))
    try:
        yield temporary
        if not os.path.lexists(temporary):
            raise FileNotFoundError(f"nothing was written for {path}")
        _move_into_place(temporary, path)
    except OSError as error:
        # A writer that names no file (PIL's, numpy's) would leave "No space left
        # on device" without the path the user must free space for.
        if error.filename is None:
            raise OSError(error.errno, error.strerror or str(error), path) from error
        raise
    finally:
        remove(staging)


def write_bytes(path, data):
    """Writes `data` to `path` atomically; returns `path`."""
    with atomic_output(path) as staging:
        with open(staging, "wb") as f:
            f.write(data)
    return path


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically; returns `path`."""
    return write_bytes(path, text.encode("utf-8"))


def json_ready(value):
    """`value` with NaN/inf floats as None and numpy scalars and arrays as Python values."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def write_json(path, value):
    """Writes `value` as indented JSON (NaN and infinities as null) atomically."""
    return write_text(path, json.dumps(json_ready(value), indent=2, allow_nan=False) + "\n")


def read_json(path, *, keys=(), remedy):
    """The JSON object in the state file `path`, holding at least `keys`.

    Raises StateFileError naming the file, what was wrong and `remedy` (what
    makes the file again) when it is not such an object: damaged by hand, or
    cut short on a full disk by a tool other than ours.
    """
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise StateFileError(f"{path} is damaged (not JSON: {e}); {remedy}") from None
    missing = [key for key in keys if not isinstance(value, dict) or key not in value]
    if missing:
        raise StateFileError(f"{path} is damaged: it holds no {', '.join(map(repr, missing))}; "
                             f"{remedy}")
    return value

