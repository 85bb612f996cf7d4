"""Ranking a table's rows without target labels (udamobile/experiments/ranking.py)."""
import json

import pytest

from udamobile.experiments import ranking, shift_table, tables


def _signals(entropy, confident=0.5):
    return {"mean_entropy": entropy, "confident_pixels": confident,
            "distribution_distance": 0.1, "images": 4, "dataset": "demo_tone/train"}


SIGNALS = {"source_only": _signals(0.30, 0.70), "colour_transfer": _signals(0.20, 0.90),
           "full": _signals(0.10, 0.80), "adabn": None, "oracle": _signals(0.01, 0.99)}
SCORES = {row: {"miou": miou} for row, miou in (
    ("source_only", 0.40), ("colour_transfer", 0.60), ("full", 0.59), ("adabn", 0.5),
    ("oracle", 0.9))}


def test_rows_rank_by_the_criterion_in_its_direction_without_the_oracle():
    by_entropy = ranking.rank_rows(SIGNALS, "mean_entropy")
    assert by_entropy["order"] == ["full", "colour_transfer", "source_only"]  # lowest first
    assert by_entropy["pick"] == "full" and by_entropy["unranked"] == ["adabn"]
    assert "true_order" not in by_entropy  # no labels given: no truth to compare with
    by_confidence = ranking.rank_rows(SIGNALS, "confident_pixels")
    assert by_confidence["order"] == ["colour_transfer", "full", "source_only"]  # highest first


@pytest.mark.parametrize("full_miou, near", [(0.59, True), (0.58, True), (0.5799, False)])
def test_a_pick_is_right_within_two_points_of_the_best_ranked_row(full_miou, near):
    scores = {**SCORES, "full": {"miou": full_miou}}
    record = ranking.rank_rows(SIGNALS, "mean_entropy", scores)
    # The oracle (90) and the unranked AdaBN are not rows the pick is measured against.
    assert record["best"] == "colour_transfer" and record["pick"] == "full"
    assert record["true_order"] == ["colour_transfer", "full", "source_only"]
    assert record["pick_below_best"] == pytest.approx(0.60 - full_miou)
    assert record["near_best"] is near
    text = ranking.ranking_text(record, tables.TITLES, "4 images of demo_tone/train")
    lines = text.splitlines()
    assert lines[0].startswith("label-free ranking by mean_entropy on 4 images of demo_tone/train")
    assert lines[1].split() == ["1.", "full", "0.1000", "mIoU", f"{100 * full_miou:.1f},",
                                "true", "place", "2nd"]
    assert "not ranked (no label-free signals logged): AdaBN" in text
    assert lines[-1] == ("label-free pick: full, " + f"{100 * (0.60 - full_miou):.1f} mIoU "
                         "points below the best row (colour transfer): "
                         + ("within" if near else "not within") + " 2.0")
    json.dumps(record)


def test_the_suite_summary_counts_picks_near_the_best_row_over_all_and_held_out_shifts():
    scores = {shift: SCORES for shift in ("demo_tone", "demo_fog")}
    picks = {"demo_tone": ranking.rank_rows(SIGNALS, "mean_entropy", SCORES),
             "demo_fog": ranking.rank_rows({**SIGNALS, "full": _signals(0.4)}, "mean_entropy",
                                           {**SCORES, "full": {"miou": 0.3}})}
    assert picks["demo_fog"]["pick"] == "colour_transfer"
    picks["demo_tone"]["near_best"] = False  # as if full were far below the best
    text, record = shift_table.summary(scores, heldout=("demo_fog",), picks=picks)
    # colour transfer closes (60 - 40) / (90 - 40) of the gap to the oracle.
    assert ("  demo_fog (held out): colour transfer, 0.0 mIoU points below the best row "
            "(colour transfer): within 2.0; gap closed 40%") in text
    assert text.splitlines()[-1] == (
        "  within 2.0 mIoU points of the best row on 1 of 2 shifts (1 of 1 held out); the "
        "picks' median gap closed, held out: 40%")
    assert record["label_free_picks"]["counts"] == {
        "all": {"near_best": 1, "shifts": 2}, "held_out": {"near_best": 1, "shifts": 1},
        "median_gap_closed_held_out": pytest.approx(0.4)}
    json.dumps(record)
