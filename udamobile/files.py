"""Every file the package writes goes through here: all at once, or not at all.

An artifact (a file or a directory) is written under a temporary hidden
sibling name in the same folder (so the final rename never crosses a file
system) and renamed into place only once it is complete. A failure or an
interruption (an exception, Ctrl-C) removes the temporary sibling; a killed
process can leave one behind, named `.<name>.partial-*`, but never a
half-written artifact at `path` (`remove_leftovers` clears them). An error
names the artifact's path, never the temporary one.

TensorFlow's own writers (checkpoints, SavedModels, TensorBoard logs) raise
their filesystem errors as `tf.errors.OpError`; `tensorflow_writes` turns
them into an OSError naming the path, which the programs print as one line.

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
import re
import shutil
import tempfile

import numpy as np

from udamobile import errors


def remove(path):
    """Removes a file, link or directory tree at `path`, if there is one."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _staging_prefix(path, kind):
    return f".{os.path.basename(path)}.{kind}-"


def _move_into_place(temporary, path):
    """Renames `temporary` to `path`, replacing whatever `path` held."""
    if not os.path.isdir(path):
        os.replace(temporary, path)
        return
    # A directory cannot be replaced by a rename: move the old one aside
    # first, so `path` is at every moment either the old or the new artifact
    # (or, between the two renames, absent - never partial).
    retired = tempfile.mkdtemp(dir=os.path.dirname(path),
                               prefix=_staging_prefix(path, "retired"))
    os.replace(path, os.path.join(retired, "old"))
    os.replace(temporary, path)
    shutil.rmtree(retired)


def _named_outside_staging(name, temporary, path):
    """File name `name` with the temporary artifact `temporary` it lies in replaced by `path`."""
    if not isinstance(name, (str, bytes)):
        return name
    relative = os.path.relpath(os.fsdecode(name), temporary)
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return name
    return path if relative == os.curdir else os.path.join(path, relative)


def _error_naming_the_artifact(error, temporary, path):
    """`error` naming `path` (and what lies in it) wherever it named the temporary
    artifact, and the artifact itself when it named no file; None if that is no change."""
    # A writer that names no file (PIL's, numpy's) would leave "No space left
    # on device" without the path the user must free space for; one that names
    # the temporary artifact, a path that is gone once the error is shown.
    first = _named_outside_staging(error.filename, temporary, path) or path
    second = _named_outside_staging(error.filename2, temporary, path)
    if second == first:
        second = None
    cause = (error.strerror or str(error)).replace(temporary, path)
    if (first, second, cause) == (error.filename, error.filename2, error.strerror):
        return None
    return OSError(error.errno, cause, first, None, second)


@contextlib.contextmanager
def atomic_output(path):
    """Yields a temporary path to write the artifact to; moves it to `path` on success.

    Works for a file or a directory: the caller creates whichever it wants at
    the yielded path (which does not exist yet).
    """
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    staging = tempfile.mkdtemp(dir=folder, prefix=_staging_prefix(path, "partial"))
    temporary = os.path.join(staging, os.path.basename(path))
    try:
        yield temporary
        if not os.path.lexists(temporary):
            raise FileNotFoundError(f"nothing was written for {path}")
        _move_into_place(temporary, path)
    except OSError as error:
        renamed = _error_naming_the_artifact(error, temporary, path)
        if renamed is None:
            raise
        raise renamed from error
    finally:
        remove(staging)


def _remove_matching(folder, is_leftover):
    """Removes the entries of `folder` whose name `is_leftover`; returns their paths."""
    leftovers = sorted(os.path.join(folder, entry) for entry in
                       (os.listdir(folder) if os.path.isdir(folder) else ())
                       if is_leftover(entry))
    for leftover in leftovers:
        remove(leftover)
    return leftovers


def remove_leftovers(path):
    """Removes what a killed `atomic_output(path)` left beside `path`; returns what it removed.

    Only one writer of `path` may run at a time: another's temporary artifact
    would be taken for a leftover.
    """
    folder, name = os.path.split(os.path.abspath(path))
    prefixes = tuple(_staging_prefix(name, kind) for kind in ("partial", "retired"))
    return _remove_matching(folder, lambda entry: entry.startswith(prefixes))


_ANY_STAGING = re.compile(r"\..+\.(partial|retired)-")


def remove_leftovers_in(folder):
    """Removes what killed `atomic_output` calls left in `folder`, whatever they wrote;
    returns what it removed. Only while nothing writes into `folder`."""
    return _remove_matching(folder, _ANY_STAGING.match)


@contextlib.contextmanager
def tensorflow_writes(path, doing):
    """Turns TensorFlow's filesystem errors (read-only, no space left, ...) while
    `doing` (a phrase: "writing the SavedModel"), which are not OSError, into an
    OSError naming `path`, what failed and the cause."""
    import tensorflow as tf  # here: the programs that write nothing with it never import it

    try:
        yield
    except tf.errors.OpError as error:
        raise OSError(None, f"{doing} failed: {_tensorflow_cause(error)}", path) from error


def _tensorflow_cause(error):
    """The first line of a TensorFlow error without its op decorations."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", error.message.splitlines()[0])
    return re.sub(r"\s*\[Op:\w+\].*$", "", text)[:300]


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

    Raises errors.StateFileError naming the file, what was wrong and `remedy` (what
    makes the file again) when it is not such an object: damaged by hand, or
    cut short on a full disk by a tool other than ours.
    """
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.StateFileError(f"{path} is damaged (not JSON: {e}); {remedy}") from None
    missing = [key for key in keys if not isinstance(value, dict) or key not in value]
    if missing:
        raise errors.StateFileError(
            f"{path} is damaged: it holds no {', '.join(map(repr, missing))}; "
            f"{remedy}")
    return value

