"""benchmarks/thresholds.py: its ways of setting thresholds and its cross-validation over recordings, on exact cases."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import thresholds  # benchmarks/thresholds.py


def separable_at_0_3(recordings=8, classes=2):
    """Each recording: one clip per class calling alone (its score 0.3, the others' 0.1) and one silent clip."""
    labels, scores, groups = [], [], []
    for recording in range(recordings):
        for calling in [*range(classes), None]:
            row = np.zeros(classes, dtype=int)
            if calling is not None:
                row[calling] = 1
            labels.append(row)
            scores.append(np.where(row == 1, 0.3, 0.1))
            groups.append(f"rec{recording}")
    return np.array(labels), np.array(scores), np.array(groups)


def test_each_way_of_setting_thresholds_on_a_case_with_known_answers():
    labels, scores, _ = separable_at_0_3()
    ways = thresholds.policy_thresholds(labels, scores)
    assert list(ways) == list(thresholds.POLICIES)
    assert ways["0.5"].tolist() == [0.5, 0.5]
    assert ways["per-class"].tolist() == [0.3, 0.3]
    assert ways["one tuned"].tolist() == [0.3, 0.3]  # the highest of the grid's tied best, 0.15 to 0.3
    few = labels.copy()
    few[2:, 0] = 0  # class 0 now has 1 positive, class 1 keeps 8
    assert thresholds.policy_thresholds(few, scores)["per-class >=3"].tolist() == [0.5, 0.3]
    tuned = ways["per-class"]
    assert thresholds.where_enough(labels, tuned, 8).tolist() == [0.3, 0.3]  # 8 positives each: exactly enough
    assert thresholds.where_enough(labels, tuned, 9).tolist() == [0.5, 0.5]
    assert thresholds.macro_f1_active(labels, scores, 0.5) == 0.0
    assert thresholds.macro_f1_active(labels, scores, np.array([0.3, 0.5])) == 0.5


def test_cross_validation_tunes_on_one_half_of_the_recordings_and_scores_the_other():
    labels, scores, groups = separable_at_0_3()
    result = thresholds.cross_validated(labels, scores, groups, halvings=5)
    # A half holds 4 recordings, so 4 positives per class: enough for >=3, not for >=5.
    assert result == pytest.approx({"0.5": 0.0, "per-class": 1.0, "per-class >=3": 1.0, "per-class >=5": 0.0, "one tuned": 1.0})
    # Scored on the half it was tuned on, a threshold between the halves' scores would pass; held out, it must not.
    shifted = scores.copy()
    shifted[np.isin(groups, ["rec0", "rec1", "rec2", "rec3"])[:, None] & (labels == 1)] = 0.6
    held_out = thresholds.cross_validated(labels, shifted, groups, halvings=50)
    assert 0.0 < held_out["per-class"] < 1.0
