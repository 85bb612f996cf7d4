"""How every program of the package starts and ends.

    from data_pipelines import cli
    cli.run("evaluate.py", main)          # main(argv), as for absl's app.run

- For a program that uses TensorFlow, its C++ start-up lines (oneDNN, CUDA,
  CPU features) are hidden unless absl's own --verbosity flag is 1 or more,
  so the first line a program prints is its own; TensorFlow starts before
  `main`, or where `main` calls `start_tensorflow`. A program that does not
  (the dataset check, the table runner) does not pay for the import.
- `--help` (`-h`, `--helpshort`) prints the program's docstring and the
  flags a user sets most, `--helpfull` every flag; `--version` prints the
  package's version and commit (`udamobile.provenance`); all exit with
  status 0, before anything else is imported.
- Every error a user can cause is one line, `<program>: <message>`, on
  stderr. A flag the program cannot take (absl's flag errors,
  `app.UsageError`, `UsageError`) exits with status 2, any other `UserError`
  with status 1, and so does a filesystem error (`OSError`: read-only, not a
  directory, no space left), shown as the path and the cause. Anything else
  is a bug and keeps its traceback.

It lives in the bottom package because the programs of every package use
it, `python -m data_pipelines.check` included.
"""
import contextlib
import os
import sys
import textwrap

from absl import app, flags

from udamobile import provenance
from udamobile.errors import UsageError, UserError

USAGE_STATUS = 2
ERROR_STATUS = 1


@contextlib.contextmanager
def _stderr_hidden():
    """Sends file descriptor 2 to /dev/null, which is where C++ libraries log to."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly():
    """Imports TensorFlow without its start-up lines; later logs only from warnings up.

    TF_CPP_MIN_LOG_LEVEL does not reach the lines logged while TensorFlow's
    libraries load (before absl's C++ logging starts), hence the hidden
    stderr during the import. A TF_CPP_MIN_LOG_LEVEL set by the user wins.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _stderr_hidden():
        import tensorflow
    hide_tensorflow_info_logs(os.path.dirname(tensorflow.__file__))


def start_tensorflow():
    """Imports TensorFlow, quietly unless absl's --verbosity is 1 or more. A program run
    with uses_tensorflow=False calls it after the checks that need no TensorFlow, so
    that a mistyped path fails in a second instead of after its start-up."""
    if flags.FLAGS.verbosity < 1:
        import_tensorflow_quietly()


def hide_tensorflow_info_logs(tensorflow_dir):
    """Drops the INFO lines TensorFlow's Python code logs through absl; its warnings stay.

    Those lines (SavedModel writing, the TFLite converter) would bury a
    program's own output. They share absl's logger with ours, hence a filter
    on where a record comes from rather than a verbosity.
    """
    import logging as std_logging

    from absl import logging

    logging.get_absl_handler().addFilter(
        lambda record: record.levelno >= std_logging.WARNING
        or not record.pathname.startswith(tensorflow_dir))


def program_name(default):
    """The name the user typed for a console entry point, else `default` ("train.py")."""
    typed = os.path.basename(sys.argv[0]) if sys.argv else ""
    return typed if typed.startswith("udamobile-") else default


def describe_os_error(error):
    """'<path>: <cause>' of a filesystem error (both paths of a failed rename)."""
    paths = [p for p in (error.filename, error.filename2) if p is not None]
    cause = error.strerror or str(error)
    return f"{' -> '.join(map(str, paths))}: {cause}" if paths else cause


def fail(program, message, status=ERROR_STATUS):
    """Prints `<program>: <message>` on stderr and exits with `status`."""
    print(f"{program}: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


SHORT_HELP = ("--help", "-h", "-?", "--helpshort")
FULL_HELP = "--helpfull"
VERSION = "--version"


def _flag_help(flag):
    default = "" if flag.default is None else f" (default: {flag.default_as_str})"
    return textwrap.fill(f"--{flag.name}: {flag.help}{default}", width=88,
                         initial_indent="  ", subsequent_indent="      ")


def help_text(program, main, common=(), *, full=False):
    """The help of `program`: the docstring of `main`'s module, then its own flags and
    the `common` ones, or with `full` every flag of the program."""
    module = sys.modules[main.__module__]
    doc = (module.__doc__ or "").strip()
    if full:
        return f"{doc}\n\nEvery flag of {program}:\n{flags.FLAGS.get_help()}"
    own = flags.FLAGS.get_flags_for_module(module.__name__)
    chosen = [*own, *(flags.FLAGS[name] for name in common)]
    return (f"{doc}\n\nFlags used most:\n" + "\n".join(_flag_help(f) for f in chosen)
            + f"\n\nEvery flag: {program} --helpfull")


def run(program, main, *, uses_tensorflow=True, common_flags=()):
    """Runs absl `main(argv)` as `program`, with the conventions of the module docstring.

    `common_flags`: flags defined elsewhere that its --help lists beside its own.
    """
    program = program_name(program)
    asked = set(sys.argv[1:])
    if VERSION in asked:
        print(provenance.describe())
        sys.exit(0)
    if asked & {*SHORT_HELP, FULL_HELP}:
        print(help_text(program, main, common_flags, full=FULL_HELP in asked))
        sys.exit(0)

    def parse_flags(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(program, e, USAGE_STATUS)

    def guarded_main(argv):
        if uses_tensorflow:
            start_tensorflow()
        try:
            return main(argv)
        except (app.UsageError, UsageError) as e:
            fail(program, e, USAGE_STATUS)
        except UserError as e:
            fail(program, e, ERROR_STATUS)
        except OSError as e:
            fail(program, describe_os_error(e), ERROR_STATUS)

    app.run(guarded_main, flags_parser=parse_flags)


def reject_arguments(argv):
    """Raises UsageError if `argv` holds more than the program's name (absl leaves them)."""
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
