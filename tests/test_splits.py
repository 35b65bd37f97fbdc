import numpy as np
import pandas as pd

from mix2.data.clips import ClipTable
from mix2.data.splits import assign_splits, split_groups


def table_of(groups, split=None):
    n = len(groups)
    clips = pd.DataFrame({"file": groups, "start_s": 0.0, "end_s": 3.0, "group": groups, "split": split or [""] * n})
    return ClipTable(clips=clips, labels=np.zeros((n, 1)), classes=["a"], root=".")


def test_groups_never_straddle_and_fractions_hold():
    groups = np.repeat([f"rec{i}" for i in range(30)], 4)
    table = assign_splits(table_of(list(groups)), test_fraction=1 / 3, val_fraction=0.1, seed=3)
    sides = table.clips.groupby("group")["split"].nunique()
    assert (sides == 1).all()
    per_group = table.clips.groupby("group")["split"].first().value_counts()
    assert per_group["test"] == 10 and per_group["val"] == 2 and per_group["train"] == 18


def test_seeded_and_reproducible():
    groups = np.array([f"g{i}" for i in range(20)])
    assert np.array_equal(split_groups(groups, 0.5, 7), split_groups(groups, 0.5, 7))
    assert not np.array_equal(split_groups(groups, 0.5, 7), split_groups(groups, 0.5, 8))


def test_given_splits_are_kept():
    table = assign_splits(table_of(["a", "b", "c", "d"], ["train", "train", "test", "val"]), 1 / 3, 0.1, seed=0)
    assert table.clips["split"].tolist() == ["train", "train", "test", "val"]
