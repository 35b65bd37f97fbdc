"""One self-contained HTML page for runs and experiments: tables, figures, data and settings.

The page has no external resources and no scripts: figures are PNGs embedded as ``data:`` URLs
and styles are inline, so it can be mailed, archived or opened offline. For each folder given
it shows:

- an experiment folder (``experiment.yaml``): Table I (at 0.5 and at tuned thresholds),
  Table II where there are variants, Figure 3 (F1 by polyphony), per-class F1 of every preset
  sorted by training count, the co-occurrence of classes, and each run's configuration;
- a run folder (``metrics.json``): its scores at 0.5 and at tuned thresholds (and the
  baseline's on the same clips, where ``baseline.json`` is there), its plots, its per-class
  results sorted by training count, the co-occurrence of classes, its configuration.

An experiment whose first run holds ``baseline.json`` shows the baseline's scores too.

The report only reads: it trains nothing, and writes nothing into the folders it shows (its
figures are drawn in a temporary folder), so it can be run on an experiment still training.

Example:
    >>> write_report(["runs/experiments/nips4b"], "report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mix2.errors import input_error
from mix2.experiment_plan import PLAN_FILE, stored_plan
from mix2.metrics import GROUPS, group_of_class
from mix2.reporting.plots import plot_cooccurrence, plot_polyphony_by_method
from mix2.reporting.results import collect_results, experiment_tables
from mix2.reporting.tables import SCORE_COLUMNS, format_mean_std
from mix2.run_folder import is_finished, read_run_clips

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 78em; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; } thead th { background: #f0f0f0; }
tbody tr:nth-child(even) { background: #fafafa; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: .5em 0; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
.note { color: #555; font-size: .9em; } nav a { margin-right: 1em; }
.scroll { max-height: 40em; overflow-y: auto; display: inline-block; }
"""


def write_report(folders: list[str | Path], out: str | Path) -> Path:
    """Write one HTML page covering each run or experiment folder in ``folders``; returns its path."""
    sections = [_section(Path(folder), k) for k, folder in enumerate(folders)]
    nav = "".join(f'<a href="#s{k}">{html.escape(str(folder))}</a>' for k, folder in enumerate(folders))
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>mix2 report</title><style>{STYLE}</style></head><body>"
        f"<h1>mix2 report</h1><nav>{nav}</nav>{''.join(sections)}</body></html>\n"
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def reportable(folders: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """``(kept, skipped)``: the folders that are experiments or finished runs, and the others
    (an unfinished or failed run, any other folder), each in the order given."""
    paths = [Path(folder) for folder in folders]
    kept = [path for path in paths if _is_reportable(path)]
    return kept, [path for path in paths if path not in kept]


def _is_reportable(folder: Path) -> bool:
    return (folder / PLAN_FILE).is_file() or is_finished(folder)


def _section(folder: Path, number: int) -> str:
    if not _is_reportable(folder):
        raise input_error(folder, "neither an experiment folder (experiment.yaml) nor a finished run folder (metrics.json)")
    body = _experiment_section(folder) if (folder / PLAN_FILE).is_file() else _run_section(folder)
    return f'<section id="s{number}"><h1>{html.escape(str(folder))}</h1>{body}</section>'


def _experiment_section(folder: Path) -> str:
    experiment = stored_plan(folder)
    results = collect_results(folder)
    tables = experiment_tables(folder, results)
    runs = experiment.runs()
    finished = [run for run in runs if is_finished(folder / run.path)]
    variants = f"; variants {', '.join(experiment.variants)}" if experiment.variants else ""
    summary = (
        f"{len(finished)} of {len(runs)} runs finished. Presets {', '.join(experiment.presets)}; seeds "
        f"{', '.join(map(str, experiment.seeds))}; data {experiment.base.data.source}{variants}."
    )
    parts = [f'<p class="note">{html.escape(summary)}</p>']
    for name in ("table1", "table1_tuned", "paired", "paired_tuned", "table2"):
        if name in tables:
            title, table = tables[name]
            parts.append(f"<h2>{html.escape(title)}</h2>{_table(table)}")
    polyphony = results["polyphony"]
    polyphony = polyphony[polyphony["variant"] == (experiment.variants or [""])[0]]
    figure = _drawn(
        lambda stem: plot_polyphony_by_method(polyphony, experiment.presets, stem, experiment.base.train.threshold),
        "macro F1 by polyphony",
    )
    parts.append(f"<h2>Figure 3: macro F1 by polyphony</h2>{figure}")
    title, per_class = tables["per_class"]
    parts.append(f'<h2>{html.escape(title)}, by training count</h2><div class="scroll">{_table(per_class)}</div>')
    first = folder / finished[0].path
    baseline = _baseline_rows(first)
    if baseline is not None:
        title = f"The baseline on the same split (mix2 baseline {first}): macro F1 and mAP (%)"
        parts.append(f"<h2>{html.escape(title)}</h2>{_table(baseline)}")
    parts.append(_cooccurrence(first))
    parts.append("<h2>Configuration of each run</h2>")
    for run in finished:
        config = (folder / run.path / "config.yaml").read_text()
        parts.append(f"<details><summary>{html.escape(run.path)}</summary><pre>{html.escape(config)}</pre></details>")
    return "".join(parts)


def _scores_rows(metrics: dict, label: str = "") -> pd.DataFrame:
    """A run's (or the baseline's) macro F1 and mAP (%) at the global threshold and at the tuned ones, one row each."""

    def row(report: dict) -> list[str]:  # mAP does not depend on the thresholds
        return [_percent(report["groups"].get(g)) for g in GROUPS] + [_percent(report["macro_f1"]), _percent(metrics["map"])]

    names = [f"{label}threshold {metrics['threshold']}", f"{label}tuned per class on validation"]
    return pd.DataFrame(
        [row(metrics), row(metrics["tuned"])], index=pd.Index(names, name="thresholds"), columns=list(SCORE_COLUMNS.values())
    )


def _baseline_rows(run_dir: Path) -> pd.DataFrame | None:
    """The baseline's rows (``mix2 baseline``), where the run folder holds ``baseline.json``."""
    path = run_dir / "baseline.json"
    if not path.is_file():
        return None
    return _scores_rows(json.loads(path.read_text()), "baseline (log-mel statistics + logistic regression), ")


def _run_section(folder: Path) -> str:
    metrics = json.loads((folder / "metrics.json").read_text())
    scores = pd.concat([_scores_rows(metrics), _baseline_rows(folder)])
    group_of = group_of_class(metrics["group_classes"])
    per_class = pd.DataFrame(
        {
            "group": [group_of.get(c, "") for c in metrics["per_class"]],
            "train clips": [row.get("train_positives", 0) for row in metrics["per_class"].values()],
            "test clips": [row["test_positives"] for row in metrics["per_class"].values()],
            "F1 at 0.5 (%)": [_percent(row["f1"]) for row in metrics["per_class"].values()],
            "tuned threshold": [f"{t:.3f}" for t in metrics["tuned"]["threshold"]],
            "F1 tuned (%)": [_percent(metrics["tuned"]["per_class"][c]["f1"]) for c in metrics["per_class"]],
        },
        index=pd.Index(list(metrics["per_class"]), name="class"),
    ).sort_values("train clips", ascending=False, kind="stable")
    plots = [
        _image(folder / "plots" / name, name.removesuffix(".png").replace("_", " "))
        for name in ("groups.png", "polyphony.png", "per_class_f1.png", "training_curves.png")
        if (folder / "plots" / name).is_file()
    ]
    kept = metrics.get("kept")
    chosen_by = f"best validation {kept['monitor']}" if kept and kept["monitor"] else "the last"
    why = f" (epoch {kept['epoch']} of {kept['epochs']}, {chosen_by})" if kept else ""
    return (
        f'<p class="note">Test split: {metrics["clips"]} clips, checkpoint {html.escape(str(metrics["checkpoint"]) + why)}.</p>'
        f"<h2>Macro F1 and mAP (%) on test</h2>{_table(scores)}"
        f"<h2>Figures</h2>{''.join(plots)}"
        f'<h2>Per-class results, by training count</h2><div class="scroll">{_table(per_class)}</div>'
        f"{_cooccurrence(folder)}"
        f"<h2>Configuration</h2><pre>{html.escape((folder / 'config.yaml').read_text())}</pre>"
    )


def _cooccurrence(run_dir: Path) -> str:
    table = read_run_clips(run_dir)
    figure = _drawn(
        lambda stem: plot_cooccurrence(table.labels, table.classes, stem.with_suffix(".png")), "co-occurrence of classes"
    )
    return f"<h2>Co-occurrence of classes in the data ({len(table)} clips, all splits)</h2>{figure}"


def _drawn(draw: Callable[[Path], Path], alt: str) -> str:
    """A figure embedded in the page: ``draw(stem)`` saves it (a PNG) into a folder of its own, deleted
    after, so the report writes nothing into the folders it reads."""
    with tempfile.TemporaryDirectory(prefix="mix2-report-") as scratch:
        return _image(draw(Path(scratch) / "figure"), alt)


def _table(frame: pd.DataFrame) -> str:
    return format_mean_std(frame).reset_index().to_html(index=False, border=0, na_rep="-", float_format=lambda v: f"{v:.1f}")


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


__all__ = ["write_report"]
