"""Evaluation metrics, computed with scikit-learn so that every number matches it exactly.

- per-class F1 at a threshold (0.5), ``zero_division=0``;
- macro F1 over all classes, and over the classes with at least one positive clip;
- macro F1 over frequent, common and rare classes (each over its classes with a test positive);
- F1 by polyphony: clips grouped by their number of species;
- mAP: mean average precision over the classes with at least one positive clip;
- per-class thresholds tuned for F1 on a validation split;
- confidence intervals that resample whole recordings (:func:`recording_bootstrap`), with
  per-class F1 and average precision under many clip weightings at once (:func:`weighted_f1`,
  :func:`weighted_average_precision`, equal to scikit-learn's with ``sample_weight``).

Example:
    >>> import numpy as np
    >>> y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    >>> scores = np.array([[0.9, 0.2], [0.1, 0.4], [0.8, 0.7], [0.3, 0.1]])
    >>> report = evaluate_scores(y, scores, ["a", "b"], {"frequent": ["a"], "common": [], "rare": ["b"]})
    >>> round(report["macro_f1"], 4), report["per_class"]["b"]["f1"]
    (0.8333, 0.6666666666666666)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy.stats import DegenerateDataWarning, bootstrap
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve

GROUPS = ("frequent", "common", "rare")


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """F1 of each class, ``(clips, classes) -> (classes,)``; 0 where a class is never true nor predicted."""
    return f1_score(y_true, y_pred, average=None, zero_division=0)


def class_groups(
    classes: list[str],
    train_counts: np.ndarray,
    fixed: dict[str, list[str]] | None = None,
    frequent_fraction: float = 0.1,
    common_fraction: float = 0.2,
) -> dict[str, list[str]]:
    """Split classes into frequent, common and rare.

    With ``fixed`` lists (AnuraSet's), those lists give frequent and common and every other
    class is rare. Otherwise classes are ranked by training count (ties by name): the top
    ``frequent_fraction`` (at least one class) are frequent, the next ``common_fraction`` common,
    the rest rare, as in AnuraSet's proportions (about 10% / 20% / 70%).
    """
    if fixed is not None:
        frequent = [c for c in fixed.get("frequent", []) if c in classes]
        common = [c for c in fixed.get("common", []) if c in classes]
        rare = [c for c in classes if c not in set(frequent) | set(common)]
        return {"frequent": frequent, "common": common, "rare": rare}
    order = sorted(range(len(classes)), key=lambda i: (-int(train_counts[i]), classes[i]))
    n_frequent = max(1, round(len(classes) * frequent_fraction))
    n_common = round(len(classes) * common_fraction)
    ranked = [classes[i] for i in order]
    return {
        "frequent": ranked[:n_frequent],
        "common": ranked[n_frequent : n_frequent + n_common],
        "rare": ranked[n_frequent + n_common :],
    }


def group_of_class(group_classes: dict[str, list[str]]) -> dict[str, str]:
    """Class name -> its group, from the frequent / common / rare lists of :func:`class_groups`."""
    return {name: group for group, members in group_classes.items() for name in members}


def polyphony_f1(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict[str, float | int | None]]:
    """F1 with clips grouped by their number of species (0, 1, 2, ...).

    For each level: ``clips``; ``macro_f1`` over the classes present at that level (``None``
    at level 0, where no class is); and ``samples_f1``, F1 per clip averaged over clips, where a
    clip with no species and no prediction scores 1.
    """
    levels = y_true.sum(axis=1)
    result: dict[str, dict[str, float | int | None]] = {}
    for level in np.unique(levels):
        rows = levels == level
        active = y_true[rows].sum(axis=0) > 0
        macro = float(per_class_f1(y_true[rows][:, active], y_pred[rows][:, active]).mean()) if active.any() else None
        samples = float(f1_score(y_true[rows], y_pred[rows], average="samples", zero_division=1.0))
        result[str(int(level))] = {"clips": int(rows.sum()), "macro_f1": macro, "samples_f1": samples}
    return result


def mean_average_precision(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Mean of per-class average precision over classes with a positive; ``None`` if none has one."""
    active = np.flatnonzero(y_true.sum(axis=0) > 0)
    if active.size == 0:
        return None
    return float(np.mean([average_precision_score(y_true[:, i], scores[:, i]) for i in active]))


def tune_thresholds(y_true: np.ndarray, scores: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per-class thresholds that maximise F1 on held-out clips, ``(clips, classes) -> (classes,)``.

    Each class's threshold is the score at which ``scores >= threshold`` gives that class its
    best F1 (among ties, the highest such score, the one with the fewest false alarms). A class
    with no positive clip cannot be tuned and keeps ``default``.

    Example:
        >>> y = np.array([[1], [1], [0], [0]])
        >>> tune_thresholds(y, np.array([[0.3], [0.2], [0.25], [0.1]])).tolist()
        [0.2]
    """
    y_true, scores = np.asarray(y_true).astype(int), np.asarray(scores, dtype=np.float64)
    thresholds = np.full(y_true.shape[1], float(default))
    for i in np.flatnonzero(y_true.sum(axis=0) > 0):
        precision, recall, candidates = precision_recall_curve(y_true[:, i], scores[:, i])
        precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
        f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision), where=precision + recall > 0)
        best = np.flatnonzero(f1 == f1.max())[-1]  # candidates ascend: the last tie is the highest threshold
        thresholds[i] = candidates[best]
    return thresholds


def _group_f1(f1: np.ndarray, members: list[int], active: np.ndarray) -> float | None:
    """Macro F1 over a group's classes that have a test positive; ``None`` where none has."""
    scored = [i for i in members if active[i]]
    return float(f1[scored].mean()) if scored else None


def evaluate_scores(
    y_true: np.ndarray,
    scores: np.ndarray,
    classes: list[str],
    groups: dict[str, list[str]],
    threshold: float | np.ndarray = 0.5,
    train_counts: np.ndarray | None = None,
) -> dict:
    """All metrics of a run, as written to ``metrics.json``.

    Args:
        y_true: ``(clips, classes)`` 0/1 labels.
        scores: ``(clips, classes)`` probabilities.
        classes: class names.
        groups: frequent / common / rare class lists (see :func:`class_groups`). Each group's
            macro F1 is over its classes with a test positive (a class never heard in the test
            split has no F1 to measure); ``groups_left_out`` lists the others.
        threshold: a global threshold, or one per class ``(classes,)``.
        train_counts: training positives per class, stored beside each class's F1.
    """
    y_true = np.asarray(y_true).astype(int)
    y_pred = (np.asarray(scores) >= threshold).astype(int)
    f1 = per_class_f1(y_true, y_pred)
    positives = y_true.sum(axis=0)
    active = positives > 0
    index = {c: i for i, c in enumerate(classes)}
    per_class = {
        c: {
            "f1": float(f1[i]),
            "test_positives": int(positives[i]),
            **({"train_positives": int(train_counts[i])} if train_counts is not None else {}),
        }
        for i, c in enumerate(classes)
    }
    return {
        "macro_f1": float(f1.mean()),
        "macro_f1_active": float(f1[active].mean()) if active.any() else None,
        "groups": {name: _group_f1(f1, [index[c] for c in members], active) for name, members in groups.items()},
        "group_classes": groups,
        "groups_left_out": {name: [c for c in members if not active[index[c]]] for name, members in groups.items()},
        "polyphony": polyphony_f1(y_true, y_pred),
        "map": mean_average_precision(y_true, np.asarray(scores)),
        "threshold": threshold if np.isscalar(threshold) else np.asarray(threshold).tolist(),
        "clips": len(y_true),
        "per_class": per_class,
    }


BOOTSTRAP_BATCH = 250
"""Resamples (and jackknife leave-outs) handed to a statistic at once by :func:`recording_bootstrap`."""


def recording_bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    recordings: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """BCa confidence interval of a statistic of clips, resampling whole recordings (``scipy.stats.bootstrap``).

    Windows of one recording overlap and share its animals, so they are not independent draws:
    each resample draws as many recordings as there are, with replacement, and hands
    ``statistic`` a weight per clip, how often its recording was drawn. ``statistic`` maps
    ``(resamples, clips)`` weights to ``(resamples,)`` values, or ``(outputs, resamples)`` for
    several statistics under the same draws; weighted metrics of two runs scored on the same
    clips under the same weights give paired intervals. BCa (bias-corrected and accelerated)
    because a macro average over the classes heard in a resample is biased under resampling:
    a resample that misses a rare class's only recording averages over fewer classes.

    Returns:
        ``(low, high)``, each of ``statistic``'s output shape without the resample axis. A
        statistic equal under every resample (two runs that agree on every clip) gets that value
        at both ends; one that is NaN under some resample gets NaN.

    Example (the mean of one value per clip, two clips of recording ``a``, one of ``b``):
        >>> values = np.array([1.0, 1.0, 4.0])
        >>> def weighted_mean(weights):
        ...     return weights @ values / weights.sum(axis=1)
        >>> low, high = recording_bootstrap(weighted_mean, np.array(["a", "a", "b"]), n_resamples=200)
        >>> bool(1.0 <= low <= 2.0 <= high <= 4.0)
        True
    """
    names, recording_of_clip = np.unique(np.asarray(recordings), return_inverse=True)

    def of_draws(draws: np.ndarray, axis: int = -1) -> np.ndarray:
        draws = np.moveaxis(draws, axis, -1)
        flat = draws.reshape(-1, draws.shape[-1])
        counts = np.zeros((len(flat), len(names)))
        np.add.at(counts, (np.arange(len(flat))[:, None], flat), 1.0)
        values = np.asarray(statistic(counts[:, recording_of_clip]))
        return values.reshape(values.shape[:-1] + draws.shape[:-1])

    with warnings.catch_warnings():  # a constant statistic is answered below, not warned about
        warnings.simplefilter("ignore", DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        result = bootstrap(
            (np.arange(len(names)),),
            of_draws,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="BCa",
            rng=seed,
            vectorized=True,
            batch=BOOTSTRAP_BATCH,  # bounds the weights in memory: (batch, clips)
        )
    distribution = np.asarray(result.bootstrap_distribution)
    constant = (distribution == distribution[..., :1]).all(axis=-1)
    low = np.where(constant, distribution[..., 0], result.confidence_interval.low)
    high = np.where(constant, distribution[..., 0], result.confidence_interval.high)
    return low, high


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-class F1 under each row of clip weights, ``(clips, classes), (resamples, clips) -> (resamples, classes)``;
    row ``r`` equals ``f1_score(y_true, y_pred, average=None, sample_weight=weights[r], zero_division=0)``."""
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    true_positives = weights @ (y_true * y_pred)
    false_positives = weights @ ((1 - y_true) * y_pred)
    false_negatives = weights @ (y_true * (1 - y_pred))
    denominator = 2 * true_positives + false_positives + false_negatives
    return np.divide(2 * true_positives, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def weighted_average_precision(y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-class average precision under each row of clip weights,
    ``(clips, classes), (resamples, clips) -> (resamples, classes)``, NaN where a row weighs no positive.

    Row ``r``, class ``c`` equals ``average_precision_score(y_true[:, c], scores[:, c],
    sample_weight=weights[r])`` (to float rounding): the sum over score cuts, highest first and
    tied scores cut together, of the gain in recall times the precision at the cut.
    """
    y_true, scores = np.asarray(y_true, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    result = np.full((weights.shape[0], y_true.shape[1]), np.nan)
    for c in range(y_true.shape[1]):
        order = np.argsort(-scores[:, c], kind="stable")
        ranked = scores[order, c]
        cuts = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # the last clip of each run of tied scores
        positives = np.cumsum(weights[:, order] * y_true[order, c], axis=1)[:, cuts]
        negatives = np.cumsum(weights[:, order] * (1 - y_true[order, c]), axis=1)[:, cuts]
        total = positives[:, -1:]
        heard = total[:, 0] > 0
        precision = np.divide(positives, positives + negatives, out=np.zeros_like(positives), where=positives + negatives > 0)
        recall_gain = np.diff(positives, axis=1, prepend=0.0)[heard] / total[heard]
        result[heard, c] = np.maximum(0.0, (recall_gain * precision[heard]).sum(axis=1))
    return result


def weighted_macro_scores(
    y_true: np.ndarray,
    scores: np.ndarray,
    classes: list[str],
    groups: dict[str, list[str]],
    weights: np.ndarray,
    threshold: float | np.ndarray = 0.5,
) -> dict[str, np.ndarray]:
    """The macro numbers of :func:`evaluate_scores` under each row of clip weights, ``(resamples,)`` each.

    ``macro_f1`` (all classes), ``macro_f1_active`` (the classes with a weighted positive), one
    entry per group of ``groups`` (its classes with a weighted positive) and ``map``; NaN where a
    row weighs no positive of what is averaged. Under unit weights each equals
    :func:`evaluate_scores`' number of the same name (a group's under ``report["groups"]``).
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    f1 = weighted_f1(y_true, np.asarray(scores) >= threshold, weights)
    heard = weights @ y_true > 0

    def macro(values: np.ndarray, members: np.ndarray) -> np.ndarray:
        counted = members.sum(axis=1)
        return np.where(counted > 0, np.where(members, values, 0.0).sum(axis=1) / np.maximum(counted, 1), np.nan)

    return {
        "macro_f1": f1.mean(axis=1),
        "macro_f1_active": macro(f1, heard),
        **{name: macro(f1, heard & np.isin(classes, members)) for name, members in groups.items()},
        "map": macro(weighted_average_precision(y_true, scores, weights), heard),
    }
