"""Which decision thresholds hold up on clips they were not tuned on, judged on validation alone.

mix2 reports test macro F1 at a fixed 0.5 and at per-class thresholds tuned on the validation
split (``tuned`` in ``metrics.json``; ``mix2 predict --thresholds checkpoint``). A threshold tuned
on the one or two validation recordings in which a rare species calls may not carry over. For
every finished run of the experiment folders given, this scores the validation clips with the
kept checkpoint and compares these ways of setting thresholds:

- ``0.5``: the paper's fixed threshold;
- ``per-class``: each class's F1-maximising validation score (:func:`mix2.metrics.tune_thresholds`,
  what mix2 reports as ``tuned``); a class without a validation positive keeps 0.5;
- ``per-class >=3`` and ``per-class >=5``: the same only for classes with at least that many
  validation positives, 0.5 for the others;
- ``one tuned``: a single threshold for every class, the one of 0.05, 0.10, ..., 0.95 with the
  best validation macro F1.

Each is judged on validation alone, by cross-validation over its recordings: tuned on a random
half of the validation recordings, scored (macro F1 over the classes with a positive there) on
the other half, and the other way round, over ``--halvings`` random halvings. That is the score
a choice may be made on. Each one's test macro F1 (over the classes with a test positive), with
thresholds set on the whole validation split, is printed beside it, to be read, not chosen on; last,
the single threshold ``one tuned`` picks on validation, beside the one it would pick on test.

    python benchmarks/thresholds.py   # the 100-epoch NIPS4B runs from the pretrained network
    python benchmarks/thresholds.py runs/benchmarks/quality runs/experiments/table1
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from mix2.errors import Mix2Error
from mix2.experiment_plan import PLAN_FILE, stored_plan
from mix2.metrics import tune_thresholds
from mix2.run import score_split
from mix2.run_folder import is_finished, read_test_scores

DEFAULT_EXPERIMENT = Path("runs/benchmarks/quality-small-data-v1-100-epochs-init-pretrain-40x2048")
GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


def macro_f1_active(labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray | float) -> float:
    """Macro F1 over the classes with a positive among ``labels``, ``(clips, classes)``, at ``thresholds``."""
    active = labels.sum(axis=0) > 0
    return float(
        f1_score(
            labels[:, active],
            scores[:, active] >= np.broadcast_to(thresholds, labels.shape[1])[active],
            average="macro",
            zero_division=0,
        )
    )


POLICIES = ("0.5", "per-class", "per-class >=3", "per-class >=5", "one tuned")
"""The ways of setting thresholds that :func:`policy_thresholds` computes, in its order."""


def where_enough(labels: np.ndarray, tuned: np.ndarray, minimum: int) -> np.ndarray:
    """The ``tuned`` thresholds of the classes with ``minimum`` or more positives among ``labels``, 0.5 for the others."""
    return np.where(labels.sum(axis=0) >= minimum, tuned, 0.5)


def one_tuned(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The one threshold of :data:`GRID` with the best macro F1 over the classes with a positive, for every class
    (the highest of tied ones, with fewer false alarms, as :func:`mix2.metrics.tune_thresholds` breaks ties)."""
    best = max(GRID[::-1], key=lambda threshold: macro_f1_active(labels, scores, threshold))
    return np.full(labels.shape[1], best)


def policy_thresholds(labels: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Each way of setting thresholds on validation ``(labels, scores)``: its name -> ``(classes,)`` thresholds.

    The per-class thresholds are tuned once and shared by the three ways that use them.
    """
    tuned = tune_thresholds(labels, scores)
    fixed = np.full(labels.shape[1], 0.5)
    ways = (fixed, tuned, where_enough(labels, tuned, 3), where_enough(labels, tuned, 5), one_tuned(labels, scores))
    return dict(zip(POLICIES, ways, strict=True))


def cross_validated(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, halvings: int, seed: int = 0) -> dict:
    """Each policy's mean held-out macro F1 over ``halvings`` random halvings of the recordings ``groups``, both ways."""
    rng = np.random.default_rng(seed)
    recordings = np.unique(groups)
    results: dict[str, list[float]] = defaultdict(list)
    for _ in range(halvings):
        half = np.isin(groups, rng.permutation(recordings)[: len(recordings) // 2])
        for tuned_on, scored_on in ((half, ~half), (~half, half)):
            for name, thresholds in policy_thresholds(labels[tuned_on], scores[tuned_on]).items():
                results[name].append(macro_f1_active(labels[scored_on], scores[scored_on], thresholds))
    return {name: float(np.mean(values)) for name, values in results.items()}


def measure_run(run_dir: Path, halvings: int) -> dict:
    """One finished run: each policy's cross-validated validation F1 and its test F1, and the single threshold that
    ``one tuned`` picks on validation beside the one it would pick on test."""
    val, val_scores = score_split(run_dir, "val")
    test, test_scores = read_test_scores(run_dir)
    groups = val.clips["group"].astype(str).to_numpy()
    return {
        "validation": cross_validated(val.labels, val_scores, groups, halvings),
        "test": {
            name: macro_f1_active(test.labels, test_scores, thresholds)
            for name, thresholds in policy_thresholds(val.labels, val_scores).items()
        },
        "one threshold": {"validation": one_tuned(val.labels, val_scores)[0], "test": one_tuned(test.labels, test_scores)[0]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", type=Path, nargs="*", default=[DEFAULT_EXPERIMENT], help="experiment folders")
    parser.add_argument("--halvings", type=int, default=100, help="random halvings of the validation recordings (100)")
    args = parser.parse_args()
    if args.halvings < 1:
        raise SystemExit(f"--halvings must be 1 or more, got {args.halvings}")
    runs = {}  # label -> run folder
    for folder in args.experiments:
        if not (folder / PLAN_FILE).is_file():
            raise SystemExit(f"{folder}: not an experiment folder (no {PLAN_FILE}); run benchmarks/quality.py first")
        prefix = f"{folder.name}: " if len(args.experiments) > 1 else ""
        for run in stored_plan(folder).runs():
            if is_finished(folder / run.path):
                runs[prefix + str(Path(run.path).relative_to("runs"))] = folder / run.path
    if not runs:
        raise SystemExit(f"{', '.join(map(str, args.experiments))}: no finished runs")
    names = list(POLICIES)
    print("Macro F1 (points) by way of setting thresholds: cross-validated on validation | on test (read, not chosen on)\n")
    print("| run | " + " | ".join(names) + " | test: " + " | ".join(names) + " | one tuned on validation | on test |")
    print("|---" * (2 * len(names) + 3) + "|")
    measured = []
    for label, run_dir in runs.items():
        result = measure_run(run_dir, args.halvings)
        measured.append(result)
        cells = [f"{100 * result['validation'][n]:.1f}" for n in names] + [f"{100 * result['test'][n]:.1f}" for n in names]
        cells += [f"{result['one threshold'][side]:.2f}" for side in ("validation", "test")]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    means = [np.mean([m[side][n] for m in measured]) for side in ("validation", "test") for n in names]
    print(f"| **mean of {len(measured)} runs** | " + " | ".join(f"{100 * v:.1f}" for v in means) + " | | |")


if __name__ == "__main__":
    try:
        main()
    except Mix2Error as error:
        raise SystemExit(str(error)) from None
