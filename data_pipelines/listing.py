"""The files of a dataset folder, found through symbolic links too.

A dataset is often assembled from links: a city folder linked in from
another disk, image files linked rather than copied. `os.walk` does not
enter linked folders by default, so their images would be left out without
a word; entering them, a link to a folder above it would recurse forever.
So `Listing` follows every link, walks each real folder once, and keeps
what it skipped and why, one line per reason, for the dataset check's report
and the log:

    symlink loop       a link to a folder holding it, however high above (walking
                       it would never end)
    duplicate link     a link to a folder already walked through another path
                       (its files would count twice)
    broken symlink     a link to nothing
    unreadable folder  a folder that cannot be listed
"""
import collections
import os

from absl import logging

_SHOWN = 3  # paths named per reason


def is_within(path, folder):
    """Whether real path `path` is `folder` or lies below it."""
    return os.path.commonpath([path, folder]) == folder


class Listing:
    """Lists the files of dataset folders; `skipped` says what it left out."""

    def __init__(self):
        self._skipped = collections.defaultdict(list)  # reason -> paths

    def _skip(self, reason, path):
        logging.warning("Skipped %s (%s) while listing a dataset folder", path, reason)
        self._skipped[reason].append(path)

    @property
    def skipped(self):
        """One line per reason: how many entries were skipped, and the first of them."""
        lines = []
        for reason, paths in self._skipped.items():
            more = f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else ""
            lines.append(f"skipped {len(paths)} {reason}(s): {', '.join(paths[:_SHOWN])}{more}")
        return lines

    def _subfolders_to_walk(self, directory, names, walked):
        """The names of `names` (sub-folders of `directory`) whose real folder is new."""
        here = os.path.realpath(directory)
        kept = []
        for name in sorted(names):  # sorted: which of two paths to a folder is kept is fixed
            path = os.path.join(directory, name)
            real = os.path.realpath(path)
            if is_within(here, real):  # a folder above the walked one, or itself
                self._skip("symlink loop", f"{path} -> {real}")
            elif real in walked:
                self._skip("duplicate link", f"{path} -> {real}")
            else:
                walked.add(real)
                kept.append(name)
        return kept

    def files(self, folder, recursive=False):
        """Yields (sub-folder relative to `folder`, "." for itself; file name; path) of
        every file in `folder`, and with `recursive` in the folders below it."""
        walked = {os.path.realpath(folder)}

        def unreadable(error):
            self._skip("unreadable folder", f"{error.filename} ({error.strerror})")

        for directory, subfolders, names in os.walk(folder, onerror=unreadable,
                                                    followlinks=True):
            for name in sorted(names):
                path = os.path.join(directory, name)
                if os.path.exists(path):
                    yield os.path.relpath(directory, folder), name, path
                else:
                    self._skip("broken symlink", f"{path} -> {os.readlink(path)}")
            if not recursive:
                break
            subfolders[:] = self._subfolders_to_walk(directory, subfolders, walked)
