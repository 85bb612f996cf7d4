"""Which code made an artifact: the package's version and, in a git checkout, its commit.

    VERSION       "0.1.0": the package's version (udamobile.__version__, setup.py)
    commit()      Commit("1234abcd...", modified=True), or None outside a checkout
    record()      {"udamobile_version", "commit", "modified", "date"}: what config.json,
                  export.json and the model card record
    describe()    "udamobile 0.1.0 (commit 1234abcd, modified)": what --version prints

The commit is that of the checkout the package is imported from, and only when
the package's folder is that checkout's root: an installed copy inside some
other repository (a user's project with a virtual environment in it) must not
claim that repository's commit. "modified" means tracked files differ from the
commit; untracked files (run folders, exports) do not count. Imports no
TensorFlow: `--version` answers at once.
"""
import dataclasses
import datetime
import functools
import os
import subprocess

VERSION = "0.1.0"
# udamobile/provenance.py -> the folder holding the package
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Commit:
    sha: str
    modified: bool


def version():
    return VERSION


def _git(*arguments):
    """stdout of `git <arguments>` in CHECKOUT, or None if git is missing or fails."""
    try:
        result = subprocess.run(["git", "-C", CHECKOUT, *arguments], capture_output=True,
                                text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def commit():
    """The Commit of the checkout holding the package, or None (no git, not a checkout)."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or os.path.realpath(top) != os.path.realpath(CHECKOUT):
        return None
    sha = _git("rev-parse", "HEAD")
    changes = _git("status", "--porcelain", "--untracked-files=no")
    if not sha or changes is None:
        return None
    return Commit(sha, modified=bool(changes))


def record():
    """The provenance of what is written now, as JSON values; `date` is UTC, to the second."""
    found = commit()
    return {
        "udamobile_version": version(),
        "commit": found.sha if found else None,
        "modified": found.modified if found else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def describe(provenance=None):
    """'udamobile 0.1.0 (commit 1234abcd, modified)' of a `record()` (default: now's)."""
    provenance = provenance or record()
    text = f"udamobile {provenance['udamobile_version']}"
    if provenance.get("commit"):
        modified = ", modified" if provenance.get("modified") else ""
        text += f" (commit {provenance['commit'][:8]}{modified})"
    return text
