"""The TensorBoard summaries of a training stage, which never cost the run its work.

Summaries are optional output. A write that fails mid-run (a full disk:
"Could not flush events file") is one warning naming the log folder, and
the stage trains on without summaries: its checkpoints, evaluations and
results are unaffected. Each write is flushed at once, so that a failure
shows here, where it is caught, rather than when the writer is closed.
"""
import tensorflow as tf
from absl import logging

from udamobile import files

from udamobile.training import checkpointing


class Summaries:
    """Scalars and images of one stage in `logdir`; none on a worker other than the chief."""

    def __init__(self, logdir, *, chief=True):
        self.logdir = logdir
        self.writer = checkpointing.summary_writer(logdir) if chief else None

    @property
    def active(self):
        return self.writer is not None

    def scalars(self, step, values):
        """Writes {tag: number} at `step`."""
        self._write(lambda: [tf.summary.scalar(tag, value, step=step)
                             for tag, value in values.items()])

    def images(self, step, pictures):
        """Writes {tag: uint8 [1, H, W, 3] image} at `step`."""
        self._write(lambda: [tf.summary.image(tag, image, step=step)
                             for tag, image in pictures.items()])

    def _write(self, write):
        if not self.active:
            return
        try:
            with files.tensorflow_writes(self.logdir, "writing TensorBoard summaries"):
                with self.writer.as_default():
                    write()
                self.writer.flush()
        except OSError as error:
            logging.warning("%s: %s; the stage trains on without summaries, its checkpoints "
                            "and evaluations unaffected", error.filename, error.strerror)
            self.writer = None

    def close(self):
        self._write(lambda: None)  # the last flush, whose failure is a warning too
        if self.active:
            self.writer.close()
            self.writer = None
