"""A one-line progress bar: count, rate, ETA and named scalars.

On a terminal the line refreshes in place (carriage return); when the stream
is not a TTY (a log file, CI) it prints a plain line every `log_interval`
seconds and a last one at the end, so logs stay readable.

    with Progress(len(dataset), "evaluate", unit="img") as progress:
        for example in dataset:
            ...
            progress.update(pixel_acc=0.93)
"""
import sys
import time


def format_duration(seconds):
    """'1h02m', '3m07s' or '12s'."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


def format_scalar(value):
    """Short, fixed-width-ish text of a number for the progress line."""
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if value != 0 and not 1e-3 <= abs(value) < 1e4:
        return f"{value:.3e}"
    return f"{value:.4f}"


class Progress:
    """Progress of `total` units of work (None when unknown).

    Args:
      total: units expected, or None.
      desc: a short label starting the line.
      unit: the unit's name in the rate ("img" -> "img/s").
      stream: where to write (default: sys.stdout at construction).
      refresh_interval: minimum seconds between redraws on a TTY.
      log_interval: seconds between plain lines when not a TTY.
      clock: a monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, total, desc, *, unit="it", stream=None, refresh_interval=0.2,
                 log_interval=30.0, clock=time.monotonic):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = sys.stdout if stream is None else stream
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = refresh_interval if self.is_tty else log_interval
        self.clock = clock
        self.count = 0
        self.scalars = {}
        self.first_done = None  # when the first unit ended
        self.start = clock()
        self.last_shown = self.start
        self.shown_count = None
        self.line_width = 0
        self.closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def rate(self):
        """Units per second since the start."""
        elapsed = self.clock() - self.start
        return self.count / elapsed if elapsed > 0 else 0.0

    def steady_rate(self):
        """Units per second after the first, or None before the second: the first
        holds one-off work (a step function traced, a model loaded), which would
        make the ETA of a training stage many times too long."""
        if self.count < 2:
            return None
        elapsed = self.clock() - self.first_done
        return (self.count - 1) / elapsed if elapsed > 0 else None

    def line(self):
        """The current progress text, without line ending."""
        steady = self.steady_rate()
        rate = self.rate() if steady is None else steady
        parts = [self.desc]
        if self.total:
            parts.append(f"{self.count}/{self.total} [{100 * self.count / self.total:3.0f}%]")
        else:
            parts.append(str(self.count))
        parts.append(f"{rate:.2f} {self.unit}/s")
        if self.total and steady and self.count < self.total:
            parts.append(f"ETA {format_duration((self.total - self.count) / steady)}")
        elif self.count and not (self.total and self.count < self.total):
            parts.append(f"in {format_duration(self.clock() - self.start)}")
        parts.extend(f"{name}={format_scalar(value)}" for name, value in self.scalars.items())
        return "  ".join(parts)

    def update(self, n=1, **scalars):
        """Counts `n` more units; `scalars` replace the shown values by name."""
        self.count += n
        self.scalars.update(scalars)
        now = self.clock()
        if self.first_done is None:
            self.first_done = now
        if now - self.last_shown >= self.interval or self.count == self.total:
            self.last_shown = now
            self._show()

    def close(self):
        """Shows the final line unless already shown, and ends it."""
        if self.closed:
            return
        self.closed = True
        if self.shown_count != self.count:
            self._show()
        if self.is_tty:
            self.stream.write("\n")
        self.stream.flush()

    def _show(self):
        text = self.line()
        if self.is_tty:
            # Pad with spaces so a shorter line fully covers the previous one.
            self.stream.write("\r" + text.ljust(self.line_width))
            self.line_width = len(text)
        else:
            self.stream.write(text + "\n")
        self.shown_count = self.count
        self.stream.flush()
