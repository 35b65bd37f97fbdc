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
from pathlib import Path

import pandas as pd

from mix2.errors import input_error
from mix2.experiment_plan import stored_plan
from mix2.metrics import group_of_class
from mix2.reporting.tables import per_class_table, summary_table
from mix2.run_folder import is_finished


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


def unfinished_runs(out_dir: str | Path) -> list[str]:
    """The experiment's runs (relative paths) that have not finished yet."""
    return [run.path for run in stored_plan(out_dir).runs() if not is_finished(Path(out_dir) / run.path)]


def experiment_tables(out_dir: str | Path, results: dict[str, pd.DataFrame] | None = None) -> dict[str, tuple[str, pd.DataFrame]]:
    """The paper's tables of the finished runs, by name: ``(title, table)``.

    - ``table1``: frequent / common / rare / all macro F1 and mAP (%), mean ± std over seeds, one
      row per preset, on the first variant, at the run's threshold (0.5, the paper's);
      ``table1_tuned`` at the per-class thresholds tuned on validation;
    - ``table2`` (with several variants): the same on the other variants, side by side;
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
    per_class = results["per_class"]
    tables["per_class"] = (
        f"Per-class F1 (%){label} at threshold {threshold:g}, mean ± std over seeds {seeds}",
        per_class_table(per_class[per_class["variant"] == variants[0]], experiment.presets),
    )
    return tables
