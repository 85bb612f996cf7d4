"""Files found bad while a pipeline runs: each logged once, counted, and limited.

The tf.data pipelines decode files in Python on tf.data's threads, where an
exception would end the program with a TensorFlow trace, or abort or hang it
when the iterator dies at interpreter shutdown. So a file whose reading
raises DatasetError there (truncated, corrupt, a label of another size) is
recorded in a `BadFiles` registry and skipped instead. The program reading
the pipeline calls `check()` on its own thread; it raises BadFilesError, a
UserError (one line through `data_pipelines.cli`), once more than `limit`
files were skipped. Past the limit the pipelines also end their streams, so
a dataset whose every file is bad cannot keep a reader waiting forever.
"""
import threading

from absl import logging

from udamobile.errors import BadFilesError, DatasetError


class BadFiles:
    """A thread-safe registry of the bad files met, in the order met.

    Args:
      limit: how many bad files are skipped; one more stops the reader (0:
        the first bad file stops it).
    """

    def __init__(self, limit=0):
        if not isinstance(limit, int) or limit < 0:
            raise DatasetError(f"the bad-file limit must be an int >= 0, got {limit!r}")
        self.limit = limit
        self._lock = threading.Lock()
        self._messages = {}  # key -> message; dicts keep the order met

    def record(self, key, message):
        """Notes the bad file `key` (any hashable, e.g. (dataset, split, index)) once."""
        with self._lock:
            if key in self._messages:
                return
            self._messages[key] = message
            count = len(self._messages)
        logging.warning("Bad file %d (up to --max_bad_files=%d are skipped): %s", count,
                        self.limit, message)

    def __len__(self):
        with self._lock:
            return len(self._messages)

    @property
    def over_limit(self):
        return len(self) > self.limit

    def messages(self, where=lambda key: True):
        """The messages of the files met whose key satisfies `where`, in the order met."""
        with self._lock:
            return [message for key, message in self._messages.items() if where(key)]

    def check(self):
        """Raises BadFilesError naming the last bad file once more than `limit` were met."""
        messages = self.messages()
        if len(messages) > self.limit:
            raise BadFilesError(f"{len(messages)} bad file(s), more than --max_bad_files="
                                f"{self.limit}; the last: {messages[-1]}")


def readable(dataset, indices, read, bad_files=None):
    """Yields (index, read(index)) for each of `indices` that can be read.

    Outside tf.data (statistics over a sample of files): a file whose reading
    raises DatasetError is recorded in `bad_files` and skipped, and
    BadFilesError is raised once they pass its limit; without a registry the
    error is raised as it is.
    """
    for index in indices:
        try:
            value = read(index)
        except DatasetError as error:
            if bad_files is None:
                raise
            bad_files.record((dataset.name, dataset.split, index), str(error))
            bad_files.check()
            continue
        yield index, value
