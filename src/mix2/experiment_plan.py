"""The plan of an experiment: presets x seeds (x AnuraSet variants) on one dataset, and where each run goes.

An experiment folder holds:

- ``experiment.yaml``: the plan (the base configuration, presets, seeds and variants). A later
  call on the same folder reuses it, and refuses a different plan;
- ``commands.txt``: one command per run, for a cluster's array job
  (``mix2 experiment DIR --run-index $SLURM_ARRAY_TASK_ID``);
- ``runs/[<variant>/]<preset>/seed<k>/``: one run folder each (see :mod:`mix2.run_folder`);
- ``results/``: the tables and figures of :func:`mix2.experiment.aggregate_experiment`.

Reading a plan (:func:`read_plan`) trains and writes nothing; :mod:`mix2.experiment` plans,
trains and aggregates.

Example:
    >>> from mix2 import default_config
    >>> plan = Experiment(default_config("chorus"), presets=["timeshift", "mix2"], seeds=[0, 1])
    >>> [run.path for run in plan.runs()]
    ['runs/timeshift/seed0', 'runs/timeshift/seed1', 'runs/mix2/seed0', 'runs/mix2/seed1']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mix2.config import PRESETS, RunConfig, apply_preset
from mix2.data.anuraset import VARIANTS
from mix2.errors import Mix2Error, input_error

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


def read_plan(out_dir: str | Path) -> Experiment | None:
    """The plan stored in ``out_dir``, or ``None`` where there is none; reads only."""
    plan_path = Path(out_dir) / PLAN_FILE
    if not plan_path.is_file():
        return None
    return Experiment.from_dict(yaml.safe_load(plan_path.read_text()), str(plan_path))


def stored_plan(out_dir: str | Path) -> Experiment:
    """The plan in ``out_dir``, or a one-line error where there is none."""
    experiment = read_plan(out_dir)
    if experiment is None:
        raise input_error(Path(out_dir) / PLAN_FILE, "no experiment planned here; give --data and --presets to start one")
    return experiment


def write_plan(out_dir: str | Path, experiment: Experiment) -> None:
    """Store ``experiment`` in ``out_dir`` with one command per run in ``commands.txt``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / PLAN_FILE).write_text(yaml.safe_dump(experiment.to_dict(), sort_keys=False))
    commands = [f"mix2 experiment {out_dir} --run-index {i} --quiet" for i in range(len(experiment.runs()))]
    (out_dir / "commands.txt").write_text("\n".join(commands) + "\n")
