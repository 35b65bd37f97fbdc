"""Experiments: presets x seeds (x AnuraSet variants) on one dataset, trained and aggregated.

An experiment folder holds:

- ``experiment.yaml``: the plan (the base configuration, presets, seeds and variants). A later
  call on the same folder reuses it, and refuses a different plan;
- ``commands.txt``: one command per run, for a cluster's array job
  (``mix2 experiment DIR --run-index $SLURM_ARRAY_TASK_ID``);
- ``runs/[<variant>/]<preset>/seed<k>/``: one run folder each (see :mod:`mix2.jobs`). A run
  folder with ``metrics.json`` is finished and never retrained; an interrupted one is resumed
  from its last checkpoint (see :func:`mix2.jobs.resume`);
- ``results/``: the tables and figures of :func:`aggregate_experiment`.

Example:
    >>> from mix2 import default_config
    >>> plan = Experiment(default_config("chorus"), presets=["timeshift", "mix2"], seeds=[0, 1])
    >>> [run.path for run in plan.runs()]
    ['runs/timeshift/seed0', 'runs/timeshift/seed1', 'runs/mix2/seed0', 'runs/mix2/seed1']
    >>> run_experiment("experiments/chorus", plan)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from mix2.config import PRESETS, RunConfig, apply_preset
from mix2.data.anuraset import VARIANTS
from mix2.errors import Mix2Error, input_error
from mix2.jobs import check_config, resume, train
from mix2.metrics import group_of_class
from mix2.reporting.plots import plot_polyphony_by_method
from mix2.reporting.tables import per_class_table, summary_table, to_markdown

PLAN_FILE = "experiment.yaml"
RESULTS = "results"


@dataclass(frozen=True)
class PlannedRun:
    """One run of an experiment: a preset with one training seed, on one variant (or the data as is)."""

    preset: str
    seed: int
    variant: str | None = None

    @property
    def path(self) -> str:
        """The run folder, relative to the experiment folder."""
        return "/".join(["runs", *([self.variant] if self.variant else []), self.preset, f"seed{self.seed}"])


@dataclass
class Experiment:
    """A grid of runs: every preset with every seed, on every variant.

    Args:
        base: the configuration each run starts from, before its preset, variant and seed.
        presets: names from :data:`mix2.config.PRESETS`, in table order.
        seeds: training seeds; the splits stay those of ``base.data.split_seed``.
        variants: AnuraSet variants (the first gives Table I, the others Table II), or ``None``
            to take the data as it is.
    """

    base: RunConfig
    presets: list[str]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    variants: list[str] | None = None

    def __post_init__(self) -> None:
        unknown = [p for p in self.presets if p not in PRESETS]
        if unknown:
            raise Mix2Error(f"unknown preset(s) {', '.join(unknown)}; choose from: {', '.join(PRESETS)}")
        if self.variants is not None and not set(self.variants) <= set(VARIANTS):
            raise Mix2Error(f"unknown variant(s) in {self.variants}; choose from: {', '.join(VARIANTS)}")
        for name, values in (("presets", self.presets), ("seeds", self.seeds), ("variants", self.variants or [None])):
            if not values or len(set(values)) != len(values):
                raise Mix2Error(f"an experiment needs at least one of its {name}, each once; got {values}")

    def runs(self) -> list[PlannedRun]:
        """Every run, variant by variant, then preset by preset, then seed by seed."""
        return [PlannedRun(p, s, v) for v in self.variants or [None] for p in self.presets for s in self.seeds]

    def config(self, run: PlannedRun) -> RunConfig:
        """The full configuration of one run."""
        config = apply_preset(RunConfig.from_dict(self.base.to_dict()), run.preset)
        config.train.seed = run.seed
        if run.variant is not None:
            config.data.variant = run.variant
        return config

    def to_dict(self) -> dict:
        return {"presets": self.presets, "seeds": self.seeds, "variants": self.variants, "base": self.base.to_dict()}

    @classmethod
    def from_dict(cls, values: dict, origin: str) -> Experiment:
        try:
            return cls(RunConfig.from_dict(values["base"], origin), values["presets"], values["seeds"], values["variants"])
        except (KeyError, TypeError) as err:
            raise input_error(origin, f"not an experiment plan ({err})") from None


def plan_experiment(out_dir: str | Path, experiment: Experiment | None = None) -> Experiment:
    """Write (or read back) the plan of the experiment in ``out_dir``, and its ``commands.txt``.

    With ``experiment=None`` the folder's existing plan is returned. A plan that differs from
    the one already in the folder is refused, so one folder never mixes two experiments.
    """
    out_dir = Path(out_dir)
    plan_path = out_dir / PLAN_FILE
    stored = Experiment.from_dict(yaml.safe_load(plan_path.read_text()), str(plan_path)) if plan_path.is_file() else None
    if experiment is None:
        if stored is None:
            raise input_error(plan_path, "no experiment planned here; give --data and --presets to start one")
        return stored
    if stored is not None and stored.to_dict() != experiment.to_dict():
        changed = [k for k, v in experiment.to_dict().items() if stored.to_dict()[k] != v]
        raise input_error(plan_path, f"this folder holds another experiment (its {', '.join(changed)} differ); use a new folder")
    for run in experiment.runs():  # every run's settings, before anything is written (the runs may train elsewhere)
        check_config(experiment.config(run), here=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan_path.write_text(yaml.safe_dump(experiment.to_dict(), sort_keys=False))
    commands = [f"mix2 experiment {out_dir} --run-index {i} --quiet" for i in range(len(experiment.runs()))]
    (out_dir / "commands.txt").write_text("\n".join(commands) + "\n")
    return experiment


def is_finished(run_dir: Path) -> bool:
    """A run folder is finished once its ``metrics.json`` exists (it is written last)."""
    return (run_dir / "metrics.json").is_file()


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


def collect_results(out_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The finished runs' numbers as long tables.

    Returns ``scores`` (one row per run and thresholding, ``global`` or ``tuned``: frequent,
    common, rare and all macro F1, mAP), ``polyphony`` (one row per run, thresholding and level) and
    ``per_class`` (one row per run and class).
    """
    out_dir = Path(out_dir)
    experiment = plan_experiment(out_dir)
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


def aggregate_experiment(out_dir: str | Path) -> dict[str, Path]:
    """Write the experiment's tables (Markdown and CSV) and figures (PNG and SVG) into ``results/``.

    - ``table1``: frequent / common / rare / all macro F1 and mAP (%), mean ± std over seeds, one
      row per preset, on the first variant, at threshold 0.5 as the paper; ``table1_tuned`` at
      the per-class thresholds tuned on validation;
    - ``table2`` (with several variants): the same on the other variants, side by side;
    - ``figure3_polyphony``: macro F1 by polyphony level, one line per preset, error bars over
      seeds, at 0.5 and at the tuned thresholds;
    - ``per_class``: each class's F1 under every preset, classes by training count;
    - ``runs.csv``: every finished run's numbers.

    Returns the written paths by name; the runs not finished yet are left out and listed.
    """
    out_dir = Path(out_dir)
    experiment = plan_experiment(out_dir)
    results = collect_results(out_dir)
    scores = results["scores"]
    if scores.empty:
        raise input_error(out_dir, "no finished run to aggregate yet")
    missing = [run.path for run in experiment.runs() if not is_finished(out_dir / run.path)]
    if missing:
        print(f"mix2: {len(missing)} run(s) not finished yet, left out: {', '.join(missing)}")
    folder = out_dir / RESULTS
    folder.mkdir(exist_ok=True)
    written: dict[str, Path] = {}

    def save(name: str, table: pd.DataFrame, title: str) -> None:
        table.to_csv(folder / f"{name}.csv", float_format="%.2f")
        (folder / f"{name}.md").write_text(f"{title}\n\n{to_markdown(table)}\n")
        written[name] = folder / f"{name}.md"

    variants = experiment.variants or [""]
    seeds = ", ".join(map(str, experiment.seeds))
    main = scores[scores["variant"] == variants[0]]
    label = f" on {variants[0]}" if variants[0] else ""
    threshold = experiment.base.train.threshold
    for thresholds, suffix, how in (
        ("global", "", f"at threshold {threshold:g}"),
        ("tuned", "_tuned", "at per-class thresholds tuned on validation"),
    ):
        save(
            f"table1{suffix}",
            summary_table(main[main["thresholds"] == thresholds], experiment.presets),
            f"Table I{label}: macro F1 and mAP (%) {how}, mean ± std over seeds {seeds}",
        )
    if len(variants) > 1:
        others = scores[(scores["variant"] != variants[0]) & (scores["thresholds"] == "global")]
        parts = [summary_table(others[others["variant"] == v], experiment.presets).add_prefix(f"{v} ") for v in variants[1:]]
        save(
            "table2",
            pd.concat(parts, axis=1),
            f"Table II: macro F1 (%) at threshold {threshold:g} on the variants, mean ± std over seeds {seeds}",
        )
    polyphony = results["polyphony"]
    figure = plot_polyphony_by_method(
        polyphony[polyphony["variant"] == variants[0]], experiment.presets, folder / "figure3_polyphony", threshold
    )
    written["figure3_polyphony"] = figure
    per_class = results["per_class"]
    save(
        "per_class",
        per_class_table(per_class[per_class["variant"] == variants[0]], experiment.presets),
        f"Per-class F1 (%){label} at threshold {threshold:g}, mean ± std over seeds {seeds}",
    )
    scores.to_csv(folder / "runs.csv", index=False)
    written["runs"] = folder / "runs.csv"
    return written


__all__ = ["Experiment", "PlannedRun", "aggregate_experiment", "collect_results", "plan_experiment", "run_experiment"]
