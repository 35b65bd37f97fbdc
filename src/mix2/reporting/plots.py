"""The run folder's PNG plots, drawn with matplotlib from ``metrics.json`` and the training log.

Example:
    >>> write_run_plots(metrics, "runs/chorus-.../logs/metrics.csv", "runs/chorus-.../plots")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.fonttype"] = "none"  # SVG text stays text: searchable and editable for publication
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from mix2.metrics import GROUPS


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_groups(metrics: dict, path: Path) -> Path:
    """Bars of macro F1 over frequent, common, rare and all classes, at 0.5 and at tuned thresholds.

    Each group counts the classes it averages, those with a test positive; "all" is macro F1
    over every class (the paper's), which counts a class never heard in the test split as 0.
    """
    names = [*GROUPS, "all"]
    left_out = metrics.get("groups_left_out", {})
    counts = [len(metrics["group_classes"].get(g, [])) - len(left_out.get(g, [])) for g in GROUPS]
    counts.append(len(metrics["per_class"]))
    reports = {f"threshold {metrics['threshold']}": metrics}
    if "tuned" in metrics:
        reports["tuned per class on validation"] = metrics["tuned"]
    figure, axes = plt.subplots(figsize=(6, 3.8))
    width = 0.8 / len(reports)
    for k, (label, report) in enumerate(reports.items()):
        values = [report["groups"].get(g) or 0.0 for g in GROUPS] + [report["macro_f1"]]
        bars = axes.bar([i + k * width for i in range(len(names))], values, width, label=label)
        axes.bar_label(bars, fmt="%.2f", fontsize=7)
    axes.set_xticks(
        [i + width * (len(reports) - 1) / 2 for i in range(len(names))],
        [f"{n}\n({c} class{'' if c == 1 else 'es'})" for n, c in zip(names, counts)],
    )
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("test macro F1")
    axes.legend(fontsize=8)
    axes.set_title("Macro F1 by class frequency")
    return _save(figure, path)


def plot_polyphony(metrics: dict, path: Path) -> Path:
    """Macro and per-clip F1 against the number of species in a clip."""
    levels = sorted(metrics["polyphony"], key=int)
    rows = [metrics["polyphony"][k] for k in levels]
    figure, axes = plt.subplots(figsize=(5, 3.5))
    macro = [(int(k), r["macro_f1"]) for k, r in zip(levels, rows) if r["macro_f1"] is not None]
    if macro:
        axes.plot(*zip(*macro), "o-", label="macro F1 (classes present)")
    axes.plot([int(k) for k in levels], [r["samples_f1"] for r in rows], "s--", label="F1 per clip")
    for k, r in zip(levels, rows):
        axes.annotate(
            f"n={r['clips']}", (int(k), r["samples_f1"]), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7
        )
    axes.set_xlabel("species in the clip (polyphony)")
    axes.set_ylabel("F1")
    axes.set_ylim(0, 1.12)
    axes.set_xticks([int(k) for k in levels])
    axes.legend(fontsize=8)
    axes.set_title("F1 by polyphony")
    return _save(figure, path)


LABELLED_CLASSES = 12
"""The most class names written beside their points in the per-class plot (the rarest and worst first)."""


def plot_per_class(metrics: dict, path: Path) -> Path:
    """Each class's F1 against its number of training clips (log scale), for the classes with a
    test positive; the others have no F1 to measure, and the title says how many were left out.

    The points of up to :data:`LABELLED_CLASSES` classes carry their names: every class where
    there are that few, else the lowest F1s, the rarest first among equals.
    """
    per_class = metrics["per_class"]
    scored = {c for c, values in per_class.items() if values["test_positives"] > 0}
    figure, axes = plt.subplots(figsize=(7, 4.5))
    colours = {"frequent": "#3b7dd8", "common": "#5aa469", "rare": "#d8863b"}

    def training_clips(name: str) -> float:
        return max(per_class[name].get("train_positives", 0), 0.8)  # 0 drawn just under 1 on the log axis

    for group, members in metrics["group_classes"].items():
        shown = [c for c in members if c in scored]
        axes.scatter(
            [training_clips(c) for c in shown], [per_class[c]["f1"] for c in shown], label=group, color=colours.get(group), s=18
        )
    named = sorted(scored, key=lambda c: (per_class[c]["f1"], per_class[c].get("train_positives", 0), c))[:LABELLED_CLASSES]
    for name in named:
        axes.annotate(name, (training_clips(name), per_class[name]["f1"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
    axes.set_xscale("log")
    axes.set_xlabel("training clips with the class (log)")
    axes.set_ylabel("test F1")
    axes.set_ylim(-0.03, 1.03)
    axes.legend(fontsize=8)
    left_out = len(per_class) - len(scored)
    note = f"; {left_out} class(es) without a test clip left out" if left_out else ""
    axes.set_title(f"Per-class F1 against training count ({len(scored)} classes{note})", fontsize=9)
    return _save(figure, path)


def plot_training_curves(log_csv: Path, path: Path) -> Path:
    """Training loss (and its BCE and ADD terms, where there are two) and validation loss; validation mAP and
    macro F1 (or a pretraining run's top-1); per epoch."""
    by_epoch = pd.read_csv(log_csv).groupby("epoch").last()  # one row per epoch, counted from 1
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    losses = [
        ("train_loss", "train loss"),
        ("train_bce", "train BCE term"),
        ("train_add", "train ADD term"),
        ("val_loss", "validation loss"),
    ]
    scores = [
        ("val_map", "validation mAP"),
        ("val_macro_f1", "validation macro F1 at the threshold"),
        ("val_top1", "validation top-1: the own view nearest (pretraining)"),
    ]
    for axes, columns, y_label in [(left, losses, "loss"), (right, scores, "validation score")]:
        for column, label in columns:
            if column in by_epoch:
                series = by_epoch[column].dropna()
                axes.plot(series.index, series.values, "o-", label=label, markersize=3)
        axes.set_xlabel("epoch")
        axes.set_ylabel(y_label)
        axes.legend(fontsize=8)
    right.set_ylim(0, 1)
    figure.suptitle("Training curves")
    return _save(figure, path)


def write_run_plots(metrics: dict, log_csv: Path | None, folder: Path) -> list[Path]:
    """Write every plot of a run into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [
        plot_groups(metrics, folder / "groups.png"),
        plot_polyphony(metrics, folder / "polyphony.png"),
        plot_per_class(metrics, folder / "per_class_f1.png"),
    ]
    if log_csv is not None and log_csv.is_file():
        written.append(plot_training_curves(log_csv, folder / "training_curves.png"))
    return written


def plot_polyphony_by_method(polyphony: pd.DataFrame, presets: list[str], stem: Path, threshold: float = 0.5) -> Path:
    """The paper's Figure 3: macro F1 by polyphony level, one line per preset, error bars over seeds.

    ``polyphony`` has one row per run, thresholding and level with columns ``preset``,
    ``thresholds`` (``global``: ``threshold``, 0.5 as in the paper; ``tuned``: per class on validation),
    ``level``, ``clips`` and ``macro_f1`` (level 0, with no species, has no macro F1 and is left
    out). One panel per thresholding. Writes ``stem.png`` and ``stem.svg``; returns the PNG's path.
    """
    rows = polyphony.dropna(subset=["macro_f1"])
    panels = [t for t in ("global", "tuned") if (rows["thresholds"] == t).any()]
    figure, all_axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4), squeeze=False, sharey=True)
    presets = [p for p in presets if (rows["preset"] == p).any()]
    offsets = {p: (k - (len(presets) - 1) / 2) * 0.04 for k, p in enumerate(presets)}  # keep error bars apart
    for axes, thresholds in zip(all_axes[0], panels):
        panel = rows[rows["thresholds"] == thresholds]
        for preset in presets:
            by_level = panel[panel["preset"] == preset].groupby("level")["macro_f1"]
            mean, std = by_level.mean(), by_level.std(ddof=1).fillna(0.0)
            axes.errorbar(mean.index + offsets[preset], mean.values, yerr=std.values, marker="o", capsize=3, label=preset)
        clips = panel.groupby("level")["clips"].first()
        axes.set_xticks(list(clips.index), [f"{level}\n(n={n})" for level, n in clips.items()])
        axes.set_xlim(clips.index.min() - 0.5, clips.index.max() + 0.5)
        axes.set_xlabel("species in the clip (polyphony), with its test clips")
        axes.set_ylabel("macro F1")
        axes.set_ylim(0, 1)
        axes.legend(fontsize=8, ncol=2)
        axes.set_title(f"threshold {threshold:g}" if thresholds == "global" else "thresholds tuned per class on validation")
    figure.suptitle("Macro F1 by polyphony, mean ± std over seeds")
    figure.tight_layout()
    figure.savefig(stem.with_suffix(".svg"))
    return _save(figure, stem.with_suffix(".png"))


def plot_cooccurrence(labels: np.ndarray, classes: list[str], path: Path) -> Path:
    """Heat map of how many clips hold each pair of classes; the diagonal is each class's count.

    ``labels`` is the ``(clips, classes)`` multi-hot matrix; classes are ordered by count, most
    frequent first, and counts are shown on a log scale.
    """
    counts = cooccurrence(labels)
    order = np.argsort(-np.diag(counts), kind="stable")
    counts, classes = counts[np.ix_(order, order)], [classes[i] for i in order]
    size = min(16.0, 3 + 0.16 * len(classes))
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(counts, cmap="viridis", norm=matplotlib.colors.LogNorm(vmin=1, vmax=max(1, counts.max())))
    axes.set_xticks(range(len(classes)), classes, rotation=90, fontsize=max(4, 9 - len(classes) // 15))
    axes.set_yticks(range(len(classes)), classes, fontsize=max(4, 9 - len(classes) // 15))
    top = max(1, int(counts.max()))
    ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000) if t <= top]
    bar = figure.colorbar(image, ax=axes, shrink=0.6, ticks=ticks if top in ticks else [*ticks, top])
    bar.ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}"))
    bar.ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    bar.ax.tick_params(labelsize=9)
    bar.set_label("clips with both classes (log scale; blank: none)", fontsize=10)
    axes.set_title("Co-occurrence of classes in the clips")
    return _save(figure, path)


def cooccurrence(labels: np.ndarray) -> np.ndarray:
    """``(clips, classes)`` multi-hot -> ``(classes, classes)`` clip counts of each pair (diagonal: each class)."""
    labels = np.asarray(labels, dtype=np.int64)
    return labels.T @ labels
