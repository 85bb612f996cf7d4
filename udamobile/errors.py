"""Every error a user can cause, in one place.

`UserError` is the one type the programs catch (`data_pipelines.cli`): its
message names the flag, file or folder and what was expected, and it is
printed as one line, `<program>: <message>`, with exit status 2 for a
`UsageError` and 1 for the others. Every other exception is a bug.

    error               raised for
    UsageError          a flag value or argument the program cannot take
      ExportError       export options that cannot work together
    DatasetError        a dataset folder, file or split that cannot be read as its format
      BadFilesError     more unreadable files than allowed, met while a pipeline ran
    StateFileError      a state file of ours (method.json, round.json, ...) damaged
    WorkdirError        a work directory or checkpoint that cannot be used as asked
      CheckpointRemoved a checkpoint whose files vanished while it was read
    StartError          a stage whose networks have nothing to start from
    PretrainedError     a pretrained-weights file that cannot initialize the segmenter
    StrategyError       a --strategy that cannot run as configured
    NonFiniteLossError  a NaN or infinite loss or gradient (with --on_nonfinite=stop)
    Interrupted         SIGINT or SIGTERM, after a checkpoint was saved
    ModelError          a model that cannot be opened or used as asked
    EvaluationError     a model that cannot be scored with the protocol asked
    ExperimentError     a table row that failed, or a table folder of other commands
"""


class UserError(ValueError):
    """Base of every error a user can cause: bad flags, files, folders or data."""


class UsageError(UserError):
    """A flag value or argument the program cannot take (exit status 2)."""


class ExportError(UsageError):
    """Export options that cannot work; the message names the option."""


class DatasetError(UserError):
    """Bad dataset input; the message names the path or argument and what was expected."""


class BadFilesError(DatasetError):
    """More files than allowed could not be read while a pipeline ran (`bad_files.BadFiles`)."""


class StateFileError(UserError):
    """A state file the package wrote that cannot be read back as it should."""


class WorkdirError(UserError):
    """A work directory (or checkpoint) that cannot be used as asked."""


class CheckpointRemoved(WorkdirError):
    """A checkpoint whose files vanished while it was read: rotated away, not damaged."""


class StartError(UserError):
    """A stage whose networks have nothing to start from."""


class PretrainedError(UserError):
    """A pretrained-weights file or folder that cannot initialize the segmenter."""


class StrategyError(UserError):
    """A --strategy that cannot run as configured."""


class NonFiniteLossError(UserError):
    """A loss or gradient became NaN or infinite (with on_nonfinite=stop)."""


class Interrupted(UserError):
    """SIGINT or SIGTERM arrived; a checkpoint was saved first."""


class ModelError(UserError):
    """A model that cannot be opened or used as asked; says why."""


class EvaluationError(UserError):
    """A model that cannot be scored with the protocol asked; says why."""


class ExperimentError(UserError):
    """A row that failed, or a table folder that holds other commands' rows."""
