import numpy as np
import pandas as pd
import pytest

from mix2.data.clips import ClipTable
from mix2.data.splits import assign_splits, fold_groups, split_groups, stratify_groups


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


def disjoint_classes(classes=4, groups_per_class=10, windows=3):
    """``classes * groups_per_class`` groups of ``windows`` clips; each group hears one class, in all its clips."""
    groups = np.repeat([f"rec{i:03d}" for i in range(classes * groups_per_class)], windows)
    labels = np.zeros((len(groups), classes), dtype=np.uint8)
    labels[np.arange(len(groups)), np.arange(len(groups)) // (groups_per_class * windows)] = 1
    return groups, labels


def test_stratified_groups_share_every_class_out_in_proportion_where_random_groups_do_not():
    groups, labels = disjoint_classes()
    random_missed = 0
    for seed in range(20):
        marked = stratify_groups(groups, labels, fraction=0.1, seed=seed)
        assert all(len(set(marked[groups == g])) == 1 for g in np.unique(groups))
        assert len(np.unique(groups[marked])) == 4  # 10 % of 40 groups
        assert labels[marked].reshape(-1, 3, 4).max(axis=1).sum(axis=0).tolist() == [1, 1, 1, 1]  # one group per class
        random_missed += (labels[split_groups(groups, 0.1, seed)].sum(axis=0) == 0).any()
    assert random_missed >= 10  # a random draw of 4 groups misses a class more often than not


def test_stratified_groups_are_seeded_and_split_unlabelled_groups_by_count():
    groups, labels = disjoint_classes(classes=3, groups_per_class=20, windows=1)
    assert np.array_equal(stratify_groups(groups, labels, 0.25, 3), stratify_groups(groups, labels, 0.25, 3))
    assert not np.array_equal(stratify_groups(groups, labels, 0.25, 3), stratify_groups(groups, labels, 0.25, 4))
    unlabelled = stratify_groups(groups, np.zeros_like(labels), 0.25, 0)
    assert unlabelled.sum() == 15
    assert stratify_groups(np.array(["a", "b"]), np.array([[1], [1]]), 0.1, 0).sum() == 1  # each side gets a group


def test_a_stratified_validation_split_leaves_the_test_split_as_it_was():
    groups, labels = disjoint_classes(classes=4, groups_per_class=15)
    n = len(groups)
    clips = pd.DataFrame({"file": groups, "start_s": 0.0, "end_s": 3.0, "group": groups, "split": [""] * n})
    table = ClipTable(clips=clips, labels=labels, classes=list("abcd"), root=".")
    drawn = assign_splits(table, 1 / 3, 0.1, seed=5).clips["split"]
    stratified = assign_splits(table, 1 / 3, 0.1, seed=5, val_split="stratified").clips["split"]
    assert ((drawn == "test") == (stratified == "test")).all()
    assert (labels[(stratified == "val").to_numpy()].sum(axis=0) > 0).all()
    with pytest.raises(ValueError, match="val_split must be one of: random, stratified, got 'even'"):
        assign_splits(table, 1 / 3, 0.1, seed=5, val_split="even")


@pytest.mark.parametrize("val_split", ["random", "stratified"])
def test_folds_validate_on_every_recording_outside_test_once_and_keep_the_test_split(val_split):
    groups, labels = disjoint_classes(classes=4, groups_per_class=15)
    clips = pd.DataFrame({"file": groups, "start_s": 0.0, "end_s": 3.0, "group": groups, "split": [""] * len(groups)})
    table = ClipTable(clips=clips, labels=labels, classes=list("abcd"), root=".")
    plain = assign_splits(table, 1 / 3, 0.1, seed=5).clips["split"].to_numpy()
    folds = [
        assign_splits(table, 1 / 3, 0.1, 5, val_split, val_folds=4, val_fold=k).clips["split"].to_numpy() for k in (1, 2, 3, 4)
    ]
    for split in folds:
        assert ((split == "test") == (plain == "test")).all()
        assert (split != "").all()
    validating = np.sum([split == "val" for split in folds], axis=0)
    assert (validating == (plain != "test")).all()  # each clip outside test validates in exactly one fold
    sizes = [len(np.unique(groups[split == "val"])) for split in folds]
    if val_split == "random":
        assert sizes == [10, 10, 10, 10]  # the 40 groups outside test, shared out evenly
    else:  # balanced by class first, by count second  # 10 groups of each class outside test: 2 or 3 in each fold, never 0 or 5
        for split in folds:
            heard = labels[split == "val"].reshape(-1, 3, 4).max(axis=1).sum(axis=0)
            assert heard.min() >= 2 and heard.max() <= 3, heard


def test_folds_are_seeded_and_refuse_impossible_requests():
    groups = np.array([f"g{i}" for i in range(9)])
    labels = np.zeros((9, 1))
    assert np.array_equal(fold_groups(groups, labels, 3, "random", 1), fold_groups(groups, labels, 3, "random", 1))
    assert not np.array_equal(fold_groups(groups, labels, 3, "random", 1), fold_groups(groups, labels, 3, "random", 2))
    assert np.bincount(fold_groups(groups, labels, 3, "random", 1)).tolist() == [0, 3, 3, 3]
    table = table_of(["a", "b", "c", "d"], ["train", "train", "train", "test"])
    with pytest.raises(ValueError, match="val_fold must be from 1 to val_folds \\(3\\), got 4"):
        assign_splits(table, 1 / 3, 0.1, seed=0, val_folds=3, val_fold=4)
    with pytest.raises(ValueError, match="4 folds need as many recordings outside test, and there are fewer"):
        assign_splits(table, 1 / 3, 0.1, seed=0, val_folds=4, val_fold=1)
    assert assign_splits(table, 1 / 3, 0.1, seed=0, val_folds=3, val_fold=2).clips["split"].value_counts().to_dict() == {
        "train": 2,
        "val": 1,
        "test": 1,
    }
