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

from mix2.data.clips import ClipTable


def split_groups(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Mark about ``fraction`` of the distinct groups, drawn with ``seed``; ``(clips,) -> (clips,)`` bool.

    With two or more groups, at least one group lands on each side.
    """
    unique = np.unique(groups)
    if len(unique) < 2 or fraction <= 0:
        return np.zeros(len(groups), dtype=bool)
    count = min(max(1, round(len(unique) * fraction)), len(unique) - 1)
    chosen = np.random.default_rng(seed).permutation(unique)[:count]
    return np.isin(groups, chosen)


def assign_splits(table: ClipTable, test_fraction: float, val_fraction: float, seed: int) -> ClipTable:
    """Fill in the splits a source left open, then carve a validation set out of train.

    Clips with an empty ``split`` are split by group: ``test_fraction`` of the groups go to test
    (AnuraSet's 1/3), the rest to train. Unless the source already has a ``val`` split,
    ``val_fraction`` of the training groups become validation, the set on which the kept
    checkpoint is chosen. The test set is never used for choosing.
    """
    split = table.clips["split"].fillna("").astype(str).to_numpy(dtype=object)
    groups = table.clips["group"].astype(str).to_numpy()
    open_rows = split == ""
    if open_rows.any():
        to_test = split_groups(groups[open_rows], test_fraction, seed)
        split[open_rows] = np.where(to_test, "test", "train")
    if not (split == "val").any():
        train_rows = split == "train"
        to_val = split_groups(groups[train_rows], val_fraction, seed + 1)
        split[np.flatnonzero(train_rows)[to_val]] = "val"
    clips = table.clips.assign(split=split)
    return replace(table, clips=clips)
