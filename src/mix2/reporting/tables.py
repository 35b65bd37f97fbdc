"""Result tables: mean and spread over seeds, in percent, as CSV (numbers) and Markdown (text).

A summary table has a ``"<name> mean"`` and a ``"<name> std"`` column per quantity (the std is
the sample standard deviation over seeds, 0 for a single seed); :func:`format_mean_std` turns
each pair into one ``"60.8 ± 1.2"`` column for Markdown and HTML. A table of paired differences
has ``"<name> mean"``, ``"<name> low"`` and ``"<name> high"``, shown as ``"+2.1 (-0.2 to +4.4)"``.

Example:
    >>> rows = pd.DataFrame({"preset": ["a", "a"], "frequent": [0.5, 0.7], "common": [0.2, 0.4],
    ...                      "rare": [0.0, 0.1], "all": [0.1, 0.2], "map": [0.3, 0.5]})
    >>> format_mean_std(summary_table(rows, ["a"])).loc["a", "Frequent"]
    '60.0 ± 14.1'
"""

from __future__ import annotations

import pandas as pd

SCORE_COLUMNS = {"frequent": "Frequent", "common": "Common", "rare": "Rare", "all": "All", "map": "mAP"}


def _mean_std(values: pd.Series) -> tuple[float, float]:
    values = 100 * values.dropna().astype(float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def summary_table(scores: pd.DataFrame, presets: list[str]) -> pd.DataFrame:
    """Frequent / Common / Rare / All macro F1 and mAP (%) per preset, mean and std over its runs.

    ``scores`` has one row per run with columns ``preset`` and those of :data:`SCORE_COLUMNS`;
    rows follow ``presets`` (presets with no run are left out), and ``runs`` counts the runs.
    """
    table = {}
    for preset in presets:
        runs = scores[scores["preset"] == preset]
        if runs.empty:
            continue
        row: dict[str, float | int] = {}
        for key, label in SCORE_COLUMNS.items():
            row[f"{label} mean"], row[f"{label} std"] = _mean_std(runs[key])
        row["runs"] = len(runs)
        table[preset] = row
    return pd.DataFrame.from_dict(table, orient="index").rename_axis("preset")


def per_class_table(per_class: pd.DataFrame, presets: list[str]) -> pd.DataFrame:
    """Each class's F1 (%) under each preset, mean and std over seeds; classes by training count.

    ``per_class`` has one row per run and class with columns ``preset``, ``class``, ``group``,
    ``f1``, ``train_positives`` and ``test_positives``.
    """
    first = per_class.drop_duplicates("class").set_index("class")
    order = first.sort_values("train_positives", ascending=False, kind="stable").index
    table = pd.DataFrame(
        {"group": first["group"], "train clips": first["train_positives"], "test clips": first["test_positives"]}
    ).loc[order]
    for preset in presets:
        rows = per_class[per_class["preset"] == preset]
        if rows.empty:
            continue
        stats = rows.groupby("class")["f1"].apply(_mean_std)
        table[f"{preset} mean"] = [stats[c][0] for c in order]
        table[f"{preset} std"] = [stats[c][1] for c in order]
    return table.rename_axis("class")


def format_mean_std(table: pd.DataFrame) -> pd.DataFrame:
    """Join each ``"<name> mean"`` / ``"<name> std"`` pair into one ``"<name>"`` text column, ``"60.8 ± 1.2"``,
    and each ``"<name> mean"`` / ``"<name> low"`` / ``"<name> high"`` difference into ``"+2.1 (-0.2 to +4.4)"``."""
    formatted = {}
    for column in table.columns:
        if column.endswith((" std", " low", " high")):
            continue
        name = column[:-5]
        if column.endswith(" mean") and f"{name} std" in table:
            formatted[name] = [f"{m:.1f} ± {s:.1f}" for m, s in zip(table[column], table[f"{name} std"])]
        elif column.endswith(" mean") and f"{name} low" in table:
            formatted[name] = [
                f"{m:+.1f} ({lo:+.1f} to {hi:+.1f})"
                for m, lo, hi in zip(table[column], table[f"{name} low"], table[f"{name} high"])
            ]
        else:
            formatted[column] = list(table[column])
    return pd.DataFrame(formatted, index=table.index)


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown table with the index as its first column and mean ± std pairs joined."""
    text = format_mean_std(table)
    header = [str(text.index.name or ""), *map(str, text.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(i), *map(str, row)]) + " |" for i, row in zip(text.index, text.to_numpy())]
    return "\n".join(lines)
