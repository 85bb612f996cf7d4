"""SIGINT and SIGTERM, recorded rather than obeyed at once, so that a running stage
saves a checkpoint before it leaves (`trainer.StageRun.stop_if_interrupted`):
after the step under way, or between the image batches of a labelling pass."""
import signal


class SignalFlag:
    """Records SIGINT/SIGTERM so the loop can checkpoint before leaving."""

    def __init__(self):
        self.received = None

    def __enter__(self):
        self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc_info):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
