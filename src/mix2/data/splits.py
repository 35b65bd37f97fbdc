"""Seeded splits by recording, so that windows of one recording never land on both sides.

Example:
    >>> import numpy as np
    >>> groups = np.array(["a", "a", "b", "b", "c", "c"])
    >>> sides = split_groups(groups, fraction=1 / 3, seed=0)
    >>> all(len(set(sides[groups == g])) == 1 for g in "abc"), int(sides.sum())
    (True, 2)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mix2.config import VAL_SPLITS
from mix2.data.clips import ClipTable


def marked_count(groups: int, fraction: float) -> int:
    """How many of ``groups`` distinct groups a ``fraction`` marks: at least one, and one fewer than all."""
    return min(max(1, round(groups * fraction)), groups - 1)


def split_groups(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Mark about ``fraction`` of the distinct groups, drawn with ``seed``; ``(clips,) -> (clips,)`` bool.

    With two or more groups, at least one group lands on each side.
    """
    unique = np.unique(groups)
    if len(unique) < 2 or fraction <= 0:
        return np.zeros(len(groups), dtype=bool)
    chosen = np.random.default_rng(seed).permutation(unique)[: marked_count(len(unique), fraction)]
    return np.isin(groups, chosen)


def stratify_groups(groups: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Mark about ``fraction`` of the distinct groups so that each class's groups are shared out in proportion.

    Iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011) with whole groups as its
    examples: the class with the fewest groups left to place goes first, and each of its groups
    goes to the side that still wants most of that class, then the side that wants most groups,
    then a side drawn with ``seed``. A class in 10 groups thus lands in about ``10 * fraction``
    marked ones, where a random draw of groups often leaves it out. Groups without a label fill
    the sides up to their sizes. ``(clips,), (clips, classes) -> (clips,)`` bool; with two or more
    groups, at least one lands on each side.

    Example:
        >>> groups = np.array(["a", "b", "c", "d", "e", "f"])
        >>> labels = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1]])
        >>> marked = stratify_groups(groups, labels, fraction=1 / 3, seed=0)
        >>> labels[marked].sum(axis=0).tolist()
        [1, 1]
    """
    unique, index = np.unique(groups, return_inverse=True)
    if len(unique) < 2 or fraction <= 0:
        return np.zeros(len(groups), dtype=bool)
    present = np.zeros((len(unique), labels.shape[1]), dtype=bool)
    np.logical_or.at(present, index, np.asarray(labels) > 0)
    rng = np.random.default_rng(seed)
    count = marked_count(len(unique), fraction)
    share = np.array([1 - count / len(unique), count / len(unique)])  # (unmarked, marked)
    wanted_groups = len(unique) * share
    wanted = np.outer(present.sum(axis=0), share)  # (classes, 2): groups of each class each side still wants
    side = np.full(len(unique), -1)
    class_order = rng.permutation(labels.shape[1])  # ties between classes as rare as each other
    while (left := present[side < 0].sum(axis=0)).any():
        candidates = class_order[left[class_order] > 0]
        rarest = candidates[np.argmin(left[candidates])]
        for group in rng.permutation(np.flatnonzero(present[:, rarest] & (side < 0))):
            side[group] = np.lexsort((rng.random(2), wanted_groups, wanted[rarest]))[-1]  # the last key sorts first
            wanted[present[group], side[group]] -= 1
            wanted_groups[side[group]] -= 1
    for group in rng.permutation(np.flatnonzero(side < 0)):
        side[group] = np.lexsort((rng.random(2), wanted_groups))[-1]
        wanted_groups[side[group]] -= 1
    if side.min() == side.max():  # so few groups that one side took them all
        side[rng.integers(len(unique))] = 1 - side[0]
    return side[index] == 1


def fold_groups(groups: np.ndarray, labels: np.ndarray, folds: int, val_split: str, seed: int) -> np.ndarray:
    """Share the distinct groups out into ``folds`` folds of about equal size; ``(clips,) -> (clips,)`` fold, 1 to ``folds``.

    The folds are peeled off one by one: fold 1 takes ``1 / folds`` of the groups, fold 2 takes
    ``1 / (folds - 1)`` of those left, and so on, each drawn at random (``val_split="random"``,
    :func:`split_groups`) or stratified by class (``"stratified"``, :func:`stratify_groups`). Needs
    at least ``folds`` distinct groups, so that each fold holds one.

    Example:
        >>> groups = np.array(["a", "a", "b", "c", "d", "e"])
        >>> fold_groups(groups, np.zeros((6, 1)), folds=3, val_split="random", seed=0).tolist()
        [1, 1, 2, 3, 2, 1]
    """
    fold = np.zeros(len(groups), dtype=int)
    for k in range(1, folds):
        left = np.flatnonzero(fold == 0)
        fraction = 1 / (folds - k + 1)
        if val_split == "stratified":
            marked = stratify_groups(groups[left], labels[left], fraction, seed + k)
        else:
            marked = split_groups(groups[left], fraction, seed + k)
        fold[left[marked]] = k
    fold[fold == 0] = folds
    return fold


def assign_splits(
    table: ClipTable,
    test_fraction: float,
    val_fraction: float,
    seed: int,
    val_split: str = "random",
    val_folds: int = 0,
    val_fold: int = 1,
) -> ClipTable:
    """Fill in the splits a source left open, then carve a validation set out of train.

    Clips with an empty ``split`` are split by group: ``test_fraction`` of the groups go to test
    (AnuraSet's 1/3), the rest to train. Unless the source already has a ``val`` split,
    ``val_fraction`` of the training groups become validation, the set on which the kept
    checkpoint is chosen and the per-class thresholds are tuned: drawn at random
    (``val_split="random"``) or stratified by class (``"stratified"``, :func:`stratify_groups`),
    so that validation hears the classes in proportion to training. The test set is drawn the
    same way either way, and is never used for choosing.

    For cross-validation, ``val_folds`` (2 or more) cuts every group outside test, a source's own
    validation included, into that many folds (:func:`fold_groups`, drawn as ``val_split`` says),
    and fold ``val_fold`` (1 to ``val_folds``) becomes validation instead of ``val_fraction``.
    Runs over folds 1 to ``val_folds`` thus validate on every training recording once, with the
    same test set.
    """
    if val_split not in VAL_SPLITS:
        raise ValueError(f"val_split must be one of: {', '.join(VAL_SPLITS)}, got {val_split!r}")
    if val_folds and not 1 <= val_fold <= val_folds:
        raise ValueError(f"val_fold must be from 1 to val_folds ({val_folds}), got {val_fold}")
    split = table.clips["split"].fillna("").astype(str).to_numpy(dtype=object)
    groups = table.clips["group"].astype(str).to_numpy()
    open_rows = split == ""
    if open_rows.any():
        to_test = split_groups(groups[open_rows], test_fraction, seed)
        split[open_rows] = np.where(to_test, "test", "train")
    if val_folds:
        train_rows = np.flatnonzero(split != "test")
        if len(np.unique(groups[train_rows])) < val_folds:
            raise ValueError(f"{val_folds} folds need as many recordings outside test, and there are fewer")
        fold = fold_groups(groups[train_rows], table.labels[train_rows], val_folds, val_split, seed + 1)
        split[train_rows] = np.where(fold == val_fold, "val", "train")
    elif not (split == "val").any():
        train_rows = split == "train"
        if val_split == "stratified":
            to_val = stratify_groups(groups[train_rows], table.labels[train_rows], val_fraction, seed + 1)
        else:
            to_val = split_groups(groups[train_rows], val_fraction, seed + 1)
        split[np.flatnonzero(train_rows)[to_val]] = "val"
    clips = table.clips.assign(split=split)
    return replace(table, clips=clips)
