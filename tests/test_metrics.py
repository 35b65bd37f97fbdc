import numpy as np
import pytest
from scipy.stats import bootstrap
from sklearn.metrics import average_precision_score, f1_score

from mix2.metrics import (
    class_groups,
    evaluate_scores,
    polyphony_f1,
    recording_bootstrap,
    tune_thresholds,
    weighted_average_precision,
    weighted_f1,
    weighted_macro_scores,
)

Y = np.array([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]])
S = np.array(
    [
        [0.9, 0.2, 0.1, 0.4],
        [0.1, 0.4, 0.6, 0.1],
        [0.8, 0.7, 0.0, 0.2],
        [0.3, 0.1, 0.2, 0.9],
        [0.2, 0.1, 0.1, 0.8],
        [0.1, 0.1, 0.1, 0.1],
    ]
)
CLASSES = ["a", "b", "c", "d"]


def test_matches_sklearn():
    groups = {"frequent": ["a"], "common": ["b"], "rare": ["c", "d"]}
    report = evaluate_scores(Y, S, CLASSES, groups, threshold=0.5, train_counts=np.array([9, 5, 1, 2]))
    predicted = (S >= 0.5).astype(int)
    per_class = f1_score(Y, predicted, average=None, zero_division=0)
    assert report["macro_f1"] == pytest.approx(f1_score(Y, predicted, average="macro", zero_division=0))
    assert report["macro_f1_active"] == pytest.approx(per_class[[0, 1, 3]].mean())
    # c has no test positive, so no F1 to measure: the rare group averages d alone and names c
    assert report["groups"]["rare"] == pytest.approx(per_class[3]) and report["groups_left_out"]["rare"] == ["c"]
    assert report["groups"]["frequent"] == pytest.approx(per_class[0]) and report["groups_left_out"]["frequent"] == []
    assert evaluate_scores(Y, S, CLASSES, {"frequent": [], "common": [], "rare": ["c"]})["groups"]["rare"] is None
    assert report["per_class"]["c"] == {"f1": 0.0, "test_positives": 0, "train_positives": 1}
    expected_map = np.mean([average_precision_score(Y[:, i], S[:, i]) for i in (0, 1, 3)])
    assert report["map"] == pytest.approx(expected_map)


def test_hand_computed_values():
    report = evaluate_scores(Y, S, CLASSES, {"frequent": [], "common": [], "rare": CLASSES})
    # a: tp 2 fp 0 fn 1 -> 0.8; b: tp 1 fn 1 -> 2/3; c: fp 1 -> 0; d: tp 1 fp 1 fn 1 -> 0.5
    assert [report["per_class"][c]["f1"] for c in CLASSES] == pytest.approx([0.8, 2 / 3, 0.0, 0.5])
    assert report["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0.5) / 4)


def test_per_class_thresholds():
    report = evaluate_scores(Y, S, CLASSES, {"rare": CLASSES}, threshold=np.array([0.5, 0.3, 0.7, 0.85]))
    predicted = (S >= np.array([0.5, 0.3, 0.7, 0.85])).astype(int)
    assert report["macro_f1"] == pytest.approx(f1_score(Y, predicted, average="macro", zero_division=0))


def test_polyphony_levels():
    predicted = (S >= 0.5).astype(int)
    levels = polyphony_f1(Y, predicted)
    assert {k: v["clips"] for k, v in levels.items()} == {"0": 2, "1": 1, "2": 3}
    assert levels["0"]["macro_f1"] is None
    assert levels["0"]["samples_f1"] == pytest.approx(0.5)  # one empty clip predicted empty, one with a false alarm
    rows = Y.sum(axis=1) == 2
    active = Y[rows].sum(axis=0) > 0
    expected = f1_score(Y[rows][:, active], predicted[rows][:, active], average="macro", zero_division=0)
    assert levels["2"]["macro_f1"] == pytest.approx(expected)
    assert levels["2"]["samples_f1"] == pytest.approx(f1_score(Y[rows], predicted[rows], average="samples", zero_division=1))


def test_groups_by_training_rank():
    classes = [f"c{i}" for i in range(10)]
    counts = np.array([5, 100, 1, 50, 2, 3, 0, 7, 8, 9])
    groups = class_groups(classes, counts)
    assert groups == {"frequent": ["c1"], "common": ["c3", "c9"], "rare": ["c8", "c7", "c0", "c5", "c4", "c2", "c6"]}
    fixed = class_groups(classes, counts, fixed={"frequent": ["c2", "zz"], "common": ["c0"]})
    assert fixed["frequent"] == ["c2"] and fixed["common"] == ["c0"] and len(fixed["rare"]) == 8


def test_tuned_thresholds_maximise_validation_f1_over_every_cut():
    rng = np.random.default_rng(0)
    y = (rng.random((40, 5)) < 0.3).astype(int)
    y[:, 4] = 0  # a class with no positive clip keeps the default
    scores = np.clip(y * 0.3 + rng.random((40, 5)) * 0.7, 0, 1)
    tuned = tune_thresholds(y, scores, default=0.5)
    assert tuned[4] == 0.5
    for i in range(4):
        best = max(f1_score(y[:, i], scores[:, i] >= t, zero_division=0) for t in np.unique(scores[:, i]))
        assert f1_score(y[:, i], scores[:, i] >= tuned[i]) == pytest.approx(best)
        assert tuned[i] in scores[:, i]


def test_tuned_threshold_hand_example_and_highest_of_ties():
    y = np.array([[1, 1], [0, 1], [1, 0], [0, 0]])
    s = np.array([[0.9, 0.8], [0.6, 0.7], [0.4, 0.3], [0.1, 0.2]])
    # class 0: cut 0.9 -> F1 2/3, 0.6 -> 1/2, 0.4 -> 4/5, 0.1 -> 2/3; class 1: cut 0.7 separates perfectly
    assert tune_thresholds(y, s).tolist() == [0.4, 0.7]
    # cuts 0.9 and 0.3 both give F1 2/3: the higher one, with fewer false alarms, is kept
    tied = tune_thresholds(np.array([[1], [0], [0], [1]]), np.array([[0.9], [0.7], [0.5], [0.3]]))
    assert tied.tolist() == [0.9]


def test_recording_bootstrap_resamples_whole_recordings():
    recordings = np.array(["r1", "r1", "r1", "r2", "r3", "r3"])
    seen = []

    def record(weights):
        seen.append(weights)
        return weights.sum(axis=1)

    recording_bootstrap(record, recordings, n_resamples=500, seed=7)
    weights = np.vstack([w for w in seen if len(w) > 3])  # the resamples, in batches; not the jackknife or the data
    assert weights.shape == (500, 6)
    # the windows of one recording weigh alike, and each resample draws exactly 3 recordings
    assert (weights[:, 0] == weights[:, 2]).all() and (weights[:, 4] == weights[:, 5]).all()
    assert (weights[:, [0, 3, 4]].sum(axis=1) == 3).all()
    assert (weights == 0).any() and weights.max() == 3
    # BCa's jackknife leaves one recording out at a time; the statistic also sees all clips once
    assert any(w.shape == (3, 6) and (w[:, [0, 3, 4]].sum(axis=1) == 2).all() for w in seen)
    assert any(w.shape == (1, 6) and (w == 1).all() for w in seen)


def test_recording_bootstrap_equals_scipy_when_each_recording_is_one_clip():
    values = np.random.default_rng(3).normal(size=25)
    expected = bootstrap((values,), np.mean, n_resamples=400, method="BCa", rng=5).confidence_interval

    def weighted_mean_and_max(weights):
        heard = np.where(weights > 0, values, -np.inf)
        return np.stack([weights @ values / weights.sum(axis=1), heard.max(axis=1)])

    low, high = recording_bootstrap(weighted_mean_and_max, np.arange(25), n_resamples=400, seed=5)
    assert (low[0], high[0]) == pytest.approx((expected.low, expected.high), abs=1e-12)
    assert low.shape == (2,) and low[1] <= values.max() == high[1]  # the second statistic, under the same draws
    narrower = recording_bootstrap(weighted_mean_and_max, np.arange(25), n_resamples=400, seed=5, confidence=0.5)
    assert low[0] < narrower[0][0] < narrower[1][0] < high[0]


def test_recording_bootstrap_of_a_constant_is_that_constant_without_warnings(recwarn):
    recordings = np.array(["r1", "r1", "r2", "r3"])
    low, high = recording_bootstrap(lambda weights: np.stack([np.full(len(weights), 2.5), weights[:, 0]]), recordings, 100)
    assert low[0] == high[0] == 2.5 and 0 <= low[1] < high[1] <= 3
    assert not recwarn.list


def test_weighted_metrics_equal_sklearn_with_sample_weight():
    rng = np.random.default_rng(0)
    y = (rng.random((40, 5)) < 0.3).astype(int)
    y[:, 4] = 0
    y[7, 4] = 1  # a class heard once: resamples that leave its clip out have no average precision
    scores = np.round(rng.random((40, 5)), 1)  # many tied scores
    weights = rng.multinomial(10, np.full(10, 0.1), size=30)[:, rng.integers(0, 10, 40)].astype(float)
    precision = weighted_average_precision(y, scores, weights)
    f1 = weighted_f1(y, scores >= 0.5, weights)
    for r in range(30):
        expected_f1 = f1_score(y, scores >= 0.5, average=None, sample_weight=weights[r], zero_division=0)
        assert f1[r] == pytest.approx(expected_f1, abs=1e-12)
        for c in range(5):
            if weights[r] @ y[:, c] > 0:
                expected = average_precision_score(y[:, c], scores[:, c], sample_weight=weights[r])
                assert precision[r, c] == pytest.approx(expected, abs=1e-12)
            else:
                assert np.isnan(precision[r, c])
    assert np.isnan(precision[:, 4]).any() and not np.isnan(precision[:, 4]).all()


def test_weighted_average_precision_hand_values():
    y = np.array([[1], [0], [1]])
    scores = np.array([[0.9], [0.8], [0.7]])
    weights = np.array([[1.0, 1, 1], [1, 1, 0], [0, 1, 1], [2, 1, 1], [1, 1, 1]])
    # ranks 1, 2, 3: recall 1/2 at precision 1, then recall 1 at precision 2/3; the last row ties the
    # negative with the second positive (0.7), cut together: precision 2/3 at recall 1 as well
    ties = np.array([[0.9], [0.7], [0.7]])
    assert weighted_average_precision(y, scores, weights[:4])[:, 0] == pytest.approx([5 / 6, 1.0, 0.5, 2 / 3 * 1 + 1 / 3 * 3 / 4])
    assert weighted_average_precision(y, ties, weights[4:])[0, 0] == pytest.approx(1 / 2 + 1 / 2 * 2 / 3)
    # at 0.75 the negative is a false alarm: F1 = 2 tp / (2 tp + fp + fn) under each weighting
    assert weighted_f1(y, scores >= 0.75, weights).ravel() == pytest.approx([1 / 2, 2 / 3, 0.0, 2 / 3, 1 / 2])


def test_weighted_macro_scores_equal_evaluate_scores_on_the_clips_repeated_by_their_weights():
    rng = np.random.default_rng(4)
    y = (rng.random((30, 4)) < 0.3).astype(int)
    y[:, 2] = 0
    y[5, 2] = 1  # heard in one clip: some weightings leave it, and the rare group, out
    scores = np.round(rng.random((30, 4)), 2)
    groups = {"frequent": ["a"], "common": ["b"], "rare": ["c", "d"]}
    thresholds = np.array([0.5, 0.3, 0.6, 0.4])
    weights = rng.multinomial(30, np.full(30, 1 / 30), size=6).astype(float)
    weights[0], weights[1, 5] = 1.0, 0.0  # all clips once; then a weighting without the one clip of class c
    for threshold in (0.5, thresholds):
        resampled = weighted_macro_scores(y, scores, CLASSES, groups, weights, threshold)
        for r, row in enumerate(weights):
            repeated = np.repeat(np.arange(30), row.astype(int))
            expected = evaluate_scores(y[repeated], scores[repeated], CLASSES, groups, threshold)
            assert resampled["macro_f1"][r] == pytest.approx(expected["macro_f1"], abs=1e-12)
            assert resampled["macro_f1_active"][r] == pytest.approx(expected["macro_f1_active"], abs=1e-12)
            assert resampled["map"][r] == pytest.approx(expected["map"], abs=1e-12)
            for group in groups:
                assert resampled[group][r] == pytest.approx(expected["groups"][group], abs=1e-12)
