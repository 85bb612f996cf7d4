"""What the fault tests read from a program's run (not a test module)."""


def error_line(result, program):
    """The one `<program>: ...` line of a failed run (asserting it is the only one)."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{program}: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]
