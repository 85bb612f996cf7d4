"""Writing an artifact (a file or a directory) all at once, or not at all.

The artifact is written under a temporary hidden sibling name in the same
folder (so the final rename never crosses a file system) and renamed into
place only once it is complete. A failure or an interruption (an exception,
Ctrl-C) removes the temporary sibling; a killed process can leave one behind,
named `.<name>.partial-*`, but never a half-written artifact at `path`.
"""
import contextlib
import os
import shutil
import tempfile


def _remove(path):
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
    finally:
        _remove(staging)
