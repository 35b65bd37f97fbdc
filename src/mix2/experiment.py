"""Experiments: plan presets x seeds (x AnuraSet variants) on one dataset, train every run, aggregate.

The folder's layout and the plan are in :mod:`mix2.experiment_plan`. :func:`plan_experiment`
checks every run's settings and stores the plan; :func:`run_experiment` trains the unfinished
runs (a finished run is never retrained, an interrupted one is resumed from its last
checkpoint: see :func:`mix2.run.resume`); :func:`aggregate_experiment` writes the tables and
figures of the finished runs (:mod:`mix2.reporting.results`) into ``results/``.

Example:
    >>> from mix2 import default_config
    >>> plan = Experiment(default_config("chorus"), presets=["timeshift", "mix2"], seeds=[0, 1])
    >>> run_experiment("experiments/chorus", plan)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from mix2.errors import Mix2Error, input_error
from mix2.experiment_plan import PLAN_FILE, RESULTS, Experiment, PlannedRun, read_plan, stored_plan, write_plan
from mix2.reporting.plots import plot_polyphony_by_method
from mix2.reporting.results import collect_results, experiment_tables, unfinished_runs
from mix2.reporting.tables import to_markdown
from mix2.run import check_config, resume, train
from mix2.run_folder import is_finished


def plan_experiment(out_dir: str | Path, experiment: Experiment | None = None) -> Experiment:
    """Write (or read back) the plan of the experiment in ``out_dir``, and its ``commands.txt``.

    With ``experiment=None`` the folder's existing plan is returned. A plan whose runs (each
    run's folder and full configuration, in order) differ from those of the plan already in the
    folder is refused, so one folder never mixes two experiments. A plan that differs only where
    every preset overrides the base (its mixing method, say, when a default changes) plans the
    same runs: it is accepted, and replaces the stored one.
    """
    out_dir = Path(out_dir)
    plan_path = out_dir / PLAN_FILE
    stored = read_plan(out_dir)
    if experiment is None:
        return stored_plan(out_dir)
    if stored is not None and _planned_runs(stored) != _planned_runs(experiment):
        changed = [k for k, v in experiment.to_dict().items() if stored.to_dict()[k] != v]
        raise input_error(plan_path, f"this folder holds another experiment (its {', '.join(changed)} differ); use a new folder")
    for run in experiment.runs():  # every run's settings, before anything is written (the runs may train elsewhere)
        check_config(experiment.config(run), here=False)
    write_plan(out_dir, experiment)
    return experiment


def _planned_runs(experiment: Experiment) -> list[tuple[str, dict]]:
    """Each run's folder and full configuration, in run order: what makes two plans the same experiment."""
    return [(run.path, experiment.config(run).to_dict()) for run in experiment.runs()]


def run_experiment(
    out_dir: str | Path, experiment: Experiment | None = None, run_index: int | None = None, progress: bool = True
) -> dict[str, Path]:
    """Plan, train every unfinished run (or only ``run_index``), then aggregate what is finished.

    Finished runs are kept, never retrained, so an interrupted experiment resumes where it
    stopped. With ``run_index`` (one task of an array job) nothing is aggregated and ``{}`` is
    returned; otherwise the result files of :func:`aggregate_experiment`.
    """
    out_dir = Path(out_dir)
    experiment = plan_experiment(out_dir, experiment)
    if experiment.base.train.processes > 1:
        raise Mix2Error(
            f"{out_dir}: an experiment trains each run in one process; scale it out with its array job "
            "(one run per task, see commands.txt), or train a run on several devices with mix2 train"
        )
    runs = experiment.runs()
    if run_index is not None and not 0 <= run_index < len(runs):
        raise Mix2Error(f"{out_dir}: --run-index {run_index} is outside this experiment's runs 0..{len(runs) - 1}")
    chosen = [run_index] if run_index is not None else range(len(runs))
    for i in chosen:
        run, run_dir = runs[i], out_dir / runs[i].path
        if is_finished(run_dir):
            continue
        print(f"[{i + 1}/{len(runs)}] {run.path}", flush=True)
        started = time.perf_counter()
        if (run_dir / "clips.csv").is_file():  # interrupted after its clips were chosen: go on from its last epoch
            resume(run_dir, progress=progress)
        else:
            if run_dir.exists():  # interrupted while reading its data: start again from a clean folder
                shutil.rmtree(run_dir)
            train(experiment.config(run), run_dir=run_dir, progress=progress)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        print(
            f"[{i + 1}/{len(runs)}] {run.path}: macro F1 {metrics['macro_f1']:.3f} "
            f"(tuned {metrics['tuned']['macro_f1']:.3f}) in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    return {} if run_index is not None else aggregate_experiment(out_dir)


def aggregate_experiment(out_dir: str | Path) -> dict[str, Path]:
    """Write the experiment's tables (Markdown and CSV) and figures (PNG and SVG) into ``results/``.

    The tables are :func:`~mix2.reporting.results.experiment_tables`'; besides them,
    ``figure3_polyphony`` (macro F1 by polyphony level, one line per preset, error bars over
    seeds, at the run's threshold and at the tuned thresholds) and ``runs.csv`` (every finished
    run's numbers). Returns the written paths by name; the runs not finished yet are left out and listed.
    """
    out_dir = Path(out_dir)
    experiment = stored_plan(out_dir)
    results = collect_results(out_dir)
    tables = experiment_tables(out_dir, results)
    missing = unfinished_runs(out_dir)
    if missing:
        print(f"mix2: {len(missing)} run(s) not finished yet, left out: {', '.join(missing)}")
    folder = out_dir / RESULTS
    folder.mkdir(exist_ok=True)
    written: dict[str, Path] = {}
    for name, (title, table) in tables.items():
        table.to_csv(folder / f"{name}.csv", float_format="%.2f")
        (folder / f"{name}.md").write_text(f"{title}\n\n{to_markdown(table)}\n")
        written[name] = folder / f"{name}.md"
    variants = experiment.variants or [""]
    polyphony = results["polyphony"]
    written["figure3_polyphony"] = plot_polyphony_by_method(
        polyphony[polyphony["variant"] == variants[0]],
        experiment.presets,
        folder / "figure3_polyphony",
        experiment.base.train.threshold,
    )
    results["scores"].to_csv(folder / "runs.csv", index=False)
    written["runs"] = folder / "runs.csv"
    return written


__all__ = [
    "PLAN_FILE",
    "Experiment",
    "PlannedRun",
    "aggregate_experiment",
    "collect_results",
    "plan_experiment",
    "run_experiment",
]
