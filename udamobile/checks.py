"""Checks of flag values: one owner for every program's flags.

The training config's fields carry theirs (`udamobile.config`); evaluate.py,
export and the table runner check their own flags with the same functions
through `check_flags`. Each check returns what the value must be, or None
when it is fine.
"""
import math

from udamobile.errors import UsageError


def finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive(value):
    return None if finite(value) and value > 0 else "must be > 0"


def non_negative(value):
    return None if finite(value) and value >= 0 else "must be >= 0"


def positive_int(value):
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return None if ok else "must be a positive integer"


def one_of(*choices):
    return lambda value: None if value in choices else f"must be one of {choices}"


def within(low, high, *, low_open=False, high_open=False):
    def check(value):
        ok = finite(value) and (low < value if low_open else low <= value) and (
            value < high if high_open else value <= high)
        return None if ok else (f"must be in {'(' if low_open else '['}{low}, {high}"
                                f"{')' if high_open else ']'}")
    return check


def optional(check):
    return lambda value: None if value is None else check(value)


def each_positive(value):
    if all(isinstance(v, int) and v > 0 for v in value):
        return None
    return "must be positive integers (or none)"


def strides(value):
    if len(value) >= 2 and all(s in (1, 2) for s in value):
        return None
    return "must be at least two strides, each 1 or 2"


def non_negative_int(value):
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return None if ok else "must be an integer >= 0"


def check_flags(checked, error=UsageError):
    """Raises `error` (a UsageError) naming the first flag of `checked` ({flag: (value,
    check)}) whose value breaks its check, as `--name=value must be ...`."""
    for name, (value, check) in checked.items():
        problem = check(value)
        if problem:
            raise error(f"--{name}={value!r} {problem}")


def picked(flag, names, choices, what):
    """The `names` a list flag picked among `choices`, in the choices' order; all of
    them when it picked none. Raises UsageError naming the flag and `what` it takes
    ("a row of table 3") for a name that is not one of them."""
    if not names:
        return tuple(choices)
    unknown = [name for name in names if name not in choices]
    if unknown:
        raise UsageError(f"--{flag}={','.join(unknown)}: not {what}; its choices are "
                         f"{', '.join(choices)}")
    return tuple(choice for choice in choices if choice in names)
