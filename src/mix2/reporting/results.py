"""An experiment's results read from its finished run folders, as tables: read only, nothing written or trained.

:func:`collect_results` gathers every finished run's numbers into long tables;
:func:`experiment_tables` makes the paper's tables from them. :func:`mix2.experiment.aggregate_experiment`
writes them into the experiment's ``results/``, and :mod:`mix2.reporting.html` shows them.

Example:
    >>> tables = experiment_tables("runs/experiments/nips4b")  # doctest: +SKIP
    >>> title, table = tables["table1"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from mix2.data.clips import ClipTable
from mix2.errors import input_error
from mix2.experiment_plan import stored_plan
from mix2.metrics import group_of_class, recording_bootstrap, weighted_macro_scores
from mix2.reporting.tables import SCORE_COLUMNS, per_class_table, summary_table
from mix2.run_folder import is_finished, read_test_scores


def collect_results(out_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The finished runs' numbers as long tables.

    Returns ``scores`` (one row per run and thresholding, ``global`` or ``tuned``: frequent,
    common, rare and all macro F1, mAP), ``polyphony`` (one row per run, thresholding and level) and
    ``per_class`` (one row per run and class).
    """
    out_dir = Path(out_dir)
    experiment = stored_plan(out_dir)
    scores, polyphony, per_class = [], [], []
    for run in experiment.runs():
        run_dir = out_dir / run.path
        if not is_finished(run_dir):
            continue
        metrics = json.loads((run_dir / "metrics.json").read_text())
        key = {"variant": run.variant or "", "preset": run.preset, "seed": run.seed}
        for thresholds, report in (("global", metrics), ("tuned", metrics["tuned"])):
            scores.append({**key, "thresholds": thresholds, **report["groups"], "all": report["macro_f1"], "map": metrics["map"]})
            for level, row in report["polyphony"].items():
                polyphony.append(
                    {**key, "thresholds": thresholds, "level": int(level), "clips": row["clips"], "macro_f1": row["macro_f1"]}
                )
        group_of = group_of_class(metrics["group_classes"])
        for name, row in metrics["per_class"].items():
            per_class.append(
                {**key, "class": name, "group": group_of.get(name, ""), "f1": row["f1"],
                 "f1_tuned": metrics["tuned"]["per_class"][name]["f1"],
                 "train_positives": row.get("train_positives", 0), "test_positives": row["test_positives"]}
            )  # fmt: skip
    return {"scores": pd.DataFrame(scores), "polyphony": pd.DataFrame(polyphony), "per_class": pd.DataFrame(per_class)}


PAIRED_RESAMPLES = 1000
"""Bootstrap resamples of the test recordings behind each interval of :func:`paired_intervals`."""

PAIRED_WORK_LIMIT = 5e9
"""Most runs x test clips x classes x weightings that :func:`experiment_tables` resamples on its own, per table:
about a minute on one CPU core. NIPS4B's 9 runs are 3.9e8 (5 s); AnuraSet's Table I (33 runs, some 25,000 test
clips of 42 classes, 2,600 weightings) would be 9e10, about 20 minutes a table; :func:`paired_differences`
computes it when called directly."""


class ResamplingTooLarge(Exception):
    """The paired intervals would take longer than ``max_work`` allows; the message says how much work it would be."""


RunNumbers = Callable[[dict, ClipTable, np.ndarray, np.ndarray], dict[str, np.ndarray]]
"""``(metrics.json, test clips, test scores, (resamples, clips) weights) -> {name: (resamples,)}``: a run's numbers
under each weighting of its test clips, e.g. from :func:`~mix2.metrics.weighted_macro_scores`."""


def paired_intervals(
    runs: dict[tuple[str, int], Path], reference: str, numbers: RunNumbers, seed: int = 0, max_work: float | None = None
) -> tuple[dict[str, list[int]], dict[str, dict[str, tuple[float, float]]]] | None:
    """95 % intervals of each preset's mean paired difference to ``reference``, resampling whole test recordings.

    ``runs`` maps ``(preset, seed)`` to finished run folders that share their test clips. Each
    preset is paired with ``reference`` over the seeds both have; for each name that ``numbers``
    gives, the mean over those seeds of the difference gets a 95 % BCa interval from
    :data:`PAIRED_RESAMPLES` resamples of the test recordings
    (:func:`~mix2.metrics.recording_bootstrap`), every run scored under the same resamples and
    the seeds held fixed: how far the difference could move with another draw of test recordings.

    Returns:
        ``(seeds, intervals)``: the paired seeds of each preset, and ``intervals[preset][name] =
        (low, high)``; ``None`` where no preset pairs with ``reference`` or the runs do not share
        their test clips.

    Raises:
        ResamplingTooLarge: where runs x test clips x classes x weightings (the resamples and
            BCa's jackknife, one per recording) exceeds ``max_work``.
    """
    pairs = {p: [s for (q, s) in runs if q == p and (reference, s) in runs] for p in dict.fromkeys(q for q, _ in runs)}
    pairs = {preset: seeds for preset, seeds in pairs.items() if seeds and preset != reference}
    if not pairs:
        return None
    used = sorted(
        {(reference, s) for seeds in pairs.values() for s in seeds} | {(p, s) for p, seeds in pairs.items() for s in seeds}
    )
    scored = {key: read_test_scores(runs[key]) for key in used}
    metrics = {key: json.loads((runs[key] / "metrics.json").read_text()) for key in used}
    clips = scored[used[0]][0].clips
    if not all(test.clips[["file", "start_s"]].equals(clips[["file", "start_s"]]) for test, _ in scored.values()):
        return None
    recordings = clips["group"].to_numpy()
    weightings = PAIRED_RESAMPLES + len(set(recordings))  # the resamples, and BCa's jackknife: one per recording
    work = len(used) * scored[used[0]][1].size * weightings
    if max_work is not None and work > max_work:
        raise ResamplingTooLarge(
            f"{len(used)} runs x {len(clips)} test clips x {len(scored[used[0]][0].classes)} classes x "
            f"{weightings} weightings ({work:.1e}, above {max_work:.0e})"
        )
    names = list(numbers(metrics[used[0]], *scored[used[0]], np.ones((1, len(clips)))))
    outputs = [(preset, name) for preset in pairs for name in names]

    def mean_differences(weights: np.ndarray) -> np.ndarray:
        by_run = {key: numbers(metrics[key], *scored[key], weights) for key in used}
        return np.stack(
            [np.mean([by_run[p, s][name] - by_run[reference, s][name] for s in pairs[p]], axis=0) for p, name in outputs]
        )

    low, high = recording_bootstrap(mean_differences, recordings, PAIRED_RESAMPLES, seed=seed)
    intervals: dict[str, dict[str, tuple[float, float]]] = {preset: {} for preset in pairs}
    for (preset, name), lower, upper in zip(outputs, low, high):
        intervals[preset][name] = (float(lower), float(upper))
    return pairs, intervals


def paired_differences(out_dir: str | Path, tuned: bool = False, max_work: float | None = None) -> pd.DataFrame | None:
    """Each preset's difference to the first preset (points), paired by seed, with a 95 % interval over test recordings.

    On the first variant: the mean over the paired seeds of the differences in Frequent / Common
    / Rare / All macro F1 and mAP (the runs' ``metrics.json``, as in Table I), at the run's
    threshold (or, ``tuned``, at each run's thresholds tuned on validation), with its interval
    from :func:`paired_intervals`. Columns ``"<name> mean"``, ``"<name> low"``, ``"<name> high"``
    and ``seeds``; ``None`` where no preset pairs with the first (or the runs lack
    ``test_predictions.csv``, or do not share their test clips); :class:`ResamplingTooLarge`
    beyond ``max_work`` (see :func:`paired_intervals`).
    """
    out_dir = Path(out_dir)
    experiment = stored_plan(out_dir)
    variant = (experiment.variants or [None])[0]
    reference = experiment.presets[0]
    runs = {(run.preset, run.seed): out_dir / run.path for run in experiment.runs() if run.variant == variant}
    runs = {
        key: run_dir for key, run_dir in runs.items() if is_finished(run_dir) and (run_dir / "test_predictions.csv").is_file()
    }

    def reported(metrics: dict) -> dict[str, float]:  # the run's own numbers, as Table I shows them
        report = metrics["tuned"] if tuned else metrics
        values = {**report["groups"], "all": report["macro_f1"], "map": metrics["map"]}
        return {key: np.nan if values[key] is None else values[key] for key in SCORE_COLUMNS}

    def resampled(metrics: dict, test: ClipTable, scores: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
        threshold = np.asarray(metrics["tuned"]["threshold"]) if tuned else metrics["threshold"]
        values = weighted_macro_scores(test.labels, scores, test.classes, metrics["group_classes"], weights, threshold)
        return {key: values["macro_f1" if key == "all" else key] for key in SCORE_COLUMNS}

    paired = paired_intervals(runs, reference, resampled, max_work=max_work)
    if paired is None:
        return None
    pairs, intervals = paired
    recorded = {key: reported(json.loads((run_dir / "metrics.json").read_text())) for key, run_dir in runs.items()}
    table: dict[str, dict[str, float | int]] = {}
    for preset, seeds in pairs.items():
        row: dict[str, float | int] = {}
        for key, label in SCORE_COLUMNS.items():
            mean = np.mean([recorded[preset, s][key] - recorded[reference, s][key] for s in seeds])
            low, high = intervals[preset][key]
            row.update({f"{label} mean": 100 * mean, f"{label} low": 100 * low, f"{label} high": 100 * high})
        table[preset] = {**row, "seeds": len(seeds)}
    return pd.DataFrame.from_dict(table, orient="index").rename_axis(f"preset - {reference}")


def unfinished_runs(out_dir: str | Path) -> list[str]:
    """The experiment's runs (relative paths) that have not finished yet."""
    return [run.path for run in stored_plan(out_dir).runs() if not is_finished(Path(out_dir) / run.path)]


def experiment_tables(out_dir: str | Path, results: dict[str, pd.DataFrame] | None = None) -> dict[str, tuple[str, pd.DataFrame]]:
    """The paper's tables of the finished runs, by name: ``(title, table)``.

    - ``table1``: frequent / common / rare / all macro F1 and mAP (%), mean ± std over seeds, one
      row per preset, on the first variant, at the run's threshold (0.5, the paper's);
      ``table1_tuned`` at the per-class thresholds tuned on validation;
    - ``table2`` (with several variants): the same on the other variants, side by side;
    - ``paired``, ``paired_tuned``: each preset's difference to the first, paired by seed, with
      its interval over test recordings (:func:`paired_differences`), where runs can be paired
      and the resampling is within :data:`PAIRED_WORK_LIMIT`;
    - ``per_class``: each class's F1 under every preset, classes by training count.

    ``results`` is :func:`collect_results`' output, read again where not given.
    """
    experiment = stored_plan(out_dir)
    results = results if results is not None else collect_results(out_dir)
    scores = results["scores"]
    if scores.empty:
        raise input_error(out_dir, "no finished run to aggregate yet")
    variants = experiment.variants or [""]
    seeds = ", ".join(map(str, experiment.seeds))
    main = scores[scores["variant"] == variants[0]]
    label = f" on {variants[0]}" if variants[0] else ""
    threshold = experiment.base.train.threshold
    tables: dict[str, tuple[str, pd.DataFrame]] = {}
    for thresholds, suffix, how in (
        ("global", "", f"at threshold {threshold:g}"),
        ("tuned", "_tuned", "at per-class thresholds tuned on validation"),
    ):
        tables[f"table1{suffix}"] = (
            f"Table I{label}: macro F1 and mAP (%) {how}, mean ± std over seeds {seeds}",
            summary_table(main[main["thresholds"] == thresholds], experiment.presets),
        )
    if len(variants) > 1:
        others = scores[(scores["variant"] != variants[0]) & (scores["thresholds"] == "global")]
        parts = [summary_table(others[others["variant"] == v], experiment.presets).add_prefix(f"{v} ") for v in variants[1:]]
        tables["table2"] = (
            f"Table II: macro F1 (%) at threshold {threshold:g} on the variants, mean ± std over seeds {seeds}",
            pd.concat(parts, axis=1),
        )
    for tuned, suffix, how in ((False, "", f"at threshold {threshold:g}"), (True, "_tuned", "at thresholds tuned on validation")):
        try:
            paired = paired_differences(out_dir, tuned, max_work=PAIRED_WORK_LIMIT)
        except ResamplingTooLarge as too_large:
            print(
                f"mix2: the paired differences' intervals are left out: {too_large}; "
                f"mix2.reporting.results.paired_differences({str(out_dir)!r}) computes them"
            )
            break
        if paired is not None:
            title = f"Difference to {experiment.presets[0]}{label} (points) {how}, mean over seeds paired by seed, "
            tables[f"paired{suffix}"] = (title + "with its 95 % interval resampling test recordings", paired)
    per_class = results["per_class"]
    tables["per_class"] = (
        f"Per-class F1 (%){label} at threshold {threshold:g}, mean ± std over seeds {seeds}",
        per_class_table(per_class[per_class["variant"] == variants[0]], experiment.presets),
    )
    return tables
