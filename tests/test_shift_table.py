"""Table 5: table 4's rows on every shift of the demo suite, and the held-out summary."""
import json
import os
import subprocess
import sys

import pytest

from data_pipelines import demo_shifts
from udamobile.errors import UsageError
from udamobile.experiments import shift_table, tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_dry_run_prints_one_command_per_shift_and_row_with_its_target(tmp_path, capsys):
    shift_table.run_suite(preset=None, workdir=str(tmp_path), overrides={"seed": 2},
                          dry_run=True)
    commands = [line for line in capsys.readouterr().out.splitlines()
                if line.startswith("udamobile-train ")]
    rows = tables.TABLES[5].rows
    assert len(commands) == len(demo_shifts.SUITE) * len(rows) and len(demo_shifts.SUITE) >= 8
    for index, command in enumerate(commands):
        shift, row = demo_shifts.SUITE[index // len(rows)], rows[index % len(rows)]
        assert f"--method={row} " in command and f"--target={shift}" in command
        assert f"--workdir={tmp_path / shift / row} " in command and "--seed=2" in command
        assert "--preset=demo " in command
    assert not list(tmp_path.iterdir())  # nothing ran


def test_shifts_pick_a_subset_in_the_suites_order_and_a_target_flag_is_refused(tmp_path):
    assert shift_table.select_shifts(["demo_fog", "demo_tone"]) == ("demo_tone", "demo_fog")
    with pytest.raises(UsageError, match="--shifts=demo_snow: not a shift of the suite"):
        shift_table.select_shifts(["demo_snow", "demo_fog"])
    with pytest.raises(UsageError, match="--target=demo_fog: table 5 sets the target"):
        shift_table.run_suite(preset=None, workdir=str(tmp_path), dry_run=True,
                              overrides={"target": "demo_fog"})


def test_the_runner_takes_shifts_for_table_5_only(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "udamobile.experiments", "--table=4", "--shifts=demo_fog",
         f"--workdir={tmp_path}", "--dry_run"], cwd=REPO, capture_output=True, text=True,
        timeout=300, env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--shifts applies to --table=5, not --table=4" in result.stderr


def _scores(**miou):
    return {row: {"miou": value} for row, value in miou.items()}


def test_the_summary_gives_each_shifts_gaps_and_the_median_over_the_held_out_ones():
    scores = {
        "demo_tone": _scores(source_only=0.2, colour_transfer=0.5, full=0.3, oracle=0.6),
        "demo_fog": _scores(source_only=0.1, colour_transfer=0.2, full=0.5, oracle=0.5),
        "demo_rain": _scores(source_only=0.3, colour_transfer=0.4, full=0.7, oracle=0.7),
        "demo_night": _scores(source_only=0.2, colour_transfer=0.3, full=0.4, oracle=0.6),
        "demo_crowd": _scores(source_only=0.4, full=0.5),  # no oracle yet: no gaps
    }
    text, record = shift_table.summary(scores, heldout=("demo_fog", "demo_rain", "demo_night",
                                                        "demo_crowd"))
    lines = text.splitlines()
    tone = next(line for line in lines if line.startswith("demo_tone "))
    assert "(held out)" not in tone and "50.0 (75%)" in tone and "30.0 (25%)" in tone
    fog = next(line for line in lines if line.startswith("demo_fog (held out)"))
    assert "20.0 (25%)" in fog and "50.0 (100%)" in fog
    crowd = next(line for line in lines if line.startswith("demo_crowd (held out)"))
    assert "40.0 " in crowd and "%" not in crowd
    medians = record["median_gap_closed_held_out"]
    # full: 100%, 100%, 50% -> 100%; colour transfer: 25%, 25%, 25% -> 25%.
    assert medians["full"] == pytest.approx(1.0)
    assert medians["colour_transfer"] == pytest.approx(0.25)
    assert medians["source_only"] == pytest.approx(0.0) and "adabn" not in medians
    median_line = next(line for line in lines if line.startswith("median, held out"))
    assert median_line.split()[3:] == ["0%", "25%", "100%", "100%"]
    assert record["shifts"]["demo_fog"]["held_out"] and not record["shifts"]["demo_tone"][
        "held_out"]
    assert record["shifts"]["demo_crowd"]["rows"]["full"] == {"miou": 0.5, "gap_closed": None}
    json.dumps(record)  # JSON-ready
