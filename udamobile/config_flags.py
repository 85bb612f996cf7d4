"""Every config field as an absl flag, the flags back as config overrides, and
overrides as flags again (for the commands the table runner prints).

Each flag defaults to None, meaning "keep the preset's value", so a run's
config is the preset's with exactly the flags the user gave changed. Help
texts are the fields' own, prefixed by their section. A file or folder flag
is read relative to the directory the command runs in, and kept absolute.
"""
import os
import typing

from absl import flags

from udamobile import config as config_lib
from udamobile.errors import UsageError


def _value_type(field):
    """(type, optional) of a field: Optional[X] -> (X, True)."""
    kind = field.type
    if typing.get_origin(kind) is typing.Union:
        return next(a for a in typing.get_args(kind) if a is not type(None)), True
    return kind, False


def define_config_flags(flag_values=flags.FLAGS):
    """Defines one flag per config field on `flag_values` (absl's global flags by default)."""
    for name, (section, field) in config_lib.field_index().items():
        help_text = f"[{section}] {field.metadata['help']}"
        kind, optional = _value_type(field)
        if optional:
            help_text += " 0 or empty: none."
        help_text += (" Default: the preset's value for each stage (train.py ... --print_config "
                      "shows it).")
        if kind is bool:
            flags.DEFINE_boolean(name, None, help_text, flag_values=flag_values)
        elif kind is int:
            flags.DEFINE_integer(name, None, help_text, flag_values=flag_values)
        elif kind is float:
            flags.DEFINE_float(name, None, help_text, flag_values=flag_values)
        elif kind is str:
            flags.DEFINE_string(name, None, help_text, flag_values=flag_values)
        else:  # tuple[int, ...]
            flags.DEFINE_list(name, None, help_text + " Comma-separated integers.",
                              flag_values=flag_values)


def path_fields():
    """The names of the config fields holding a file or folder."""
    return [name for name, (_, field) in config_lib.field_index().items()
            if field.metadata["path"]]


def absolute_paths(values):
    """`values` ({field: value}) with each file or folder made absolute: a config is
    read back from other working directories (export, evaluation, later stages)."""
    paths = set(path_fields())
    return {name: os.path.abspath(value) if name in paths and value else value
            for name, value in values.items()}


def config_overrides(flag_values):
    """{field: value} of the config flags that were set, coerced to the fields' types,
    files and folders made absolute.

    Raises UsageError naming the flag when a list flag holds a non-integer.
    """
    overrides = {}
    for name, (_, field) in config_lib.field_index().items():
        value = flag_values[name].value
        if value is None:
            continue
        kind, optional = _value_type(field)
        if isinstance(value, list):
            try:
                value = tuple(int(v) for v in value)
            except ValueError:
                raise UsageError(f"--{name} takes comma-separated integers, got "
                                 f"{','.join(value)!r}") from None
        elif optional and value in (0, ""):
            value = None
        overrides[name] = value
    return absolute_paths(overrides)


def as_flags(overrides):
    """The command-line flags (["--name=value", ...]) that give `overrides` back."""
    index = config_lib.field_index()
    words = []
    for name, value in overrides.items():
        kind, _ = _value_type(index[name][1])
        if kind is bool:
            words.append(f"--{name}" if value else f"--no{name}")
        elif value is None:  # an optional field's "none"
            words.append(f"--{name}=" + ("0" if kind in (int, float) else ""))
        elif isinstance(value, tuple):
            words.append(f"--{name}=" + ",".join(str(v) for v in value))
        else:
            words.append(f"--{name}={value}")
    return words
